"""Meetings and roll call, and the attendance rules judged over them.

A meeting belongs to a cell and is written only by the node that holds the cell. Attendance is one
row per member and meeting. `attendance_summary()` is the single place the rate and its verdict are
computed: views, reports and tests call it; templates only show its result.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from peewee import BooleanField, CharField, DateField, ForeignKeyField, TimeField

from .base import SyncedModel, ValidationError, register
from .members import Member, roll_for_cell
from .org import Cell, cell_node
from .rules import RuleSet, rule_set_for

MEETING_KINDS = {
    "regular": "Sinh hoạt thường kỳ",
    "thematic": "Sinh hoạt chuyên đề",
    "combined": "Thường kỳ kết hợp chuyên đề",
    "extraordinary": "Sinh hoạt bất thường",
}
MEETING_STATUSES = {"planned": "Kế hoạch", "in_progress": "Đang họp", "closed": "Đã kết thúc"}

ATTENDANCE_STATUSES = {"present": "Có mặt", "excused": "Vắng có lý do", "unexcused": "Vắng không lý do"}
# One tap moves a tile to the next state; an unmarked tile becomes present first.
NEXT_STATUS = {None: "present", "present": "excused", "excused": "unexcused", "unexcused": "present"}
COMMON_REASONS = ("Đi công tác", "Ốm", "Việc gia đình", "Nghỉ phép", "Học tập")


@register
class Meeting(SyncedModel):
    """One cell meeting, with the rule set it is judged under."""

    cell = ForeignKeyField(Cell, backref="meetings", on_delete="RESTRICT")
    kind = CharField(max_length=20, default="regular")
    held_on = DateField()
    starts_at = TimeField(null=True)
    ends_at = TimeField(null=True)
    title = CharField(max_length=300, default="")
    status = CharField(max_length=20, default="planned")
    is_model = BooleanField(default=False)
    rule_set = ForeignKeyField(RuleSet, null=True, backref="meetings", on_delete="RESTRICT")

    def sync_scope(self) -> str:
        """A meeting travels with its cell's node."""
        return cell_node(self.cell_id)

    def clean(self) -> None:
        """Known kind and status; a date; end after start."""
        errors = {}
        if self.kind not in MEETING_KINDS:
            errors["kind"] = "Loại buổi sinh hoạt không hợp lệ."
        if self.status not in MEETING_STATUSES:
            errors["status"] = "Trạng thái buổi sinh hoạt không hợp lệ."
        if not isinstance(self.held_on, dt.date):
            errors["held_on"] = "Vui lòng nhập ngày sinh hoạt (dd/mm/yyyy)."
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "Giờ kết thúc phải sau giờ bắt đầu."
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs):
        """Pin the rule set in force on the meeting date the first time the meeting is saved."""
        if self.rule_set_id is None and isinstance(self.held_on, dt.date):
            rules = rule_set_for(self.held_on, Cell.get_by_id(self.cell_id).organisation_id)
            self.rule_set = rules.id if rules else None
        return super().save(*args, **kwargs)

    @property
    def label(self) -> str:
        """Human title: the kind and month, e.g. 'Sinh hoạt thường kỳ tháng 3/2024'."""
        return self.title or f"{MEETING_KINDS[self.kind]} tháng {self.held_on.month}/{self.held_on.year}"


@register
class Attendance(SyncedModel):
    """A member's presence at one meeting; excused absences carry a reason."""

    meeting = ForeignKeyField(Meeting, backref="attendance", on_delete="RESTRICT")
    member = ForeignKeyField(Member, backref="attendance", on_delete="RESTRICT")
    status = CharField(max_length=20)
    reason = CharField(max_length=200, default="")

    natural_key = ("meeting", "member")

    class Meta:
        indexes = ((("meeting", "member"), True),)

    def sync_scope(self) -> str:
        """Attendance travels with its meeting's cell."""
        database = Meeting._meta.database
        row = database.execute_sql(
            f"SELECT c.node_id FROM meeting m JOIN cell c ON c.id = m.cell_id WHERE m.id = {database.param}",
            (self.meeting_id,)).fetchone()
        if row is None:
            raise ValidationError({"meeting": "Buổi sinh hoạt không tồn tại."})
        return row[0]

    def clean(self) -> None:
        """Status from the known list; the member must be on the meeting's cell."""
        errors = {}
        if self.status not in ATTENDANCE_STATUSES:
            errors["status"] = "Trạng thái điểm danh không hợp lệ."
        if len(self.reason or "") > 200:
            errors["reason"] = "Lý do vắng tối đa 200 ký tự."
        if errors:
            raise ValidationError(errors)


@dataclass
class AttendanceSummary:
    """Counts, rate and verdict of one roll call, ready to show."""

    counted: int = 0
    present: int = 0
    excused: int = 0
    unexcused: int = 0
    unmarked: int = 0
    not_counted: int = 0
    rate_pct: float | None = None
    threshold_pct: float | None = None
    must_exceed: bool = True
    passes: bool | None = None
    rule_set_title: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def rate_text(self) -> str:
        """The rate as Vietnamese readers write it: one decimal, comma separator."""
        if self.rate_pct is None:
            return "—"
        text = f"{self.rate_pct:.1f}".replace(".", ",")
        return text[:-2] if text.endswith(",0") else text


def attendance_rate(present: int, counted: int) -> float | None:
    """Percentage of counted members present; None when nobody is counted."""
    if counted <= 0:
        return None
    return 100.0 * present / counted


def rate_passes(rate_pct: float | None, rules: RuleSet | None) -> bool | None:
    """Judge a rate by the rule set's threshold ('over 85%' under 12-HD); None without rules."""
    if rate_pct is None or rules is None:
        return None
    threshold = float(rules.param("attendance_threshold_pct"))
    if rules.params.get("attendance_must_exceed", True):
        return rate_pct > threshold
    return rate_pct >= threshold


def attendance_summary(meeting: Meeting, roll: list[Member] | None = None,
                       marks: dict[str, Attendance] | None = None) -> AttendanceSummary:
    """Count a meeting's roll call and judge its rate by the meeting's rule set.

    An open meeting is counted against today's roll; a closed one only against the members
    marked at the time, so later arrivals and departures do not rewrite history.
    """
    marks = marks if marks is not None else attendance_by_member(meeting)
    if meeting.status == "closed":
        roll = list(Member.select().where(Member.id.in_(list(marks)))) if marks else []
    elif roll is None:
        roll = roll_for_cell(meeting.cell_id)
    rules = RuleSet.get_or_none(RuleSet.id == meeting.rule_set_id) if meeting.rule_set_id else None
    s = AttendanceSummary()
    for member in roll:
        if not member.counts_for_attendance:
            s.not_counted += 1
            continue
        s.counted += 1
        mark = marks.get(member.id)
        status = mark.status if mark else None
        if status == "present":
            s.present += 1
        elif status == "excused":
            s.excused += 1
        elif status == "unexcused":
            s.unexcused += 1
        else:
            s.unmarked += 1
    s.rate_pct = attendance_rate(s.present, s.counted)
    s.passes = rate_passes(s.rate_pct, rules)
    if rules:
        s.threshold_pct = float(rules.param("attendance_threshold_pct"))
        s.must_exceed = bool(rules.params.get("attendance_must_exceed", True))
        s.rule_set_title = rules.title
    if s.unexcused:
        s.notes.append(f"Có {s.unexcused} đảng viên vắng không lý do.")
    if s.unmarked:
        s.notes.append(f"Còn {s.unmarked} đảng viên chưa điểm danh.")
    return s


def attendance_by_member(meeting: Meeting) -> dict[str, Attendance]:
    """The meeting's live attendance rows keyed by member id."""
    rows = Attendance.live().where(Attendance.meeting == meeting.id)
    return {row.member_id: row for row in rows}


def set_attendance(meeting: Meeting, member_id: str, status: str | None, reason: str = "") -> Attendance:
    """Record a member's attendance (or move it to the next state when status is None)."""
    if meeting.status == "closed":
        raise ValidationError({"meeting": "Buổi sinh hoạt đã kết thúc; điểm danh không sửa được nữa."})
    member = Member.get_or_none((Member.id == member_id) & Member.deleted_at.is_null())
    if member is None or member.cell_id != meeting.cell_id:
        raise ValidationError({"member": "Đảng viên không thuộc chi bộ của buổi sinh hoạt này."})
    if not member.counts_for_attendance:
        raise ValidationError({"member": "Đảng viên được miễn hoặc sinh hoạt nơi khác, không điểm danh."})
    row = Attendance.get_or_none((Attendance.meeting == meeting.id) & (Attendance.member == member.id))
    if status is None:
        status = NEXT_STATUS[row.status if row and row.deleted_at is None else None]
    if status not in ATTENDANCE_STATUSES:
        raise ValidationError({"status": "Trạng thái điểm danh không hợp lệ."})
    if row is None:
        row = Attendance(meeting=meeting.id, member=member.id)
    row.status = status
    row.reason = reason.strip() if status == "excused" else ""
    row.deleted_at = None
    row.save()
    return row
