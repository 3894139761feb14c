"""The organisation: the cells a user may see, one cell's page (roll, committee, charter warnings,
meetings, change history), and the tree of Party committees and cells that central's admin edits.

Cells and committees are keyed by uuid, so a rename or a move (to another committee or another
node) is an ordinary edit whose old and new values stay in the audit trail ("Lịch sử thay đổi").
"""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from peewee import fn

from models import Attendance, Cell, Meeting, Member, Node, Organisation, RuleSet, ValidationError
from models.audit import history
from models.charter import cell_warnings, committee
from models.meetings import MEETING_KINDS, MEETING_STATUSES, attendance_rate, rate_passes
from models.planning import day_warning, year_compliance
from models.members import MEMBER_STATUSES, POSITIONS, roll_for_cell
from models.org import CELL_TYPES, ORG_LEVELS
from models.roster import parse_date
from models.base import local_today

from .access import can_edit_members, central_admin_required, get_cell_or_404, held_here, readable_cells

bp = Blueprint("cells", __name__)


@bp.route("/")
@login_required
def index():
    """Home: the cells this user may read, each with its roll size and last meeting."""
    cells = list(readable_cells().order_by(Cell.code))
    # Members do not see charter warnings about their comrades; everyone else sees the count per cell.
    warnings = {c.id: len(cell_warnings(c)) for c in cells} if current_user.role != "member" else {}
    return render_template("cells/index.html", cells=cells, overview=cell_overview(cells), warnings=warnings)


@bp.route("/cells/<cell_id>")
@login_required
def cell_view(cell_id: str):
    """One cell: its roll and one year of meetings (the calendar, with what falls short of the rules)."""
    cell = get_cell_or_404(cell_id)
    years = sorted({d.year for (d,) in Meeting.live().select(Meeting.held_on).where(Meeting.cell == cell.id).tuples()}
                   | {local_today().year}, reverse=True)
    year = request.args.get("year", type=int) or local_today().year
    meetings = list(Meeting.live().where((Meeting.cell == cell.id) & (Meeting.held_on >= dt.date(year, 1, 1))
                                         & (Meeting.held_on <= dt.date(year, 12, 31))).order_by(Meeting.held_on.desc()))
    tallies = meeting_tallies(meetings)
    rates = meeting_rates(meetings, tallies)
    compliance = year_compliance(cell, year, meetings, tallies)
    return render_template(
        "cells/view.html", cell=cell, roll=roll_for_cell(cell.id), meetings=meetings, years=years, year=year,
        compliance=compliance, meeting_statuses=MEETING_STATUSES, day_warning=day_warning,
        rates=rates, kinds=MEETING_KINDS, statuses=MEMBER_STATUSES,
        positions=POSITIONS, can_write=current_user.can_write_cell(cell.id) and held_here(cell),
        warnings=cell_warnings(cell) if current_user.role != "member" else [],
        committee=committee(cell.id), can_edit_members=can_edit_members(cell),
        can_edit_cell=current_user.role == "admin" and current_app.config["ROLE"] == "central",
        cell_types=CELL_TYPES, history=history("cell", cell.id) if current_user.role != "member" else [],
    )


# -- the organisation tree (central's admin edits; supervisors and admins read) ---------------

@bp.route("/org")
@login_required
def org_tree():
    """The Party committees with their intermediate levels and cells, as a tree."""
    if current_user.role not in ("admin", "supervisor"):
        abort(403)
    orgs = list(Organisation.live().order_by(Organisation.name))
    cells = list(Cell.live().order_by(Cell.code))
    children: dict = {}
    for o in orgs:
        children.setdefault(o.parent_id, []).append(o)
    cells_of: dict = {}
    for c in cells:
        cells_of.setdefault(c.organisation_id, []).append(c)
    return render_template("cells/org.html", roots=children.get(None, []), children=children,
                           cells_of=cells_of, levels=ORG_LEVELS, cell_types=CELL_TYPES,
                           can_edit=current_user.role == "admin" and current_app.config["ROLE"] == "central")


def _org_form(org: Organisation | None) -> dict:
    if request.method == "POST":
        return {k: (request.form.get(k) or "").strip() for k in ("name", "short_name", "level", "parent")}
    if org is None:
        return {"level": "trung_gian", "parent": request.args.get("parent", "")}
    return {"name": org.name, "short_name": org.short_name, "level": org.level, "parent": org.parent_id or ""}


@bp.route("/org/new", methods=("GET", "POST"), endpoint="organisation_new")
@bp.route("/org/<org_id>/edit", methods=("GET", "POST"))
@central_admin_required
def organisation_edit(org_id: str | None = None):
    """Add or edit a Party committee (grassroots or intermediate); renames keep their history."""
    org = None
    if org_id:
        org = Organisation.get_or_none((Organisation.id == org_id) & Organisation.deleted_at.is_null())
        if org is None:
            abort(404)
    form, errors = _org_form(org), {}
    parents = [o for o in Organisation.live().order_by(Organisation.name) if not org or o.id != org.id]
    if request.method == "POST":
        target = org or Organisation()
        target.name, target.short_name, target.level = form["name"], form["short_name"], form["level"]
        target.parent = form["parent"] or None
        if target.parent_id and org and _is_descendant(target.parent_id, org.id):
            errors["parent"] = "Không thể đặt tổ chức dưới chính cấp dưới của nó."
        if not errors:
            try:
                target.save()
                return redirect(url_for("cells.org_tree"), 303)
            except ValidationError as exc:
                errors.update(exc.errors)
    return render_template("cells/org_form.html", org=org, form=form, errors=errors, parents=parents,
                           levels=ORG_LEVELS, history=history("organisation", org.id) if org else []), (422 if errors else 200)


def _is_descendant(candidate_id: str, ancestor_id: str) -> bool:
    """True when `candidate_id` lies under `ancestor_id` (or is it): a move there would make a loop."""
    seen = set()
    current = candidate_id
    while current and current not in seen:
        if current == ancestor_id:
            return True
        seen.add(current)
        row = Organisation.get_or_none(Organisation.id == current)
        current = row.parent_id if row else None
    return False


def _cell_form(cell: Cell | None) -> dict:
    if request.method == "POST":
        return {k: (request.form.get(k) or "").strip() for k in
                ("code", "name", "cell_type", "organisation", "node_id", "meeting_day", "active_from", "active_to")}
    if cell is None:
        return {"cell_type": "co_quan", "node_id": "central", "meeting_day": "5",
                "organisation": request.args.get("organisation", "")}
    return {"code": cell.code, "name": cell.name, "cell_type": cell.cell_type, "organisation": cell.organisation_id,
            "node_id": cell.node_id, "meeting_day": str(cell.meeting_day),
            "active_from": cell.active_from.strftime("%d/%m/%Y") if cell.active_from else "",
            "active_to": cell.active_to.strftime("%d/%m/%Y") if cell.active_to else ""}


@bp.route("/cells/new", methods=("GET", "POST"), endpoint="cell_new")
@bp.route("/cells/<cell_id>/edit", methods=("GET", "POST"))
@central_admin_required
def cell_edit(cell_id: str | None = None):
    """Add or edit a cell: code, name, type, committee, holding node, meeting day, active dates."""
    cell = None
    if cell_id:
        cell = Cell.get_or_none((Cell.id == cell_id) & Cell.deleted_at.is_null())
        if cell is None:
            abort(404)
    form, errors = _cell_form(cell), {}
    nodes = _node_choices()
    if cell is not None:
        nodes.setdefault(cell.node_id, cell.node_id)
    if request.method == "POST":
        target = cell or Cell()
        target.code, target.name, target.cell_type = form["code"].upper(), form["name"], form["cell_type"]
        target.organisation = form["organisation"] or None
        target.node_id = form["node_id"] or "central"
        if not Organisation.get_or_none((Organisation.id == (form["organisation"] or "")) & Organisation.deleted_at.is_null()):
            errors["organisation"] = "Vui lòng chọn tổ chức đảng cấp trên."
        if target.node_id not in nodes:
            errors["node_id"] = "Nút quản lý không hợp lệ."
        try:
            target.meeting_day = int(form["meeting_day"])
        except ValueError:
            errors["meeting_day"] = "Ngày sinh hoạt cố định phải là số từ 1 đến 28."
        for name in ("active_from", "active_to"):
            try:
                setattr(target, name, parse_date(form[name]))
            except ValueError as exc:
                errors[name] = str(exc)
        if not errors and target.active_from and target.active_to and target.active_to < target.active_from:
            errors["active_to"] = "Ngày ngừng hoạt động phải sau ngày bắt đầu."
        other = Cell.get_or_none((fn.UPPER(Cell.code) == target.code) & (Cell.id != (cell.id if cell else "")))
        if other is not None:
            errors["code"] = f"Mã chi bộ {target.code} đã dùng cho {other.name}."
        if not errors:
            try:
                target.save()
                return redirect(url_for("cells.cell_view", cell_id=target.id), 303)
            except ValidationError as exc:
                errors.update(exc.errors)
    return render_template("cells/cell_form.html", cell=cell, form=form, errors=errors, cell_types=CELL_TYPES,
                           organisations=list(Organisation.live().order_by(Organisation.name)),
                           nodes=nodes, history=history("cell", cell.id) if cell else []), (422 if errors else 200)


def _node_choices() -> dict[str, str]:
    """Node id -> label: central and every registered field node that is not revoked."""
    choices = {"central": "Trung tâm (Văn phòng Đảng ủy)"}
    for node in Node.select().where(Node.revoked_at.is_null()).order_by(Node.id):
        choices[node.id] = f"{node.id} · {node.name}" if node.name else node.id
    return choices


def cell_overview(cells) -> dict:
    """Per cell: members counted for attendance, the last meeting held and the next one still open."""
    ids = [c.id for c in cells]
    counts = dict(
        Member.live().select(Member.cell, fn.COUNT(Member.id))
        .where(Member.cell.in_(ids) & Member.status.in_(("full", "probationary", "temp_here")))
        .group_by(Member.cell).tuples()
    )
    # Held = ended or signed; the next one = not yet ended (a finished meeting is never "Buổi tới").
    held = _first_per_cell(ids, Meeting.status.in_(("ended", "closed")), Meeting.held_on.desc())
    upcoming = _first_per_cell(ids, Meeting.status.in_(("planned", "in_progress")), Meeting.held_on.asc())
    rates = meeting_rates(list(held.values()))
    return {cid: {"members": counts.get(cid, 0), "last": held.get(cid), "next": upcoming.get(cid),
                  "rate": rates.get(held[cid].id) if cid in held else None} for cid in ids}


def _first_per_cell(ids, condition, order) -> dict:
    """The first meeting of each cell in `order` among those matching `condition`."""
    first: dict = {}
    for meeting in Meeting.live().where(Meeting.cell.in_(ids) & condition).order_by(order):
        first.setdefault(meeting.cell_id, meeting)
        if len(first) == len(ids):
            break
    return first


def meeting_tallies(meetings) -> dict:
    """Meeting id -> {attendance status: count}, in one query."""
    if not meetings:
        return {}
    rows = (Attendance.live()
            .select(Attendance.meeting, Attendance.status, fn.COUNT(Attendance.id))
            .where(Attendance.meeting.in_([m.id for m in meetings]))
            .group_by(Attendance.meeting, Attendance.status).tuples())
    tallies: dict[str, dict[str, int]] = {}
    for meeting_id, status, count in rows:
        tallies.setdefault(meeting_id, {})[status] = count
    return tallies


def meeting_rates(meetings, tallies: dict | None = None) -> dict:
    """Attendance rate and verdict of each meeting from its recorded marks, in one query."""
    if not meetings:
        return {}
    tallies = tallies if tallies is not None else meeting_tallies(meetings)
    rule_sets = {r.id: r for r in RuleSet.select()}
    out = {}
    for m in meetings:
        t = tallies.get(m.id, {})
        marked = sum(t.values())
        rate = attendance_rate(t.get("present", 0), marked)
        out[m.id] = {"present": t.get("present", 0), "counted": marked, "rate": rate,
                     "passes": rate_passes(rate, rule_sets.get(m.rule_set_id))}
    return out
