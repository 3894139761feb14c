"""What happens at a meeting: times and roles, guests, contributions, votes, conclusion, tasks.

Design: each fact is its own synced record (written by the node that holds the cell, travelling
with the meeting's cell) and each change is one small write, so every tap saves at once. Writes go
through the functions at the bottom, which check the domain rules (a contribution only from a
member who is present; votes never above the full members present; end after start) and answer a
Vietnamese message keyed by field. A signed meeting is locked: its children refuse local writes in
`save()` (records received by sync go through `save_raw` and are not refused). Creating functions
take an optional `key` (the record id made by the tablet) so a retried tap never records twice.
Last meeting's tasks are evaluated by a `TaskReview` written at the next meeting: a signed meeting
is never edited to say how its tasks went.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from peewee import JOIN, CharField, DateField, ForeignKeyField, IntegerField

from .base import ValidationError, db, local_today, register
from .meetings import (
    CONCLUSION_KINDS,
    END_BEFORE_START,
    Attendance,
    Meeting,
    MeetingRecord,
    attendance_by_member,
    ensure_day_reached,
    ensure_open,
    held_span_ok,
)
from .members import Member, POSITION_KINDS, roll_for_cell
from .rules import RuleSet

GUEST_KINDS = {"superior": "Đại biểu cấp trên", "guest": "Khách mời", "observer": "Dự quan sát (chi bộ khác)"}
CONTRIBUTION_KINDS = {"y_kien": "Ý kiến", "tu_phe_binh": "Tự phê bình", "phe_binh": "Phê bình",
                      "de_xuat": "Đề xuất"}
SELF_CRITICISM_KINDS = ("tu_phe_binh", "phe_binh")
TASK_OUTCOMES = {"done": "Đã hoàn thành", "not_done": "Chưa hoàn thành", "carried": "Chuyển sang kỳ sau"}
KEY = re.compile(r"^[0-9a-fA-F-]{8,36}$")


# A meeting's records share the roll call's base: scope of the meeting's cell, locked once signed.
MeetingChild = MeetingRecord


@register
class MeetingGuest(MeetingChild):
    """A guest, superior delegate or observer at a meeting, with their position."""

    meeting = ForeignKeyField(Meeting, backref="guests", on_delete="RESTRICT")
    kind = CharField(max_length=20, default="superior")
    name = CharField(max_length=120)
    position = CharField(max_length=200, default="")

    class Meta:
        table_name = "meeting_guest"

    def clean(self) -> None:
        """A name and a known kind."""
        errors = {}
        if not (self.name or "").strip():
            errors["guest_name"] = "Vui lòng nhập họ tên đại biểu."
        if self.kind not in GUEST_KINDS:
            errors["guest_kind"] = "Loại đại biểu không hợp lệ."
        if errors:
            raise ValidationError(errors)


@register
class Contribution(MeetingChild):
    """One time a member spoke: the kind (ý kiến, tự phê bình, phê bình, đề xuất) and a summary."""

    meeting = ForeignKeyField(Meeting, backref="contributions", on_delete="RESTRICT")
    member = ForeignKeyField(Member, backref="contributions", on_delete="RESTRICT")
    kind = CharField(max_length=20)
    summary = CharField(max_length=300, default="")

    def clean(self) -> None:
        """Known kind; the summary fits one line."""
        errors = {}
        if self.kind not in CONTRIBUTION_KINDS:
            errors["kind"] = "Loại phát biểu không hợp lệ."
        if len(self.summary or "") > 300:
            errors["summary"] = "Tóm tắt tối đa 300 ký tự."
        if errors:
            raise ValidationError(errors)


@register
class Vote(MeetingChild):
    """A show of hands on a subject; `eligible` is the full members present when it was taken."""

    meeting = ForeignKeyField(Meeting, backref="votes", on_delete="RESTRICT")
    subject = CharField(max_length=300)
    in_favour = IntegerField(default=0)
    against = IntegerField(default=0)
    abstain = IntegerField(default=0)
    eligible = IntegerField(default=0)

    def clean(self) -> None:
        """A subject; counts not negative and together not above the eligible members."""
        errors = {}
        if not (self.subject or "").strip():
            errors["subject"] = "Vui lòng nhập nội dung biểu quyết."
        counts = (self.in_favour, self.against, self.abstain, self.eligible)
        if any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in counts):
            errors["in_favour"] = "Số phiếu phải là số nguyên không âm."
        elif self.in_favour + self.against + self.abstain > self.eligible:
            errors["in_favour"] = (f"Tổng số biểu quyết ({self.in_favour + self.against + self.abstain}) "
                                   f"vượt số đảng viên chính thức có mặt ({self.eligible}).")
        if errors:
            raise ValidationError(errors)

    @property
    def total(self) -> int:
        """Everyone who raised a hand one way or another."""
        return self.in_favour + self.against + self.abstain


@register
class Task(MeetingChild):
    """A task the meeting assigned: what, to whom, by when; carried over from an earlier one maybe."""

    meeting = ForeignKeyField(Meeting, backref="tasks", on_delete="RESTRICT")
    text = CharField(max_length=500)
    assignee = ForeignKeyField(Member, null=True, backref="tasks", on_delete="RESTRICT")
    due_on = DateField(null=True)
    carried_from = ForeignKeyField("self", null=True, backref="carried_to", on_delete="RESTRICT")

    def clean(self) -> None:
        """What the task is."""
        if not (self.text or "").strip():
            raise ValidationError({"task_text": "Vui lòng nhập nội dung nhiệm vụ."})


@register
class TaskReview(MeetingChild):
    """How an earlier task went, judged at a later meeting (done, not done, carried over)."""

    task = ForeignKeyField(Task, backref="reviews", on_delete="RESTRICT")
    meeting = ForeignKeyField(Meeting, backref="task_reviews", on_delete="RESTRICT")
    outcome = CharField(max_length=20)
    note = CharField(max_length=300, default="")

    class Meta:
        table_name = "task_review"
        indexes = ((("task", "meeting"), True),)

    def clean(self) -> None:
        """A known outcome."""
        if self.outcome not in TASK_OUTCOMES:
            raise ValidationError({"outcome": "Kết quả đánh giá nhiệm vụ không hợp lệ."})


# -- reading ---------------------------------------------------------------------------------------

def is_voter(member: Member) -> bool:
    """Full members vote; probationary ones do not (Charter, Art. 5). A member attending temporarily
    votes when they are a full member ([I]: judged by the date they became one)."""
    return member.status == "full" or (member.status == "temp_here" and member.full_member_on is not None)


def eligible_voters(meeting: Meeting, marks: dict | None = None) -> int:
    """Full members present at the meeting."""
    marks = marks if marks is not None else attendance_by_member(meeting)
    present = [a.member_id for a in marks.values() if a.status == "present"]
    if not present:
        return 0
    return sum(1 for m in Member.select().where(Member.id.in_(present)) if is_voter(m))


@dataclass
class ContributionSummary:
    """Counts per kind, speakers among those present, and each member's counts."""

    by_kind: dict[str, int] = field(default_factory=dict)
    total: int = 0
    speakers: int = 0
    present: int = 0
    share_pct: float | None = None
    per_member: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def self_criticism(self) -> int:
        """Self-criticism and criticism together (what the scoring sheet counts)."""
        return sum(self.by_kind.get(k, 0) for k in SELF_CRITICISM_KINDS)


def contributions_of(meeting: Meeting) -> list[Contribution]:
    """The meeting's contributions in the order they were made, with their members."""
    return list(Contribution.live().join(Member).where(Contribution.meeting == meeting.id)
                .select(Contribution, Member).order_by(Contribution.created_at, Contribution.id))


def contribution_summary(meeting: Meeting, rows: list[Contribution] | None = None,
                         marks: dict | None = None) -> ContributionSummary:
    """Count who spoke and how, and the share of present members who spoke."""
    rows = rows if rows is not None else contributions_of(meeting)
    marks = marks if marks is not None else attendance_by_member(meeting)
    s = ContributionSummary(by_kind={k: 0 for k in CONTRIBUTION_KINDS})
    present = {mid for mid, a in marks.items() if a.status == "present"}
    for row in rows:
        s.by_kind[row.kind] = s.by_kind.get(row.kind, 0) + 1
        s.per_member.setdefault(row.member_id, {}).setdefault(row.kind, 0)
        s.per_member[row.member_id][row.kind] += 1
    s.total = len(rows)
    s.present = len(present)
    s.speakers = len(present & set(s.per_member))
    s.share_pct = 100.0 * s.speakers / s.present if s.present else None
    return s


def vote_passes(vote: Vote, rules: RuleSet | None) -> bool | None:
    """Adopted when those in favour are more than the rule set's share of the eligible members."""
    if rules is None or vote.eligible <= 0:
        return None
    threshold = float(rules.params.get("vote_pass_pct", 50))
    return 100.0 * vote.in_favour / vote.eligible > threshold


def votes_of(meeting: Meeting) -> list[Vote]:
    """The meeting's votes in order."""
    return list(Vote.live().where(Vote.meeting == meeting.id).order_by(Vote.created_at, Vote.id))


def guests_of(meeting: Meeting) -> list[MeetingGuest]:
    """The meeting's guests in the order they were added."""
    return list(MeetingGuest.live().where(MeetingGuest.meeting == meeting.id)
                .order_by(MeetingGuest.created_at, MeetingGuest.id))


def tasks_of(meeting: Meeting) -> list[Task]:
    """The tasks this meeting assigned."""
    return list(Task.live().join(Member, JOIN.LEFT_OUTER, on=(Task.assignee == Member.id))
                .where(Task.meeting == meeting.id).select(Task, Member).order_by(Task.created_at, Task.id))


def open_earlier_tasks(meeting: Meeting) -> list[tuple[Task, TaskReview | None]]:
    """The previous meeting's tasks (carried-over ones included), each with its review at this one."""
    previous = (Meeting.live().where((Meeting.cell == meeting.cell_id) & (Meeting.held_on < meeting.held_on))
                .order_by(Meeting.held_on.desc()).first())
    if previous is None:
        return []
    tasks = list(Task.live().join(Member, JOIN.LEFT_OUTER, on=(Task.assignee == Member.id))
                 .switch(Task).join(Meeting, on=(Task.meeting == Meeting.id))
                 .where(Task.meeting == previous.id).select(Task, Member, Meeting)
                 .order_by(Task.created_at, Task.id))
    if not tasks:
        return []
    reviews = {r.task_id: r for r in TaskReview.live().where(
        (TaskReview.meeting == meeting.id) & TaskReview.task.in_([t.id for t in tasks]))}
    return [(task, reviews.get(task.id)) for task in tasks]


def superior_people() -> list[tuple[str, str]]:
    """(name, position) of the Party committee's people: members holding committee-level positions."""
    from .members import Position

    day = local_today()
    rows = (Position.live().join(Member).where(
        Position.kind.in_(("dang_uy_vien", "uy_vien_btv")) & (Position.start_on <= day)
        & (Position.end_on.is_null() | (Position.end_on >= day)) & Member.deleted_at.is_null())
        .select(Position, Member))
    seen, out = set(), []
    for term in rows:
        if term.member.full_name not in seen:
            seen.add(term.member.full_name)
            out.append((term.member.full_name, POSITION_KINDS[term.kind]))
    return sorted(out)


# -- writing ---------------------------------------------------------------------------------------

def _existing(model, key: str | None):
    """The record a retried tap already made (same key), or None."""
    if key and KEY.match(key):
        return model.get_or_none(model.id == key)
    return None


def _new(model, key: str | None, **values):
    """A new record, keyed by the tablet's id when it sent a well-formed one."""
    if key and KEY.match(key):
        values["id"] = key
    return model(**values)


def _time(text: str, name: str) -> dt.time | None:
    """HH:MM (24 h) or empty; a Vietnamese message otherwise."""
    text = (text or "").strip().replace("h", ":").replace(".", ":")
    if not text:
        return None
    try:
        hour, minute = (int(p) for p in text.split(":"))
        return dt.time(hour, minute)
    except (ValueError, TypeError):
        raise ValidationError({name: "Giờ không hợp lệ (HH:MM, ví dụ 14:05)."}) from None


def start_meeting(meeting: Meeting, now: dt.time) -> Meeting:
    """"Bắt đầu": record the start time and open the meeting."""
    ensure_open(meeting)
    ensure_day_reached(meeting)
    meeting.started_at = now.replace(microsecond=0)
    if meeting.status == "planned":
        meeting.status = "in_progress"
    meeting.save()
    return meeting


def end_meeting(meeting: Meeting, now: dt.time) -> Meeting:
    """"Kết thúc": record the end time; the minutes can then be read back and signed."""
    ensure_open(meeting)
    if not meeting.started_at:
        raise ValidationError({"ended_at": "Chưa ghi giờ bắt đầu: hãy bấm “Bắt đầu” trước."})
    meeting.ended_at = now.replace(microsecond=0)
    meeting.status = "ended"
    meeting.save()
    return meeting


def set_times(meeting: Meeting, started: str, ended: str) -> Meeting:
    """Correct the start and end times typed as HH:MM; end must come after start."""
    ensure_open(meeting)
    start, end = _time(started, "started_at"), _time(ended, "ended_at")
    if end and not start:
        raise ValidationError({"ended_at": "Chưa ghi giờ bắt đầu."})
    if start and end and not held_span_ok(start, end):
        raise ValidationError({"ended_at": END_BEFORE_START})
    if start and meeting.status == "planned":
        ensure_day_reached(meeting)
        meeting.status = "in_progress"
    if end:
        meeting.status = "ended"
    meeting.started_at, meeting.ended_at = start, end
    meeting.save()
    return meeting


def set_roles(meeting: Meeting, chair_id: str, secretary_id: str, place: str) -> Meeting:
    """Chair, meeting secretary (members of the cell) and place."""
    ensure_open(meeting)
    cell_members = {m.id for m in roll_for_cell(meeting.cell_id)}
    errors = {}
    for name, value in (("chair", chair_id), ("secretary", secretary_id)):
        if value and value not in cell_members:
            errors[name] = "Chọn một đảng viên của chi bộ."
    if len(place or "") > 200:
        errors["place"] = "Địa điểm tối đa 200 ký tự."
    if errors:
        raise ValidationError(errors)
    meeting.chair = chair_id or None
    meeting.secretary = secretary_id or None
    meeting.place = (place or "").strip()
    meeting.save()
    return meeting


def set_model(meeting: Meeting, is_model: bool, lessons: str) -> Meeting:
    """A model (demonstration) meeting and its lessons learned; the lessons may be written after the
    meeting is signed (they are the debrief, not part of the minutes), the flag may not."""
    if bool(is_model) != bool(meeting.is_model):
        ensure_open(meeting)
    meeting.is_model = bool(is_model)
    meeting.lessons = (lessons or "").strip()
    meeting.save()
    return meeting


def add_guest(meeting: Meeting, name: str, position: str, kind: str, key: str | None = None) -> MeetingGuest:
    """Add a guest or superior delegate (picked from the committee's people or typed)."""
    ensure_open(meeting)
    existing = _existing(MeetingGuest, key)
    if existing is not None:
        return existing
    guest = _new(MeetingGuest, key, meeting=meeting.id, name=(name or "").strip()[:120],
                 position=(position or "").strip()[:200], kind=kind or "superior")
    guest.save()
    return guest


def remove_record(meeting: Meeting, model, record_id: str) -> None:
    """Remove one of the meeting's records (a tombstone that syncs)."""
    ensure_open(meeting)
    row = model.get_or_none((model.id == record_id) & (model.meeting == meeting.id) & model.deleted_at.is_null())
    if row is None:
        raise ValidationError({"record": "Bản ghi không tồn tại hoặc đã xóa."})
    row.soft_delete()


def add_contribution(meeting: Meeting, member_id: str, kind: str, summary: str = "",
                     key: str | None = None) -> Contribution:
    """Record that a present member spoke, and how."""
    ensure_open(meeting)
    ensure_day_reached(meeting)
    existing = _existing(Contribution, key)
    if existing is not None:
        return existing
    member = Member.get_or_none((Member.id == member_id) & Member.deleted_at.is_null())
    if member is None or member.cell_id != meeting.cell_id:
        raise ValidationError({"member": "Đảng viên không thuộc chi bộ của buổi sinh hoạt này."})
    mark = Attendance.get_or_none((Attendance.meeting == meeting.id) & (Attendance.member == member.id)
                                  & Attendance.deleted_at.is_null())
    if mark is None or mark.status != "present":
        raise ValidationError({"member": f"Đồng chí {member.full_name} không có mặt (theo điểm danh): "
                                         "không ghi phát biểu được."})
    row = _new(Contribution, key, meeting=meeting.id, member=member.id, kind=kind,
               summary=(summary or "").strip())
    row.save()
    return row


def set_contribution_summary(meeting: Meeting, contribution_id: str, summary: str) -> Contribution:
    """Write or correct the one-line summary of a contribution."""
    ensure_open(meeting)
    row = Contribution.get_or_none((Contribution.id == contribution_id) & (Contribution.meeting == meeting.id)
                                   & Contribution.deleted_at.is_null())
    if row is None:
        raise ValidationError({"summary": "Phát biểu không tồn tại hoặc đã xóa."})
    row.summary = (summary or "").strip()
    row.save()
    return row


def _count(text, name: str) -> int:
    """A whole number typed in a vote form."""
    text = str(text if text is not None else "").strip()
    if text == "":
        return 0
    if not text.isdigit():
        raise ValidationError({name: "Số phiếu phải là số nguyên không âm."})
    return int(text)


def record_vote(meeting: Meeting, subject: str, in_favour, against, abstain, key: str | None = None) -> Vote:
    """Record a vote; the eligible count is the full members present now, and the totals must fit it."""
    ensure_open(meeting)
    ensure_day_reached(meeting)
    existing = _existing(Vote, key)
    if existing is not None:
        return existing
    vote = _new(Vote, key, meeting=meeting.id, subject=(subject or "").strip()[:300],
                in_favour=_count(in_favour, "in_favour"), against=_count(against, "against"),
                abstain=_count(abstain, "abstain"), eligible=eligible_voters(meeting))
    if vote.eligible == 0:
        raise ValidationError({"in_favour": "Chưa có đảng viên chính thức nào có mặt: hãy điểm danh trước."})
    vote.save()
    return vote


def set_conclusion(meeting: Meeting, kind: str, text: str) -> Meeting:
    """The resolution or conclusion text."""
    ensure_open(meeting)
    if kind not in CONCLUSION_KINDS:
        raise ValidationError({"conclusion_kind": "Loại văn bản kết luận không hợp lệ."})
    meeting.conclusion_kind = kind
    meeting.conclusion = (text or "").strip()
    meeting.save()
    return meeting


def parse_day(text: str, name: str) -> dt.date | None:
    """dd/mm/yyyy (or yyyy-mm-dd) or empty; a Vietnamese message otherwise."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if "/" in text:
            day, month, year = (int(p) for p in text.split("/"))
            return dt.date(year, month, day)
        return dt.date.fromisoformat(text)
    except (ValueError, TypeError):
        raise ValidationError({name: "Ngày không hợp lệ (dd/mm/yyyy)."}) from None


def add_task(meeting: Meeting, text: str, assignee_id: str, due: str, key: str | None = None,
             carried_from: str | None = None) -> Task:
    """Assign a task to a member of the cell with a due date."""
    ensure_open(meeting)
    existing = _existing(Task, key)
    if existing is not None:
        return existing
    due_on = parse_day(due, "due_on")
    if assignee_id and assignee_id not in {m.id for m in roll_for_cell(meeting.cell_id)}:
        raise ValidationError({"assignee": "Chọn một đảng viên của chi bộ."})
    if due_on and due_on < meeting.held_on:
        raise ValidationError({"due_on": "Hạn hoàn thành phải từ ngày sinh hoạt trở đi."})
    task = _new(Task, key, meeting=meeting.id, text=(text or "").strip()[:500], assignee=assignee_id or None,
                due_on=due_on, carried_from=carried_from)
    task.save()
    return task


def review_task(meeting: Meeting, task_id: str, outcome: str, note: str = "") -> TaskReview:
    """Judge an earlier meeting's task at this one; "carried" also puts it on this meeting's tasks."""
    ensure_open(meeting)
    task = Task.get_or_none((Task.id == task_id) & Task.deleted_at.is_null())
    if task is None or task.id not in {t.id for t, _r in open_earlier_tasks(meeting)}:
        raise ValidationError({"outcome": "Nhiệm vụ không thuộc các kỳ trước của chi bộ hoặc đã được đánh giá."})
    if outcome not in TASK_OUTCOMES:
        raise ValidationError({"outcome": "Kết quả đánh giá nhiệm vụ không hợp lệ."})
    with db.atomic():
        review = TaskReview.get_or_none((TaskReview.task == task.id) & (TaskReview.meeting == meeting.id))
        if review is None:
            review = TaskReview(task=task.id, meeting=meeting.id)
        was_carried = review.outcome == "carried" and review.deleted_at is None
        review.outcome, review.note, review.deleted_at = outcome, (note or "").strip()[:300], None
        review.save()
        carried = Task.live().where((Task.meeting == meeting.id) & (Task.carried_from == task.id)).first()
        if outcome == "carried" and carried is None:
            Task(meeting=meeting.id, text=task.text, assignee=task.assignee_id, due_on=None,
                 carried_from=task.id).save()
        elif outcome != "carried" and was_carried and carried is not None:
            carried.soft_delete()
    return review
