"""Meetings and roll call, and the attendance rules judged over them.

A meeting belongs to a cell and is written only by the node that holds the cell. Attendance is one
row per member and meeting. `attendance_summary()` is the single place the rate and its verdict are
computed: views, reports and tests call it; templates only show its result.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from peewee import BooleanField, CharField, DateField, ForeignKeyField, TextField, TimeField

from .base import SyncedModel, ValidationError, local_today, register
from .members import Member, roll_for_cell
from .org import Cell, cell_node
from .rowcache import active, lookup, lookup_row, peek_row, scope_of
from .rules import RuleSet, rule_set_for

MEETING_KINDS = {
    "regular": "Sinh hoạt thường kỳ",
    "thematic": "Sinh hoạt chuyên đề",
    "combined": "Thường kỳ kết hợp chuyên đề",
    "extraordinary": "Sinh hoạt bất thường",
}
# planned -> in_progress ("Bắt đầu") -> ended ("Kết thúc"; minutes read back and signed) -> closed
# (signed and locked). A revision with a reason takes a closed meeting back to "ended".
MEETING_STATUSES = {"planned": "Kế hoạch", "in_progress": "Đang họp", "ended": "Đã kết thúc, chờ ký biên bản",
                    "closed": "Đã ký biên bản"}
CONCLUSION_KINDS = {"nghi_quyet": "Nghị quyết", "ket_luan": "Kết luận"}
# The one regular meeting of a cell-month: a combined meeting is that month's regular meeting too.
REGULAR_KINDS = ("regular", "combined")
LOCKED_MESSAGE = ("Biên bản đã ký: buổi sinh hoạt đã khóa. Muốn sửa, hãy mở bản sửa đổi biên bản "
                  "và ghi lý do.")

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
    # What happened (added in schema version 2): actual times, place, who chaired and minuted,
    # the conclusion, a move of the planned date with its reason, a model meeting's lessons.
    place = CharField(max_length=200, default="")
    started_at = TimeField(null=True)
    ended_at = TimeField(null=True)
    chair = ForeignKeyField(Member, null=True, backref="chaired_meetings", on_delete="RESTRICT")
    secretary = ForeignKeyField(Member, null=True, backref="minuted_meetings", on_delete="RESTRICT")
    conclusion_kind = CharField(max_length=20, default="nghi_quyet")
    conclusion = TextField(default="")
    moved_from = DateField(null=True)
    move_reason = CharField(max_length=300, default="")
    lessons = TextField(default="")

    class Meta:
        # A cell's calendar, its month's regular meeting and "last meeting" all read by (cell, day).
        indexes = ((("cell", "held_on"), False),)

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
        if self.ended_at and not self.started_at:
            errors["ended_at"] = "Chưa ghi giờ bắt đầu: hãy bấm “Bắt đầu” trước."
        elif self.started_at and self.ended_at and not held_span_ok(self.started_at, self.ended_at):
            errors["ended_at"] = END_BEFORE_START
        if self.conclusion_kind not in CONCLUSION_KINDS:
            errors["conclusion_kind"] = "Loại văn bản kết luận không hợp lệ."
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs):
        """Pin the rule set in force on the meeting date the first time; keep one meeting per day and
        one regular meeting per cell-month (local writes only: sync applies with save_raw)."""
        if isinstance(self.held_on, dt.date) and self.deleted_at is None:
            clash = schedule_clash(self.cell_id, self.held_on, self.kind, self.id)
            if clash:
                raise ValidationError({"held_on": clash})
        if self.rule_set_id is None and isinstance(self.held_on, dt.date):
            rules = rule_set_for(self.held_on, Cell.get_by_id(self.cell_id).organisation_id)
            self.rule_set = rules.id if rules else None
        return super().save(*args, **kwargs)

    @property
    def locked(self) -> bool:
        """True once the minutes are signed: every change then needs a revision with a reason."""
        return self.status == "closed"

    @property
    def started(self) -> bool:
        """True once the meeting has begun (the roll call's verdict means something from then on)."""
        return self.status != "planned"

    @property
    def label(self) -> str:
        """Human title: the kind and month, e.g. 'Sinh hoạt thường kỳ tháng 3/2024'."""
        return self.title or f"{MEETING_KINDS[self.kind]} tháng {self.held_on.month}/{self.held_on.year}"


def schedule_clash(cell_id: str, held_on: dt.date, kind: str, meeting_id: str | None = None) -> str:
    """Why a meeting cannot be on this day (another meeting that day, or a second regular one in the
    month), or an empty string."""
    others = Meeting.live().where((Meeting.cell == cell_id) & (Meeting.id != (meeting_id or "")))
    same_day = others.where(Meeting.held_on == held_on).first()
    if same_day is not None:
        return (f"Chi bộ đã có buổi sinh hoạt ngày {held_on:%d/%m/%Y} ({MEETING_KINDS.get(same_day.kind, '')}); "
                "mỗi ngày chỉ một buổi.")
    if kind in REGULAR_KINDS:
        first = held_on.replace(day=1)
        after = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
        regular = others.where(Meeting.kind.in_(REGULAR_KINDS) & (Meeting.held_on >= first)
                               & (Meeting.held_on < after)).first()
        if regular is not None:
            return (f"Tháng {held_on.month}/{held_on.year} chi bộ đã có buổi sinh hoạt thường kỳ "
                    f"ngày {regular.held_on:%d/%m/%Y}; mỗi tháng chỉ một buổi thường kỳ. "
                    "Hãy dời buổi đó (ghi lý do) hoặc chọn loại sinh hoạt khác.")
    return ""


# A meeting that runs past midnight ends "earlier" than it began; the end is read as the next day
# when that leaves a plausible evening meeting (at most this long), else it is a typing slip and
# refused: "14:00 → 01:30" meant 15:30, not an 11½-hour meeting. An input check, not a Party rule.
LONGEST_PAST_MIDNIGHT = dt.timedelta(hours=8)
END_BEFORE_START = ("Giờ kết thúc phải sau giờ bắt đầu (buổi sinh hoạt kéo dài qua nửa đêm thì giờ kết thúc "
                    f"được tính sang ngày hôm sau, khi cả buổi không quá {LONGEST_PAST_MIDNIGHT.seconds // 3600} giờ).")


def held_span(start: dt.time, end: dt.time) -> dt.timedelta:
    """Start to end, the end taken as the next day when it is earlier (past midnight)."""
    span = dt.datetime.combine(dt.date.min, end) - dt.datetime.combine(dt.date.min, start)
    return span + dt.timedelta(days=1) if span < dt.timedelta(0) else span


def held_span_ok(start: dt.time, end: dt.time) -> bool:
    """The end comes after the start, past midnight included, within a plausible meeting length."""
    return dt.timedelta(0) < held_span(start, end) <= LONGEST_PAST_MIDNIGHT if end < start else end > start


def ends_next_day(meeting: "Meeting") -> bool:
    """The tapped end is on the day after the meeting's date (it ran past midnight)."""
    return bool(meeting.started_at and meeting.ended_at and meeting.ended_at < meeting.started_at)


def duration_minutes(meeting: "Meeting") -> float | None:
    """Minutes from start to end: the times tapped at the meeting, else (meetings recorded before
    the app, the demo) the planned ones; None when either end is missing."""
    if meeting.started_at or meeting.ended_at:
        start, end = meeting.started_at, meeting.ended_at
    else:
        start, end = meeting.starts_at, meeting.ends_at
    if not start or not end:
        return None
    return held_span(start, end).total_seconds() / 60


def _cached_meeting_node(meeting_id: str) -> str:
    """`meeting_node` from the active batch's cache."""
    row = peek_row(Meeting, meeting_id)  # read only
    if row is None:
        raise ValidationError({"meeting": "Buổi sinh hoạt không tồn tại."})
    return cell_node(row["cell"])


def meeting_node(meeting_id: str) -> str:
    """The node holding a meeting's cell (raw SQL: it runs on every write of a meeting's records)."""
    if active() is not None:  # a batch being applied: its cache knows the meeting, even one it just wrote
        return scope_of(Meeting, meeting_id, lambda: _cached_meeting_node(meeting_id), tag="node")
    database = Meeting._meta.database
    row = database.execute_sql(
        f"SELECT c.node_id FROM meeting m JOIN cell c ON c.id = m.cell_id WHERE m.id = {database.param}",
        (meeting_id,)).fetchone()
    if row is None:
        raise ValidationError({"meeting": "Buổi sinh hoạt không tồn tại."})
    return row[0]


def meeting_is_locked(meeting_id: str) -> bool:
    """True when the stored meeting is signed and locked (children refuse local writes then)."""
    if active() is not None:
        return lookup(Meeting, meeting_id, "status") == "closed"
    database = Meeting._meta.database
    row = database.execute_sql(f"SELECT status FROM meeting WHERE id = {database.param}", (meeting_id,)).fetchone()
    return bool(row) and row[0] == "closed"


def ensure_open(meeting: "Meeting") -> None:
    """Refuse a change to a signed meeting with the message that says what to do instead."""
    if meeting.locked:
        raise ValidationError({"meeting": LOCKED_MESSAGE})


class MeetingRecord(SyncedModel):
    """Base of a meeting's records (roll call, contributions, votes…): travel with the meeting's cell;
    refuse local writes once the meeting is signed (records received by sync use `save_raw`)."""

    def sync_scope(self) -> str:
        """Travels with the meeting's cell."""
        return meeting_node(self.meeting_id)

    def save(self, *args, **kwargs):
        """A signed meeting's record does not change here (a revision reopens it first)."""
        if meeting_is_locked(self.meeting_id):
            raise ValidationError({"meeting": LOCKED_MESSAGE})
        return super().save(*args, **kwargs)


@register
class Attendance(MeetingRecord):
    """A member's presence at one meeting; excused absences carry a reason."""

    meeting = ForeignKeyField(Meeting, backref="attendance", on_delete="RESTRICT")
    member = ForeignKeyField(Member, backref="attendance", on_delete="RESTRICT")
    status = CharField(max_length=20)
    reason = CharField(max_length=200, default="")
    arrived_late = BooleanField(default=False)
    left_early = BooleanField(default=False)

    natural_key = ("meeting", "member")

    class Meta:
        # (member, status): a member's unexcused absences (charter warnings) without reading every mark.
        indexes = ((("meeting", "member"), True), (("member", "status"), False))

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
    # False before "Bắt đầu": the rate is shown but not judged (no red "chưa đạt" while people arrive).
    judged: bool = True
    late: int = 0
    left_early: int = 0
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
            s.late += bool(mark.arrived_late)
            s.left_early += bool(mark.left_early)
        elif status == "excused":
            s.excused += 1
        elif status == "unexcused":
            s.unexcused += 1
        else:
            s.unmarked += 1
    s.rate_pct = attendance_rate(s.present, s.counted)
    s.passes = rate_passes(s.rate_pct, rules)
    s.judged = meeting.started
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


def ensure_day_reached(meeting: Meeting, today: dt.date | None = None) -> None:
    """Roll call, contributions and scoring open only on or after the meeting day."""
    today = today or local_today()
    if meeting.held_on > today:
        raise ValidationError({"held_on": f"Chưa đến ngày sinh hoạt ({meeting.held_on:%d/%m/%Y}): "
                                          "điểm danh và ghi diễn biến mở từ ngày đó."})


def set_attendance(meeting: Meeting, member_id: str, status: str | None, reason: str = "") -> Attendance:
    """Record a member's attendance (or move it to the next state when status is None)."""
    ensure_open(meeting)
    ensure_day_reached(meeting)
    member = Member.get_or_none((Member.id == member_id) & Member.deleted_at.is_null())
    if member is not None and member.cell_id != meeting.cell_id:
        # A member moved to another cell (possibly held by another node) keeps a read-only copy here.
        moved_to = Cell.get_or_none(Cell.id == member.cell_id)
        raise ValidationError({"member": f"Đảng viên {member.full_name} đã chuyển sang "
                                         f"{moved_to.name if moved_to else 'chi bộ khác'}; không điểm danh "
                                         "tại buổi sinh hoạt này được."})
    if member is None:
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
    if status != "present":
        row.arrived_late = row.left_early = False
    row.deleted_at = None
    row.save()
    return row


def mark_all_present(meeting: Meeting) -> int:
    """"Tất cả có mặt": every counted member not yet marked becomes present. Return how many."""
    from .base import db

    ensure_open(meeting)
    ensure_day_reached(meeting)
    marks = attendance_by_member(meeting)
    made = 0
    with db.atomic():
        for member in roll_for_cell(meeting.cell_id):
            if member.counts_for_attendance and member.id not in marks:
                Attendance(meeting=meeting.id, member=member.id, status="present").save()
                made += 1
    return made


def toggle_late(meeting: Meeting, member_id: str, which: str) -> Attendance:
    """Toggle "đến muộn" (which='late') or "về sớm" (which='early') on a present member."""
    ensure_open(meeting)
    row = Attendance.get_or_none((Attendance.meeting == meeting.id) & (Attendance.member == member_id)
                                 & Attendance.deleted_at.is_null())
    if row is None or row.status != "present":
        raise ValidationError({"member": "Chỉ ghi đến muộn hoặc về sớm cho đảng viên có mặt."})
    if which == "late":
        row.arrived_late = not row.arrived_late
    elif which == "early":
        row.left_early = not row.left_early
    else:
        raise ValidationError({"mode": "Thao tác không hợp lệ."})
    row.save()
    return row
