"""The cells a user may see, and one cell's page (members and meeting history)."""
from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user, login_required
from peewee import fn

from models import Attendance, Cell, Meeting, Member, RuleSet
from models.meetings import MEETING_KINDS, attendance_rate, rate_passes
from models.members import MEMBER_STATUSES, POSITIONS, roll_for_cell

from .access import get_cell_or_404, held_here, readable_cells

bp = Blueprint("cells", __name__)


@bp.route("/")
@login_required
def index():
    """Home: the cells this user may read, each with its roll size and last meeting."""
    cells = list(readable_cells().order_by(Cell.code))
    return render_template("cells/index.html", cells=cells, overview=cell_overview(cells))


@bp.route("/cells/<cell_id>")
@login_required
def cell_view(cell_id: str):
    """One cell: its roll and its meetings by year, newest first, each with its attendance verdict."""
    cell = get_cell_or_404(cell_id)
    meetings = list(Meeting.live().where(Meeting.cell == cell.id).order_by(Meeting.held_on.desc()))
    return render_template(
        "cells/view.html", cell=cell, roll=roll_for_cell(cell.id), meetings=meetings,
        rates=meeting_rates(meetings), kinds=MEETING_KINDS, statuses=MEMBER_STATUSES,
        positions=POSITIONS, can_write=current_user.can_write_cell(cell.id) and held_here(cell),
    )


def cell_overview(cells) -> dict:
    """Per cell: members counted for attendance and the latest meeting (two queries in all)."""
    ids = [c.id for c in cells]
    counts = dict(
        Member.live().select(Member.cell, fn.COUNT(Member.id))
        .where(Member.cell.in_(ids) & Member.status.in_(("full", "probationary", "temp_here")))
        .group_by(Member.cell).tuples()
    )
    latest = {}
    for meeting in Meeting.live().where(Meeting.cell.in_(ids)).order_by(Meeting.held_on.desc()):
        latest.setdefault(meeting.cell_id, meeting)
        if len(latest) == len(ids):
            break
    rates = meeting_rates(list(latest.values()))
    return {cid: {"members": counts.get(cid, 0), "last": latest.get(cid),
                  "rate": rates.get(latest[cid].id) if cid in latest else None} for cid in ids}


def meeting_rates(meetings) -> dict:
    """Attendance rate and verdict of each meeting from its recorded marks, in one query."""
    if not meetings:
        return {}
    rows = (Attendance.live()
            .select(Attendance.meeting, Attendance.status, fn.COUNT(Attendance.id))
            .where(Attendance.meeting.in_([m.id for m in meetings]))
            .group_by(Attendance.meeting, Attendance.status).tuples())
    tallies: dict[str, dict[str, int]] = {}
    for meeting_id, status, count in rows:
        tallies.setdefault(meeting_id, {})[status] = count
    rule_sets = {r.id: r for r in RuleSet.select()}
    out = {}
    for m in meetings:
        t = tallies.get(m.id, {})
        marked = sum(t.values())
        rate = attendance_rate(t.get("present", 0), marked)
        out[m.id] = {"present": t.get("present", 0), "counted": marked, "rate": rate,
                     "passes": rate_passes(rate, rule_sets.get(m.rule_set_id))}
    return out
