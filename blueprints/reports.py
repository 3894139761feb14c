"""Consolidation screens: the dashboard (cells × months matrix, totals, charts), drill-down to the
meetings behind a number, year on year against baseline years, the five-year review pack (XLSX and
PDF, built in the background with progress), the annual rating evidence with the decided levels, and
a CSV of every table.

Views stay thin: the numbers come from models/consolidation.py (the rollup, refreshed from the change
log before each page) and the drill-down recomputes each meeting from its records with the cell
pages' functions. Central sees every cell; a field node only the cells it holds; a secretary only
their own cell. Members have no access (their comrades' attendance is not theirs to read).
"""
from __future__ import annotations

import datetime as dt
import io
import json
import threading

import click
from flask import Blueprint, abort, current_app, g, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from markupsafe import Markup

from models import Cell, db
from models.consolidation import (
    DRILL_METRICS, LEVEL_LABELS, MATRIX_STATES, METRIC_ROWS, Filters, Metrics, ReportJob,
    bands_table, compliance_matrix, decide_levels, drill_meeting_ids, five_year_pack, matrix_table,
    meeting_record_rows, metrics, month_series, month_totals, pack_tables, per_cell_table, rating_evidence, refresh, totals_table,
    years_table,
)
from models.meetings import MEETING_KINDS
from models.report_export import Table, bar_chart_svg, csv_bytes, fmt, pdf_bytes, xlsx_bytes
from models.rules import BAND_CODES, BAND_LABELS
from models.base import utcnow

from .access import readable_cells, role_required

bp = Blueprint("reports", __name__, url_prefix="/reports", cli_group="reports")

READERS = ("admin", "supervisor", "secretary")
PAGE_CELLS = 50
PAGE_MEETINGS = 20
FIRST_YEAR = 2000


def visible_cells():
    """The cells this viewer may count: readable ones, and on a field node only those it holds."""
    query = readable_cells()
    if current_app.config["ROLE"] == "field":
        query = query.where(Cell.node_id == current_app.config["NODE_ID"])
    return query.order_by(Cell.code)


def _int(name: str, low: int, high: int) -> int | None:
    """An integer query argument within bounds, else None."""
    value = request.args.get(name, type=int)
    return value if value is not None and low <= value <= high else None


def read_filters() -> tuple[Filters, list]:
    """The dashboard filters from the query string, and the cells they cover."""
    today = dt.date.today()
    year = _int("year", FIRST_YEAR, today.year + 1) or today.year
    cells = list(visible_cells().namedtuples())
    g.report_cells = cells
    cell_id = request.args.get("cell", "")
    code = request.args.get("cell_code", "").strip().upper()
    if code and not cell_id:
        # A national list is too long for a drop-down: the filter then takes the cell's code.
        cell_id = next((c.id for c in cells if c.code.upper() == code), "")
        if not cell_id:
            abort(404)
        g.cell_arg = cell_id
    if cell_id:
        chosen = [c for c in cells if c.id == cell_id]
        if not chosen:
            abort(404)
        cells = chosen
    kind = request.args.get("kind", "")
    # Every cell there is: no list of ids in the queries (a national list is thousands long).
    everything = (not cell_id and current_user.role in ("admin", "supervisor")
                  and current_app.config["ROLE"] == "central")
    filters = Filters(year=year, quarter=_int("quarter", 1, 4), month=_int("month", 1, 12),
                      cell_ids=None if everything else [c.id for c in cells], kind=kind if kind in MEETING_KINDS else None)
    return filters, cells


def _query(filters: Filters, **extra) -> dict:
    """The filters as URL arguments (for links that keep them)."""
    args = {"year": filters.year, "quarter": filters.quarter or "", "month": filters.month or "",
            "cell": _cell_arg(), "kind": filters.kind or ""}
    args.update(extra)
    return {k: v for k, v in args.items() if v not in ("", None)}


def _cell_arg() -> str:
    """The chosen cell's id (given as ?cell= or found from ?cell_code=)."""
    return g.get("cell_arg") or request.args.get("cell", "")


def _base_years(year: int) -> list[int]:
    """Baseline years from ?base=…, default the two years the source article compares with (2019, 2020)."""
    base = sorted({b for b in request.args.getlist("base", type=int) if FIRST_YEAR <= b <= year})
    return base or [b for b in (2019, 2020) if b < year] or [year - 1]


# Dashboard sections other features add: each takes (filters, metrics) and returns
# {"title", "columns", "rows"} or None. Supervision adds coverage and recommendations here.
def model_meetings_panel(filters: Filters, m: Metrics) -> dict:
    """Model meetings held in the period (Meeting.is_model)."""
    return {"title": "Sinh hoạt chi bộ mẫu", "columns": ["Chỉ tiêu", "Số liệu"],
            "rows": [["Buổi sinh hoạt mẫu đã tổ chức", int(m["model"])]], "drill": "model"}


def supervisor_scores_panel(filters: Filters, m: Metrics) -> dict:
    """Meetings the superior committee scored, with their bands."""
    return {"title": "Cấp ủy cấp trên chấm điểm", "columns": ["Chỉ tiêu", "Số liệu"],
            "rows": [["Buổi cấp trên chấm điểm", int(m["sup_scored"])], ["Điểm bình quân (%)", m.sup_avg]]
            + [[f"Xếp loại {BAND_LABELS[c]}", m.bands("sup")[c]] for c in BAND_CODES], "drill": "sup_scored"}


DASHBOARD_PANELS = [model_meetings_panel, supervisor_scores_panel]


@bp.route("/")
@role_required(*READERS)
def report_dashboard():
    """The consolidated dashboard for one year (and optional quarter, month, cell, kind)."""
    refresh()
    filters, cells = read_filters()
    today = dt.date.today()
    by_month = month_series(filters)
    total = metrics(filters)[()]
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    pages = max((len(cells) + PAGE_CELLS - 1) // PAGE_CELLS, 1)
    page = min(page, pages)
    shown = cells[(page - 1) * PAGE_CELLS: page * PAGE_CELLS]
    matrix = compliance_matrix(shown, filters.year, today)
    if filters.kind or filters.quarter or filters.month:
        totals_by_month = month_totals(cells, filters.year, today, filters.cell_ids)
    else:
        totals_by_month = month_totals(cells, filters.year, today, by_month=by_month)
    months = list(range(1, 13))
    chart = Markup(bar_chart_svg(
        f"Tỷ lệ đảng viên dự theo tháng, năm {filters.year}", [f"T{m}" for m in months],
        [("Tỷ lệ dự", [by_month[(m,)].attendance_rate if (m,) in by_month else None for m in months])]))
    band_chart = Markup(bar_chart_svg(
        f"Xếp loại buổi sinh hoạt năm {filters.year}", [BAND_LABELS[c] for c in BAND_CODES],
        [("Chi bộ tự chấm", [total.bands("self")[c] for c in BAND_CODES]),
         ("Cấp trên chấm", [total.bands("sup")[c] for c in BAND_CODES])],
        maximum=max([1] + [total.bands(w)[c] for w in ("self", "sup") for c in BAND_CODES]), unit=" buổi"))
    panels = [p for p in (panel(filters, total) for panel in DASHBOARD_PANELS) if p]
    all_cells = g.report_cells
    return render_template(
        "reports/dashboard.html", filters=filters, cells=shown, all_cells=all_cells, total=total,
        metric_rows=METRIC_ROWS, matrix=matrix, states=MATRIX_STATES, totals_by_month=totals_by_month,
        chart=chart, band_chart=band_chart, panels=panels, page=page, pages=pages, kinds=MEETING_KINDS,
        query=_query, fmt=fmt, band_labels=BAND_LABELS, band_codes=BAND_CODES, today=today,
        cell_arg=_cell_arg(), cell_count=len(cells))


@bp.route("/meetings")
@role_required(*READERS)
def report_meetings():
    """The meetings behind one number, each recomputed from its records."""
    refresh()
    filters, cells = read_filters()
    metric = request.args.get("metric", "held")
    if metric not in DRILL_METRICS:
        abort(404)
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    ids, count = drill_meeting_ids(filters, metric, PAGE_MEETINGS, (page - 1) * PAGE_MEETINGS)
    rows = meeting_record_rows(ids)
    if request.args.get("format") == "csv":
        ids, _count = drill_meeting_ids(filters, metric, 100000, 0)
        return _csv(_meetings_table(meeting_record_rows(ids, scores=True), DRILL_METRICS[metric]), "buoi-sinh-hoat")
    return render_template("reports/meetings.html", filters=filters, metric=metric, label=DRILL_METRICS[metric],
                           rows=rows, count=count, page=page, pages=max((count + PAGE_MEETINGS - 1) // PAGE_MEETINGS, 1),
                           query=_query, kinds=MEETING_KINDS, fmt=fmt, band_labels=BAND_LABELS)


def _meetings_table(rows: list[dict], title: str) -> Table:
    """Drill-down rows as a table."""
    table = Table(title, ["Ngày", "Chi bộ", "Loại", "Thời lượng (phút)", "Có mặt", "Điểm danh", "Tỷ lệ dự (%)",
                          "Đạt tỷ lệ dự", "Ý kiến", "Tự phê bình", "Phê bình", "Tự chấm (%)", "Cấp trên chấm (%)",
                          "Chưa đạt"])
    for r in rows:
        m = r["meeting"]
        table.rows.append([m.held_on, r["cell"].name, MEETING_KINDS.get(m.kind, m.kind), r["minutes"], r["present"],
                           r["marked"], r["rate"], r["passes"], r["speak"].total, r["speak"].by_kind.get("tu_phe_binh", 0),
                           r["speak"].by_kind.get("phe_binh", 0), r["self_pct"], r["sup_pct"], " ".join(r["flags"])])
    return table


@bp.route("/yoy")
@role_required(*READERS)
def report_yoy():
    """One year against baseline years, in total and per cell, with a chart."""
    refresh()
    filters, cells = read_filters()
    base = _base_years(filters.year)
    years = sorted(set(base) | {filters.year})
    found = metrics(filters, group_by=("year",), years=years)
    per_year = {y: found.get((y,), Metrics()) for y in years}
    table = years_table(per_year, years, base, f"Năm {filters.year} so với {', '.join(map(str, base))}")
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    pages = max((len(cells) + PAGE_CELLS - 1) // PAGE_CELLS, 1)
    shown = cells[(min(page, pages) - 1) * PAGE_CELLS: min(page, pages) * PAGE_CELLS]
    per_cell = {}
    if shown:
        sub = Filters(year=filters.year, quarter=filters.quarter, month=filters.month, cell_ids=[c.id for c in shown],
                      kind=filters.kind)
        per_cell = {(k[0], k[1]): v for k, v in metrics(sub, group_by=("cell_id", "year"), years=years).items()}
    cell_table = per_cell_table(shown, per_cell, years, "Từng chi bộ")
    if request.args.get("format") == "csv":
        which = request.args.get("table", "total")
        if which == "cells":
            per_all = {(k[0], k[1]): v for k, v in metrics(filters, group_by=("cell_id", "year"), years=years).items()}
            return _csv(per_cell_table(cells, per_all, years, "Từng chi bộ"), f"so-sanh-chi-bo-{filters.year}")
        return _csv(table, f"so-sanh-{filters.year}")
    labels = [str(y) for y in years]
    charts = [
        Markup(bar_chart_svg("Tỷ lệ đảng viên dự (%)", labels,
                             [("Tỷ lệ dự", [per_year[y].attendance_rate if y in per_year else None for y in years])],
                             highlight={str(b) for b in base})),
        Markup(bar_chart_svg("Đảng viên có mặt đã phát biểu (%)", labels,
                             [("Phát biểu", [per_year[y].participation if y in per_year else None for y in years])],
                             highlight={str(b) for b in base})),
        Markup(bar_chart_svg("Ý kiến tự phê bình và phê bình", labels,
                             [("Tự phê bình, phê bình", [per_year[y].criticism if y in per_year else None for y in years])],
                             maximum=max([1] + [per_year[y].criticism for y in years if y in per_year]), unit="",
                             highlight={str(b) for b in base})),
    ]
    return render_template("reports/yoy.html", filters=filters, base=base, years=years, table=table,
                           cell_table=cell_table, charts=charts, query=_query, fmt=fmt, kinds=MEETING_KINDS,
                           all_cells=g.report_cells, cell_arg=_cell_arg(), page=min(page, pages),
                           pages=pages)


def _csv(table: Table, name: str):
    """Send a table as a CSV download."""
    return send_file(io.BytesIO(csv_bytes(table)), as_attachment=True, download_name=f"{name}.csv",
                     mimetype="text/csv")


@bp.route("/export.csv")
@role_required(*READERS)
def report_csv():
    """A dashboard table as CSV (totals, bands, matrix, months)."""
    refresh()
    filters, cells = read_filters()
    which = request.args.get("table", "totals")
    total = metrics(filters)[()]
    if which == "totals":
        return _csv(totals_table(total, f"Tổng hợp năm {filters.year}"), f"tong-hop-{filters.year}")
    if which == "bands":
        return _csv(bands_table(total, f"Xếp loại năm {filters.year}"), f"xep-loai-{filters.year}")
    if which == "matrix":
        return _csv(matrix_table(cells, compliance_matrix(cells, filters.year, dt.date.today()), filters.year),
                    f"ma-tran-{filters.year}")
    if which == "months":
        by_month = metrics(filters, group_by=("month",))
        table = Table(f"Theo tháng năm {filters.year}", ["Tháng"] + [label for label, *_ in METRIC_ROWS])
        for month in range(1, 13):
            m = by_month.get((month,), Metrics())
            table.rows.append([f"{month}/{filters.year}"] + [get(m) for _l, get, _d, _u in METRIC_ROWS])
        return _csv(table, f"theo-thang-{filters.year}")
    abort(404)


# -- the five-year review pack ---------------------------------------------------------------------

def pack_years(end: int) -> list[int]:
    """The five years ending with `end`."""
    return list(range(end - 4, end + 1))


def build_pack(cells: list, end: int, title: str, progress=None) -> tuple[bytes, bytes]:
    """The pack's XLSX and PDF (pure over the rollup; progress(done, total) as it goes)."""
    years = pack_years(end)
    pack = five_year_pack(cells, years, title, progress=(lambda d, t: progress(d, t + 2)) if progress else None)
    tables = pack_tables(pack)
    subtitle = (f"Giai đoạn {years[0]}–{years[-1]} · {len(cells)} chi bộ · lập ngày "
                f"{dt.date.today():%d/%m/%Y}")
    xlsx = xlsx_bytes(f"{title} ({subtitle})", tables)
    if progress:
        progress(len(years) + 3, len(years) + 4)
    charts = [("Tỷ lệ đảng viên dự (%)", [str(y) for y in years], [pack.per_year[y].attendance_rate for y in years]),
              ("Đảng viên có mặt đã phát biểu (%)", [str(y) for y in years],
               [pack.per_year[y].participation for y in years])]
    pdf = pdf_bytes(title, subtitle, tables, charts)
    if progress:
        progress(len(years) + 4, len(years) + 4)
    return xlsx, pdf


def _run_pack(app, job_id: str, cell_ids: list[str], end: int, title: str) -> None:
    """Build a pack on its own connection, writing progress to the job row."""
    with app.app_context(), db.connection_context():
        try:
            cells = list(Cell.select().where(Cell.id.in_(cell_ids)).order_by(Cell.code))

            def progress(done, total):
                ReportJob.update(done=done, total=total).where(ReportJob.id == job_id).execute()

            xlsx, pdf = build_pack(cells, end, title, progress)
            ReportJob.update(status="done", xlsx=xlsx, pdf=pdf).where(ReportJob.id == job_id).execute()
        except Exception as exc:  # the job says it failed instead of polling forever
            current_app.logger.exception("five-year pack failed")
            ReportJob.update(status="failed", error=f"Không lập được báo cáo: {type(exc).__name__}."[:500]) \
                .where(ReportJob.id == job_id).execute()


@bp.route("/pack", methods=("GET", "POST"))
@role_required(*READERS)
def report_pack():
    """Choose the cells and the last year of the five-year review, then build it in the background."""
    cells = list(visible_cells())
    today = dt.date.today()
    form = {"cell": request.values.get("cell", ""), "end": request.values.get("end", str(today.year))}
    errors = {}
    if request.method == "POST":
        try:
            end = int(form["end"])
            if not FIRST_YEAR + 4 <= end <= today.year:
                raise ValueError
        except ValueError:
            errors["end"] = f"Năm cuối kỳ phải là một năm từ {FIRST_YEAR + 4} đến {today.year}."
        chosen = [c for c in cells if c.id == form["cell"]] if form["cell"] else cells
        if form["cell"] and not chosen:
            errors["cell"] = "Chi bộ không hợp lệ."
        if not chosen and not errors:
            errors["cell"] = "Không có chi bộ nào để tổng hợp."
        if errors:
            return render_template("reports/pack.html", cells=cells, form=form, errors=errors, jobs=_jobs()), 422
        refresh()
        title = (f"Báo cáo sơ kết 5 năm nâng cao chất lượng sinh hoạt chi bộ — "
                 f"{chosen[0].name if form['cell'] else 'toàn Đảng bộ'}")
        ReportJob.delete().where(ReportJob.created_at < utcnow() - dt.timedelta(days=2)).execute()
        job = ReportJob.create(user_id=current_user.id, title=title, total=9,
                               params_json=json.dumps({"cell": form["cell"], "end": end}))
        app = current_app._get_current_object()
        if current_app.config.get("REPORT_PACK_INLINE"):
            _run_pack(app, job.id, [c.id for c in chosen], end, title)
        else:
            threading.Thread(target=_run_pack, args=(app, job.id, [c.id for c in chosen], end, title),
                             daemon=True).start()
        return redirect(url_for("reports.report_pack_view", job_id=job.id), 303)
    return render_template("reports/pack.html", cells=cells, form=form, errors=errors, jobs=_jobs())


def _jobs():
    """This user's recent packs."""
    return list(ReportJob.select(ReportJob.id, ReportJob.title, ReportJob.status, ReportJob.created_at)
                .where(ReportJob.user_id == current_user.id).order_by(ReportJob.created_at.desc()).limit(5))


def _get_job_or_404(job_id: str) -> ReportJob:
    """A pack job of the current user."""
    job = ReportJob.get_or_none(ReportJob.id == job_id)
    if job is None or job.user_id != current_user.id:
        abort(404)
    return job


@bp.route("/pack/<job_id>")
@role_required(*READERS)
def report_pack_view(job_id: str):
    """The pack's page: progress while it builds, then the two downloads."""
    job = _get_job_or_404(job_id)
    return render_template("reports/pack_job.html", job=job)


@bp.route("/pack/<job_id>/progress")
@role_required(*READERS)
def report_pack_progress(job_id: str):
    """The progress fragment; 286 stops htmx polling once the job is finished."""
    job = _get_job_or_404(job_id)
    body = render_template("reports/_pack_progress.html", job=job)
    return body, (286 if job.status != "running" and request.headers.get("HX-Request") else 200)


@bp.route("/pack/<job_id>/download.<fmt>")
@role_required(*READERS)
def report_pack_download(job_id: str, fmt: str):
    """Download the finished pack as XLSX or PDF."""
    job = _get_job_or_404(job_id)
    if job.status != "done" or fmt not in ("xlsx", "pdf"):
        abort(404)
    params = json.loads(job.params_json or "{}")
    name = f"so-ket-5-nam-{params.get('end', '')}.{fmt}"
    mime = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if fmt == "xlsx"
            else "application/pdf")
    return send_file(io.BytesIO(bytes(job.xlsx if fmt == "xlsx" else job.pdf)), as_attachment=True,
                     download_name=name, mimetype=mime)


# -- annual rating evidence ------------------------------------------------------------------------

@bp.route("/rating", methods=("GET", "POST"))
@role_required(*READERS)
def report_rating():
    """A cell's annual rating evidence, proposals by the rule set, quota check; central's admin decides."""
    cells = list(visible_cells())
    if not cells:
        abort(404)
    today = dt.date.today()
    cell_id = request.values.get("cell") or cells[0].id
    cell = next((c for c in cells if c.id == cell_id), None)
    if cell is None:
        abort(404)
    year = request.values.get("year", type=int) or today.year
    if not FIRST_YEAR <= year <= today.year:
        abort(404)
    can_decide = current_user.role == "admin" and current_app.config["ROLE"] == "central"
    evidence = rating_evidence(cell, year)
    errors = {}
    if request.method == "POST":
        if not can_decide:
            abort(403)
        levels, proposals = {}, {("cell", cell.id): evidence.proposed}
        allowed = set(LEVEL_LABELS) | {""}
        wanted = {("cell", cell.id): request.form.get(f"level_cell_{cell.id}", "")}
        for ev in evidence.members:
            wanted[("member", ev.member.id)] = request.form.get(f"level_member_{ev.member.id}", "")
            proposals[("member", ev.member.id)] = ev.proposed
        for key, level in wanted.items():
            if level not in allowed:
                errors[f"level_{key[0]}_{key[1]}"] = "Mức xếp loại không hợp lệ."
            levels[key] = level
        if not errors:
            decide_levels(cell, year, levels, current_user.full_name or current_user.username, proposals)
            return redirect(url_for("reports.report_rating", cell=cell.id, year=year, saved=1), 303)
        evidence.decided = levels[("cell", cell.id)]
        for ev in evidence.members:
            ev.decided = levels[("member", ev.member.id)]
    if request.args.get("format") == "csv":
        return _csv(_rating_table(evidence), f"xep-loai-{cell.code}-{year}")
    return render_template("reports/rating.html", cells=cells, cell=cell, year=year, ev=evidence,
                           levels=LEVEL_LABELS, can_decide=can_decide, errors=errors, fmt=fmt,
                           band_labels=BAND_LABELS, saved=request.args.get("saved")), (422 if errors else 200)


def _rating_table(ev) -> Table:
    """The members' evidence as a table."""
    table = Table(f"Căn cứ xếp loại đảng viên {ev.cell.name} năm {ev.year}",
                  ["Đảng viên", "Số buổi được điểm danh", "Có mặt", "Vắng có lý do", "Vắng không lý do",
                   "Tỷ lệ dự (%)", "Số ý kiến", "Tự phê bình", "Phê bình", "Nhiệm vụ được giao",
                   "Nhiệm vụ hoàn thành", "Điểm gợi ý", "Mức đề xuất", "Mức đã quyết định"])
    for m in ev.members:
        table.rows.append([m.member.full_name, m.counted, m.present, m.excused, m.unexcused, m.attendance_rate,
                           m.contribution_total, m.contributions.get("tu_phe_binh", 0),
                           m.contributions.get("phe_binh", 0), m.tasks, m.tasks_done, m.points,
                           LEVEL_LABELS.get(m.proposed, ""), LEVEL_LABELS.get(m.decided, "")])
    return table


# -- CLI --------------------------------------------------------------------------------------------

@bp.cli.command("refresh")
@click.option("--full", is_flag=True, help="dựng lại toàn bộ bảng tổng hợp thay vì chỉ phần thay đổi")
def reports_refresh(full: bool) -> None:
    """Cập nhật bảng tổng hợp báo cáo từ nhật ký thay đổi (chạy sau `flask sync`)."""
    with db.connection_context():
        mode = refresh(full=full)
    click.echo({"none": "Bảng tổng hợp đã cập nhật, không có thay đổi mới.",
                "incremental": "Đã cập nhật bảng tổng hợp theo các thay đổi mới.",
                "full": "Đã dựng lại toàn bộ bảng tổng hợp."}[mode])
