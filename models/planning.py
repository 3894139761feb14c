"""Planning and compliance: the year's regular meetings, moves with a reason, the monthly
orientation from central, and the checks a cell's calendar and the reports show.

Design: `plan_year()` makes each month's regular meeting on the cell's fixed day (one per cell-month,
the rule `Meeting.save()` enforces); a date can then be moved with a reason (`move_meeting`), the
original kept in `moved_from`. Compliance is a set of plain functions over the stored meetings,
judged by each meeting's own rule set (thresholds are never constants here), returning Vietnamese
messages: views, reports, the CLI and tests call the same functions. `Orientation` is central's
monthly content guidance (định hướng nội dung); it travels to every node.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from peewee import CharField, ForeignKeyField, IntegerField, TextField

from .base import SyncedModel, ValidationError, db, local_today, register
from .holidays import holiday_on
from .meetings import (MEETING_KINDS, REGULAR_KINDS, Meeting, attendance_rate, duration_minutes, ensure_open,
                       rate_passes)
from .org import Cell, Organisation
from .rules import RuleSet

WEEKDAYS = ("Thứ Hai", "Thứ Ba", "Thứ Tư", "Thứ Năm", "Thứ Sáu", "Thứ Bảy", "Chủ nhật")
HELD = ("in_progress", "ended", "closed")


@register
class Orientation(SyncedModel):
    """The Party committee's content guidance for one month, written at central."""

    organisation = ForeignKeyField(Organisation, null=True, backref="orientations", on_delete="RESTRICT")
    year = IntegerField()
    month = IntegerField()
    text = TextField()
    source = CharField(max_length=200, default="")

    def clean(self) -> None:
        """A month of a plausible year and some text."""
        errors = {}
        if not isinstance(self.year, int) or not 2000 <= self.year <= 2100:
            errors["year"] = "Năm không hợp lệ."
        if not isinstance(self.month, int) or not 1 <= self.month <= 12:
            errors["month"] = "Tháng phải từ 1 đến 12."
        if not (self.text or "").strip():
            errors["text"] = "Vui lòng nhập nội dung định hướng."
        if errors:
            raise ValidationError(errors)


def orientation_for(cell: Cell, day: dt.date) -> list[Orientation]:
    """Central's orientations for the month of `day`: the cell's committee's and the general ones."""
    return list(Orientation.live().where(
        (Orientation.year == day.year) & (Orientation.month == day.month)
        & (Orientation.organisation.is_null() | (Orientation.organisation == cell.organisation_id)))
        .order_by(Orientation.created_at))


def day_warning(day: dt.date) -> str:
    """Why a planned date may need moving (weekend or public holiday), or ''."""
    holiday = holiday_on(day)
    if holiday:
        return f"Rơi vào ngày lễ ({holiday})."
    if day.weekday() >= 5:
        return f"Rơi vào {WEEKDAYS[day.weekday()]}."
    return ""


def plan_year(cell: Cell, year: int) -> list[Meeting]:
    """Make the year's regular meetings on the cell's fixed day, for months that have none yet."""
    made = []
    with db.atomic():
        for month in range(1, 13):
            day = dt.date(year, month, cell.meeting_day)
            if cell.active_from and day < cell.active_from or cell.active_to and day > cell.active_to:
                continue
            first = dt.date(year, month, 1)
            after = dt.date(year + month // 12, month % 12 + 1, 1)
            exists = Meeting.live().where((Meeting.cell == cell.id) & Meeting.kind.in_(REGULAR_KINDS)
                                          & (Meeting.held_on >= first) & (Meeting.held_on < after)).exists()
            if exists or Meeting.live().where((Meeting.cell == cell.id) & (Meeting.held_on == day)).exists():
                continue
            meeting = Meeting(cell=cell.id, kind="regular", held_on=day, starts_at=dt.time(14, 0))
            meeting.save()
            made.append(meeting)
    return made


def plan_thematic(cell: Cell, year: int, quarter: int, topic: str, day: dt.date | None = None) -> Meeting:
    """Plan a thematic meeting on a topic in a quarter: on `day` (inside the quarter), else the first
    working day from the 15th of the quarter's middle month that is free and not a holiday."""
    topic = (topic or "").strip()
    errors = {}
    if not topic:
        errors["topic"] = "Vui lòng nhập chủ đề sinh hoạt chuyên đề."
    if quarter not in (1, 2, 3, 4):
        errors["quarter"] = "Quý phải từ 1 đến 4."
    if errors:
        raise ValidationError(errors)
    months = range(quarter * 3 - 2, quarter * 3 + 1)
    if day is not None and (day.year != year or day.month not in months):
        raise ValidationError({"held_on": f"Ngày {day:%d/%m/%Y} không thuộc quý {quarter}/{year}."})
    if day is None:
        day = dt.date(year, quarter * 3 - 1, 15)
        taken = {d for (d,) in Meeting.live().select(Meeting.held_on).where(Meeting.cell == cell.id).tuples()}
        while day in taken or day_warning(day):
            day += dt.timedelta(days=1)
    meeting = Meeting(cell=cell.id, kind="thematic", held_on=day, title=topic[:300], starts_at=dt.time(14, 0))
    meeting.save()
    return meeting


def move_meeting(meeting: Meeting, new_day: dt.date, reason: str) -> Meeting:
    """Move a planned meeting to another day, with the reason; the first planned day is kept."""
    ensure_open(meeting)
    reason = (reason or "").strip()
    if meeting.status != "planned":
        raise ValidationError({"held_on": "Buổi sinh hoạt đã bắt đầu: không dời ngày được nữa."})
    if not reason:
        raise ValidationError({"move_reason": "Vui lòng ghi lý do dời ngày sinh hoạt."})
    if new_day == meeting.held_on:
        raise ValidationError({"held_on": "Ngày mới trùng ngày cũ."})
    if meeting.moved_from is None:
        meeting.moved_from = meeting.held_on
    meeting.held_on = new_day
    meeting.move_reason = reason[:300]
    meeting.save()
    return meeting


# -- compliance ------------------------------------------------------------------------------------

def _rules(meeting: Meeting, cache: dict) -> RuleSet | None:
    """The meeting's pinned rule set (cached per call)."""
    if meeting.rule_set_id not in cache:
        cache[meeting.rule_set_id] = RuleSet.get_or_none(RuleSet.id == meeting.rule_set_id) if meeting.rule_set_id else None
    return cache[meeting.rule_set_id]


def meeting_flags(meeting: Meeting, cell: Cell, rules: RuleSet | None, tally: dict[str, int] | None = None) -> list[str]:
    """What a held meeting falls short of: off schedule, too short, attendance under the threshold."""
    flags = []
    if meeting.status not in HELD:
        return flags
    if meeting.kind in REGULAR_KINDS and meeting.held_on.day != cell.meeting_day:
        flags.append(f"Không đúng ngày cố định (ngày {cell.meeting_day} hằng tháng).")
    minutes = duration_minutes(meeting)
    if rules is not None and minutes is not None:
        key = "combined_min_minutes" if meeting.kind == "combined" else "meeting_min_minutes"
        minimum = float(rules.param(key))
        if minutes < minimum:
            flags.append(f"Thời lượng {minutes:.0f} phút, dưới mức tối thiểu {minimum:.0f} phút.")
    if tally is not None and rules is not None:
        counted = sum(tally.values())
        rate = attendance_rate(tally.get("present", 0), counted)
        if rate is not None and rate_passes(rate, rules) is False:
            flags.append(f"Tỷ lệ dự {rate:.1f}%".replace(".", ",") + f" chưa đạt ngưỡng {rules.param('attendance_threshold_pct')}%.")
    return flags


@dataclass
class YearCompliance:
    """A cell's year: the months without a regular meeting, quarters short of thematic ones, and flags."""

    year: int
    missing_months: list[int] = field(default_factory=list)
    short_quarters: list[int] = field(default_factory=list)
    flags: dict[str, list[str]] = field(default_factory=dict)

    @property
    def messages(self) -> list[str]:
        """The year's problems as sentences."""
        out = [f"Tháng {m}/{self.year} không có buổi sinh hoạt thường kỳ." for m in self.missing_months]
        out += [f"Quý {q}/{self.year} chưa đủ buổi sinh hoạt chuyên đề." for q in self.short_quarters]
        return out


def year_compliance(cell: Cell, year: int, meetings: list[Meeting], tallies: dict, today: dt.date | None = None) -> YearCompliance:
    """Judge a cell's year from its meetings (those of that year) up to today, by their rule sets."""
    today = today or local_today()
    result = YearCompliance(year=year)
    cache: dict = {}
    held = [m for m in meetings if m.held_on.year == year and m.status in HELD]
    for month in range(1, 13):
        if dt.date(year, month, 1) > today or (year, month) == (today.year, today.month):
            break  # the current month is not over yet
        if cell.active_from and dt.date(year, month, 28) < cell.active_from:
            continue
        if not any(m.held_on.month == month and m.kind in REGULAR_KINDS for m in held):
            result.missing_months.append(month)
    for quarter in range(1, 5):
        end_month = quarter * 3
        end = dt.date(year + end_month // 12, end_month % 12 + 1, 1)
        if end > today:
            break
        if cell.active_from and end <= cell.active_from:
            continue
        in_quarter = [m for m in held if (m.held_on.month - 1) // 3 + 1 == quarter]
        thematic = sum(1 for m in in_quarter if m.kind in ("thematic", "combined"))
        rules = next((_rules(m, cache) for m in in_quarter if _rules(m, cache)), None)
        required = int(rules.param("thematic_per_quarter")) if rules else 0
        if thematic < required:
            result.short_quarters.append(quarter)
    for m in meetings:
        flags = meeting_flags(m, cell, _rules(m, cache), tallies.get(m.id))
        if flags:
            result.flags[m.id] = flags
    return result


def kind_label(meeting: Meeting) -> str:
    """The meeting kind in Vietnamese."""
    return MEETING_KINDS.get(meeting.kind, meeting.kind)
