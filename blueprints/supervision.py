"""Supervision screens: the rotation plan and coverage (central), "my visits", the cell's view of who
comes, the on-site visit record on a tablet, recommendations and their follow-up, the annual
inspection and the model-meeting programme.

Design: plain forms that answer 303 back to their page, or 422 with the page, the field's message
and what was typed. Who may write is decided here from the person and the node (the node policy in
models/policy.py decides it again for the node at sync): the plan, inspections and model meetings by
an admin at central; a visit by a supervisor on the node holding the meeting; follow-up moves by the
cell's secretary on its node or by a supervisor wherever the recommendation is stored. Domain rules
live in models/supervision.py and models/rotation.py.
"""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from models import Cell, Meeting, User, ValidationError
from models.checklists import AnswerSet, TemplateVersion, answers_by_code, version_tree
from models.meetings import MEETING_KINDS, local_today
from models.supervision import (
    CELL_REFUSAL,
    DEFAULT_FREQUENCY,
    INSPECTION_STATUSES,
    REC_STATES,
    SCORE_GAP_POINTS,
    SIDES,
    AnnualInspection,
    ModelMeeting,
    Recommendation,
    SupervisionAssignment,
    SupervisionVisit,
    add_event,
    add_recommendation,
    allowed_moves,
    comparison_meetings,
    comparison_rows,
    confirm_visit,
    coverage,
    cell_plan,
    demonstrated_meeting,
    ensure_held,
    generate_plan,
    inspection_evidence,
    inspections_of_year,
    meeting_facts,
    model_meetings_of_year,
    my_plan,
    observers_of,
    parse_vn_date,
    plan_inspection,
    plan_model_meeting,
    plan_of_year,
    planned_meeting,
    recommendation_rows,
    record_inspection,
    record_model_meeting,
    save_visit,
    score_gap,
    start_visit,
    supervisors,
    visit_of,
    visits_of_meeting,
    visits_of_year,
)

from .access import get_cell_or_404, get_meeting_or_404, held_here, readable_cells

bp = Blueprint("supervision", __name__, url_prefix="/supervision")

CENTRAL_ONLY = "Kế hoạch giám sát, kiểm tra và sinh hoạt mẫu do Đảng ủy lập tại trung tâm; nút này nhận qua đồng bộ."
ELSEWHERE = ("Buổi sinh hoạt này do nút khác quản lý: biên bản giám sát ghi tại nút giữ chi bộ (máy tính bảng "
             "dùng mạng của nơi họp), rồi đồng bộ về trung tâm.")


def _year() -> int:
    """The year asked for (?year=), else this year."""
    try:
        year = int(request.args.get("year") or request.form.get("year") or local_today().year)
    except ValueError:
        abort(404)
    if not 2000 <= year <= 2100:
        abort(404)
    return year


def is_central() -> bool:
    """True on the central node."""
    return current_app.config["ROLE"] == "central"


def require_planner() -> None:
    """Only an admin at central writes plans, inspections and the model-meeting programme."""
    if current_user.role != "admin":
        abort(403)
    if not is_central():
        abort(403, CENTRAL_ONLY)


def require_reader() -> None:
    """Plans and coverage are read by admins and supervisors."""
    if current_user.role not in ("admin", "supervisor"):
        abort(403)


def may_record(meeting: Meeting) -> bool:
    """A supervisor on the node holding the meeting writes its visit record."""
    return current_user.role == "supervisor" and held_here(meeting.cell)


def refuse_visit_write(meeting: Meeting) -> None:
    """403 with the reason when the person or node may not write this meeting's visit record."""
    if current_user.role != "supervisor":
        abort(403, CELL_REFUSAL)
    if not held_here(meeting.cell):
        abort(403, ELSEWHERE)


def follow_up_side(cell: Cell) -> str | None:
    """Which side the person moves a recommendation for: 'supervisor', 'cell', or None (read only)."""
    if current_user.role == "supervisor" and (held_here(cell) or is_central()):
        return "supervisor"
    if current_user.role == "secretary" and current_user.can_write_cell(cell.id) and held_here(cell):
        return "cell"
    return None


# -- hub, plan and coverage ------------------------------------------------------------------------

@bp.route("/")
@login_required
def index():
    """Where the supervision menu leads: the plan (admin), my visits (supervisor), the cell's view."""
    if current_user.role == "admin":
        return redirect(url_for("supervision.plan_view"))
    if current_user.role == "supervisor":
        return redirect(url_for("supervision.my_visits"))
    if current_user.cell_id:
        return redirect(url_for("supervision.cell_view", cell_id=current_user.cell_id))
    abort(403)


def plan_context(year: int, **extra) -> dict:
    """What the plan page shows: lines by month, coverage this year and last, the generator form."""
    by_cell, by_member = coverage(year)
    last_cells, last_members = coverage(year - 1)
    return dict(year=year, lines=plan_of_year(year), cells=list(Cell.live().order_by(Cell.code)),
                people=supervisors(), coverage_cells=by_cell, coverage_members=by_member,
                last_cells={r.key: r for r in last_cells}, last_members={r.key: r for r in last_members},
                can_plan=current_user.role == "admin" and is_central(), errors={}, form={},
                default_frequency=DEFAULT_FREQUENCY, **extra)


@bp.route("/plan")
@login_required
def plan_view():
    """The year's rotation plan, with coverage (planned vs made) this year and last."""
    require_reader()
    return render_template("supervision/plan.html", **plan_context(_year()))


@bp.route("/plan/generate", methods=("POST",))
@login_required
def plan_generate():
    """Replace the year's plan by a fair automatic one (visits already made are kept)."""
    require_planner()
    year = _year()
    chosen = request.form.getlist("members")
    try:
        frequency = int(request.form.get("frequency") or DEFAULT_FREQUENCY)
    except ValueError:
        frequency = 0
    try:
        lines, left_out = generate_plan(year, frequency, chosen or None)
    except ValidationError as exc:
        return render_template("supervision/plan.html", **{**plan_context(year), "errors": exc.errors,
                                                           "form": request.form}), 422
    message = f"Đã lập kế hoạch tự động: {len(lines)} lượt giám sát năm {year}."
    if left_out:
        message += f" Còn {left_out} lượt không xếp được (quá nhiều buổi họp trong cùng một tuần); hãy phân công tay."
    flash(message, "ok")
    return redirect(url_for("supervision.plan_view", year=year), 303)


def _line_form(line: SupervisionAssignment, form) -> dict[str, str]:
    """Apply a plan-line form to a line (unsaved); return errors by field."""
    errors = {}
    line.supervisor = form.get("supervisor") or None
    if not line.supervisor_id or User.get_or_none((User.id == line.supervisor_id) & (User.role == "supervisor")) is None:
        errors["supervisor"] = "Chọn một Ủy viên Ban Thường vụ."
    try:
        line.month = int(form.get("month") or 0)
    except ValueError:
        line.month = 0
    try:
        line.planned_on = parse_vn_date(form.get("planned_on"))
    except ValueError:
        errors["planned_on"] = "Ngày dự kiến không hợp lệ (dd/mm/yyyy)."
    line.note = (form.get("note") or "").strip()[:300]
    return errors


@bp.route("/plan/new", methods=("POST",))
@login_required
def plan_line_new():
    """Add a line to the plan by hand."""
    require_planner()
    year = _year()
    cell = get_cell_or_404(request.form.get("cell") or "")
    line = SupervisionAssignment(cell=cell.id, year=year, source="manual")
    errors = _line_form(line, request.form)
    if not errors:
        try:
            line.save()
        except ValidationError as exc:
            errors = exc.errors
    if errors:
        return render_template("supervision/plan.html", **{**plan_context(year), "errors": errors,
                                                           "form": request.form}), 422
    flash("Đã thêm lượt giám sát vào kế hoạch.", "ok")
    return redirect(url_for("supervision.plan_view", year=year), 303)


@bp.route("/plan/<line_id>", methods=("POST",))
@login_required
def plan_line_edit(line_id: str):
    """Change a plan line by hand (visitor, month, date) or remove it."""
    require_planner()
    line = SupervisionAssignment.get_or_none((SupervisionAssignment.id == line_id)
                                             & SupervisionAssignment.deleted_at.is_null())
    if line is None:
        abort(404)
    if request.form.get("delete"):
        line.soft_delete()
        flash("Đã bỏ lượt giám sát khỏi kế hoạch.", "ok")
        return redirect(url_for("supervision.plan_view", year=line.year), 303)
    errors = _line_form(line, request.form)
    if not errors:
        line.source = "manual"
        try:
            line.save()
        except ValidationError as exc:
            errors = exc.errors
    if errors:
        return render_template("supervision/plan.html", **{**plan_context(line.year), "errors": errors,
                                                           "form": request.form, "edited": line_id}), 422
    flash("Đã sửa phân công.", "ok")
    return redirect(url_for("supervision.plan_view", year=line.year), 303)


# -- my visits and the cell's view -----------------------------------------------------------------

@bp.route("/mine")
@login_required
def my_visits():
    """Lượt giám sát của tôi: the supervisor's plan and records, on whichever node."""
    if current_user.role != "supervisor":
        abort(403)
    year = _year()
    rows = []
    for line in my_plan(current_user, year):
        meeting = planned_meeting(line)
        rows.append({"line": line, "meeting": meeting,
                     "visit": visit_of(meeting, current_user) if meeting else None,
                     "here": held_here(line.cell)})
    made = [v for v in visits_of_year(year) if v.supervisor_id == current_user.id]
    return render_template("supervision/mine.html", year=year, rows=rows, made=made,
                           recs=recommendation_rows(supervisor_id=current_user.id), states=REC_STATES,
                           allowed_moves=allowed_moves)


@bp.route("/cells/<cell_id>")
@login_required
def cell_view(cell_id: str):
    """A cell's view: who comes this year, the visits made, the recommendations to follow up."""
    cell = get_cell_or_404(cell_id)
    year = _year()
    return render_template("supervision/cell.html", cell=cell, year=year, lines=cell_plan(cell.id, year),
                           visits=visits_of_year(year, cell.id), recs=recommendation_rows(cell_ids=[cell.id]),
                           states=REC_STATES, side=follow_up_side(cell), allowed_moves=allowed_moves)


# -- the on-site visit -----------------------------------------------------------------------------

def visit_context(meeting: Meeting, visit: SupervisionVisit | None, **extra) -> dict:
    """Everything the on-site screen shows, computed from the meeting's records."""
    from models.meetings import attendance_by_member
    from models.members import roll_for_cell

    previous, last_year = comparison_meetings(meeting)
    marks = attendance_by_member(meeting)
    roll = [m for m in roll_for_cell(meeting.cell_id) if m.counts_for_attendance]
    context = dict(meeting=meeting, visit=visit, meeting_kinds=MEETING_KINDS, sheet_tree=[], facts=meeting_facts(meeting),
                   comparison=comparison_rows(meeting), previous=previous, last_year=last_year,
                   roll=roll, marks=marks, others=[v for v in visits_of_meeting(meeting) if not visit or v.id != visit.id],
                   writable=bool(visit) and may_record(meeting) and not visit.confirmed,
                   may_start=may_record(meeting) and visit is None, errors={}, form={}, rec_errors={},
                   rec_form={}, gap=score_gap(visit) if visit else None, gap_points=SCORE_GAP_POINTS,
                   recs=recommendation_rows(visit_id=visit.id) if visit else [], states=REC_STATES,
                   side=follow_up_side(meeting.cell), allowed_moves=allowed_moves, today=local_today())
    shown = context["visit"]
    if shown is not None and shown.answer_set_id:
        context.update(sheet_of(meeting, shown, context["writable"]))
    if visit is None:
        # The cell and other readers see every visitor's record; a supervisor sees their own first.
        shown = context["others"][:1]
        if shown:
            context.update(visit=shown[0], others=context["others"][1:], gap=score_gap(shown[0]),
                           recs=recommendation_rows(visit_id=shown[0].id))
            if shown[0].answer_set_id:
                context.update(sheet_of(meeting, shown[0], False))
    context.update(extra)
    return context


@bp.route("/meetings/<meeting_id>/visit", methods=("GET", "POST"))
@login_required
def visit_page(meeting_id: str):
    """The supervisor's on-site record of a meeting (a tablet): start it, fill it, sign it."""
    meeting = get_meeting_or_404(meeting_id)
    visit = visit_of(meeting, current_user) if current_user.role == "supervisor" else None
    if request.method == "POST":
        refuse_visit_write(meeting)
        try:
            if visit is None:
                visit = start_visit(meeting, current_user)
                if request.form.get("action") == "start":
                    return redirect(url_for("supervision.visit_page", meeting_id=meeting.id), 303)
            if request.form.get("action") == "confirm":
                save_visit(visit, request.form)
                confirm_visit(visit)
                flash("Đã ký xác nhận biên bản giám sát.", "ok")
            else:
                save_visit(visit, request.form)
                flash("Đã lưu biên bản giám sát.", "ok")
        except ValidationError as exc:
            visit = visit_of(meeting, current_user)
            return render_template("supervision/visit.html", **visit_context(
                meeting, visit, errors=exc.errors, form=request.form)), 422
        return redirect(url_for("supervision.visit_page", meeting_id=meeting.id), 303)
    if visit is None and may_record(meeting):
        try:
            ensure_held(meeting)
        except ValidationError as exc:
            return render_template("supervision/visit.html", **visit_context(meeting, None, not_held=exc.errors["meeting"],
                                                                             may_start=False))
    return render_template("supervision/visit.html", **visit_context(meeting, visit))


# Items of the supervision sheet the visit form fills itself (see models.supervision.fill_sheet).
FILLED_BY_FORM = ("S1", "S6", "S10", "S17.cb", "S17.gs", "S19", "S20", "S21")


def sheet_of(meeting: Meeting, visit: SupervisionVisit, writable: bool) -> dict:
    """The supervision sheet's questions (template in force) for the visit page, minus the form's own."""
    from .checklists import sheet_context

    context = sheet_context(meeting, AnswerSet.get_by_id(visit.answer_set_id), "giam_sat", "supervisor")
    tree = [(section, [i for i in items if i.code not in FILLED_BY_FORM]) for section, items in context["tree"]]
    return dict(sheet_tree=[(s, items) for s, items in tree if items], answers=context["answers"],
                results=context["results"], answer_set=context["answer_set"], role="supervisor",
                roles=context["roles"], computed_sources=context["computed_sources"], score=context["score"],
                other_score=None, sheet_writable=writable)


def get_visit_or_404(visit_id: str, write: bool = True) -> SupervisionVisit:
    """Load a live visit whose meeting the person may read (and, for `write`, record)."""
    visit = SupervisionVisit.get_or_none((SupervisionVisit.id == visit_id) & SupervisionVisit.deleted_at.is_null())
    if visit is None:
        abort(404)
    meeting = get_meeting_or_404(visit.meeting_id)
    if write:
        refuse_visit_write(meeting)
        if visit.supervisor_id != current_user.id:
            abort(403, "Đây là biên bản giám sát của đồng chí khác; chỉ người giám sát ghi được.")
    return visit


@bp.route("/visits/<visit_id>/recommendations", methods=("POST",))
@login_required
def recommendation_new(visit_id: str):
    """Add a recommendation with its deadline to the visit (open)."""
    visit = get_visit_or_404(visit_id)
    meeting = Meeting.get_by_id(visit.meeting_id)
    errors = {}
    try:
        deadline = parse_vn_date(request.form.get("deadline"))
    except ValueError:
        deadline = None
        errors["deadline"] = "Thời hạn không hợp lệ (dd/mm/yyyy)."
    if not errors:
        try:
            add_recommendation(visit, request.form.get("text", ""), deadline, current_user)
        except ValidationError as exc:
            errors = exc.errors
    if errors:
        return render_template("supervision/visit.html", **visit_context(
            meeting, visit, rec_errors=errors, rec_form=request.form)), 422
    flash("Đã ghi kiến nghị.", "ok")
    return redirect(url_for("supervision.visit_page", meeting_id=meeting.id) + "#kien-nghi", 303)


# -- recommendations -------------------------------------------------------------------------------

@bp.route("/recommendations")
@login_required
def recommendation_list():
    """Every recommendation the person may read, with its state and overdue flag."""
    if current_user.role in ("admin", "supervisor"):
        rows = recommendation_rows()
    else:
        rows = recommendation_rows(cell_ids=[c.id for c in readable_cells()])
    only = request.args.get("state", "")
    if only == "overdue":
        rows = [r for r in rows if r.overdue]
    elif only in REC_STATES:
        rows = [r for r in rows if r.state == only]
    return render_template("supervision/recommendations.html", rows=rows, states=REC_STATES, only=only,
                           sides=SIDES, side_of=follow_up_side, allowed_moves=allowed_moves)


@bp.route("/recommendations/<rec_id>/events", methods=("POST",))
@login_required
def recommendation_event(rec_id: str):
    """Record a follow-up move (the cell: in progress, done; the supervisor: verified or back)."""
    rec = Recommendation.get_or_none((Recommendation.id == rec_id) & Recommendation.deleted_at.is_null())
    if rec is None:
        abort(404)
    meeting = get_meeting_or_404(rec.visit.meeting_id)
    side = follow_up_side(meeting.cell)
    if side is None:
        abort(403, "Đồng chí không cập nhật được kiến nghị này tại nút này: chi bộ cập nhật tại nút của chi bộ, "
                   "người giám sát tại trung tâm hoặc nút của chi bộ.")
    back = request.form.get("next") or url_for("supervision.recommendation_list")
    if not back.startswith("/") or back.startswith("//"):
        back = url_for("supervision.recommendation_list")
    try:
        add_event(rec, request.form.get("state", ""), side, current_user, request.form.get("note", ""))
    except ValidationError as exc:
        flash(" ".join(exc.errors.values()), "error")
        return render_template("supervision/recommendations.html", rows=recommendation_rows(visit_id=rec.visit_id),
                               states=REC_STATES, only="", sides=SIDES, side_of=follow_up_side,
                               allowed_moves=allowed_moves, error=" ".join(exc.errors.values())), 422
    flash("Đã cập nhật tiến độ kiến nghị.", "ok")
    return redirect(back, 303)


# -- annual inspection -----------------------------------------------------------------------------

@bp.route("/inspections", methods=("GET", "POST"))
@login_required
def inspection_list():
    """The year's inspection plan (a cell or more), and the form to select one (admin at central)."""
    year = _year()
    errors = {}
    if request.method == "POST":
        require_planner()
        cell = get_cell_or_404(request.form.get("cell") or "")
        try:
            planned_on = parse_vn_date(request.form.get("planned_on"))
        except ValueError:
            planned_on = None
            errors["planned_on"] = "Ngày kiểm tra không hợp lệ (dd/mm/yyyy)."
        if not errors:
            try:
                inspection = plan_inspection(cell.id, year, planned_on, request.form.get("inspectors", ""))
            except ValidationError as exc:
                errors = exc.errors
            else:
                flash(f"Đã đưa {cell.name} vào kế hoạch kiểm tra năm {year}.", "ok")
                return redirect(url_for("supervision.inspection_view", inspection_id=inspection.id), 303)
    else:
        if current_user.role not in ("admin", "supervisor") and not current_user.cell_id:
            abort(403)
    rows = inspections_of_year(year)
    if current_user.role not in ("admin", "supervisor"):
        rows = [r for r in rows if r.cell_id == current_user.cell_id]
    return render_template("supervision/inspections.html", year=year, rows=rows, statuses=INSPECTION_STATUSES,
                           cells=list(Cell.live().order_by(Cell.code)), can_plan=current_user.role == "admin" and is_central(),
                           errors=errors, form=request.form if errors else {}), (422 if errors else 200)


@bp.route("/inspections/<inspection_id>", methods=("GET", "POST"))
@login_required
def inspection_view(inspection_id: str):
    """One inspection: the sheet (template "kiem_tra"), findings, conclusion, the year's evidence."""
    inspection = AnnualInspection.get_or_none((AnnualInspection.id == inspection_id)
                                              & AnnualInspection.deleted_at.is_null())
    if inspection is None:
        abort(404)
    get_cell_or_404(inspection.cell_id)
    errors = {}
    if request.method == "POST":
        require_planner()
        try:
            record_inspection(inspection, request.form)
        except ValidationError as exc:
            errors = exc.errors
        else:
            flash("Đã lưu biên bản kiểm tra.", "ok")
            return redirect(url_for("supervision.inspection_view", inspection_id=inspection.id), 303)
    tree, answers = [], {}
    if inspection.answer_set_id:
        answer_set = AnswerSet.get_by_id(inspection.answer_set_id)
        tree = version_tree(TemplateVersion.get_by_id(answer_set.version_id))
        answers = {code: row.value for code, row in answers_by_code(answer_set).items()}
    return render_template("supervision/inspection.html", inspection=inspection, tree=tree, answers=answers,
                           evidence=inspection_evidence(inspection), statuses=INSPECTION_STATUSES,
                           states=REC_STATES, can_plan=current_user.role == "admin" and is_central(),
                           errors=errors, form=request.form if errors else {}), (422 if errors else 200)


# -- model meetings --------------------------------------------------------------------------------

@bp.route("/model-meetings", methods=("GET", "POST"))
@login_required
def model_list():
    """The year's model-meeting programme and the list of those held; admins at central add to it."""
    year = _year()
    errors = {}
    if request.method == "POST":
        require_planner()
        cell = get_cell_or_404(request.form.get("cell") or "")
        try:
            planned_on = parse_vn_date(request.form.get("planned_on"))
        except ValueError:
            planned_on = None
        if planned_on is None:
            errors["planned_on"] = "Vui lòng nhập ngày sinh hoạt mẫu (dd/mm/yyyy)."
        if not errors:
            try:
                model = plan_model_meeting(cell.id, planned_on, request.form.get("topic", ""),
                                           request.form.getlist("observers"))
            except ValidationError as exc:
                errors = exc.errors
            else:
                flash("Đã thêm buổi sinh hoạt mẫu vào chương trình.", "ok")
                return redirect(url_for("supervision.model_view", model_id=model.id), 303)
    rows = [{"model": m, "observers": observers_of(m)} for m in model_meetings_of_year(year)]
    return render_template("supervision/models.html", year=year, rows=rows, cells=list(Cell.live().order_by(Cell.code)),
                           can_plan=current_user.role == "admin" and is_central(), errors=errors,
                           form=request.form if errors else {}), (422 if errors else 200)


@bp.route("/model-meetings/<model_id>", methods=("GET", "POST"))
@login_required
def model_view(model_id: str):
    """A model meeting: who demonstrates, who observes, whether held, the lessons learned."""
    model = ModelMeeting.get_or_none((ModelMeeting.id == model_id) & ModelMeeting.deleted_at.is_null())
    if model is None:
        abort(404)
    errors = {}
    if request.method == "POST":
        require_planner()
        try:
            record_model_meeting(model, bool(request.form.get("held")), request.form.get("lessons", ""),
                                 request.form.getlist("attended"))
        except ValidationError as exc:
            errors = exc.errors
            model = ModelMeeting.get_by_id(model.id)
        else:
            flash("Đã lưu kết quả buổi sinh hoạt mẫu.", "ok")
            return redirect(url_for("supervision.model_view", model_id=model.id), 303)
    return render_template("supervision/model.html", model=model, observers=observers_of(model),
                           meeting=demonstrated_meeting(model), can_plan=current_user.role == "admin" and is_central(),
                           errors=errors, form=request.form if errors else {}), (422 if errors else 200)
