"""The organisation tree: the grassroots Party committee and its cells (central owns both).

A cell names the node (field office) that holds it in `node_id`: that node writes the cell's
members, meetings and attendance, and receives them on pull. Records are keyed by uuid, never by
name, so renames and moves keep their history.
"""
from __future__ import annotations

from peewee import CharField, DateField, ForeignKeyField, IntegerField

from .base import SyncedModel, ValidationError, register
from .rowcache import active, peek_row

ORG_LEVELS = {"dang_bo_co_so": "Đảng bộ cơ sở", "trung_gian": "Cấp trung gian"}

# HD 42 groups cells by type; the labels are vocabulary, the rules per type live in rule sets.
CELL_TYPES = {
    "co_quan": "Chi bộ cơ quan hành chính",
    "su_nghiep": "Chi bộ đơn vị sự nghiệp",
    "doanh_nghiep": "Chi bộ doanh nghiệp",
    "thon_to_dan_pho": "Chi bộ thôn, tổ dân phố",
    "luc_luong_vu_trang": "Chi bộ lực lượng vũ trang",
    "khac": "Loại hình khác",
}

CENTRAL_NODE = "central"


def cell_node(cell_id: str) -> str:
    """The node holding a cell (raw SQL: this runs on every synced write of a cell's records)."""
    if active() is not None:  # a batch being applied: its cache knows the cell, even one it just wrote
        row = peek_row(Cell, cell_id)  # read only
        if row is None:
            raise ValidationError({"cell": "Chi bộ không tồn tại."})
        return row["node_id"]
    database = Cell._meta.database
    row = database.execute_sql(f"SELECT node_id FROM cell WHERE id = {database.param}", (cell_id,)).fetchone()
    if row is None:
        raise ValidationError({"cell": "Chi bộ không tồn tại."})
    return row[0]


@register
class Organisation(SyncedModel):
    """A Party committee (grassroots or intermediate level)."""

    name = CharField(max_length=200)
    short_name = CharField(max_length=80, default="")
    level = CharField(max_length=32, default="dang_bo_co_so")
    parent = ForeignKeyField("self", null=True, backref="children", on_delete="RESTRICT")

    def clean(self) -> None:
        """Name required; level from the known list."""
        errors = {}
        if not (self.name or "").strip():
            errors["name"] = "Vui lòng nhập tên tổ chức đảng."
        if self.level not in ORG_LEVELS:
            errors["level"] = "Cấp tổ chức không hợp lệ."
        if errors:
            raise ValidationError(errors)


@register
class Cell(SyncedModel):
    """A party cell (chi bộ) with its fixed monthly meeting day and the node that holds it."""

    organisation = ForeignKeyField(Organisation, backref="cells", on_delete="RESTRICT")
    code = CharField(max_length=20, unique=True)
    name = CharField(max_length=200)
    cell_type = CharField(max_length=32, default="co_quan")
    node_id = CharField(max_length=32, default=CENTRAL_NODE, index=True)
    meeting_day = IntegerField(default=5)
    active_from = DateField(null=True)
    active_to = DateField(null=True)

    class Meta:
        table_name = "cell"

    def clean(self) -> None:
        """Code and name required; meeting day 1–28 so every month has it."""
        errors = {}
        if not (self.code or "").strip():
            errors["code"] = "Vui lòng nhập mã chi bộ."
        if not (self.name or "").strip():
            errors["name"] = "Vui lòng nhập tên chi bộ."
        if self.cell_type not in CELL_TYPES:
            errors["cell_type"] = "Loại hình chi bộ không hợp lệ."
        if not isinstance(self.meeting_day, int) or not 1 <= self.meeting_day <= 28:
            errors["meeting_day"] = "Ngày sinh hoạt cố định phải từ 1 đến 28."
        if errors:
            raise ValidationError(errors)
