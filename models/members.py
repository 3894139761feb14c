"""Party members of a cell, with their membership status and position.

Status decides who is counted in attendance: exempted members and those attending temporarily
elsewhere are listed but not counted (see `counts_for_attendance`).
"""
from __future__ import annotations

import datetime as dt

from peewee import CharField, DateField, ForeignKeyField, IntegerField, TextField

from .base import SyncedModel, ValidationError, register
from .org import Cell, cell_node

MEMBER_STATUSES = {
    "full": "Đảng viên chính thức",
    "probationary": "Đảng viên dự bị",
    "exempted": "Miễn sinh hoạt",
    "temp_here": "Sinh hoạt tạm thời tại chi bộ",
    "temp_elsewhere": "Sinh hoạt tạm thời nơi khác",
    "transferred": "Đã chuyển sinh hoạt",
    "struck_off": "Đã xóa tên",
}
STATUS_BADGES = {"full": "CT", "probationary": "DB", "exempted": "Miễn SH", "temp_here": "SHTT",
                 "temp_elsewhere": "SHTT nơi khác", "transferred": "Chuyển đi", "struck_off": "Xóa tên"}
# Who appears on a cell's roll at all, and who of them the attendance rate counts.
ON_ROLL = ("full", "probationary", "exempted", "temp_here", "temp_elsewhere")
COUNTED = ("full", "probationary", "temp_here")

POSITIONS = {"": "Đảng viên", "bi_thu": "Bí thư", "pho_bi_thu": "Phó Bí thư", "chi_uy_vien": "Chi ủy viên"}
GENDERS = {"nam": "Nam", "nu": "Nữ"}


@register
class Member(SyncedModel):
    """One Party member on a cell's roll."""

    cell = ForeignKeyField(Cell, backref="members", on_delete="RESTRICT")
    full_name = CharField(max_length=120)
    birth_year = IntegerField(null=True)
    gender = CharField(max_length=8, default="nam")
    admitted_on = DateField(null=True)
    full_member_on = DateField(null=True)
    card_number = CharField(max_length=20, null=True, unique=True)
    status = CharField(max_length=20, default="full")
    status_note = TextField(default="")
    position = CharField(max_length=20, default="")

    def sync_scope(self) -> str:
        """A member travels to the node that holds their cell."""
        return cell_node(self.cell_id)

    def clean(self) -> None:
        """Name required, known status/position/gender, no dates in the future."""
        errors = {}
        if not (self.full_name or "").strip():
            errors["full_name"] = "Vui lòng nhập họ và tên."
        if self.status not in MEMBER_STATUSES:
            errors["status"] = "Trạng thái đảng viên không hợp lệ."
        if self.position not in POSITIONS:
            errors["position"] = "Chức vụ không hợp lệ."
        if self.gender not in GENDERS:
            errors["gender"] = "Giới tính không hợp lệ."
        today = dt.date.today()
        for name in ("admitted_on", "full_member_on"):
            value = getattr(self, name)
            if value and value > today:
                errors[name] = "Ngày không được ở tương lai."
        if errors:
            raise ValidationError(errors)

    @property
    def counts_for_attendance(self) -> bool:
        """True when this member is in the denominator of the attendance rate."""
        return self.status in COUNTED

    @property
    def badge(self) -> str:
        """Short status mark for a name tile (CT, DB, Miễn SH…)."""
        return STATUS_BADGES.get(self.status, "")


def roll_for_cell(cell_id: str) -> list[Member]:
    """Members on the cell's roll, ordered by name for the roll-call grid."""
    members = list(Member.live().where((Member.cell == cell_id) & (Member.status.in_(ON_ROLL))))
    return sorted(members, key=lambda m: (vietnamese_sort_key(given_name(m.full_name)), vietnamese_sort_key(m.full_name)))


def given_name(full_name: str) -> str:
    """The last word of a Vietnamese full name, by which lists are usually sorted."""
    parts = full_name.split()
    return parts[-1] if parts else ""


_VI_ORDER = "aàảãáạăằẳẵắặâầẩẫấậbcdđeèẻẽéẹêềểễếệfghiìỉĩíịjklmnoòỏõóọôồổỗốộơờởỡớợpqrstuùủũúụưừửữứựvwxyỳỷỹýỵz"
_VI_RANK = {ch: i for i, ch in enumerate(_VI_ORDER)}


def vietnamese_sort_key(text: str) -> tuple:
    """Sort key following the Vietnamese alphabet (đ after d, ư after u…)."""
    return tuple(_VI_RANK.get(ch, 1000 + ord(ch)) for ch in text.lower())
