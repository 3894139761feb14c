"""Supervision by the Party committee: the rotation plan, on-site visits, recommendations and their
follow-up, the annual inspection and the model-meeting programme.

Design. Where each record is written (see models/policy.py and docs/sync-protocol.md §9):
- The rotation plan (`SupervisionAssignment`), annual inspections and model meetings are the Party
  committee's: written at central, scope '*' (every node receives them, so the cell sees who comes
  and the visitor sees "my visits" wherever they log in). They name cells and accounts, never a
  meeting: a meeting lives only on its cell's node, and a plan row pointing at it would be a
  missing parent everywhere else; the planned meeting is found by cell and month.
- A visit (`SupervisionVisit`) is the supervisor's on-site record of one meeting, written on the node
  that holds the meeting (the tablet is on that office's network) and synced to central. Its id is
  derived from (meeting, supervisor), so it is one record wherever it is started. Only an account
  with the supervisor role writes it (the views check the person; the node policy checks the node).
- A recommendation and its follow-up travel with the visit's meeting. Follow-up is a list of
  append-only events (`RecommendationEvent`: open → in progress → done → verified); nothing is ever
  updated, so a move made by the cell on its node and one made by the supervisor at central both
  survive a sync, and `derive_state()` — a pure function of the events ordered by their clock stamp
  then id — gives the same state on every node.
Facts shown on site (attendance, speakers, self-criticism, comparisons with the previous visit and
with the same month last year, the cell's self-score) are computed from the meeting records here,
never typed twice.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterable

from peewee import BooleanField, CharField, DateField, DateTimeField, FloatField, ForeignKeyField, IntegerField, TextField, fn

from .base import SyncedModel, ValidationError, db, register, utcnow, write_transaction
from .checklists import AnswerSet, ChecklistTemplate, TemplateVersion, answer_set_for, set_answer, version_items
from .meetings import Meeting, attendance_summary, local_today, meeting_node
from .org import Cell
from .users import User

# -- data: states, transitions, thresholds ---------------------------------------------------------

REC_STATES = {"open": "Chưa thực hiện", "in_progress": "Đang thực hiện", "done": "Chi bộ báo đã xong",
              "verified": "Đã kiểm chứng"}
# (from, to) -> the side that may make the move. The supervisor may also send a "done" back to
# "in_progress" when the fix is not convincing.
TRANSITIONS = {
    ("open", "in_progress"): "cell",
    ("open", "done"): "cell",
    ("in_progress", "done"): "cell",
    ("done", "verified"): "supervisor",
    ("done", "in_progress"): "supervisor",
}
SIDES = {"cell": "Chi bộ", "supervisor": "Người giám sát"}
# A supervisor's score this far (points of 100) from the cell's self-score is highlighted.
SCORE_GAP_POINTS = 5.0
# Default visits per cell per year in the automatic plan (once a quarter).
DEFAULT_FREQUENCY = 4
INSPECTION_STATUSES = {"planned": "Kế hoạch", "done": "Đã kiểm tra"}
NOT_HELD = "Buổi sinh hoạt chưa diễn ra (ngày {day}): chỉ ghi biên bản giám sát từ ngày họp trở đi."
CELL_REFUSAL = ("Biên bản giám sát là của người giám sát: chi bộ chỉ xem, không sửa được. "
                "Chi bộ cập nhật tiến độ khắc phục ở mục Kiến nghị.")


def _visit_node(visit_id: str) -> str:
    """The node holding a visit's meeting (raw SQL: runs on every write of a visit's children)."""
    database = SupervisionVisit._meta.database
    row = database.execute_sql(f"SELECT meeting_id FROM supervision_visit WHERE id = {database.param}",
                               (visit_id,)).fetchone()
    if row is None:
        raise ValidationError({"visit": "Lượt giám sát không tồn tại."})
    return meeting_node(row[0])


# -- tables ----------------------------------------------------------------------------------------

@register
class SupervisionAssignment(SyncedModel):
    """One line of the rotation plan: a Party committee member attends a cell's meeting in a month."""

    cell = ForeignKeyField(Cell, backref="supervision_assignments", on_delete="RESTRICT")
    supervisor = ForeignKeyField(User, backref="supervision_assignments", on_delete="RESTRICT")
    year = IntegerField()
    month = IntegerField()
    planned_on = DateField(null=True)
    source = CharField(max_length=10, default="manual")  # "auto" (generated) or "manual"
    note = CharField(max_length=300, default="")

    class Meta:
        table_name = "supervision_assignment"
        # Coverage reads a year's plan lines (national reports: 100,000 lines over five years). The table
        # is new in this release, so every database gets it, index included, from create_tables.
        indexes = ((("year", "cell"), False),)

    def clean(self) -> None:
        """A month of a plausible year; the planned date inside that month."""
        errors = {}
        if not isinstance(self.year, int) or not 2000 <= self.year <= 2100:
            errors["year"] = "Năm không hợp lệ."
        if not isinstance(self.month, int) or not 1 <= self.month <= 12:
            errors["month"] = "Tháng phải từ 1 đến 12."
        if not errors and isinstance(self.planned_on, dt.date) and \
                (self.planned_on.year, self.planned_on.month) != (self.year, self.month):
            errors["planned_on"] = f"Ngày dự kiến phải nằm trong tháng {self.month}/{self.year}."
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs):
        """The visitor is an account with the supervisor role (local writes)."""
        role = User.select(User.role).where(User.id == self.supervisor_id).scalar()
        if role != "supervisor" and self.deleted_at is None:
            raise ValidationError({"supervisor": "Người đi giám sát phải là tài khoản Ủy viên Ban Thường vụ "
                                                 "(vai trò người giám sát)."})
        return super().save(*args, **kwargs)


@register
class SupervisionVisit(SyncedModel):
    """The supervisor's record of one meeting attended: checks, score, findings, signature."""

    meeting = ForeignKeyField(Meeting, backref="supervision_visits", on_delete="RESTRICT")
    supervisor = ForeignKeyField(User, backref="supervision_visits", on_delete="RESTRICT")
    answer_set = ForeignKeyField(AnswerSet, null=True, backref="visits", on_delete="RESTRICT")
    verified_present = IntegerField(null=True)
    attendance_note = CharField(max_length=300, default="")
    score = FloatField(null=True)
    strengths = TextField(default="")
    weaknesses = TextField(default="")
    remarks = TextField(default="")
    confirmed_at = DateTimeField(null=True)

    natural_key = ("meeting", "supervisor")

    class Meta:
        table_name = "supervision_visit"
        indexes = ((("meeting", "supervisor"), True),)

    def sync_scope(self) -> str:
        """A visit travels with its meeting's cell."""
        return meeting_node(self.meeting_id)

    def clean(self) -> None:
        """Counts not negative, a score out of 100."""
        errors = {}
        if self.verified_present is not None and (not isinstance(self.verified_present, int) or self.verified_present < 0):
            errors["verified_present"] = "Số đảng viên có mặt phải là số nguyên không âm."
        if self.score is not None and (not isinstance(self.score, (int, float)) or not 0 <= self.score <= 100):
            errors["score"] = "Điểm của người giám sát từ 0 đến 100."
        if errors:
            raise ValidationError(errors)

    @property
    def confirmed(self) -> bool:
        """True once the supervisor has signed: the record no longer changes."""
        return self.confirmed_at is not None


@register
class Recommendation(SyncedModel):
    """A recommendation made at a visit, with its deadline; its state lives in its events."""

    visit = ForeignKeyField(SupervisionVisit, backref="recommendations", on_delete="RESTRICT")
    text = TextField()
    deadline = DateField()

    class Meta:
        table_name = "supervision_recommendation"

    def sync_scope(self) -> str:
        """A recommendation travels with its visit's meeting."""
        return _visit_node(self.visit_id)

    def clean(self) -> None:
        """Text and a deadline are required."""
        errors = {}
        if not (self.text or "").strip():
            errors["text"] = "Vui lòng nhập nội dung kiến nghị."
        if not isinstance(self.deadline, dt.date):
            errors["deadline"] = "Vui lòng nhập thời hạn khắc phục (dd/mm/yyyy)."
        if errors:
            raise ValidationError(errors)


@register
class RecommendationEvent(SyncedModel):
    """One move of a recommendation's follow-up (append-only: never edited, never removed)."""

    recommendation = ForeignKeyField(Recommendation, backref="events", on_delete="RESTRICT")
    state = CharField(max_length=20)
    side = CharField(max_length=12)
    by_name = CharField(max_length=120, default="")
    note = CharField(max_length=500, default="")

    class Meta:
        table_name = "recommendation_event"

    def sync_scope(self) -> str:
        """An event travels with its recommendation."""
        database = self._meta.database
        row = database.execute_sql(
            f"SELECT visit_id FROM supervision_recommendation WHERE id = {database.param}",
            (self.recommendation_id,)).fetchone()
        if row is None:
            raise ValidationError({"recommendation": "Kiến nghị không tồn tại."})
        return _visit_node(row[0])

    def clean(self) -> None:
        """A known state and side."""
        errors = {}
        if self.state not in REC_STATES:
            errors["state"] = "Trạng thái kiến nghị không hợp lệ."
        if self.side not in SIDES:
            errors["side"] = "Bên cập nhật không hợp lệ."
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs):
        """Events are written once (an edit of a stored event is refused)."""
        if not self._is_new:
            raise ValidationError({"state": "Diễn biến khắc phục đã ghi thì không sửa; hãy ghi bước mới."})
        return super().save(*args, **kwargs)


@register
class AnnualInspection(SyncedModel):
    """The Party committee's yearly inspection of one cell's meeting quality (plan, then record)."""

    cell = ForeignKeyField(Cell, backref="inspections", on_delete="RESTRICT")
    year = IntegerField()
    planned_on = DateField(null=True)
    inspectors = CharField(max_length=300, default="")
    status = CharField(max_length=12, default="planned")
    answer_set = ForeignKeyField(AnswerSet, null=True, backref="inspections", on_delete="RESTRICT")
    findings = TextField(default="")
    conclusion = TextField(default="")
    done_on = DateField(null=True)

    class Meta:
        table_name = "annual_inspection"
        indexes = ((("cell", "year"), False),)

    def clean(self) -> None:
        """Known status; a plausible year; a finished inspection has its date and conclusion."""
        errors = {}
        if self.status not in INSPECTION_STATUSES:
            errors["status"] = "Trạng thái kiểm tra không hợp lệ."
        if not isinstance(self.year, int) or not 2000 <= self.year <= 2100:
            errors["year"] = "Năm không hợp lệ."
        if self.status == "done" and not (self.conclusion or "").strip():
            errors["conclusion"] = "Vui lòng ghi kết luận kiểm tra trước khi hoàn thành."
        if errors:
            raise ValidationError(errors)


@register
class ModelMeeting(SyncedModel):
    """A model meeting in the programme: which cell demonstrates, when, and the lessons drawn."""

    cell = ForeignKeyField(Cell, backref="model_meetings", on_delete="RESTRICT")
    year = IntegerField()
    planned_on = DateField()
    topic = CharField(max_length=300, default="")
    held = BooleanField(default=False)
    lessons = TextField(default="")

    class Meta:
        table_name = "model_meeting"

    def clean(self) -> None:
        """A date in the programme's year; lessons only once held."""
        errors = {}
        if not isinstance(self.planned_on, dt.date):
            errors["planned_on"] = "Vui lòng nhập ngày sinh hoạt mẫu (dd/mm/yyyy)."
        elif self.planned_on.year != self.year:
            errors["planned_on"] = f"Ngày sinh hoạt mẫu phải trong năm {self.year}."
        if errors:
            raise ValidationError(errors)


@register
class ModelMeetingObserver(SyncedModel):
    """A cell whose secretary observes a model meeting."""

    model_meeting = ForeignKeyField(ModelMeeting, backref="observers", on_delete="RESTRICT")
    cell = ForeignKeyField(Cell, backref="model_observations", on_delete="RESTRICT")
    attended = BooleanField(default=False)

    natural_key = ("model_meeting", "cell")

    class Meta:
        table_name = "model_meeting_observer"
        indexes = ((("model_meeting", "cell"), True),)


# -- the rotation plan -----------------------------------------------------------------------------

def supervisors() -> list[User]:
    """The accounts that can be sent on visits (Standing Committee members), by name."""
    return list(User.live().where((User.role == "supervisor") & (User.active == True))  # noqa: E712
                .order_by(User.full_name, User.username))


def plan_of_year(year: int) -> list[SupervisionAssignment]:
    """The year's live plan lines, by month then cell code."""
    return list(SupervisionAssignment.live().join(Cell).where(SupervisionAssignment.year == year)
                .order_by(SupervisionAssignment.month, Cell.code).select(SupervisionAssignment, Cell))


def generate_plan(year: int, frequency: int = DEFAULT_FREQUENCY, member_ids: list[str] | None = None,
                  cell_ids: list[str] | None = None) -> tuple[list[SupervisionAssignment], int]:
    """Replace the year's plan by a fair automatic one; return the new lines and the visits left out.

    Lines that already have a visit are kept (a made visit is history); the rest are replaced.
    """
    from .rotation import rotation_plan, year_months

    if not 1 <= frequency <= 12:
        raise ValidationError({"frequency": "Số lượt giám sát mỗi chi bộ trong năm từ 1 đến 12."})
    people = [u for u in supervisors() if member_ids is None or u.id in member_ids]
    if not people:
        raise ValidationError({"members": "Chưa chọn Ủy viên Ban Thường vụ nào để phân công."})
    cells = list(Cell.live().order_by(Cell.code))
    if cell_ids is not None:
        cells = [c for c in cells if c.id in cell_ids]
    meeting_dates = {}
    for m in Meeting.live().where((Meeting.held_on >= dt.date(year, 1, 1)) & (Meeting.held_on <= dt.date(year, 12, 31))
                                  & Meeting.kind.in_(("regular", "combined"))):
        meeting_dates[(m.cell_id, m.held_on.year, m.held_on.month)] = m.held_on
    plan = rotation_plan([c.id for c in cells], [u.id for u in people], year_months(year), frequency,
                         own_cells={u.id: u.cell_id for u in people if u.cell_id},
                         meeting_dates=meeting_dates, meeting_days={c.id: c.meeting_day for c in cells})
    made = {(v.meeting.cell_id, v.meeting.held_on.month, v.supervisor_id)
            for v in visits_of_year(year)}
    with write_transaction():
        for line in plan_of_year(year):
            if (line.cell_id, line.month, line.supervisor_id) not in made and \
                    (cell_ids is None or line.cell_id in cell_ids):
                line.soft_delete()
        lines = [SupervisionAssignment.create(cell=a.cell, supervisor=a.member, year=a.year, month=a.month,
                                              planned_on=a.planned_on, source="auto")
                 for a in plan.assignments]
    return lines, len(plan.unassigned)


def my_plan(user: User, year: int) -> list[SupervisionAssignment]:
    """A supervisor's plan lines of the year."""
    return [line for line in plan_of_year(year) if line.supervisor_id == user.id]


def cell_plan(cell_id: str, year: int) -> list[SupervisionAssignment]:
    """Who comes to a cell this year."""
    return [line for line in plan_of_year(year) if line.cell_id == cell_id]


def planned_meeting(line: SupervisionAssignment) -> Meeting | None:
    """The meeting a plan line points to: the cell's meeting that month (the regular one first)."""
    first = dt.date(line.year, line.month, 1)
    after = dt.date(line.year + line.month // 12, line.month % 12 + 1, 1)
    rows = list(Meeting.live().where((Meeting.cell == line.cell_id) & (Meeting.held_on >= first)
                                     & (Meeting.held_on < after)).order_by(Meeting.held_on))
    regular = [m for m in rows if m.kind in ("regular", "combined")]
    return (regular or rows or [None])[0]


# -- visits ----------------------------------------------------------------------------------------

def visits_of_year(year: int, cell_id: str | None = None) -> list[SupervisionVisit]:
    """The year's live visits (by meeting date), optionally of one cell."""
    query = (SupervisionVisit.live().join(Meeting)
             .where((Meeting.held_on >= dt.date(year, 1, 1)) & (Meeting.held_on <= dt.date(year, 12, 31))
                    & Meeting.deleted_at.is_null()))
    if cell_id:
        query = query.where(Meeting.cell == cell_id)
    return list(query.order_by(Meeting.held_on).select(SupervisionVisit, Meeting))


def visit_of(meeting: Meeting, supervisor: User) -> SupervisionVisit | None:
    """This supervisor's live visit record of the meeting, if started."""
    return SupervisionVisit.get_or_none((SupervisionVisit.meeting == meeting.id)
                                        & (SupervisionVisit.supervisor == supervisor.id)
                                        & SupervisionVisit.deleted_at.is_null())


def visits_of_meeting(meeting: Meeting) -> list[SupervisionVisit]:
    """Every live visit record of a meeting."""
    return list(SupervisionVisit.live().where(SupervisionVisit.meeting == meeting.id).order_by(SupervisionVisit.created_at))


def ensure_held(meeting: Meeting, today: dt.date | None = None) -> None:
    """A visit is recorded only for a meeting whose day has come."""
    today = today or local_today()
    if meeting.held_on > today:
        raise ValidationError({"meeting": NOT_HELD.format(day=f"{meeting.held_on:%d/%m/%Y}")})


def start_visit(meeting: Meeting, supervisor: User, today: dt.date | None = None) -> SupervisionVisit:
    """The supervisor's visit record of the meeting, made (with the supervision sheet) the first time."""
    ensure_held(meeting, today)
    if supervisor.role != "supervisor":
        raise ValidationError({"supervisor": CELL_REFUSAL})
    existing = visit_of(meeting, supervisor)
    if existing is not None:
        return existing
    with write_transaction():
        sheet = answer_set_for(meeting, "giam_sat", "supervisor", by=supervisor.username)
        return SupervisionVisit.create(meeting=meeting.id, supervisor=supervisor.id,
                                       answer_set=sheet.id if sheet else None)


def _int_or_none(raw: Any, field_name: str, errors: dict) -> int | None:
    """A typed whole number, or None when blank (an error message otherwise)."""
    text = str(raw or "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        errors[field_name] = "Vui lòng nhập một số nguyên."
        return None
    if value < 0 or value > 100000:
        errors[field_name] = "Số không hợp lệ."
        return None
    return value


def _score_or_none(raw: Any, errors: dict) -> float | None:
    """A typed score of 100 (decimal comma accepted), or None when blank."""
    text = str(raw or "").strip().replace(",", ".")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        errors["score"] = "Điểm phải là một số từ 0 đến 100."
        return None
    if not 0 <= value <= 100:
        errors["score"] = "Điểm phải là một số từ 0 đến 100."
        return None
    return value


def save_visit(visit: SupervisionVisit, form: dict[str, str]) -> None:
    """Save the on-site form (nothing saved when a field is wrong: ValidationError by field)."""
    if visit.confirmed:
        raise ValidationError({"visit": "Biên bản giám sát đã ký xác nhận: không sửa được nữa."})
    errors: dict[str, str] = {}
    verified = _int_or_none(form.get("verified_present"), "verified_present", errors)
    score = _score_or_none(form.get("score"), errors)
    if errors:
        raise ValidationError(errors)
    visit.verified_present = verified
    visit.score = score
    visit.attendance_note = (form.get("attendance_note") or "").strip()[:300]
    visit.strengths = (form.get("strengths") or "").strip()
    visit.weaknesses = (form.get("weaknesses") or "").strip()
    visit.remarks = (form.get("remarks") or "").strip()
    with write_transaction():
        visit.save()
        fill_sheet(visit)


def confirm_visit(visit: SupervisionVisit) -> None:
    """The supervisor signs the record (a score and at least one finding are needed first)."""
    if visit.confirmed:
        return
    missing = {}
    if visit.score is None:
        missing["score"] = "Chưa chấm điểm của người giám sát."
    if not (visit.strengths or visit.weaknesses).strip():
        missing["strengths"] = "Chưa ghi ưu điểm hoặc hạn chế."
    if missing:
        raise ValidationError(missing)
    with write_transaction():
        visit.confirmed_at = utcnow()
        visit.save()
        fill_sheet(visit)


def fill_sheet(visit: SupervisionVisit) -> None:
    """Copy the visit's facts into the supervision sheet's items (template "giam_sat" codes)."""
    if not visit.answer_set_id:
        return
    answer_set = AnswerSet.get_by_id(visit.answer_set_id)
    items = {item.code: item for item in version_items(TemplateVersion.get_by_id(answer_set.version_id))}
    meeting = Meeting.get_by_id(visit.meeting_id)
    facts = meeting_facts(meeting)
    own = self_score(meeting)
    recs = recommendations_of(visit)
    values = {
        "S1": f"{visit.supervisor.full_name or visit.supervisor.username} — Ủy viên Ban Thường vụ",
        "S6": visit.verified_present,
        "S10": facts.speakers,
        "S17.cb": round(own) if own is not None else None,
        "S17.gs": round(visit.score) if visit.score is not None else None,
        "S19": "\n".join(filter(None, [
            f"Ưu điểm: {visit.strengths}" if visit.strengths else "",
            f"Hạn chế: {visit.weaknesses}" if visit.weaknesses else "",
            *(f"Kiến nghị: {r.text} (hạn {r.deadline:%d/%m/%Y})" for r in recs)])),
        "S20": visit.remarks,
        "S21": visit.confirmed_at.isoformat(timespec="minutes") if visit.confirmed_at else None,
    }
    for code, value in values.items():
        item = items.get(code)
        if item is not None and value not in (None, ""):
            set_answer(answer_set, item, value)


# -- facts computed from the meeting records -------------------------------------------------------

@dataclass
class MeetingFacts:
    """What a meeting's own records say (for the visit screen and its comparisons)."""

    meeting: Meeting | None = None
    counted: int = 0
    present: int = 0
    excused: int = 0
    unexcused: int = 0
    rate_pct: float | None = None
    speakers: int | None = None
    self_criticism: int | None = None
    duration: float | None = None


def meeting_facts(meeting: Meeting | None) -> MeetingFacts:
    """Roll-call counts, speakers, self-criticism and duration of a meeting (empty facts for None)."""
    from .meeting_record import contribution_summary
    from .meetings import duration_minutes

    if meeting is None:
        return MeetingFacts()
    summary = attendance_summary(meeting)
    speak = contribution_summary(meeting)
    return MeetingFacts(meeting=meeting, counted=summary.counted, present=summary.present,
                        excused=summary.excused, unexcused=summary.unexcused, rate_pct=summary.rate_pct,
                        speakers=speak.speakers if speak.total else None,
                        self_criticism=speak.self_criticism if speak.total else None,
                        duration=duration_minutes(meeting))


def previous_visited_meeting(meeting: Meeting) -> Meeting | None:
    """The cell's latest earlier meeting that had a supervision visit."""
    return (Meeting.live().join(SupervisionVisit, on=(SupervisionVisit.meeting == Meeting.id))
            .where((Meeting.cell == meeting.cell_id) & (Meeting.held_on < meeting.held_on)
                   & SupervisionVisit.deleted_at.is_null())
            .order_by(Meeting.held_on.desc()).first())


def same_month_last_year(meeting: Meeting) -> Meeting | None:
    """The cell's meeting of the same kind group in the same month a year earlier."""
    year, month = meeting.held_on.year - 1, meeting.held_on.month
    first = dt.date(year, month, 1)
    after = dt.date(year + month // 12, month % 12 + 1, 1)
    rows = list(Meeting.live().where((Meeting.cell == meeting.cell_id) & (Meeting.held_on >= first)
                                     & (Meeting.held_on < after)).order_by(Meeting.held_on))
    same = [m for m in rows if (m.kind == "thematic") == (meeting.kind == "thematic")]
    return (same or rows or [None])[0]


def comparison_rows(meeting: Meeting) -> list[dict[str, Any]]:
    """Rows of the on-site comparison: this meeting, the previous visit, the same month last year."""
    now, before, last_year = (meeting_facts(meeting), meeting_facts(previous_visited_meeting(meeting)),
                              meeting_facts(same_month_last_year(meeting)))
    rows = []
    for key, label in (("present", "Đảng viên có mặt"), ("counted", "Đảng viên phải dự"),
                       ("rate_pct", "Tỷ lệ dự (%)"), ("unexcused", "Vắng không lý do"),
                       ("speakers", "Đảng viên phát biểu"), ("self_criticism", "Ý kiến tự phê bình, phê bình"),
                       ("duration", "Thời lượng (phút)")):
        values = [getattr(f, key) if f.meeting is not None else None for f in (now, before, last_year)]
        rows.append({"key": key, "label": label, "now": values[0], "previous": values[1], "last_year": values[2]})
    return rows


def comparison_meetings(meeting: Meeting) -> tuple[Meeting | None, Meeting | None]:
    """The meetings the comparison columns come from (previous visit, same month last year)."""
    return previous_visited_meeting(meeting), same_month_last_year(meeting)


def self_score(meeting: Meeting) -> float | None:
    """The cell's own score of the meeting on a scale of 100 (its self-scored sheet), or None."""
    from .scoring import score_answer_set

    kind = "chuyen_de" if meeting.kind == "thematic" else "thuong_ky"
    sheet = (AnswerSet.live().join(TemplateVersion).join(ChecklistTemplate)
             .where((AnswerSet.meeting == meeting.id) & (AnswerSet.role == "self")
                    & (ChecklistTemplate.kind == kind)).first())
    if sheet is None:
        return None
    score = score_answer_set(sheet)
    if not score.maximum:
        return None
    return round(100.0 * score.total / score.maximum, 1)


@dataclass
class ScoreGap:
    """The supervisor's score beside the cell's, and whether the gap deserves attention."""

    supervisor: float | None
    cell: float | None

    @property
    def difference(self) -> float | None:
        """Supervisor minus cell (negative: the cell scored itself higher)."""
        if self.supervisor is None or self.cell is None:
            return None
        return round(self.supervisor - self.cell, 1)

    @property
    def highlighted(self) -> bool:
        """True when the two scores are SCORE_GAP_POINTS or more apart."""
        return self.difference is not None and abs(self.difference) >= SCORE_GAP_POINTS


def score_gap(visit: SupervisionVisit) -> ScoreGap:
    """The visit's score gap."""
    return ScoreGap(visit.score, self_score(Meeting.get_by_id(visit.meeting_id)))


# -- recommendations and their follow-up -----------------------------------------------------------

def recommendations_of(visit: SupervisionVisit) -> list[Recommendation]:
    """A visit's live recommendations in the order made."""
    return list(Recommendation.live().where(Recommendation.visit == visit.id)
                .order_by(Recommendation.created_at, Recommendation.id))


def add_recommendation(visit: SupervisionVisit, text: str, deadline: dt.date | None, by: User) -> Recommendation:
    """A new recommendation (open): its deadline on or after the visit's meeting day."""
    if visit.confirmed:
        raise ValidationError({"text": "Biên bản giám sát đã ký xác nhận: không thêm kiến nghị được nữa."})
    meeting = Meeting.get_by_id(visit.meeting_id)
    errors = {}
    if not (text or "").strip():
        errors["text"] = "Vui lòng nhập nội dung kiến nghị."
    if not isinstance(deadline, dt.date):
        errors["deadline"] = "Vui lòng nhập thời hạn khắc phục (dd/mm/yyyy)."
    elif deadline < meeting.held_on:
        errors["deadline"] = (f"Thời hạn khắc phục ({deadline:%d/%m/%Y}) không được trước ngày giám sát "
                              f"({meeting.held_on:%d/%m/%Y}).")
    if errors:
        raise ValidationError(errors)
    with write_transaction():
        rec = Recommendation.create(visit=visit.id, text=text.strip(), deadline=deadline)
        RecommendationEvent.create(recommendation=rec.id, state="open", side="supervisor",
                                   by_name=by.full_name or by.username)
        fill_sheet(visit)
    return rec


def events_of(rec_id: str) -> list[RecommendationEvent]:
    """A recommendation's events in the order every node agrees on (clock stamp, then id)."""
    return sorted(RecommendationEvent.select().where((RecommendationEvent.recommendation == rec_id)
                                                     & RecommendationEvent.deleted_at.is_null()),
                  key=lambda e: (e.hlc, e.id))


def derive_state(events: Iterable[tuple[str, str, str, str]]) -> str:
    """The state after events given as (stamp, id, state, side): pure and order-independent.

    Events are replayed by (stamp, id); a move that is not allowed from the state reached so far,
    or not by that side, changes nothing (it stays in the history). So two moves made concurrently
    on two nodes give the same state everywhere once both have arrived.
    """
    state = "open"
    for _stamp, _id, target, side in sorted(events):
        if target == "open":
            continue  # the opening event
        if TRANSITIONS.get((state, target)) == side:
            state = target
    return state


def state_of(rec: Recommendation) -> str:
    """The recommendation's current state."""
    return derive_state((e.hlc, e.id, e.state, e.side) for e in events_of(rec.id))


def is_overdue(rec: Recommendation, state: str, today: dt.date | None = None) -> bool:
    """Past its deadline and not yet done by the cell."""
    return state in ("open", "in_progress") and rec.deadline < (today or local_today())


def allowed_moves(state: str, side: str) -> list[str]:
    """The states this side may move a recommendation to from `state`."""
    return [to for (frm, to), who in TRANSITIONS.items() if frm == state and who == side]


def add_event(rec: Recommendation, target: str, side: str, by: User, note: str = "") -> RecommendationEvent:
    """Record a follow-up move the side may make from the current state (ValidationError otherwise)."""
    state = state_of(rec)
    if TRANSITIONS.get((state, target)) != side:
        if target in REC_STATES and side in SIDES:
            message = (f"{SIDES[side]} không chuyển được kiến nghị từ “{REC_STATES[state]}” sang "
                       f"“{REC_STATES[target]}”.")
        else:
            message = "Bước cập nhật không hợp lệ."
        raise ValidationError({"state": message})
    return RecommendationEvent.create(recommendation=rec.id, state=target, side=side,
                                      by_name=by.full_name or by.username, note=(note or "").strip()[:500])


@dataclass
class RecommendationRow:
    """A recommendation ready to show: its visit, meeting, cell, state and overdue flag."""

    rec: Recommendation
    visit: SupervisionVisit
    meeting: Meeting
    cell: Cell
    state: str
    overdue: bool
    events: list[RecommendationEvent] = field(default_factory=list)


def recommendation_rows(cell_ids: list[str] | None = None, supervisor_id: str | None = None,
                        visit_id: str | None = None, today: dt.date | None = None) -> list[RecommendationRow]:
    """Live recommendations with their derived state (filter by cells, by visitor or by visit)."""
    query = (Recommendation.live().join(SupervisionVisit).join(Meeting).join(Cell)
             .where(SupervisionVisit.deleted_at.is_null() & Meeting.deleted_at.is_null())
             .select(Recommendation, SupervisionVisit, Meeting, Cell))
    if cell_ids is not None:
        query = query.where(Meeting.cell.in_(cell_ids))
    if supervisor_id:
        query = query.where(SupervisionVisit.supervisor == supervisor_id)
    if visit_id:
        query = query.where(Recommendation.visit == visit_id)
    rows = []
    for rec in query.order_by(Recommendation.deadline, Recommendation.id):
        events = events_of(rec.id)
        state = derive_state((e.hlc, e.id, e.state, e.side) for e in events)
        visit = rec.visit
        rows.append(RecommendationRow(rec, visit, visit.meeting, visit.meeting.cell, state,
                                      is_overdue(rec, state, today), events))
    return rows


# -- coverage --------------------------------------------------------------------------------------

@dataclass
class CoverageRow:
    """Visits planned and made for one cell or one member in a year."""

    key: str
    label: str
    planned: int = 0
    made: int = 0


def coverage(year: int, cell_ids: list[str] | None = None, months: list[int] | None = None,
             rolled: bool = False) -> tuple[list[CoverageRow], list[CoverageRow]]:
    """Planned vs made visits per cell and per supervisor for a year (made: a visit record exists).

    Optionally only some cells (None: all) and consecutive months (a plan line's month, a visit's meeting month).
    Counted by the database, grouped by cell and visitor: a national plan has tens of thousands of lines.
    rolled=True counts the visits made from the visit rollup (models.supervision_report.ReportVisit:
    the visited meeting's year, month and cell, indexed by year), for the report pages that refresh it
    first; the supervision pages count them from the visits and meetings (the tests compare the two).
    """
    wanted = set(cell_ids) if cell_ids is not None else None
    cells = {c: CoverageRow(c, f"{code} — {name}")
             for c, code, name in Cell.live().select(Cell.id, Cell.code, Cell.name).order_by(Cell.code).tuples()
             if wanted is None or c in wanted}
    people = {u.id: CoverageRow(u.id, u.full_name or u.username) for u in supervisors()}
    A, V = SupervisionAssignment, SupervisionVisit
    plan = (A.select(A.cell, A.supervisor, fn.COUNT(A.id)).where(A.deleted_at.is_null() & (A.year == year))
            .group_by(A.cell, A.supervisor))
    first = dt.date(year, min(months), 1) if months else dt.date(year, 1, 1)
    last = dt.date(year, max(months), 1) if months else dt.date(year, 12, 1)
    after = dt.date(last.year + last.month // 12, last.month % 12 + 1, 1)
    made = (V.select(Meeting.cell, V.supervisor, fn.COUNT(V.id)).join(Meeting)
            .where(V.deleted_at.is_null() & Meeting.deleted_at.is_null()
                   & (Meeting.held_on >= first) & (Meeting.held_on < after))
            .group_by(Meeting.cell, V.supervisor))
    if rolled:
        from .supervision_report import ReportVisit as RV

        made = (RV.select(RV.cell_id, RV.supervisor_id, fn.COUNT(RV.visit_id)).where(RV.year == year)
                .group_by(RV.cell_id, RV.supervisor_id))
        if months:  # the same range of months as the dates above
            made = made.where((RV.month >= first.month) & (RV.month <= last.month))
    if months:  # the filters' months are a month or a quarter: one range of dates
        plan = plan.where(A.month.in_(months))
    counted = [("planned", plan), ("made", made)]
    names: dict[str, str] = {}
    for attr, query in counted:
        # Plain cursor rows: nationally tens of thousands of (cell, visitor) groups a year.
        for cell_id, user_id, n in A._meta.database.execute(query).fetchall():
            if cell_id not in cells:
                continue
            if user_id not in people:  # a former supervisor still counts; names read once
                if not names:
                    names = {u.id: u.full_name or u.username
                             for u in User.select(User.id, User.full_name, User.username)}
                people[user_id] = CoverageRow(user_id, names.get(user_id, ""))
            setattr(cells[cell_id], attr, getattr(cells[cell_id], attr) + n)
            setattr(people[user_id], attr, getattr(people[user_id], attr) + n)
    return list(cells.values()), list(people.values())


# -- annual inspection -----------------------------------------------------------------------------

def inspections_of_year(year: int) -> list[AnnualInspection]:
    """The year's live inspections by cell code."""
    return list(AnnualInspection.live().join(Cell).where(AnnualInspection.year == year)
                .order_by(Cell.code).select(AnnualInspection, Cell))


def plan_inspection(cell_id: str, year: int, planned_on: dt.date | None, inspectors: str) -> AnnualInspection:
    """Select a cell for the year's inspection (one inspection per cell and year)."""
    clash = AnnualInspection.live().where((AnnualInspection.cell == cell_id) & (AnnualInspection.year == year)).exists()
    if clash:
        raise ValidationError({"cell": f"Chi bộ này đã có trong kế hoạch kiểm tra năm {year}."})
    if planned_on is not None and planned_on.year != year:
        raise ValidationError({"planned_on": f"Ngày kiểm tra phải trong năm {year}."})
    with write_transaction():
        version = _inspection_version()
        sheet = AnswerSet.create(version=version.id, meeting=None, role="supervisor", answered_by=inspectors[:80]) \
            if version else None
        return AnnualInspection.create(cell=cell_id, year=year, planned_on=planned_on,
                                       inspectors=inspectors.strip()[:300], answer_set=sheet.id if sheet else None)


def _inspection_version():
    """The published annual-inspection sheet in force (template kind "kiem_tra")."""
    from .checklists import published_for_kind

    return published_for_kind("kiem_tra")


def inspection_evidence(inspection: AnnualInspection) -> dict[str, Any]:
    """The cell's meetings and visits of the inspected year, with the counts the sheet asks for."""
    year = inspection.year
    meetings = list(Meeting.live().where((Meeting.cell == inspection.cell_id)
                                         & (Meeting.held_on >= dt.date(year, 1, 1))
                                         & (Meeting.held_on <= dt.date(year, 12, 31))).order_by(Meeting.held_on))
    visits = visits_of_year(year, inspection.cell_id)
    regular = [m for m in meetings if m.kind in ("regular", "combined") and m.held_on <= local_today()]
    thematic_quarters = {(m.held_on.month - 1) // 3 for m in meetings if m.kind in ("thematic", "combined")}
    return {"meetings": meetings, "visits": visits, "regular_count": len(regular),
            "thematic_quarters": len(thematic_quarters),
            "recommendations": recommendation_rows(cell_ids=[inspection.cell_id])}


def record_inspection(inspection: AnnualInspection, form: dict[str, Any]) -> None:
    """Save the inspection's findings, conclusion and sheet answers (nothing saved on an error)."""
    from .checklists import parse_answer

    errors: dict[str, str] = {}
    answers = []
    if inspection.answer_set_id:
        answer_set = AnswerSet.get_by_id(inspection.answer_set_id)
        for item in version_items(TemplateVersion.get_by_id(answer_set.version_id)):
            raw = form.get(f"item-{item.code}")
            if raw in (None, ""):
                continue
            try:
                parse_answer(item, raw)
            except ValueError as exc:
                errors[f"item-{item.code}"] = f"{item.code}: {exc}"
            answers.append((item, raw))
    status = "done" if form.get("finish") else inspection.status
    done_on = None
    if status == "done":
        text = (form.get("done_on") or "").strip()
        try:
            done_on = dt.datetime.strptime(text, "%d/%m/%Y").date() if text else local_today()
        except ValueError:
            errors["done_on"] = "Ngày kiểm tra không hợp lệ (dd/mm/yyyy)."
    if errors:
        raise ValidationError(errors)
    inspection.findings = (form.get("findings") or "").strip()
    inspection.conclusion = (form.get("conclusion") or "").strip()
    inspection.status = status
    if done_on:
        inspection.done_on = done_on
    with write_transaction():
        inspection.save()
        for item, raw in answers:
            set_answer(answer_set, item, raw)


# -- model meetings --------------------------------------------------------------------------------

def model_meetings_of_year(year: int) -> list[ModelMeeting]:
    """The year's model-meeting programme by date."""
    return list(ModelMeeting.live().where(ModelMeeting.year == year).order_by(ModelMeeting.planned_on))


def observers_of(model: ModelMeeting) -> list[ModelMeetingObserver]:
    """The observing cells of a model meeting, by cell code."""
    return list(ModelMeetingObserver.live().join(Cell).where(ModelMeetingObserver.model_meeting == model.id)
                .order_by(Cell.code).select(ModelMeetingObserver, Cell))


def plan_model_meeting(cell_id: str, planned_on: dt.date, topic: str, observer_ids: list[str]) -> ModelMeeting:
    """Add a model meeting to the programme with its observing cells (never the demonstrating one)."""
    if cell_id in observer_ids:
        raise ValidationError({"observers": "Chi bộ làm mẫu không tự dự quan sát chính mình."})
    with write_transaction():
        model = ModelMeeting.create(cell=cell_id, year=planned_on.year, planned_on=planned_on, topic=topic.strip()[:300])
        for other in observer_ids:
            ModelMeetingObserver.create(model_meeting=model.id, cell=other)
    return model


def record_model_meeting(model: ModelMeeting, held: bool, lessons: str, attended_ids: list[str]) -> None:
    """After the meeting: held or not, the lessons learned, which observing secretaries came."""
    if held and model.planned_on > local_today():
        raise ValidationError({"held": NOT_HELD.format(day=f"{model.planned_on:%d/%m/%Y}")})
    if not held and (lessons or "").strip():
        raise ValidationError({"lessons": "Chỉ ghi bài học kinh nghiệm sau khi buổi sinh hoạt mẫu đã diễn ra."})
    with write_transaction():
        model.held = held
        model.lessons = (lessons or "").strip()
        model.save()
        for row in observers_of(model):
            row.attended = row.cell_id in attended_ids
            row.save()


def demonstrated_meeting(model: ModelMeeting) -> Meeting | None:
    """The demonstrating cell's meeting on the programme's date, when this node has it."""
    return Meeting.live().where((Meeting.cell == model.cell_id) & (Meeting.held_on == model.planned_on)).first()


def parse_vn_date(text: str | None) -> dt.date | None:
    """dd/mm/yyyy (or ISO yyyy-mm-dd) to a date; None when blank; ValueError when not a date."""
    text = (text or "").strip()
    if not text:
        return None
    for fmt in ("%d/%m/%Y", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(text)


__all__ = ["AnnualInspection", "ModelMeeting", "ModelMeetingObserver", "Recommendation", "RecommendationEvent",
           "SupervisionAssignment", "SupervisionVisit", "db"]
