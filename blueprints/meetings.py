"""A meeting on the tablet: roll call, what happened (Diễn biến), conclusion, minutes (Biên bản).

Design: every control is a small form that saves one fact at once (htmx) and answers the
re-rendered section it belongs to, so the screen always shows the stored truth; bad input answers
422 with the same section, the message beside the control and what was typed. Forms that create a
record carry a key made when the form was drawn (`new_id()`), so a tap retried after a dropped
Wi-Fi records once. Without htmx every action answers 303 back to its page. Domain rules live in
models/meetings.py, models/meeting_record.py and models/minutes.py; views only call them.
"""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from models import Meeting, ValidationError
from models.base import new_id
from models.meeting_record import (
    CONTRIBUTION_KINDS,
    GUEST_KINDS,
    TASK_OUTCOMES,
    Contribution,
    MeetingGuest,
    Task,
    Vote,
    add_contribution,
    add_guest,
    add_task,
    contribution_summary,
    contributions_of,
    eligible_voters,
    end_meeting,
    guests_of,
    open_earlier_tasks,
    record_vote,
    remove_record,
    review_task,
    set_conclusion,
    set_model,
    set_contribution_summary,
    set_roles,
    set_times,
    start_meeting,
    superior_people,
    tasks_of,
    vote_passes,
    votes_of,
)
from models.meetings import (
    ATTENDANCE_STATUSES,
    COMMON_REASONS,
    CONCLUSION_KINDS,
    MEETING_KINDS,
    MEETING_STATUSES,
    attendance_by_member,
    attendance_summary,
    local_today,
    mark_all_present,
    set_attendance,
    toggle_late,
)
from models.members import STATUS_BADGES, roll_for_cell
from models.minutes import (
    MINUTES_STEPS,
    current_revision,
    minutes_data,
    minutes_pdf,
    minutes_sections,
    minutes_status,
    minutes_step,
    open_revision,
    revisions_of,
)
from models.planning import Orientation, day_warning, move_meeting, orientation_for, plan_thematic, plan_year
from models.rules import RuleSet

from .access import get_cell_or_404, get_meeting_or_404, held_here
from .web import LOCAL_TZ, htmx

bp = Blueprint("meetings", __name__)

# Section -> (fragment, page endpoint): a saved control answers its section, a plain post its page.
SECTIONS = {
    "clock": ("meetings/_clock.html", "meetings.meeting_hold"),
    # Fields edited in place answer only a status line: redrawing them would undo what the
    # secretary is still typing or choosing while the save is on its way.
    "roles": ("meetings/_saved.html", "meetings.meeting_hold"),
    "guests": ("meetings/_guests.html", "meetings.meeting_hold"),
    "speak": ("meetings/_speak.html", "meetings.meeting_hold"),
    "model": ("meetings/_saved.html", "meetings.meeting_hold"),
    "review": ("meetings/_review.html", "meetings.meeting_conclusion"),
    "votes": ("meetings/_votes.html", "meetings.meeting_conclusion"),
    "conclusion": ("meetings/_saved.html", "meetings.meeting_conclusion"),
    "tasks": ("meetings/_tasks.html", "meetings.meeting_conclusion"),
    "minutes": ("meetings/_minutes_steps.html", "meetings.meeting_minutes"),
}


def local_now() -> dt.time:
    """The wall-clock time in Vietnam (the tablet's meeting is there whatever the server's zone)."""
    return dt.datetime.now(LOCAL_TZ).time()


def may_write(meeting: Meeting) -> bool:
    """The cell's secretary (or an admin) on the node holding the cell, while the meeting is open."""
    return (current_user.can_write_cell(meeting.cell_id) and held_here(meeting.cell)
            and not meeting.locked)


HOLD_PAGE_SECTIONS = ("clock", "roles", "guests", "speak", "model")


def hold_context(meeting: Meeting, errors: dict | None = None, form=None, selected: str = "",
                 page: str = "hold") -> dict:
    """What one of the meeting's screens shows: "hold" (Diễn biến) or "conclusion" (Kết luận)."""
    roll = roll_for_cell(meeting.cell_id)
    marks = attendance_by_member(meeting)
    present = [m for m in roll if marks.get(m.id) is not None and marks[m.id].status == "present"]
    context = dict(
        meeting=meeting, cell=meeting.cell, roll=roll, marks=marks, present=present,
        names={m.id: m.full_name for m in roll}, can_write=may_write(meeting), errors=errors or {},
        form=form or {}, selected=selected, key=new_id(), kinds=MEETING_KINDS, statuses=MEETING_STATUSES,
        contribution_kinds=CONTRIBUTION_KINDS, guest_kinds=GUEST_KINDS, outcomes=TASK_OUTCOMES,
        conclusion_kinds=CONCLUSION_KINDS, badges=STATUS_BADGES,
        orientations=orientation_for(meeting.cell, meeting.held_on),
    )
    if page == "hold":
        rows = contributions_of(meeting)
        context.update(contributions=rows, speak=contribution_summary(meeting, rows, marks),
                       guests=guests_of(meeting), superior=superior_people())
    else:
        rules = RuleSet.get_or_none(RuleSet.id == meeting.rule_set_id) if meeting.rule_set_id else None
        votes = votes_of(meeting)
        context.update(votes=votes, vote_results={v.id: vote_passes(v, rules) for v in votes},
                       eligible=eligible_voters(meeting, marks), tasks=tasks_of(meeting),
                       earlier=open_earlier_tasks(meeting))
    return context


def act(meeting_id: str, section: str, action):
    """Run one save on a meeting and answer its section (422 with the message when refused)."""
    meeting = get_meeting_or_404(meeting_id, write=True)
    fragment, page = SECTIONS[section]
    which = "hold" if section in HOLD_PAGE_SECTIONS else "conclusion"
    try:
        action(meeting)
    except ValidationError as exc:
        context = hold_context(meeting, exc.errors, request.form, page=which)
        if not htmx:
            return render_template(f"meetings/{which}.html", **context), 422
        return render_template(fragment, **context), 422
    if not htmx:
        return redirect(url_for(page, meeting_id=meeting.id), 303)
    if fragment == "meetings/_saved.html":
        return render_template(fragment, errors={})
    meeting = Meeting.get_by_id(meeting.id)
    return render_template(fragment, **hold_context(meeting, page=which))


# -- planning --------------------------------------------------------------------------------------

def parse_vn_date(text: str) -> dt.date:
    """dd/mm/yyyy as shown everywhere (ISO accepted too); ValueError otherwise."""
    text = (text or "").strip()
    if "/" in text:
        day, month, year = (int(p) for p in text.split("/"))
        return dt.date(year, month, day)
    return dt.date.fromisoformat(text)


@bp.route("/cells/<cell_id>/meetings/new", methods=("GET", "POST"))
@login_required
def meeting_new(cell_id: str):
    """Plan a meeting for a cell: date (dd/mm/yyyy), kind, start time."""
    cell = get_cell_or_404(cell_id, write=True)
    if not held_here(cell):
        abort(403, "Chi bộ này do nút khác quản lý; tại đây chỉ được xem.")
    form = {"held_on": request.form.get("held_on", local_today().strftime("%d/%m/%Y")),
            "kind": request.form.get("kind", "regular"),
            "starts_at": request.form.get("starts_at", "14:00"),
            "title": request.form.get("title", "")}
    errors = {}
    if request.method == "POST":
        meeting = Meeting(cell=cell.id, kind=form["kind"], title=form["title"].strip())
        try:
            meeting.held_on = parse_vn_date(form["held_on"])
        except (ValueError, TypeError):
            errors["held_on"] = "Ngày sinh hoạt không hợp lệ (dd/mm/yyyy)."
        try:
            meeting.starts_at = dt.time.fromisoformat(form["starts_at"]) if form["starts_at"] else None
        except ValueError:
            errors["starts_at"] = "Giờ bắt đầu không hợp lệ (HH:MM)."
        if not errors:
            try:
                meeting.save()
                target = url_for("meetings.meeting_view", meeting_id=meeting.id)
                # htmx would follow a 303 and draw the next page inside the form: navigate instead.
                return ("", 204, {"HX-Redirect": target}) if htmx else redirect(target, 303)
            except ValidationError as exc:
                errors.update(exc.errors)
    template = "meetings/_form.html" if htmx and request.method == "POST" else "meetings/new.html"
    return render_template(template, cell=cell, form=form, errors=errors, kinds=MEETING_KINDS), (422 if errors else 200)


# -- roll call -------------------------------------------------------------------------------------

@bp.route("/meetings/<meeting_id>")
@login_required
def meeting_view(meeting_id: str):
    """The meeting's roll call: name tiles and the sticky summary bar."""
    meeting = get_meeting_or_404(meeting_id)
    roll = roll_for_cell(meeting.cell_id)
    marks = attendance_by_member(meeting)
    mode = request.args.get("mode", "")
    return render_template(
        "meetings/view.html", meeting=meeting, cell=meeting.cell, roll=roll, marks=marks,
        summary=attendance_summary(meeting, roll, marks), kinds=MEETING_KINDS, statuses=MEETING_STATUSES,
        labels=ATTENDANCE_STATUSES, reasons=COMMON_REASONS, mode=mode if mode in ("late", "early") else "",
        can_write=may_write(meeting), not_yet=meeting.held_on > local_today(),
        orientations=orientation_for(meeting.cell, meeting.held_on), day_warning=day_warning(meeting.held_on),
        errors={}, form={},
    )


def _tile_response(meeting: Meeting, member_id: str, mark, mode: str = ""):
    """The tapped tile and the summary bar (out of band)."""
    roll = roll_for_cell(meeting.cell_id)
    marks = attendance_by_member(meeting)
    member = next(m for m in roll if m.id == member_id)
    return render_template(
        "meetings/_tile_update.html", meeting=meeting, member=member, mark=mark,
        summary=attendance_summary(meeting, roll, marks), labels=ATTENDANCE_STATUSES,
        reasons=COMMON_REASONS, can_write=True, mode=mode,
    )


def _rollcall_error(errors: dict):
    """The message goes to the roll call's error line, not into the tile that was tapped."""
    headers = {"HX-Retarget": "#rollcall-errors", "HX-Reswap": "innerHTML"}
    return render_template("meetings/_save_error.html", errors=errors), 422, headers


@bp.route("/meetings/<meeting_id>/attendance/<member_id>", methods=("POST",))
@login_required
def attendance_set(meeting_id: str, member_id: str):
    """One tap: cycle the member's state (or set the given status and reason); answer the tile."""
    meeting = get_meeting_or_404(meeting_id, write=True)
    status = request.form.get("status") or None
    reason = request.form.get("reason", "")
    mode = request.form.get("mode", "")
    try:
        if mode in ("late", "early"):
            row = toggle_late(meeting, member_id, mode)
        else:
            row = set_attendance(meeting, member_id, status, reason)
    except ValidationError as exc:
        return _rollcall_error(exc.errors)
    if not htmx:
        return redirect(url_for("meetings.meeting_view", meeting_id=meeting.id, mode=mode or None), 303)
    return _tile_response(meeting, row.member_id, row, mode)


@bp.route("/meetings/<meeting_id>/attendance-all", methods=("POST",))
@login_required
def attendance_all(meeting_id: str):
    """"Tất cả có mặt": everyone not yet marked is present; then tap the absent ones."""
    meeting = get_meeting_or_404(meeting_id, write=True)
    try:
        mark_all_present(meeting)
    except ValidationError as exc:
        return _rollcall_error(exc.errors)
    target = url_for("meetings.meeting_view", meeting_id=meeting.id)
    return ("", 204, {"HX-Redirect": target}) if htmx else redirect(target, 303)


# -- holding the meeting ---------------------------------------------------------------------------

@bp.route("/meetings/<meeting_id>/hold")
@login_required
def meeting_hold(meeting_id: str):
    """Diễn biến: start and end, chair and secretary, guests, contributions."""
    meeting = get_meeting_or_404(meeting_id)
    selected = request.args.get("member", "")
    if htmx and request.args.get("section") == "speak":
        return render_template("meetings/_speak.html", **hold_context(meeting, selected=selected))
    return render_template("meetings/hold.html", **hold_context(meeting, selected=selected))


@bp.route("/meetings/<meeting_id>/start", methods=("POST",))
@login_required
def meeting_start(meeting_id: str):
    """"Bắt đầu": the start time is now."""
    return act(meeting_id, "clock", lambda m: start_meeting(m, local_now()))


@bp.route("/meetings/<meeting_id>/end", methods=("POST",))
@login_required
def meeting_end(meeting_id: str):
    """"Kết thúc": the end time is now."""
    return act(meeting_id, "clock", lambda m: end_meeting(m, local_now()))


@bp.route("/meetings/<meeting_id>/times", methods=("POST",))
@login_required
def meeting_times(meeting_id: str):
    """Correct the start and end times (HH:MM)."""
    return act(meeting_id, "clock", lambda m: set_times(m, request.form.get("started_at", ""),
                                                         request.form.get("ended_at", "")))


@bp.route("/meetings/<meeting_id>/roles", methods=("POST",))
@login_required
def meeting_roles(meeting_id: str):
    """Chair, meeting secretary and place."""
    return act(meeting_id, "roles", lambda m: set_roles(m, request.form.get("chair", ""),
                                                        request.form.get("secretary", ""),
                                                        request.form.get("place", "")))


@bp.route("/meetings/<meeting_id>/model", methods=("POST",))
@login_required
def meeting_model(meeting_id: str):
    """Mark a model (demonstration) meeting; write its lessons learned (also after signing)."""
    meeting = get_meeting_or_404(meeting_id, write=True)
    try:
        set_model(meeting, request.form.get("is_model") == "1", request.form.get("lessons", ""))
    except ValidationError as exc:
        return render_template("meetings/_saved.html", errors=exc.errors), 422
    if not htmx:
        return redirect(url_for("meetings.meeting_hold", meeting_id=meeting.id), 303)
    return render_template("meetings/_saved.html", errors={})


@bp.route("/meetings/<meeting_id>/guests", methods=("POST",))
@login_required
def guest_add(meeting_id: str):
    """Add a guest or superior delegate."""
    f = request.form
    return act(meeting_id, "guests", lambda m: add_guest(m, f.get("name", ""), f.get("position", ""),
                                                         f.get("kind", "superior"), f.get("key")))


@bp.route("/meetings/<meeting_id>/guests/<guest_id>/delete", methods=("POST",))
@login_required
def guest_delete(meeting_id: str, guest_id: str):
    """Remove a guest added by mistake."""
    return act(meeting_id, "guests", lambda m: remove_record(m, MeetingGuest, guest_id))


@bp.route("/meetings/<meeting_id>/contributions", methods=("POST",))
@login_required
def contribution_add(meeting_id: str):
    """A present member spoke: the kind and an optional one-line summary."""
    f = request.form
    return act(meeting_id, "speak", lambda m: add_contribution(m, f.get("member", ""), f.get("kind", ""),
                                                               f.get("summary", ""), f.get("key")))


@bp.route("/meetings/<meeting_id>/contributions/<contribution_id>", methods=("POST",))
@login_required
def contribution_edit(meeting_id: str, contribution_id: str):
    """Write the summary of a contribution afterwards."""
    return act(meeting_id, "speak", lambda m: set_contribution_summary(m, contribution_id,
                                                                       request.form.get("summary", "")))


@bp.route("/meetings/<meeting_id>/contributions/<contribution_id>/delete", methods=("POST",))
@login_required
def contribution_delete(meeting_id: str, contribution_id: str):
    """Undo a contribution recorded by mistake."""
    return act(meeting_id, "speak", lambda m: remove_record(m, Contribution, contribution_id))


# -- conclusion: last meeting's tasks, votes, resolution, tasks ------------------------------------

@bp.route("/meetings/<meeting_id>/conclusion")
@login_required
def meeting_conclusion(meeting_id: str):
    """Kết luận: last meeting's tasks, votes, the resolution and the new tasks."""
    meeting = get_meeting_or_404(meeting_id)
    return render_template("meetings/conclusion.html", **hold_context(meeting, page="conclusion"))


@bp.route("/meetings/<meeting_id>/reviews/<task_id>", methods=("POST",))
@login_required
def task_review(meeting_id: str, task_id: str):
    """Judge an earlier task: done, not done, carried over."""
    return act(meeting_id, "review", lambda m: review_task(m, task_id, request.form.get("outcome", ""),
                                                           request.form.get("note", "")))


@bp.route("/meetings/<meeting_id>/votes", methods=("POST",))
@login_required
def vote_add(meeting_id: str):
    """Record a vote: for, against, abstain, checked against the full members present."""
    f = request.form
    return act(meeting_id, "votes", lambda m: record_vote(m, f.get("subject", ""), f.get("in_favour"),
                                                          f.get("against"), f.get("abstain"), f.get("key")))


@bp.route("/meetings/<meeting_id>/votes/<vote_id>/delete", methods=("POST",))
@login_required
def vote_delete(meeting_id: str, vote_id: str):
    """Remove a vote recorded by mistake."""
    return act(meeting_id, "votes", lambda m: remove_record(m, Vote, vote_id))


@bp.route("/meetings/<meeting_id>/conclusion", methods=("POST",))
@login_required
def conclusion_set(meeting_id: str):
    """Save the resolution or conclusion text."""
    return act(meeting_id, "conclusion", lambda m: set_conclusion(m, request.form.get("conclusion_kind", "nghi_quyet"),
                                                                  request.form.get("conclusion", "")))


@bp.route("/meetings/<meeting_id>/tasks", methods=("POST",))
@login_required
def task_add(meeting_id: str):
    """Assign a task: what, to whom, by when."""
    f = request.form
    return act(meeting_id, "tasks", lambda m: add_task(m, f.get("text", ""), f.get("assignee", ""),
                                                       f.get("due_on", ""), f.get("key")))


@bp.route("/meetings/<meeting_id>/tasks/<task_id>/delete", methods=("POST",))
@login_required
def task_delete(meeting_id: str, task_id: str):
    """Remove a task added by mistake."""
    return act(meeting_id, "tasks", lambda m: remove_record(m, Task, task_id))


# -- minutes ---------------------------------------------------------------------------------------

def minutes_context(meeting: Meeting, errors: dict | None = None) -> dict:
    """The minutes page: the current text (or a signed snapshot), the steps and the revisions."""
    revisions = revisions_of(meeting)
    shown = None
    number = request.args.get("revision", type=int)
    if number:
        shown = next((r for r in revisions if r.number == number and r.snapshot), None)
        if shown is None:
            abort(404)
    data = shown.snapshot if shown else minutes_data(meeting)
    return dict(meeting=meeting, cell=meeting.cell, data=data, sections=minutes_sections(data),
                revisions=revisions, shown=shown, revision=current_revision(meeting),
                missing=minutes_status(meeting, None), steps=MINUTES_STEPS, errors=errors or {},
                can_write=current_user.can_write_cell(meeting.cell_id) and held_here(meeting.cell),
                kinds=MEETING_KINDS, statuses=MEETING_STATUSES, orientations=[])


@bp.route("/meetings/<meeting_id>/minutes")
@login_required
def meeting_minutes(meeting_id: str):
    """Biên bản: the minutes on the template, printable; read back, approve, sign; revisions."""
    meeting = get_meeting_or_404(meeting_id)
    return render_template("meetings/minutes.html", **minutes_context(meeting))


@bp.route("/meetings/<meeting_id>/minutes.pdf")
@login_required
def minutes_pdf_view(meeting_id: str):
    """The minutes as a PDF (a signed revision's snapshot when asked, else the current text)."""
    meeting = get_meeting_or_404(meeting_id)
    context = minutes_context(meeting)
    draft = context["shown"] is None and not meeting.locked
    revision = context["revision"]
    if context["shown"] is None and meeting.locked and revision is not None and revision.snapshot:
        context["data"] = revision.snapshot  # the text as signed
    body = minutes_pdf(context["data"], draft=draft)
    name = f"bien-ban-{meeting.held_on:%Y-%m-%d}.pdf"
    return Response(body, mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _minutes_answer(meeting_id: str, action):
    """Run a minutes step and answer the steps block (or the page)."""
    meeting = get_meeting_or_404(meeting_id, write=True)
    try:
        action(meeting)
    except ValidationError as exc:
        template = "meetings/_minutes_steps.html" if htmx else "meetings/minutes.html"
        return render_template(template, **minutes_context(meeting, exc.errors)), 422
    target = url_for("meetings.meeting_minutes", meeting_id=meeting.id)
    # Signing or reopening changes the whole page (locked or not): navigate rather than swap.
    return ("", 204, {"HX-Redirect": target}) if htmx else redirect(target, 303)


@bp.route("/meetings/<meeting_id>/minutes/<step>", methods=("POST",))
@login_required
def minutes_advance(meeting_id: str, step: str):
    """Read back, approve, chair signs, secretary signs (the last locks the meeting)."""
    return _minutes_answer(meeting_id, lambda m: minutes_step(m, step))


@bp.route("/meetings/<meeting_id>/revisions", methods=("POST",))
@login_required
def minutes_revise(meeting_id: str):
    """Reopen signed minutes for a change, with the reason."""
    return _minutes_answer(meeting_id, lambda m: open_revision(m, request.form.get("reason", "")))


# -- planning: the year's regular meetings, moving a date, central's monthly orientation ----------

def _planning_cell_and_year(cell_id: str):
    """The cell (written here, by its node) and the year a planning form posted."""
    cell = get_cell_or_404(cell_id, write=True)
    if not held_here(cell):
        abort(403, "Chi bộ này do nút khác quản lý; tại đây chỉ được xem.")
    year = request.form.get("year", type=int) or local_today().year
    if not 2000 <= year <= 2100:
        abort(400)
    return cell, year


@bp.route("/cells/<cell_id>/plan", methods=("POST",))
@login_required
def plan_year_view(cell_id: str):
    """Make the year's regular meetings on the cell's fixed day (months that have one are skipped)."""
    cell, year = _planning_cell_and_year(cell_id)
    made = plan_year(cell, year)
    flash(f"Đã lập {len(made)} buổi sinh hoạt thường kỳ năm {year}." if made
          else f"Năm {year} đã đủ buổi sinh hoạt thường kỳ hằng tháng.", "info")
    return redirect(url_for("cells.cell_view", cell_id=cell.id, year=year) + "#meetings", 303)


@bp.route("/cells/<cell_id>/plan/thematic", methods=("POST",))
@login_required
def plan_thematic_view(cell_id: str):
    """Plan a thematic meeting by topic and quarter (a date is optional: the first free working day)."""
    cell, year = _planning_cell_and_year(cell_id)
    form = {k: (request.form.get(k) or "").strip() for k in ("topic", "quarter", "held_on")}
    errors = {}
    day = None
    if form["held_on"]:
        try:
            day = parse_vn_date(form["held_on"])
        except (ValueError, TypeError):
            errors["held_on"] = "Ngày sinh hoạt không hợp lệ (dd/mm/yyyy)."
    if not errors:
        try:
            meeting = plan_thematic(cell, year, request.form.get("quarter", type=int) or 0, form["topic"], day)
        except ValidationError as exc:
            errors = exc.errors
    if errors:
        return render_template("meetings/_thematic.html", cell=cell, year=year, form=form, errors=errors), 422
    flash(f"Đã lập buổi sinh hoạt chuyên đề “{meeting.title}” ngày {meeting.held_on:%d/%m/%Y}.", "info")
    target = url_for("cells.cell_view", cell_id=cell.id, year=year) + "#meetings"
    return ("", 204, {"HX-Redirect": target}) if htmx else redirect(target, 303)


@bp.route("/meetings/<meeting_id>/move", methods=("POST",))
@login_required
def meeting_move(meeting_id: str):
    """Move a planned meeting to another date, with the reason."""
    meeting = get_meeting_or_404(meeting_id, write=True)
    errors = {}
    try:
        new_day = parse_vn_date(request.form.get("held_on", ""))
    except (ValueError, TypeError):
        errors = {"held_on": "Ngày sinh hoạt không hợp lệ (dd/mm/yyyy)."}
    else:
        # Apart from the date: a ValidationError is a ValueError too and its message must show.
        try:
            move_meeting(meeting, new_day, request.form.get("move_reason", ""))
        except ValidationError as exc:
            errors = exc.errors
    if errors:
        meeting = Meeting.get_by_id(meeting.id)
        return render_template("meetings/_move.html", meeting=meeting, errors=errors, form=request.form,
                               can_write=True), 422
    target = url_for("meetings.meeting_view", meeting_id=meeting.id)
    return ("", 204, {"HX-Redirect": target}) if htmx else redirect(target, 303)


@bp.route("/orientations", methods=("GET", "POST"))
@login_required
def orientation_index():
    """Central's monthly orientation for the cells' meetings: the list, and a form for central's admin."""
    can_edit = current_user.role == "admin" and current_app.config["ROLE"] == "central"
    form, errors = {}, {}
    today = local_today()
    if request.method == "POST":
        if not can_edit:
            abort(403, "Định hướng nội dung chỉ được viết tại trung tâm.")
        form = request.form
        item = Orientation(year=request.form.get("year", type=int), month=request.form.get("month", type=int),
                           text=(form.get("text") or "").strip(), source=(form.get("source") or "").strip()[:200],
                           organisation=form.get("organisation") or None)
        try:
            item.save()
            target = url_for("meetings.orientation_index")
            return ("", 204, {"HX-Redirect": target}) if htmx else redirect(target, 303)
        except ValidationError as exc:
            errors = exc.errors
    items = list(Orientation.live().order_by(Orientation.year.desc(), Orientation.month.desc(), Orientation.created_at))
    return render_template("meetings/orientations.html", items=items, form=form, errors=errors, can_edit=can_edit,
                           today=today), (422 if errors else 200)
