"""Members (Đảng viên): the searchable list, the profile, add/edit, status changes, positions,
roster import with preview and export.

Every record is loaded through access.py (404 missing, 403 someone else's); writes also need the
node that holds the cell (central's admin may correct any member). The list answers the whole page
normally and only the result table for htmx search-as-you-type. Import: upload -> `ImportJob`
with per-row messages (nothing written) -> apply in one transaction (all rows or none). A long file
(more than IMPORT_BACKGROUND_ROWS rows) is applied in a background thread while the page polls a
progress fragment, which stops polling with 286 once the job row says it is done.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import threading

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required

from models import Cell, Member, Position, ValidationError, db
from models.audit import acting_as, history
from models.base import local_today, utcnow
from models.charter import member_warnings
from models.members import (
    GENDERS,
    MEMBER_STATUSES,
    NEEDS_DECISION,
    POSITION_KINDS,
    assign_position,
    change_status,
    current_positions,
    end_position,
    search_members,
    status_history,
)
from models.profile import activity_by_year
from models.roster import (
    COLUMNS,
    MAX_UPLOAD_BYTES,
    ImportJob,
    RosterError,
    apply_rows,
    export_xlsx,
    parse_date,
    read_table,
    validate_rows,
)
from models.uploads import UploadError, read_upload

from .access import can_edit_members, get_member_or_404, readable_cells, readable_members
from .web import htmx

bp = Blueprint("members", __name__)

IMPORT_BACKGROUND_ROWS = 200
# Job id -> (done, total, error) while a background import runs. Per process: with several workers
# a poll may land elsewhere and shows "đang nhập" without numbers; the finished state is in the job row.
_PROGRESS: dict[str, tuple[int, int, str]] = {}
_PROGRESS_LOCK = threading.Lock()

STATUS_FILTERS = {"on_roll": "Đang sinh hoạt (mọi trạng thái trên danh sách)", "": "Tất cả", **MEMBER_STATUSES}
LIST_LIMIT = 300


def _done(url: str):
    """After a successful form: HX-Redirect for htmx (a followed 303 would swap a whole page into the form)."""
    if htmx:
        return "", 204, {"HX-Redirect": url}
    return redirect(url, 303)


def _filters() -> dict:
    args = request.args
    return {"q": (args.get("q") or "").strip()[:100], "cell": args.get("cell") or "",
            "status": args.get("status", "on_roll"), "position": args.get("position") or ""}


def _listed(filters: dict) -> list[Member]:
    query = readable_members()
    if filters["cell"]:
        query = query.where(Member.cell == filters["cell"])
    status = filters["status"] if filters["status"] in STATUS_FILTERS else "on_roll"
    position = filters["position"] if filters["position"] in POSITION_KINDS else ""
    return search_members(query, filters["q"], status, position)


@bp.route("/members")
@login_required
def member_list():
    """The members this user may read, searchable by name or card number and filtered."""
    filters = _filters()
    members = _listed(filters)
    cells = {c.id: c for c in readable_cells().order_by(Cell.code)}
    context = dict(members=members[:LIST_LIMIT], total=len(members), limit=LIST_LIMIT, filters=filters,
                   cells=cells, positions=current_positions([m.id for m in members[:LIST_LIMIT]]),
                   statuses=MEMBER_STATUSES, status_filters=STATUS_FILTERS, position_kinds=POSITION_KINDS,
                   editable_cells=[c for c in cells.values() if can_edit_members(c)])
    if htmx and htmx.target == "member-results":
        return render_template("members/_results.html", **context)
    return render_template("members/index.html", **context)


@bp.route("/members/export.xlsx")
@login_required
def member_export():
    """The listed members (same filters) as an XLSX file with the import headers."""
    if current_user.role == "member":
        abort(403)
    members = _listed(_filters())
    held = current_positions([m.id for m in members])
    data = export_xlsx(members, {mid: terms[0].kind for mid, terms in held.items()})
    name = f"danh-sach-dang-vien-{local_today():%Y%m%d}.xlsx"
    return send_file(io.BytesIO(data), as_attachment=True, download_name=name,
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.route("/members/<member_id>")
@login_required
def member_view(member_id: str):
    """A member's profile: details, warnings, status path, terms, attendance by year, history."""
    member = get_member_or_404(member_id)
    cell = member.cell
    terms = list(Position.live().where(Position.member == member.id).order_by(Position.start_on.desc()))
    activity = activity_by_year(member)
    return render_template(
        "members/view.html", member=member, cell=cell, warnings=member_warnings(member),
        statuses=MEMBER_STATUSES, genders=GENDERS, position_kinds=POSITION_KINDS, terms=terms,
        status_changes=status_history(member), activity=activity,
        has_contributions=any(a.contributions for a in activity),
        can_edit=can_edit_members(cell), can_assign=_can_assign(),
        history=history("member", member.id) if current_user.role != "member" else [],
        today=local_today(),
    )


def _can_assign() -> bool:
    """Positions belong to central's organisation records: its admin assigns them."""
    return current_user.role == "admin" and current_app.config["ROLE"] == "central"


def _member_form(member: Member | None) -> dict:
    f = request.form
    if request.method == "POST":
        return {k: (f.get(k) or "").strip() for k in
                ("full_name", "birth_year", "gender", "admitted_on", "full_member_on", "card_number",
                 "cell", "status", "effective_on", "decision", "reason")}
    if member is None:
        return {"gender": "nam", "status": "full", "cell": request.args.get("cell", "")}
    return {"full_name": member.full_name, "birth_year": str(member.birth_year or ""),
            "gender": member.gender, "admitted_on": _vn(member.admitted_on),
            "full_member_on": _vn(member.full_member_on), "card_number": member.card_number or "",
            "cell": member.cell_id, "status": member.status}


def _vn(day) -> str:
    return day.strftime("%d/%m/%Y") if day else ""


def _fill(member: Member, form: dict, errors: dict) -> None:
    """Copy the form into the member, collecting parse errors by field."""
    member.full_name = " ".join(form["full_name"].split())
    member.gender = form["gender"] or "nam"
    member.card_number = form["card_number"] or None
    member.birth_year = None
    if form["birth_year"]:
        if form["birth_year"].isascii() and form["birth_year"].isdigit() and len(form["birth_year"]) <= 4:
            member.birth_year = int(form["birth_year"])
        else:
            errors["birth_year"] = "Năm sinh phải là số, ví dụ 1975."
    for name in ("admitted_on", "full_member_on"):
        try:
            setattr(member, name, parse_date(form[name]))
        except ValueError as exc:
            errors[name] = str(exc)


@bp.route("/members/new", methods=("GET", "POST"))
@login_required
def member_new():
    """Add a member to a cell the user may edit, with their starting status."""
    cells = [c for c in readable_cells().order_by(Cell.code) if can_edit_members(c)]
    if not cells:
        abort(403)
    form, errors = _member_form(None), {}
    if request.method == "POST":
        cell = next((c for c in cells if c.id == form["cell"]), None)
        if cell is None:
            errors["cell"] = "Vui lòng chọn chi bộ (đồng chí chỉ thêm được vào chi bộ mình quản lý)."
        member = Member(cell=cell.id if cell else None, status=form["status"] or "full")
        _fill(member, form, errors)
        try:
            # Left empty, the status dates from the membership date it implies.
            implied = member.full_member_on if member.status == "full" else member.admitted_on
            effective = parse_date(form["effective_on"]) or implied or member.admitted_on or local_today()
        except ValueError as exc:
            errors["effective_on"], effective = str(exc), None
        if not errors:
            try:
                with db.atomic():
                    member.save()
                    change_status(member, member.status, effective, form["decision"], form["reason"])
                return _done(url_for("members.member_view", member_id=member.id))
            except ValidationError as exc:
                errors.update(exc.errors)
    template = "members/_form.html" if htmx and request.method == "POST" else "members/form.html"
    return render_template(template, member=None, form=form, errors=errors, cells=cells,
                           statuses=MEMBER_STATUSES, genders=GENDERS, needs_decision=NEEDS_DECISION), (422 if errors else 200)


@bp.route("/members/<member_id>/edit", methods=("GET", "POST"))
@login_required
def member_edit(member_id: str):
    """Edit a member's details (status changes go through member_status, so each keeps its date)."""
    member = get_member_or_404(member_id, write=True)
    cells = [c for c in readable_cells().order_by(Cell.code) if can_edit_members(c)]
    form, errors = _member_form(member), {}
    if request.method == "POST":
        _fill(member, form, errors)
        if form["cell"] and form["cell"] != member.cell_id:
            target = next((c for c in cells if c.id == form["cell"]), None)
            if target is None:
                errors["cell"] = "Đồng chí không được chuyển đảng viên sang chi bộ này."
            else:
                member.cell = target.id
        if not errors:
            try:
                member.save()
                return _done(url_for("members.member_view", member_id=member.id))
            except ValidationError as exc:
                errors.update(exc.errors)
    template = "members/_form.html" if htmx and request.method == "POST" else "members/form.html"
    return render_template(template, member=member, form=form, errors=errors, cells=cells,
                           statuses=MEMBER_STATUSES, genders=GENDERS, needs_decision=NEEDS_DECISION), (422 if errors else 200)


@bp.route("/members/<member_id>/status", methods=("GET", "POST"))
@login_required
def member_status(member_id: str):
    """Change a member's status from a date, with the decision and reason where the charter needs them."""
    member = get_member_or_404(member_id, write=True)
    form = {k: (request.form.get(k) or "").strip() for k in ("status", "effective_on", "decision", "reason")}
    errors = {}
    if request.method == "GET":
        form = {"status": member.status, "effective_on": local_today().strftime("%d/%m/%Y"),
                "decision": "", "reason": ""}
    else:
        try:
            effective = parse_date(form["effective_on"])
            if effective is None:
                errors["effective_on"] = "Vui lòng nhập ngày hiệu lực (dd/mm/yyyy)."
        except ValueError as exc:
            errors["effective_on"], effective = str(exc), None
        if form["status"] == member.status and not errors:
            errors["status"] = "Trạng thái mới trùng trạng thái hiện tại."
        if not errors:
            try:
                change_status(member, form["status"], effective, form["decision"], form["reason"])
                return _done(url_for("members.member_view", member_id=member.id))
            except ValidationError as exc:
                errors.update(exc.errors)
    template = "members/_status_form.html" if htmx and request.method == "POST" else "members/status.html"
    return render_template(template, member=member, form=form, errors=errors, statuses=MEMBER_STATUSES,
                           needs_decision=NEEDS_DECISION), (422 if errors else 200)


@bp.route("/members/<member_id>/positions", methods=("GET", "POST"))
@login_required
def position_new(member_id: str):
    """Open a term for a member (central's admin): kind and start date."""
    member = get_member_or_404(member_id)
    if not _can_assign():
        abort(403, "Chỉ quản trị tại trung tâm được giao chức vụ.")
    form = {k: (request.form.get(k) or "").strip() for k in ("kind", "start_on", "note")}
    errors = {}
    if request.method == "GET":
        form = {"kind": "chi_uy_vien", "start_on": local_today().strftime("%d/%m/%Y"), "note": ""}
    else:
        try:
            start = parse_date(form["start_on"])
            if start is None:
                errors["start_on"] = "Vui lòng nhập ngày bắt đầu nhiệm kỳ (dd/mm/yyyy)."
        except ValueError as exc:
            errors["start_on"], start = str(exc), None
        if not errors:
            try:
                assign_position(member, form["kind"], start, form["note"])
                return _done(url_for("members.member_view", member_id=member.id))
            except ValidationError as exc:
                errors.update(exc.errors)
    return render_template("members/position.html", member=member, form=form, errors=errors,
                           position_kinds=POSITION_KINDS), (422 if errors else 200)


@bp.route("/positions/<position_id>/end", methods=("POST",))
@login_required
def position_end(position_id: str):
    """Close a term today (or on the date given)."""
    term = Position.get_or_none((Position.id == position_id) & Position.deleted_at.is_null())
    if term is None:
        abort(404)
    member = get_member_or_404(term.member_id)
    if not _can_assign():
        abort(403, "Chỉ quản trị tại trung tâm được kết thúc chức vụ.")
    try:
        end = parse_date(request.form.get("end_on")) or local_today()
        end_position(term, end)
    except (ValueError, ValidationError) as exc:
        abort(422, "Không kết thúc được nhiệm kỳ: " + (
            "; ".join(exc.errors.values()) if isinstance(exc, ValidationError) else str(exc)))
    return redirect(url_for("members.member_view", member_id=member.id), 303)


# -- roster import ---------------------------------------------------------------------------

def _import_cells() -> dict[str, Cell]:
    """Cell code -> cell, for the cells this user may import into."""
    return {c.code: c for c in readable_cells() if can_edit_members(c)}


@bp.route("/members/import", methods=("GET", "POST"))
@login_required
def roster_import():
    """Upload an XLSX or CSV roster; answer the preview (nothing is written yet)."""
    cells = _import_cells()
    if not cells:
        abort(403)
    error = ""
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            error = "Vui lòng chọn tệp danh sách (.xlsx hoặc .csv)."
        else:
            try:
                rows = read_table(upload.filename, read_upload(upload, MAX_UPLOAD_BYTES))
            except (RosterError, UploadError) as exc:
                error = str(exc)
            else:
                # Uploaded rosters hold personal data: keep them only as long as a preview needs.
                ImportJob.delete().where((ImportJob.created_at < utcnow() - dt.timedelta(days=7))
                                         & (ImportJob.status != "running")).execute()
                job = ImportJob.create(user_id=current_user.id, filename=upload.filename[:200],
                                       rows_json=json.dumps(rows, ensure_ascii=False))
                url = url_for("members.import_view", job_id=job.id)
                if htmx:
                    return "", 204, {"HX-Redirect": url}
                return redirect(url, 303)
    return render_template("members/import.html", error=error, cells=cells, columns=COLUMNS), (422 if error else 200)


def _get_job_or_404(job_id: str) -> ImportJob:
    job = ImportJob.get_or_none(ImportJob.id == job_id)
    if job is None:
        abort(404)
    if job.user_id != current_user.id:
        abort(403)
    return job


@bp.route("/members/import/<job_id>")
@login_required
def import_view(job_id: str):
    """The preview: every row with its messages; the apply button only when all rows are valid."""
    job = _get_job_or_404(job_id)
    if job.status in ("running", "applied", "failed"):
        # Re-checking an applied file would flag every card number as already used: show the outcome.
        with _PROGRESS_LOCK:
            done, total, error = _PROGRESS.get(job.id, (0, len(job.rows), ""))
        return render_template("members/import_status.html", job=job, done=done, total=total, error=error)
    results = validate_rows(job.rows, _import_cells())
    return render_template("members/import_preview.html", job=job, results=results,
                           bad=sum(1 for r in results if not r.ok), statuses=MEMBER_STATUSES,
                           position_kinds=POSITION_KINDS, genders=GENDERS)


@bp.route("/members/import/<job_id>/apply", methods=("POST",))
@login_required
def import_apply(job_id: str):
    """Create every member of the file in one transaction, re-checked now; all or nothing."""
    job = _get_job_or_404(job_id)
    if job.status in ("applied", "running"):
        return redirect(url_for("members.import_view", job_id=job.id), 303)
    results = validate_rows(job.rows, _import_cells())
    bad = sum(1 for r in results if not r.ok)
    if not bad and len(results) > int(current_app.config.get("IMPORT_BACKGROUND_ROWS", IMPORT_BACKGROUND_ROWS)):
        job.status = "running"
        job.save()
        _set_progress(job.id, 0, len(results), "")
        worker = threading.Thread(target=_apply_in_background, daemon=True,
                                  args=(job.id, results, current_user.id, current_user.full_name or current_user.username))
        worker.start()
        return redirect(url_for("members.import_view", job_id=job.id), 303)
    try:
        created = apply_rows(results)
    except ValidationError as exc:
        return render_template("members/import_preview.html", job=job, results=results, bad=bad,
                               statuses=MEMBER_STATUSES, position_kinds=POSITION_KINDS, genders=GENDERS,
                               apply_error=exc.errors.get("rows", str(exc))), 422
    job.status, job.created_count = "applied", len(created)
    job.save()
    flash(f"Đã nhập {len(created)} đảng viên từ tệp {job.filename}.", "info")
    return redirect(url_for("members.member_list", status=""), 303)


def _set_progress(job_id: str, done: int, total: int, error: str) -> None:
    with _PROGRESS_LOCK:
        _PROGRESS[job_id] = (done, total, error)


def _apply_in_background(job_id: str, results, user_id: str, user_name: str) -> None:
    """Apply a long import on its own connection, reporting progress; record the outcome on the job."""
    with db.connection_context(), acting_as(user_id, user_name):
        total = len(results)
        try:
            created = apply_rows(results, progress=lambda done, _total: _set_progress(job_id, done, total, ""))
        except Exception as exc:  # the transaction rolled back: nothing was written
            message = "; ".join(exc.errors.values()) if isinstance(exc, ValidationError) else "Lỗi ngoài ý muốn."
            _set_progress(job_id, 0, total, message)
            ImportJob.update(status="failed").where(ImportJob.id == job_id).execute()
            return
        ImportJob.update(status="applied", created_count=len(created)).where(ImportJob.id == job_id).execute()
        _set_progress(job_id, len(created), total, "")


@bp.route("/members/import/<job_id>/progress")
@login_required
def import_progress(job_id: str):
    """The progress fragment: polled every second while running; 286 stops the polling when done."""
    job = _get_job_or_404(job_id)
    with _PROGRESS_LOCK:
        done, total, error = _PROGRESS.get(job.id, (0, len(job.rows), ""))
    body = render_template("members/_import_progress.html", job=job, done=done, total=total, error=error)
    finished = job.status in ("applied", "failed")
    return body, (286 if finished and htmx else 200)
