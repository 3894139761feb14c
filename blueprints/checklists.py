"""Checklist templates at central: list, version history, the htmx editor, preview, publish, XLSX.

Design: every editor action answers the re-rendered editor fragment (`_editor.html`) for htmx and
a 303 back to the version page otherwise, so the screen always shows the stored truth. Item and
section forms answer 422 with the form fragment and what was typed when invalid. Only an admin at
central writes; everyone signed in may read and preview. Domain work (copying, publishing,
validation, XLSX) is in models/checklists.py and models/checklist_xlsx.py; views only call it.
"""
from __future__ import annotations

import io

from flask import Blueprint, abort, current_app, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required

from models import Cell, Meeting, ValidationError, db
from models.checklists import (
    ANSWER_ROLES,
    COMPUTED_SOURCES,
    ITEM_TYPES,
    TEMPLATE_KINDS,
    VERSION_STATUSES,
    AnswerSet,
    ChecklistTemplate,
    TemplateItem,
    TemplateSection,
    TemplateVersion,
    answer_set_for,
    answer_set_id_for,
    answers_by_code,
    apply_item_form,
    item_form,
    move,
    new_draft,
    pending_answer_set,
    publish,
    publish_errors,
    retire,
    set_answer,
    version_items,
    version_tree,
)
from models.base import local_today

from .access import get_meeting_or_404, held_here, readable_cells, role_required
from .web import htmx

bp = Blueprint("checklists", __name__, url_prefix="/checklists")


# -- loading ---------------------------------------------------------------------------------------

def get_template_or_404(template_id: str) -> ChecklistTemplate:
    """Load a live template."""
    template = ChecklistTemplate.get_or_none((ChecklistTemplate.id == template_id) & ChecklistTemplate.deleted_at.is_null())
    if template is None:
        abort(404)
    return template


def get_version_or_404(version_id: str, write: bool = False) -> TemplateVersion:
    """Load a live version; for a write it must be a draft and the user an admin at central."""
    version = TemplateVersion.get_or_none((TemplateVersion.id == version_id) & TemplateVersion.deleted_at.is_null())
    if version is None:
        abort(404)
    if write:
        require_editor()
        if version.status != "draft":
            abort(403, "Phiên bản đã ban hành không được sửa; hãy tạo phiên bản mới.")
    return version


def get_section_or_404(section_id: str, write: bool = False) -> TemplateSection:
    """Load a live section (and check its version is writable when asked)."""
    section = TemplateSection.get_or_none((TemplateSection.id == section_id) & TemplateSection.deleted_at.is_null())
    if section is None:
        abort(404)
    get_version_or_404(section.version_id, write=write)
    return section


def get_item_or_404(item_id: str, write: bool = False) -> TemplateItem:
    """Load a live item (and check its version is writable when asked)."""
    item = TemplateItem.get_or_none((TemplateItem.id == item_id) & TemplateItem.deleted_at.is_null())
    if item is None:
        abort(404)
    get_version_or_404(item.version_id, write=write)
    return item


def can_edit() -> bool:
    """True for an admin at central (templates are central's records)."""
    return current_user.is_authenticated and current_user.role == "admin" and current_app.config["ROLE"] == "central"


def require_editor() -> None:
    """403 unless the user may edit templates here."""
    if not current_user.is_authenticated or current_user.role != "admin":
        abort(403)
    if current_app.config["ROLE"] != "central":
        abort(403, "Mẫu phiếu chỉ được sửa tại trung tâm; nút này nhận qua đồng bộ.")


# -- rendering -------------------------------------------------------------------------------------

def editor_response(version: TemplateVersion, problems: list[str] | None = None, status: int = 200):
    """The editor fragment for htmx, or a redirect to the version page."""
    if not htmx:
        return redirect(url_for("checklists.version_view", version_id=version.id), 303)
    # Forms inside the editor target themselves; the answer always replaces the whole editor.
    headers = {"HX-Retarget": "#editor", "HX-Reswap": "outerHTML"}
    return render_template("checklists/_editor.html", **editor_context(version, problems)), status, headers


def editor_context(version: TemplateVersion, problems: list[str] | None = None) -> dict:
    """What the editor and preview templates need."""
    tree = version_tree(version)
    return dict(version=version, template=version.template, tree=tree, problems=problems or [],
                points_total=sum(i.points for _s, items in tree for i in items),
                editable=version.status == "draft" and can_edit(), item_types=ITEM_TYPES,
                computed_sources=COMPUTED_SOURCES, statuses=VERSION_STATUSES)


def form_response(template_name: str, page: str, status: int, **context):
    """A form: its fragment for htmx, else the full page that includes it."""
    return render_template(template_name if htmx else page, **context), status


# -- templates and versions ------------------------------------------------------------------------

@bp.route("/")
@login_required
def template_index():
    """Every template with its versions and their status."""
    order = list(TEMPLATE_KINDS)
    templates = sorted(ChecklistTemplate.live(), key=lambda t: (
        order.index(t.kind) if t.kind in order else len(order), t.name))
    versions: dict[str, list] = {}
    for v in TemplateVersion.live().order_by(TemplateVersion.number.desc()):
        versions.setdefault(v.template_id, []).append(v)
    return render_template("checklists/index.html", templates=templates, versions=versions, kinds=TEMPLATE_KINDS,
                           statuses=VERSION_STATUSES, can_edit=can_edit())


@bp.route("/new", methods=("GET", "POST"))
@role_required("admin")
def template_new():
    """Create a template and its empty first draft."""
    require_editor()
    form = {"code": request.form.get("code", ""), "name": request.form.get("name", ""),
            "kind": request.form.get("kind", "thuong_ky"), "total_points": request.form.get("total_points", "100")}
    errors: dict[str, str] = {}
    if request.method == "POST":
        template = ChecklistTemplate(code=form["code"].strip(), name=form["name"].strip(), kind=form["kind"])
        try:
            total = float(form["total_points"].replace(",", "."))
        except ValueError:
            errors["total_points"] = "Tổng điểm phải là một số (0 nếu là danh mục không chấm điểm)."
            total = 0
        if ChecklistTemplate.get_or_none(ChecklistTemplate.code == template.code):
            errors["code"] = "Mã mẫu này đã có."
        if not errors:
            try:
                with db.atomic():
                    template.save()
                    draft = new_draft(template, total_points=total)
                target = url_for("checklists.version_view", version_id=draft.id)
                # htmx follows a 303 and would draw the next page inside the form: navigate instead.
                return ("", 204, {"HX-Redirect": target}) if htmx else redirect(target, 303)
            except ValidationError as exc:
                errors.update(exc.errors)
    return form_response("checklists/_template_form.html", "checklists/new.html", 422 if errors else 200,
                         form=form, errors=errors, kinds=TEMPLATE_KINDS)


@bp.route("/<template_id>")
@login_required
def template_view(template_id: str):
    """A template's version history: which is published, which are drafts or retired."""
    template = get_template_or_404(template_id)
    versions = list(TemplateVersion.live().where(TemplateVersion.template == template.id)
                    .order_by(TemplateVersion.number.desc()))
    return render_template("checklists/template.html", template=template, versions=versions,
                           statuses=VERSION_STATUSES, can_edit=can_edit(),
                           has_draft=any(v.status == "draft" for v in versions))


@bp.route("/<template_id>/versions", methods=("POST",))
@role_required("admin")
def version_new(template_id: str):
    """Start a new draft as a copy of the latest version."""
    require_editor()
    template = get_template_or_404(template_id)
    try:
        draft = new_draft(template)
    except ValidationError:
        # A draft already exists: open it rather than fork the numbering.
        draft = TemplateVersion.live().where((TemplateVersion.template == template.id)
                                             & (TemplateVersion.status == "draft")).get()
    target = url_for("checklists.version_view", version_id=draft.id)
    if htmx:
        return "", 204, {"HX-Redirect": target}
    return redirect(target, 303)


@bp.route("/versions/<version_id>")
@login_required
def version_view(version_id: str):
    """A version: the editor for a draft (admin at central), else a read-only view."""
    version = get_version_or_404(version_id)
    return render_template("checklists/version.html", **editor_context(version))


@bp.route("/versions/<version_id>/preview")
@login_required
def version_preview(version_id: str):
    """The sheet exactly as the tablet shows it (controls inert: nothing is saved)."""
    from models.rules import rule_set_for
    from models.scoring import score_sheet

    version = get_version_or_404(version_id)
    rules = rule_set_for(local_today())
    score = score_sheet(version_items(version), {}, {}, rules.params if rules else {})
    template_name = "checklists/_sheet.html" if htmx else "checklists/preview.html"
    return render_template(template_name, answer_set=None, answers={}, score=score,
                           results={r.code: r for r in score.items}, writable=True, role="self",
                           roles=ANSWER_ROLES, other_score=None, **editor_context(version))


@bp.route("/versions/<version_id>/settings", methods=("POST",))
@role_required("admin")
def version_settings(version_id: str):
    """Change a draft's total points and notes."""
    version = get_version_or_404(version_id, write=True)
    try:
        version.total_points = float(request.form.get("total_points", "").replace(",", "."))
    except ValueError:
        return editor_response(version, ["Tổng điểm của phiếu phải là một số."], 422)
    version.notes = request.form.get("notes", "").strip()
    try:
        version.save()
    except ValidationError as exc:
        return editor_response(TemplateVersion.get_by_id(version.id), list(exc.errors.values()), 422)
    return editor_response(version)


@bp.route("/versions/<version_id>/publish", methods=("POST",))
@role_required("admin")
def version_publish(version_id: str):
    """Publish a draft after checking points, sections and codes; 422 with the reasons otherwise."""
    version = get_version_or_404(version_id, write=True)
    problems = publish_errors(version)
    if problems:
        return editor_response(version, problems, 422) if htmx else (
            render_template("checklists/version.html", **editor_context(version, problems)), 422)
    publish(version)
    # The previous published version stops being offered for new answers; its answers keep it.
    for older in TemplateVersion.live().where((TemplateVersion.template == version.template_id)
                                              & (TemplateVersion.status == "published")
                                              & (TemplateVersion.id != version.id)):
        retire(older)
    target = url_for("checklists.version_view", version_id=version.id)
    return ("", 204, {"HX-Redirect": target}) if htmx else redirect(target, 303)


# -- sections --------------------------------------------------------------------------------------

@bp.route("/versions/<version_id>/sections", methods=("POST",))
@role_required("admin")
def section_new(version_id: str):
    """Add a section at the end of a draft."""
    version = get_version_or_404(version_id, write=True)
    title = request.form.get("title", "").strip()
    position = TemplateSection.live().where(TemplateSection.version == version.id).count() + 1
    try:
        TemplateSection.create(version=version.id, title=title, position=position)
    except ValidationError as exc:
        return editor_response(version, list(exc.errors.values()), 422)
    return editor_response(version)


@bp.route("/sections/<section_id>", methods=("GET", "POST"))
@role_required("admin")
def section_edit(section_id: str):
    """Rename a section (form fragment; 422 keeps what was typed)."""
    section = get_section_or_404(section_id, write=True)
    errors: dict[str, str] = {}
    form = {"title": request.form.get("title", section.title)}
    if request.method == "POST":
        section.title = form["title"].strip()
        try:
            section.save()
            return editor_response(TemplateVersion.get_by_id(section.version_id))
        except ValidationError as exc:
            errors = exc.errors
    return form_response("checklists/_section_form.html", "checklists/section_edit.html", 422 if errors else 200,
                         section=section, form=form, errors=errors)


@bp.route("/sections/<section_id>/move", methods=("POST",))
@role_required("admin")
def section_move(section_id: str):
    """Move a section up or down."""
    section = get_section_or_404(section_id, write=True)
    siblings = list(TemplateSection.live().where(TemplateSection.version == section.version_id)
                    .order_by(TemplateSection.position, TemplateSection.created_at))
    move(siblings, section.id, -1 if request.form.get("direction") == "up" else 1)
    return editor_response(TemplateVersion.get_by_id(section.version_id))


@bp.route("/sections/<section_id>/delete", methods=("POST",))
@role_required("admin")
def section_delete(section_id: str):
    """Delete a section with its items (tombstones)."""
    section = get_section_or_404(section_id, write=True)
    with db.atomic():
        for item in TemplateItem.live().where(TemplateItem.section == section.id):
            item.soft_delete()
        section.soft_delete()
    return editor_response(TemplateVersion.get_by_id(section.version_id))


# -- items -----------------------------------------------------------------------------------------

@bp.route("/sections/<section_id>/items/new", methods=("GET", "POST"))
@role_required("admin")
def item_new(section_id: str):
    """Add an item at the end of a section (form fragment; 422 keeps what was typed)."""
    section = get_section_or_404(section_id, write=True)
    form = item_form(None) if request.method == "GET" else _posted_item_form()
    errors: dict[str, str] = {}
    if request.method == "POST":
        position = TemplateItem.live().where(TemplateItem.section == section.id).count() + 1
        item = TemplateItem(version=section.version_id, section=section.id, position=position)
        errors = apply_item_form(item, form)
        if not errors:
            return editor_response(TemplateVersion.get_by_id(section.version_id))
    return form_response("checklists/_item_form.html", "checklists/item_edit.html", 422 if errors else 200,
                         section=section, item=None, form=form, errors=errors,
                         item_types=ITEM_TYPES, computed_sources=COMPUTED_SOURCES)


@bp.route("/items/<item_id>", methods=("GET", "POST"))
@role_required("admin")
def item_edit(item_id: str):
    """Edit an item (form fragment; 422 keeps what was typed)."""
    item = get_item_or_404(item_id, write=True)
    form = item_form(item) if request.method == "GET" else _posted_item_form()
    errors: dict[str, str] = {}
    if request.method == "POST":
        errors = apply_item_form(item, form)
        if not errors:
            return editor_response(TemplateVersion.get_by_id(item.version_id))
    section = TemplateSection.get_by_id(item.section_id)
    return form_response("checklists/_item_form.html", "checklists/item_edit.html", 422 if errors else 200,
                         section=section, item=item, form=form, errors=errors,
                         item_types=ITEM_TYPES, computed_sources=COMPUTED_SOURCES)


@bp.route("/items/<item_id>/move", methods=("POST",))
@role_required("admin")
def item_move(item_id: str):
    """Move an item up or down within its section."""
    item = get_item_or_404(item_id, write=True)
    siblings = list(TemplateItem.live().where(TemplateItem.section == item.section_id)
                    .order_by(TemplateItem.position, TemplateItem.created_at))
    move(siblings, item.id, -1 if request.form.get("direction") == "up" else 1)
    return editor_response(TemplateVersion.get_by_id(item.version_id))


@bp.route("/items/<item_id>/delete", methods=("POST",))
@role_required("admin")
def item_delete(item_id: str):
    """Delete an item (tombstone) and close the gap in the numbering."""
    item = get_item_or_404(item_id, write=True)
    item.soft_delete()
    return editor_response(TemplateVersion.get_by_id(item.version_id))


def _posted_item_form() -> dict[str, str]:
    """The item fields from the posted form, as typed."""
    keys = ("code", "text", "type", "points", "required", "allow_na", "help_text", "source", "choices",
            "computed_source", "min_value")
    return {key: request.form.get(key, "") for key in keys}


# -- XLSX ------------------------------------------------------------------------------------------

@bp.route("/versions/<version_id>/export.xlsx")
@login_required
def version_export(version_id: str):
    """Download a version as an Excel file (one row per item)."""
    from models.checklist_xlsx import export_version

    version = get_version_or_404(version_id)
    name = f"{version.template.code}-phien-ban-{version.number}.xlsx"
    return send_file(io.BytesIO(export_version(version)), as_attachment=True, download_name=name,
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.route("/import", methods=("GET", "POST"))
@role_required("admin")
def template_import():
    """Upload an Excel file: a new template (or a new draft of one) or the list of row problems."""
    from models.checklist_xlsx import MAX_UPLOAD_BYTES, import_workbook
    from models.uploads import UploadError, read_upload

    require_editor()
    errors: list[str] = []
    if request.method == "POST":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            errors = ["Vui lòng chọn tệp Excel (.xlsx)."]
        else:
            try:
                result = import_workbook(read_upload(upload, MAX_UPLOAD_BYTES))
            except UploadError as exc:
                errors = [str(exc)]
            else:
                if not result.errors:
                    return redirect(url_for("checklists.version_view", version_id=result.version.id), 303)
                errors = result.errors
    return render_template("checklists/import.html", errors=errors), (422 if errors else 200)


# -- filling a sheet for a meeting (the tablet's "Chấm điểm" step) ---------------------------------

sheets_bp = Blueprint("sheets", __name__)


def _started_answer_set(answer_set_id: str, item_id: str) -> AnswerSet | None:
    """On the first tap of a sheet opened but not started: make its answer set (None when it exists)."""
    if AnswerSet.get_or_none(AnswerSet.id == answer_set_id) is not None:
        return None
    item = TemplateItem.get_or_none(TemplateItem.id == item_id)
    if item is None:
        abort(404)
    kind = item.version.template.kind
    meeting_ids = (Meeting.select(Meeting.id).where(Meeting.deleted_at.is_null())
                   .where(Meeting.cell.in_(readable_cells().select(Cell.id))))
    for (meeting_id,) in meeting_ids.tuples():
        for role in ANSWER_ROLES:
            if answer_set_id_for(meeting_id, kind, role) == answer_set_id:
                meeting = get_meeting_or_404(meeting_id, write=role != "supervisor")
                if not may_fill(meeting, role):
                    abort(403)
                answer_set = answer_set_for(meeting, kind, role, by=current_user.username)
                if answer_set is None:
                    abort(404)
                return answer_set
    abort(404)


def get_answer_set_or_404(answer_set_id: str) -> AnswerSet:
    """Load a live answer set the user may write: the cell's own via its meeting, a supervisor's by role."""
    answer_set = AnswerSet.get_or_none((AnswerSet.id == answer_set_id) & AnswerSet.deleted_at.is_null())
    if answer_set is None:
        abort(404)
    if answer_set.role == "supervisor":
        meeting = get_meeting_or_404(answer_set.meeting_id)
        if current_user.role not in ("supervisor", "admin"):
            abort(403)
        if not may_fill(meeting, "supervisor"):
            abort(403, "Phiếu giám sát ghi tại nút giữ chi bộ (nơi họp); tại đây chỉ được xem.")
        from models.supervision import SupervisionVisit

        if SupervisionVisit.live().where((SupervisionVisit.answer_set == answer_set.id)
                                         & SupervisionVisit.confirmed_at.is_null(False)).exists():
            abort(403, "Biên bản giám sát đã ký xác nhận: phiếu giám sát không sửa được nữa.")
    else:
        get_meeting_or_404(answer_set.meeting_id, write=True)
    return answer_set


def sheet_context(meeting, answer_set: AnswerSet | None, kind: str, role: str) -> dict:
    """What the answer sheet needs: the version's tree, answers, score, and the other role's score."""
    from models.scoring import answers_with_prefill, score_answer_set

    context = dict(meeting=meeting, answer_set=answer_set, kind=kind, role=role, kinds=TEMPLATE_KINDS,
                   roles=ANSWER_ROLES, computed_sources=COMPUTED_SOURCES, other=None, other_score=None)
    if answer_set is None:
        return context
    version = TemplateVersion.get_by_id(answer_set.version_id)
    score = score_answer_set(answer_set)
    other_role = "self" if role == "supervisor" else "supervisor"
    other = (AnswerSet.live().where((AnswerSet.meeting == meeting.id) & (AnswerSet.role == other_role)
                                    & (AnswerSet.version == version.id)).first())
    context.update(version=version, template=version.template, tree=version_tree(version),
                   answers=answers_with_prefill(answer_set), score=score,
                   results={r.code: r for r in score.items}, other=other,
                   other_score=score_answer_set(other) if other else None)
    if context["other_score"]:
        context["other_results"] = {r.code: r for r in context["other_score"].items}
    return context


def may_fill(meeting, role: str) -> bool:
    """Whether the user may start or change this role's sheet for the meeting."""
    if role == "supervisor":
        # The supervisor's record is written on the node holding the meeting (see models/supervision.py).
        return current_user.role in ("supervisor", "admin") and held_here(meeting.cell)
    return current_user.can_write_cell(meeting.cell_id) and held_here(meeting.cell)


@sheets_bp.route("/meetings/<meeting_id>/sheets/<kind>")
@login_required
def sheet_view(meeting_id: str, kind: str):
    """A meeting's sheet of one kind: made with the newest published version the first time, then kept."""
    meeting = get_meeting_or_404(meeting_id)
    if kind not in TEMPLATE_KINDS:
        abort(404)
    role = request.args.get("role", "self")
    if role not in ANSWER_ROLES:
        abort(404)
    # Scoring opens on the meeting day; the preparation sheet is filled before it.
    writable = may_fill(meeting, role) and (kind == "chuan_bi" or meeting.held_on <= local_today())
    answer_set = (AnswerSet.live().join(TemplateVersion).join(ChecklistTemplate)
                  .where((AnswerSet.meeting == meeting.id) & (AnswerSet.role == role)
                         & (ChecklistTemplate.kind == kind)).first())
    if answer_set is None and writable:
        # Nothing is written on opening: the first tap makes the set (see answer_set_id_for).
        answer_set = pending_answer_set(meeting, kind, role)
    return render_template("checklists/fill.html", writable=writable, **sheet_context(meeting, answer_set, kind, role))


@sheets_bp.route("/answer-sets/<answer_set_id>/items/<item_id>", methods=("POST",))
@login_required
def answer_set_item(answer_set_id: str, item_id: str):
    """Save one answer (one tap); answer the question fragment and the score bar (out of band)."""
    answer_set = _started_answer_set(answer_set_id, item_id) or get_answer_set_or_404(answer_set_id)
    item = TemplateItem.get_or_none((TemplateItem.id == item_id) & (TemplateItem.version == answer_set.version_id))
    if item is None:
        abort(404)
    na = request.form.get("na") == "1"
    raw = request.form.get("value")
    if item.type == "multi_choice" and request.form.get("toggle"):
        current = answers_by_code(answer_set).get(item.code)
        chosen = list(current.value or []) if current and not current.na else []
        toggle = request.form["toggle"]
        raw = [v for v in chosen if v != toggle] if toggle in chosen else chosen + [toggle]
    error = ""
    meeting = Meeting.get_by_id(answer_set.meeting_id)
    try:
        if answer_set.version.template.kind != "chuan_bi" and meeting.held_on > local_today():
            raise ValidationError({"value": f"Chưa đến ngày sinh hoạt ({meeting.held_on:%d/%m/%Y}): phiếu chấm điểm mở từ ngày đó."})
        set_answer(answer_set, item, raw, na=na)
    except ValidationError as exc:
        error = " ".join(exc.errors.values())
    if not htmx:
        return redirect(url_for("sheets.sheet_view", meeting_id=meeting.id,
                                kind=answer_set.version.template.kind, role=answer_set.role), 303)
    context = sheet_context(meeting, answer_set, answer_set.version.template.kind, answer_set.role)
    return render_template("checklists/_answer_update.html", item=item, error=error, writable=True,
                           **context), (422 if error else 200)
