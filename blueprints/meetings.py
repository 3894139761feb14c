"""A meeting and its roll call (Điểm danh): one tap per member, the rate recomputed in place."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from models import Meeting, ValidationError
from models.meetings import (
    ATTENDANCE_STATUSES,
    COMMON_REASONS,
    MEETING_KINDS,
    attendance_by_member,
    attendance_summary,
    set_attendance,
)
from models.members import roll_for_cell

from .access import get_cell_or_404, get_meeting_or_404, held_here
from .web import htmx

bp = Blueprint("meetings", __name__)


@bp.route("/cells/<cell_id>/meetings/new", methods=("GET", "POST"))
@login_required
def meeting_new(cell_id: str):
    """Plan a meeting for a cell: date, kind, start time."""
    cell = get_cell_or_404(cell_id, write=True)
    if not held_here(cell):
        abort(403, "Chi bộ này do nút khác quản lý; tại đây chỉ được xem.")
    form = {"held_on": request.form.get("held_on", dt.date.today().isoformat()),
            "kind": request.form.get("kind", "regular"),
            "starts_at": request.form.get("starts_at", "14:00"),
            "title": request.form.get("title", "")}
    errors = {}
    if request.method == "POST":
        meeting = Meeting(cell=cell.id, kind=form["kind"], title=form["title"].strip())
        try:
            meeting.held_on = dt.date.fromisoformat(form["held_on"])
        except ValueError:
            errors["held_on"] = "Ngày sinh hoạt không hợp lệ (dd/mm/yyyy)."
        try:
            meeting.starts_at = dt.time.fromisoformat(form["starts_at"]) if form["starts_at"] else None
        except ValueError:
            errors["starts_at"] = "Giờ bắt đầu không hợp lệ (HH:MM)."
        if not errors:
            try:
                meeting.save()
                return redirect(url_for("meetings.meeting_view", meeting_id=meeting.id), 303)
            except ValidationError as exc:
                errors.update(exc.errors)
    template = "meetings/_form.html" if htmx and request.method == "POST" else "meetings/new.html"
    return render_template(template, cell=cell, form=form, errors=errors, kinds=MEETING_KINDS), (422 if errors else 200)


@bp.route("/meetings/<meeting_id>")
@login_required
def meeting_view(meeting_id: str):
    """The meeting's roll call: name tiles and the sticky summary bar."""
    meeting = get_meeting_or_404(meeting_id)
    roll = roll_for_cell(meeting.cell_id)
    marks = attendance_by_member(meeting)
    return render_template(
        "meetings/view.html", meeting=meeting, cell=meeting.cell, roll=roll, marks=marks,
        summary=attendance_summary(meeting, roll, marks), kinds=MEETING_KINDS,
        labels=ATTENDANCE_STATUSES, reasons=COMMON_REASONS,
        can_write=(current_user.can_write_cell(meeting.cell_id) and held_here(meeting.cell)
                   and meeting.status != "closed"),
    )


@bp.route("/meetings/<meeting_id>/attendance/<member_id>", methods=("POST",))
@login_required
def attendance_set(meeting_id: str, member_id: str):
    """One tap: cycle the member's state (or set the given status and reason); answer the tile."""
    meeting = get_meeting_or_404(meeting_id, write=True)
    status = request.form.get("status") or None
    reason = request.form.get("reason", "")
    try:
        row = set_attendance(meeting, member_id, status, reason)
    except ValidationError as exc:
        # The message goes to the roll call's error line, not into the tile that was tapped.
        headers = {"HX-Retarget": "#rollcall-errors", "HX-Reswap": "innerHTML"}
        return render_template("meetings/_save_error.html", errors=exc.errors), 422, headers
    if not htmx:
        return redirect(url_for("meetings.meeting_view", meeting_id=meeting.id), 303)
    roll = roll_for_cell(meeting.cell_id)
    marks = attendance_by_member(meeting)
    member = next(m for m in roll if m.id == row.member_id)
    return render_template(
        "meetings/_tile_update.html", meeting=meeting, member=member, mark=row,
        summary=attendance_summary(meeting, roll, marks), labels=ATTENDANCE_STATUSES,
        reasons=COMMON_REASONS, can_write=True,
    )
