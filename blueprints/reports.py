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
from typing import Any, NamedTuple

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
from models.supervision import INSPECTION_STATUSES, SCORE_GAP_POINTS, coverage
from models.supervision_report import (
    REC_COLUMNS, REC_FILTERS, VISIT_COLUMNS, inspections_of, plan_lines, rec_counts, rec_facts, rec_matches,
    rec_year_rows, score_counts, score_facts, score_matches, supervision_years, supervisor_names, visit_facts,
    visit_totals, visit_year_rows, yoy_rows,
)
from models.base import local_today, utcnow

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
    today = local_today()
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


class Link(NamedTuple):
    """A panel's number and the page listing the records behind it."""

    value: Any
    href: str


def _sup_url(what: str, filters: Filters, **extra) -> str:
    """The supervision drill-down page for these filters."""
    return url_for("reports.report_supervision", what=what, **_query(filters, **extra))


def _cell_label(cell_id: str) -> str:
    """A visible cell's code and name."""
    cell = _cells_by_id().get(cell_id)
    return f"{cell.code} — {cell.name}" if cell else cell_id


def _cells_by_id() -> dict:
    """The viewer's cells by id (read once per request)."""
    if "report_cells_by_id" not in g:
        g.report_cells_by_id = {c.id: c for c in g.report_cells}
    return g.report_cells_by_id


def supervision_coverage_panel(filters: Filters, m: Metrics) -> dict:
    """Visits planned vs made per cell and per Standing Committee member (models.supervision.coverage)."""
    by_cell, by_member = coverage(filters.year, filters.cell_ids, filters.months(), rolled=True)
    visible = _cells_by_id()  # a field node or a secretary never counts cells outside their view
    by_cell = [r for r in by_cell if r.key in visible]
    # Cells furthest behind their plan first: what a reader of a national list needs to see.
    by_cell.sort(key=lambda r: (r.made - r.planned, r.label))
    rows: list[list] = [["Tất cả chi bộ", Link(sum(r.planned for r in by_cell), _sup_url("planned", filters)),
                         Link(sum(r.made for r in by_cell), _sup_url("visits", filters))]]
    rows += [[f"Đ/c {r.label}", Link(r.planned, _sup_url("planned", filters, supervisor=r.key)),
              Link(r.made, _sup_url("visits", filters, supervisor=r.key))]
             for r in by_member if r.planned or r.made]
    # Links only for the rows the dashboard shows (a national list has thousands; its CSV has them all).
    rows += [[r.label, Link(r.planned, _sup_url("planned", filters, cell=r.key)),
              Link(r.made, _sup_url("visits", filters, cell=r.key))] if len(rows) + i < PANEL_ROWS
             else [r.label, r.planned, r.made] for i, r in enumerate(by_cell)]
    return {"title": "Độ bao phủ giám sát: kế hoạch và thực hiện", "key": "sup_coverage",
            "columns": ["Chi bộ / Ủy viên Ban Thường vụ", "Kế hoạch", "Đã giám sát"], "rows": rows}


def supervision_visits_panel(filters: Filters, m: Metrics) -> dict:
    """Visits made in the period: records, signed records, cells visited."""
    t = visit_totals(filters.year, filters.cell_ids, filters.months())
    return {"title": "Lượt giám sát đã thực hiện", "key": "sup_visits", "columns": ["Chỉ tiêu", "Số liệu"],
            "rows": [["Lượt giám sát (biên bản đã lập)", Link(t.made, _sup_url("visits", filters))],
                     ["Biên bản đã ký xác nhận", Link(t.confirmed, _sup_url("visits", filters, confirmed=1))],
                     ["Chi bộ được giám sát", Link(t.cells, _sup_url("visits", filters))]]}


def supervision_recs_panel(filters: Filters, m: Metrics) -> dict:
    """Recommendations of the period's visits by state derived from their events, and the overdue ones."""
    counts = rec_counts([filters.year], filters.cell_ids, filters.months())[filters.year]
    rows = [[label, Link(counts.count(code), _sup_url("recs", filters, state=code))]
            for code, label in REC_FILTERS.items() if code != "all"]
    rows.append(["Tổng số kiến nghị", Link(counts.total, _sup_url("recs", filters, state="all"))])
    return {"title": "Kiến nghị sau giám sát", "key": "sup_recs", "columns": ["Trạng thái", "Số kiến nghị"],
            "rows": rows}


def supervision_inspections_panel(filters: Filters, m: Metrics) -> dict:
    """The year's annual inspections: cells selected and inspections done."""
    found = inspections_of([filters.year], filters.cell_ids)
    rows = [["Chi bộ được chọn kiểm tra", Link(len(found), _sup_url("inspections", filters))]]
    rows += [[label, Link(sum(i.status == code for i in found), _sup_url("inspections", filters, status=code))]
             for code, label in INSPECTION_STATUSES.items()]
    return {"title": f"Kiểm tra chất lượng sinh hoạt năm {filters.year}", "key": "sup_inspections",
            "columns": ["Chỉ tiêu", "Số chi bộ"], "rows": rows}


def supervision_scores_panel(filters: Filters, m: Metrics) -> dict:
    """Visits scored by the supervisor: band of the cell's self score against band of the supervisor's."""
    counts = score_counts(filters.year, filters.cell_ids, filters.months())
    codes = list(BAND_CODES) + [""]
    names = {**BAND_LABELS, "": "Chưa xếp loại"}
    rows = []
    for own in codes:
        row: list = [names[own]]
        for sup in codes:
            pair = f"{own}:{sup}"
            row.append(Link(counts[pair], _sup_url("scores", filters, band=pair)))
        rows.append(row)
    rows.append([f"Lượt chênh lệch từ {fmt(SCORE_GAP_POINTS, 0)} điểm trở lên",
                 Link(counts["gap"], _sup_url("scores", filters, band="gap"))]
                + [""] * (len(codes) - 1))
    rows.append(["Lượt có điểm của người giám sát", Link(counts["all"], _sup_url("scores", filters, band="all"))]
                + [""] * (len(codes) - 1))
    return {"title": "Điểm người giám sát so với điểm chi bộ tự chấm", "key": "sup_scores", "wide": True,
            "note": "Hàng: xếp loại chi bộ tự chấm; cột: xếp loại theo điểm người giám sát (cùng bộ quy tắc của buổi).",
            "columns": ["Chi bộ tự chấm \\ Người giám sát chấm"] + [names[c] for c in codes], "rows": rows}


DASHBOARD_PANELS = [model_meetings_panel, supervisor_scores_panel, supervision_coverage_panel,
                    supervision_visits_panel, supervision_recs_panel, supervision_inspections_panel,
                    supervision_scores_panel]
PANEL_ROWS = 25  # rows a dashboard panel shows; its CSV has them all


@bp.route("/")
@role_required(*READERS)
def report_dashboard():
    """The consolidated dashboard for one year (and optional quarter, month, cell, kind)."""
    refresh()
    filters, cells = read_filters()
    today = local_today()
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
        query=_query, fmt=fmt, band_labels=BAND_LABELS, band_codes=BAND_CODES, today=today, panel_rows=PANEL_ROWS,
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


SUP_DRILLS = {"visits": "Lượt giám sát", "planned": "Lượt giám sát theo kế hoạch", "recs": "Kiến nghị sau giám sát",
              "inspections": "Chi bộ được chọn kiểm tra", "scores": "Điểm người giám sát và điểm chi bộ tự chấm"}


def _sup_table(what: str, filters: Filters) -> Table:
    """The supervision records behind one dashboard number, as a table whose cells may be links."""
    months = filters.months()
    supervisor = request.args.get("supervisor") or None
    if what == "planned":
        lines = plan_lines(filters.year, filters.cell_ids, months, supervisor)
        names = supervisor_names(line.supervisor_id for line in lines)
        return Table(SUP_DRILLS[what], ["Tháng", "Chi bộ", "Người giám sát", "Ngày dự kiến"],
                     [[f"{line.month}/{line.year}",
                       Link(_cell_label(line.cell_id), url_for("supervision.cell_view", cell_id=line.cell_id,
                                                               year=line.year)),
                       names.get(line.supervisor_id, ""), line.planned_on] for line in lines
                      if line.cell_id in _cells_by_id()])
    if what == "visits":
        visits = [v for v in visit_facts([filters.year], filters.cell_ids, months)
                  if (not supervisor or v.supervisor_id == supervisor)
                  and (not request.args.get("confirmed") or v.confirmed)]
        names = supervisor_names(v.supervisor_id for v in visits)
        return Table(SUP_DRILLS[what], ["Ngày họp", "Chi bộ", "Người giám sát", "Điểm giám sát", "Đã ký"],
                     [[Link(v.held_on, url_for("supervision.visit_page", meeting_id=v.meeting_id)),
                       _cell_label(v.cell_id), names.get(v.supervisor_id, ""), v.score,
                       "Đã ký" if v.confirmed else "Chưa ký"] for v in visits])
    if what == "recs":
        state = request.args.get("state", "all")
        if state not in REC_FILTERS:
            abort(404)
        recs = [r for r in rec_facts([filters.year], filters.cell_ids, months, text=True) if rec_matches(r, state)]
        return Table(f"{SUP_DRILLS[what]}: {REC_FILTERS[state].lower()}",
                     ["Ngày giám sát", "Chi bộ", "Kiến nghị", "Thời hạn", "Trạng thái", "Quá hạn"],
                     [[Link(r.held_on, url_for("supervision.visit_page", meeting_id=r.meeting_id) + "#kien-nghi"),
                       _cell_label(r.cell_id), r.text, r.deadline, REC_FILTERS[r.state],
                       "Quá hạn" if r.overdue else ""] for r in recs])
    if what == "inspections":
        status = request.args.get("status", "")
        if status and status not in INSPECTION_STATUSES:
            abort(404)
        found = [i for i in inspections_of([filters.year], filters.cell_ids) if not status or i.status == status]
        return Table(SUP_DRILLS[what], ["Năm", "Chi bộ", "Trạng thái", "Ngày dự kiến", "Ngày kiểm tra", "Đoàn kiểm tra"],
                     [[i.year, Link(_cell_label(i.cell_id), url_for("supervision.inspection_view", inspection_id=i.id)),
                       INSPECTION_STATUSES.get(i.status, i.status), i.planned_on, i.done_on, i.inspectors]
                      for i in found])
    band = request.args.get("band", "all")
    found = [f for f in score_facts(filters.year, filters.cell_ids, months) if score_matches(f, band)]
    return Table(SUP_DRILLS["scores"], ["Ngày họp", "Chi bộ", "Chi bộ tự chấm (%)", "Xếp loại tự chấm",
                                        "Người giám sát chấm (%)", "Xếp loại giám sát", "Chênh lệch (điểm)"],
                 [[Link(f.visit.held_on, url_for("supervision.visit_page", meeting_id=f.visit.meeting_id)),
                   _cell_label(f.visit.cell_id), f.gap.cell, BAND_LABELS.get(f.self_band or "", ""), f.gap.supervisor,
                   BAND_LABELS.get(f.sup_band or "", ""), f.gap.difference] for f in found])


def _plain(table: Table) -> Table:
    """The table with its links replaced by their values (for CSV)."""
    return Table(table.title, table.columns, [[v.value if isinstance(v, Link) else v for v in row]
                                              for row in table.rows])


@bp.route("/supervision/<what>")
@role_required(*READERS)
def report_supervision(what: str):
    """The supervision records behind a dashboard number (visits, plan lines, recommendations…)."""
    if what not in SUP_DRILLS:
        abort(404)
    refresh()  # the score list reads each visited meeting's self score from the rollup
    filters, _cells = read_filters()
    table = _sup_table(what, filters)
    if request.args.get("format") == "csv":
        return _csv(_plain(table), f"giam-sat-{what}-{filters.year}")
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    pages = max((len(table.rows) + PAGE_CELLS - 1) // PAGE_CELLS, 1)
    page = min(page, pages)
    extra = {k: request.args[k] for k in ("supervisor", "state", "status", "band", "confirmed") if request.args.get(k)}
    return render_template("reports/supervision.html", what=what, table=table, count=len(table.rows),
                           rows=table.rows[(page - 1) * PAGE_CELLS: page * PAGE_CELLS], page=page, pages=pages,
                           filters=filters, query=_query, extra=extra, fmt=fmt, kinds=MEETING_KINDS)


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
    sup_years = supervision_years(years, filters.cell_ids, planned=False)
    sup_table = Table(f"Giám sát: năm {filters.year} so với {', '.join(map(str, base))}", table.columns,
                      yoy_rows(sup_years, years, base))
    if request.args.get("format") == "csv" and request.args.get("table") == "supervision":
        return _csv(sup_table, f"so-sanh-giam-sat-{filters.year}")
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
        Markup(bar_chart_svg("Lượt giám sát và kiến nghị đã kiểm chứng", labels,
                             [("Lượt giám sát", [sup_years[y].made for y in years]),
                              ("Kiến nghị đã kiểm chứng", [sup_years[y].recs_verified for y in years])],
                             maximum=max([1] + [max(sup_years[y].made, sup_years[y].recs_verified) for y in years]),
                             unit="", highlight={str(b) for b in base})),
    ]
    return render_template("reports/yoy.html", filters=filters, base=base, years=years, table=table,
                           sup_table=sup_table,
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
        return _csv(matrix_table(cells, compliance_matrix(cells, filters.year, local_today()), filters.year),
                    f"ma-tran-{filters.year}")
    panel = next((p for p in (f(filters, total) for f in DASHBOARD_PANELS) if p and p.get("key") == which), None)
    if panel:
        return _csv(_plain(Table(f"{panel['title']} năm {filters.year}", panel["columns"], panel["rows"])),
                    f"{which.replace('_', '-')}-{filters.year}")
    if which == "sup_years":
        years = pack_years(filters.year)
        per_year = supervision_years(years, filters.cell_ids)
        rows = [a + b[1:] for a, b in zip(visit_year_rows(per_year, years), rec_year_rows(per_year, years))]
        return _csv(Table(f"Giám sát, kiểm tra và kiến nghị {years[0]}–{years[-1]}",
                          VISIT_COLUMNS + REC_COLUMNS[1:], rows), f"giam-sat-5-nam-{filters.year}")
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
                f"{local_today():%d/%m/%Y}")
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
    today = local_today()
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
    today = local_today()
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
