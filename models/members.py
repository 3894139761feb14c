"""Party members of a cell, their status history and their positions with terms.

Status decides who is counted in attendance: exempted members and those attending temporarily
elsewhere are listed but not counted (see `counts_for_attendance`). A status change is an event
(`MemberStatusChange`: the new status, the date it took effect, the decision and the reason) and
`Member.status` is its current value, so the profile shows the whole path (probationary -> full ->
exempted…). Positions are terms (`Position`: kind, start, end); `Member.position` caches the
member's current cell-level position for the roll and lists and is refreshed by `refresh_position()`.
"""
from __future__ import annotations

import datetime as dt
import unicodedata

from peewee import CharField, DateField, ForeignKeyField, IntegerField, TextField

from .base import SyncedModel, ValidationError, local_today, register
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
# Every kind of term a member may hold; the first three sit in the cell committee (chi ủy).
POSITION_KINDS = {
    "bi_thu": "Bí thư chi bộ",
    "pho_bi_thu": "Phó Bí thư chi bộ",
    "chi_uy_vien": "Chi ủy viên",
    "dang_uy_vien": "Đảng ủy viên",
    "uy_vien_btv": "Ủy viên Ban Thường vụ",
}
CELL_COMMITTEE = ("bi_thu", "pho_bi_thu", "chi_uy_vien")
# Statuses that need a decision and a reason recorded with them.
NEEDS_DECISION = ("exempted", "transferred", "struck_off")
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
    card_number = CharField(max_length=20, null=True, index=True)
    status = CharField(max_length=20, default="full")
    status_note = TextField(default="")
    position = CharField(max_length=20, default="")

    # The same card number entered at central and at a node is a suspected duplicate to resolve at
    # central (sync/merge.py), never a wall that blocks the node's queue.
    sync_unique = ("card_number",)

    def sync_scope(self) -> str:
        """A member travels to the node that holds their cell."""
        return cell_node(self.cell_id)

    def clean(self) -> None:
        """Name required, known status/position/gender, plausible dates, a card number used once."""
        errors = {}
        if not (self.full_name or "").strip():
            errors["full_name"] = "Vui lòng nhập họ và tên."
        today = local_today()
        if self.birth_year is not None and not (1900 <= int(self.birth_year) <= today.year - 16):
            errors["birth_year"] = f"Năm sinh phải từ 1900 đến {today.year - 16}."
        if self.card_number is not None:
            self.card_number = self.card_number.strip() or None
        if self.card_number and self.deleted_at is None and not getattr(self, "_from_sync", False):
            other = (Member.live().select(Member.full_name)
                     .where((Member.card_number == self.card_number) & (Member.id != self.id)).scalar())
            if other is not None:
                errors["card_number"] = f"Số thẻ đảng viên {self.card_number} đã có (đảng viên {other})."
        if self.admitted_on and self.full_member_on and self.full_member_on < self.admitted_on:
            errors["full_member_on"] = "Ngày chính thức phải sau ngày vào Đảng."
        if self.status not in MEMBER_STATUSES:
            errors["status"] = "Trạng thái đảng viên không hợp lệ."
        if self.position not in POSITIONS:
            errors["position"] = "Chức vụ không hợp lệ."
        if self.gender not in GENDERS:
            errors["gender"] = "Giới tính không hợp lệ."
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


def member_node(member_id: str) -> str:
    """The node holding a member's cell (raw SQL: it runs twice on every write of their records)."""
    database = Member._meta.database
    row = database.execute_sql(
        f"SELECT c.node_id FROM member m JOIN cell c ON c.id = m.cell_id WHERE m.id = {database.param}",
        (member_id,)).fetchone()
    if row is None:
        raise ValidationError({"member": "Đảng viên không tồn tại."})
    return row[0]


@register
class MemberStatusChange(SyncedModel):
    """One change of a member's status: what it became, from when, by which decision and why."""

    member = ForeignKeyField(Member, backref="status_changes", on_delete="RESTRICT")
    status = CharField(max_length=20)
    effective_on = DateField()
    decision = CharField(max_length=120, default="")
    reason = TextField(default="")

    class Meta:
        table_name = "member_status_change"

    def sync_scope(self) -> str:
        """Travels with the member."""
        return member_node(self.member_id)

    def clean(self) -> None:
        """Known status, a date not in the future; exemption, transfer and striking off need a reason."""
        errors = {}
        if self.status not in MEMBER_STATUSES:
            errors["status"] = "Trạng thái đảng viên không hợp lệ."
        if not isinstance(self.effective_on, dt.date):
            errors["effective_on"] = "Vui lòng nhập ngày hiệu lực (dd/mm/yyyy)."
        elif self.effective_on > local_today():
            errors["effective_on"] = "Ngày hiệu lực không được ở tương lai."
        if self.status in NEEDS_DECISION and not (self.decision or "").strip():
            errors["decision"] = "Vui lòng ghi số quyết định (hoặc nghị quyết) của chi bộ."
        if self.status in NEEDS_DECISION and not (self.reason or "").strip():
            errors["reason"] = "Vui lòng ghi lý do."
        if errors:
            raise ValidationError(errors)


@register
class Position(SyncedModel):
    """A term in a position (secretary, deputy, committee member…): start and, once over, end."""

    member = ForeignKeyField(Member, backref="positions", on_delete="RESTRICT")
    kind = CharField(max_length=20)
    start_on = DateField()
    end_on = DateField(null=True)
    note = CharField(max_length=200, default="")

    def sync_scope(self) -> str:
        """Travels with the member (the cell's node shows its committee)."""
        return member_node(self.member_id)

    def clean(self) -> None:
        """Known kind, a start not in the future, an end after the start."""
        errors = {}
        if self.kind not in POSITION_KINDS:
            errors["kind"] = "Chức vụ không hợp lệ."
        if not isinstance(self.start_on, dt.date):
            errors["start_on"] = "Vui lòng nhập ngày bắt đầu nhiệm kỳ (dd/mm/yyyy)."
        elif self.start_on > local_today():
            errors["start_on"] = "Ngày bắt đầu không được ở tương lai."
        elif self.end_on and self.end_on < self.start_on:
            errors["end_on"] = "Ngày kết thúc phải sau ngày bắt đầu."
        if errors:
            raise ValidationError(errors)

    def active_on(self, day: dt.date) -> bool:
        """True when the term covers `day`."""
        return self.start_on <= day and (self.end_on is None or self.end_on >= day)


def change_status(member: Member, status: str, effective_on: dt.date, decision: str = "",
                  reason: str = "") -> MemberStatusChange:
    """Record a status change as an event and make it the member's current status (one transaction)."""
    from .base import db

    event = MemberStatusChange(member=member.id, status=status, effective_on=effective_on,
                               decision=(decision or "").strip(), reason=(reason or "").strip())
    with db.atomic():
        event.save()
        member.status = status
        member.status_note = event.reason
        member.save()
    return event


def status_history(member: Member) -> list[MemberStatusChange]:
    """A member's status changes, newest first."""
    return list(MemberStatusChange.live().where(MemberStatusChange.member == member.id)
                .order_by(MemberStatusChange.effective_on.desc(), MemberStatusChange.created_at.desc()))


def current_positions(member_ids, day: dt.date | None = None) -> dict[str, list[Position]]:
    """Member id -> the terms active on `day` (today by default), in one query."""
    day = day or local_today()
    ids = list(member_ids)
    if not ids:
        return {}
    out: dict[str, list[Position]] = {}
    query = Position.live().where(
        Position.member.in_(ids) & (Position.start_on <= day)
        & (Position.end_on.is_null() | (Position.end_on >= day)))
    for term in query.order_by(Position.start_on):
        out.setdefault(term.member_id, []).append(term)
    return out


def refresh_position(member: Member) -> None:
    """Set the cached cell-level position from the member's current terms (highest rank wins)."""
    terms = current_positions([member.id]).get(member.id, [])
    kinds = {t.kind for t in terms}
    best = next((k for k in CELL_COMMITTEE if k in kinds), "")
    if member.position != best:
        member.position = best
        member.save()


def assign_position(member: Member, kind: str, start_on: dt.date, note: str = "") -> Position:
    """Open a term; a cell's secretary or deputy replaces the previous holder's term, which ends."""
    from .base import db

    term = Position(member=member.id, kind=kind, start_on=start_on, note=(note or "").strip())
    with db.atomic():
        term.clean()
        if kind in ("bi_thu", "pho_bi_thu"):
            holders = (Position.live().join(Member, on=(Position.member == Member.id))
                       .where((Member.cell == member.cell_id) & (Position.kind == kind)
                              & Position.end_on.is_null()))
            for previous in list(holders):
                previous.end_on = max(start_on - dt.timedelta(days=1), previous.start_on)
                previous.save()
                refresh_position(Member.get_by_id(previous.member_id))
        term.save()
        refresh_position(member)
    return term


def end_position(term: Position, end_on: dt.date) -> Position:
    """Close a term on `end_on` and refresh the holder's cached position."""
    from .base import db

    with db.atomic():
        term.end_on = end_on
        term.save()
        refresh_position(Member.get_by_id(term.member_id))
    return term


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


def fold(text) -> str:
    """Lower-case text without diacritics (đ -> d), for matching headers, labels and searches."""
    text = str(text or "").strip().lower().replace("đ", "d")
    decomposed = unicodedata.normalize("NFD", text)
    return " ".join("".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn").split())


def search_members(query, text: str = "", status: str = "", position: str = "",
                   day: dt.date | None = None) -> list[Member]:
    """Filter a member query by status and current position, then by name or card number.

    The name match ignores case and diacritics ("nguyen van an" finds "Nguyễn Văn An"), which SQL
    cannot do portably, so it runs in Python over the already-filtered rows (a few thousand at most).
    `status` is a status code, "on_roll" (everyone on a cell's roll) or "" (everyone).
    """
    if status == "on_roll":
        query = query.where(Member.status.in_(ON_ROLL))
    elif status:
        query = query.where(Member.status == status)
    if position:
        day = day or local_today()
        holders = (Position.live().select(Position.member)
                   .where((Position.kind == position) & (Position.start_on <= day)
                          & (Position.end_on.is_null() | (Position.end_on >= day))))
        query = query.where(Member.id.in_(holders))
    members = list(query)
    needle = fold(text)
    if needle:
        words = needle.split()
        members = [m for m in members
                   if all(w in fold(m.full_name) for w in words) or needle == fold(m.card_number or "")]
    return sorted(members, key=lambda m: (vietnamese_sort_key(given_name(m.full_name)),
                                          vietnamese_sort_key(m.full_name)))
