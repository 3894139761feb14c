"""Charter warnings: plain functions over members, positions and attendance, judged by rule-set data.

Every threshold comes from the rule set in force on the day asked about (`rule_set_for`):
`full_members_needing_committee` (a cell with that many full members elects a cell committee),
`max_committee_size`, `probation_months`, and `absence_review_months` (months with an unexcused
absence within twelve months before the cell should consider striking the member off). Views,
reports and tests call these; templates only show the messages.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from peewee import fn

from .meetings import Attendance, Meeting
from .members import CELL_COMMITTEE, Member, current_positions
from .org import Cell
from .rules import RuleSet, rule_set_for
from .base import local_today


@dataclass(frozen=True)
class CharterWarning:
    """One thing the charter asks the cell to act on."""

    code: str
    message: str
    member_id: str | None = None


def add_months(day: dt.date, months: int) -> dt.date:
    """`day` moved by whole months (the day clamped to the month's length)."""
    import calendar

    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def committee(cell_id: str, day: dt.date | None = None) -> list[Member]:
    """Members of the cell holding a cell-committee term on `day` (secretary, deputy, committee member)."""
    members = list(Member.live().where(Member.cell == cell_id))
    terms = current_positions([m.id for m in members], day)
    return [m for m in members if any(t.kind in CELL_COMMITTEE for t in terms.get(m.id, []))]


def unexcused_months(member_ids, until: dt.date) -> dict[str, int]:
    """Member id -> distinct months with an unexcused absence in the twelve months up to `until`."""
    ids = list(member_ids)
    if not ids:
        return {}
    since = add_months(until, -12) + dt.timedelta(days=1)
    rows = (Attendance.live()
            .select(Attendance.member, Meeting.held_on)
            .join(Meeting, on=(Attendance.meeting == Meeting.id))
            .where(Attendance.member.in_(ids) & (Attendance.status == "unexcused")
                   & Meeting.deleted_at.is_null() & (Meeting.held_on >= since) & (Meeting.held_on <= until))
            .tuples())
    months: dict[str, set] = {}
    for member_id, held_on in rows:
        months.setdefault(member_id, set()).add((held_on.year, held_on.month))
    return {member_id: len(seen) for member_id, seen in months.items()}


def _rules(cell: Cell, day: dt.date) -> RuleSet | None:
    return rule_set_for(day, cell.organisation_id)


def member_warnings(member: Member, day: dt.date | None = None, rules: RuleSet | None = None,
                    absences: dict[str, int] | None = None) -> list[CharterWarning]:
    """Warnings about one member: probation overdue, unexcused absences to review."""
    day = day or local_today()
    rules = rules or _rules(Cell.get_by_id(member.cell_id), day)
    if rules is None:
        return []
    params = rules.params
    out = []
    months = params.get("probation_months")
    if member.status == "probationary" and months and member.admitted_on:
        due = add_months(member.admitted_on, int(months))
        if due < day:
            out.append(CharterWarning(
                "probation_overdue",
                f"{member.full_name}: dự bị từ {member.admitted_on:%d/%m/%Y}, đã quá {months} tháng "
                f"(hết hạn {due:%d/%m/%Y}) mà chưa xét công nhận đảng viên chính thức.", member.id))
    review = params.get("absence_review_months")
    if review:
        count = (absences if absences is not None else unexcused_months([member.id], day)).get(member.id, 0)
        if count >= int(review):
            out.append(CharterWarning(
                "absence_review",
                f"{member.full_name}: vắng sinh hoạt không lý do {count} tháng trong 12 tháng qua "
                f"(từ {review} tháng trở lên chi bộ xem xét, đề nghị xóa tên).", member.id))
    return out


def cell_warnings(cell: Cell, day: dt.date | None = None) -> list[CharterWarning]:
    """Warnings about a cell: committee needed or too large, plus every member's warnings."""
    day = day or local_today()
    rules = _rules(cell, day)
    if rules is None:
        return []
    params = rules.params
    out = []
    full = (Member.live().where((Member.cell == cell.id) & (Member.status == "full"))
            .select(fn.COUNT(Member.id)).scalar() or 0)
    size = len(committee(cell.id, day))
    needing = params.get("full_members_needing_committee")
    # A secretary and a deputy alone are not a committee: a chi ủy has at least three members.
    if needing and full >= int(needing) and size < 3:
        out.append(CharterWarning(
            "committee_missing",
            f"Chi bộ có {full} đảng viên chính thức (từ {needing} trở lên) nhưng chưa có chi ủy."))
    largest = params.get("max_committee_size")
    if largest and size > int(largest):
        out.append(CharterWarning(
            "committee_too_large", f"Chi ủy có {size} đồng chí, vượt quá {largest} theo quy định."))
    members = list(Member.live().where(
        (Member.cell == cell.id) & Member.status.in_(("full", "probationary", "temp_here"))))
    absences = unexcused_months([m.id for m in members], day)
    for member in members:
        out.extend(member_warnings(member, day, rules, absences))
    return out
