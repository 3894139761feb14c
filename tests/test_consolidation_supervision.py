"""Supervision in the consolidated reports (issue 12 with issue 11): coverage, visits, recommendations
by derived state, inspections and score bands on the dashboard with drill-down, in the five-year pack
(XLSX, PDF, CSV) and year on year, checked against a small plan counted by hand."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest

from models import User, db
from models.consolidation import refresh
from models.supervision import (AnnualInspection, Recommendation, RecommendationEvent, SupervisionAssignment,
                                SupervisionVisit, coverage)
from models.supervision_report import (ReportRecommendation, ReportVisit, rec_counts, rec_facts, rec_matches,
                                      score_counts, score_facts, supervision_years, visit_facts, visit_totals)
from tests.conftest import PASSWORD
from tests.test_consolidation import YEAR, _meeting, counted  # noqa: F401 (the hand-counted meetings)

LAST = YEAR - 1


@pytest.fixture
def supervised(app, org, counted):  # noqa: F811
    """The hand-counted supervision of 2023 (and one visit in 2022), on top of the counted meetings.

    Plan 2023: CB01 btv T1, btv T2, lan T5; CB02 lan T1 (and a removed line, and a 2022 line: CB01 btv T3).
    Visits 2023: 05/01 CB01 by btv, score 70, signed (cell 85 % Khá; 70 is Khá; gap -15 highlighted);
                 07/02 CB01 by btv, no score, not signed; 06/01 CB02 by lan, score 92, signed (no self score).
    Coverage: CB01 3 planned / 2 made, CB02 1 / 1; btv 2 / 2, lan 2 / 1; in Q1: CB01 2 / 2, lan 1 / 1.
    Recommendations (today = 2026 or later, so 2023 deadlines have passed):
      R1 05/01 deadline 28/02/2023: open → in progress (cell)            → in progress, overdue
      R2 05/01 deadline 31/03/2023: open → done (cell) → verified (sup.)  → verified
      R3 06/01 deadline 31/12/2099: open                                  → open, not overdue
      R4 07/02 deadline 10/03/2023: open → done (cell)                    → done, not overdue
      R5 05/01 deadline 31/01/2023: open → verified (sup., not allowed)   → open, overdue
      2022: R6 open → done → verified.
    Totals 2023: 5 made; open 2, in progress 1, done 1, verified 1; overdue 2; not verified 4.
    Inspections: 2023 CB01 done, CB02 planned; 2022 CB02 done.
    """
    with app.app_context(), db.connection_context():
        cell, other = org.cell, org.other_cell
        btv = User.get(User.username == "btv")
        lan = User(username="btv.lan", role="supervisor", full_name="Trần Thị Lan")
        lan.set_password(PASSWORD)
        lan.save()
        for c, who, year, month in ((cell, btv, YEAR, 1), (cell, btv, YEAR, 2), (cell, lan, YEAR, 5),
                                    (other, lan, YEAR, 1), (cell, btv, LAST, 3)):
            SupervisionAssignment.create(cell=c.id, supervisor=who.id, year=year, month=month)
        SupervisionAssignment.create(cell=other.id, supervisor=btv.id, year=YEAR, month=9).soft_delete()
        jan, feb, cb02 = counted["jan"], counted["feb"], counted["cb02"]
        m = org.members
        old = _meeting(cell, dt.date(LAST, 3, 5), "regular", dt.time(14, 0), 95, {x: "present" for x in m[:7]})
        signed = dt.datetime(YEAR, 1, 5, 17, 0)
        v1 = SupervisionVisit.create(meeting=jan.id, supervisor=btv.id, score=70.0, strengths="Đúng trình tự",
                                     confirmed_at=signed)
        v2 = SupervisionVisit.create(meeting=feb.id, supervisor=btv.id)
        v3 = SupervisionVisit.create(meeting=cb02.id, supervisor=lan.id, score=92.0, strengths="Tốt",
                                     confirmed_at=signed)
        v0 = SupervisionVisit.create(meeting=old.id, supervisor=btv.id, score=80.0, confirmed_at=signed)

        def rec(visit, text, deadline, *moves):
            r = Recommendation.create(visit=visit.id, text=text, deadline=deadline)
            for state, side in (("open", "supervisor"),) + moves:
                RecommendationEvent.create(recommendation=r.id, state=state, side=side, by_name=side)
            return r

        recs = {
            "R1": rec(v1, "Chuẩn bị tài liệu trước 3 ngày", dt.date(YEAR, 2, 28), ("in_progress", "cell")),
            "R2": rec(v1, "Ghi biên bản đủ ý kiến", dt.date(YEAR, 3, 31), ("done", "cell"), ("verified", "supervisor")),
            "R3": rec(v3, "Mời đảng viên trẻ phát biểu", dt.date(2099, 12, 31)),
            "R4": rec(v2, "Họp đúng ngày cố định", dt.date(YEAR, 3, 10), ("done", "cell")),
            "R5": rec(v1, "Kiểm điểm việc vắng không lý do", dt.date(YEAR, 1, 31), ("verified", "supervisor")),
            "R6": rec(v0, "Bổ sung sổ nghị quyết", dt.date(LAST, 6, 30), ("done", "cell"), ("verified", "supervisor")),
        }
        AnnualInspection.create(cell=cell.id, year=YEAR, status="done", conclusion="Đạt yêu cầu",
                                done_on=dt.date(YEAR, 11, 20), inspectors="Đoàn kiểm tra Đảng ủy")
        AnnualInspection.create(cell=other.id, year=YEAR, planned_on=dt.date(YEAR, 12, 10))
        AnnualInspection.create(cell=other.id, year=LAST, status="done", conclusion="Đạt", done_on=dt.date(LAST, 11, 1))
        return {"btv": btv.id, "lan": lan.id, "v1": v1.id, "v2": v2.id, "v3": v3.id, "recs": {k: r.id for k, r in recs.items()}}


def test_coverage_visits_and_recommendations_are_the_hand_counts(app, org, supervised):
    """The report functions give the hand counts, with states derived from the events."""
    with app.app_context(), db.connection_context():
        by_cell, by_member = coverage(YEAR)
        assert {r.key: (r.planned, r.made) for r in by_cell} == {org.cell.id: (3, 2), org.other_cell.id: (1, 1)}
        assert {r.key: (r.planned, r.made) for r in by_member} == {supervised["btv"]: (2, 2), supervised["lan"]: (2, 1)}
        q1_cells, q1_members = coverage(YEAR, [org.cell.id], [1, 2, 3])
        assert [(r.planned, r.made) for r in q1_cells] == [(2, 2)]
        assert {r.key: (r.planned, r.made) for r in q1_members} == {supervised["btv"]: (2, 2), supervised["lan"]: (0, 0)}
        visits = visit_facts([YEAR])
        assert (len(visits), sum(v.confirmed for v in visits)) == (3, 2)
        states = {r.id: (r.state, r.overdue) for r in rec_facts([YEAR])}
        ids = supervised["recs"]
        assert states == {ids["R1"]: ("in_progress", True), ids["R2"]: ("verified", False),
                          ids["R3"]: ("open", False), ids["R4"]: ("done", False), ids["R5"]: ("open", True)}
        assert [r.id for r in rec_facts([YEAR], [org.other_cell.id])] == [ids["R3"]]


def test_cached_states_follow_new_events(app, org, supervised):
    """The cached states equal a replay of the events, and a new event moves them at the next refresh."""
    from models.supervision import add_event

    with app.app_context(), db.connection_context():
        assert refresh() == "full"
        live = rec_facts([YEAR])
        counts = rec_counts([YEAR])[YEAR]
        for which in ("open", "in_progress", "done", "verified", "overdue", "unverified", "all"):
            assert counts.count(which) == sum(rec_matches(r, which) for r in live), which
        rec = Recommendation.get_by_id(supervised["recs"]["R4"])
        add_event(rec, "verified", "supervisor", User.get(User.username == "btv"))
        assert rec_counts([YEAR])[YEAR].count("verified") == 1  # not yet refreshed
        assert refresh() == "incremental"
        after = rec_counts([YEAR])[YEAR]
        assert (after.count("verified"), after.count("done"), after.total) == (2, 0, 5)
        assert ReportRecommendation.select().count() == 6  # five of 2023 and one of 2022


def test_score_bands_beside_the_cell_self_score(app, org, supervised):
    """Supervisor 70 (Khá) beside the cell's 85 % (Khá): a 15-point gap; CB02 has no self score."""
    with app.app_context(), db.connection_context():
        refresh()
        found = {f.visit.id: f for f in score_facts(YEAR)}
        assert set(found) == {supervised["v1"], supervised["v3"]}
        one = found[supervised["v1"]]
        assert (one.gap.cell, one.gap.supervisor, one.gap.difference, one.gap.highlighted) == (85.0, 70.0, -15.0, True)
        assert (one.self_band, one.sup_band) == ("kha", "kha")
        three = found[supervised["v3"]]
        assert (three.self_band, three.sup_band, three.gap.highlighted) == (None, "tot", False)
        counts = score_counts(YEAR)
        assert (counts["kha:kha"], counts[":tot"], counts["gap"], counts["all"]) == (1, 1, 1, 2)


def test_years_for_the_pack_and_year_on_year(app, org, supervised):
    """Per year: planned, made, signed, cells visited, inspections, recommendations made and closed."""
    with app.app_context(), db.connection_context():
        refresh()
        per_year = supervision_years([LAST, YEAR])
        y, last = per_year[YEAR], per_year[LAST]
        assert (y.planned, y.made, y.confirmed, y.cells_visited) == (4, 3, 2, 2)
        assert (y.inspections_planned, y.inspections_done) == (2, 1)
        assert (y.recs, y.recs_verified, y.recs_done, y.recs_open, y.recs_overdue) == (5, 1, 1, 3, 2)
        assert (last.planned, last.made, last.recs, last.recs_verified, last.inspections_done) == (1, 1, 1, 1, 1)
        only = supervision_years([YEAR], [org.other_cell.id])[YEAR]
        assert (only.planned, only.made, only.recs, only.inspections_planned) == (1, 1, 1, 1)


def assert_visit_rollup_is_direct(years, cell_ids_choices) -> int:
    """The visit rollup (coverage rolled, visit totals, score bands) equals the direct count from the
    visits and meetings, for every year, cell choice and month choice; returns the rows compared."""
    compared = 0
    for year in years:
        for cell_ids in cell_ids_choices:
            for months in (None, [1], [1, 2, 3], [4, 5, 6], [12]):
                direct = coverage(year, cell_ids, months)
                rolled = coverage(year, cell_ids, months, rolled=True)
                for a, b in zip(direct, rolled):
                    assert [(r.key, r.planned, r.made) for r in a] == [(r.key, r.planned, r.made) for r in b], \
                        (year, cell_ids, months)
                    compared += sum(r.made for r in a)
                assert visit_totals(year, cell_ids, months) == visit_totals(year, cell_ids, months, rolled=False), \
                    (year, cell_ids, months)
                assert score_counts(year, cell_ids, months) == score_counts(year, cell_ids, months, rolled=False), \
                    (year, cell_ids, months)
    return compared


def test_visit_rollup_is_the_direct_count_and_follows_changes(app, org, counted, supervised):
    """report_visit gives the hand counts and the direct counts; a signed visit, a removed one, a new
    self score and a meeting moved to another month reach it at the next (incremental) refresh."""
    from models import Answer, Meeting

    with app.app_context(), db.connection_context():
        assert refresh() == "full"
        assert ReportVisit.select().count() == 4  # three of 2023, one of 2022
        assert visit_totals(YEAR) == visit_totals(YEAR, rolled=False)
        t = visit_totals(YEAR)
        assert (t.made, t.confirmed, t.cells) == (3, 2, 2)
        assert score_counts(YEAR)["kha:kha"] == 1
        choices = (None, [org.cell.id], [org.other_cell.id], [])
        assert assert_visit_rollup_is_direct((LAST, YEAR), choices) > 0

        v2 = SupervisionVisit.get_by_id(supervised["v2"])
        v2.score, v2.confirmed_at = 40.0, dt.datetime(YEAR, 2, 8, 9, 0)
        v2.save()
        v4 = SupervisionVisit.create(meeting=counted["thematic"].id, supervisor=supervised["lan"], score=95.0)
        own = counted["own"]
        s1 = next(a for a in Answer.select().where(Answer.answer_set == own.id) if a.value_json == "45")
        s1.value_json = "15"  # the cell's own score: 85 % -> 55 %
        s1.save()
        feb = Meeting.get_by_id(counted["feb"].id)
        feb.held_on = dt.date(YEAR, 4, 7)
        feb.save()
        assert visit_totals(YEAR).made == 3  # not yet refreshed
        assert refresh() == "incremental"
        t = visit_totals(YEAR)
        assert (t.made, t.confirmed, t.cells) == (4, 3, 2)
        assert score_counts(YEAR)["kha:kha"] == 0 and score_counts(YEAR)["all"] == 4
        assert assert_visit_rollup_is_direct((LAST, YEAR), choices) > 0
        assert [r.made for r in coverage(YEAR, [org.cell.id], [4, 5, 6], rolled=True)[0]] == [1]
        SupervisionVisit.get_by_id(v4.id).soft_delete()
        assert refresh() == "incremental"
        assert visit_totals(YEAR).made == 3 and ReportVisit.select().count() == 4
        assert assert_visit_rollup_is_direct((LAST, YEAR), choices) > 0


def _panel(html: str, key: str) -> str:
    """One dashboard panel's HTML."""
    start = html.index(f'data-panel="{key}"')
    return html[start:html.index("</div>\n  ", html.index("</table>", start))]


def _link_for(panel: str, label: str) -> list[tuple[str, str]]:
    """(href, number) of the links in the row starting with `label`."""
    row = panel[panel.index(label):]
    row = row[:row.index("</tr>")]
    return [(href.replace("&amp;", "&"), n) for href, n in re.findall(r'<a href="([^"]+)">([^<]+)</a>', row)]


def test_dashboard_panels_link_to_the_records(client, auth, org, supervised):
    """Each supervision number on the dashboard opens a list of exactly that many records."""
    auth.login("admin")
    html = client.get(f"/reports/?year={YEAR}").get_data(as_text=True)
    coverage_html = _panel(html, "sup_coverage")
    (planned, n_planned), (made, n_made) = _link_for(coverage_html, "Tất cả chi bộ")
    assert (n_planned, n_made) == ("4", "3")
    (cb01_planned, n), (cb01_made, m) = _link_for(coverage_html, "CB01 — Chi bộ Một")
    assert (n, m) == ("3", "2")
    (lan_planned, n), (lan_made, m) = _link_for(coverage_html, "Đ/c Trần Thị Lan")
    assert (n, m) == ("2", "1")
    recs_html = _panel(html, "sup_recs")
    expected = {"Chưa thực hiện": "2", "Đang thực hiện": "1", "Chi bộ báo đã xong": "1", "Đã kiểm chứng": "1",
                "Quá hạn chưa khắc phục": "2", "Chưa kiểm chứng (còn mở)": "4", "Tổng số kiến nghị": "5"}
    rec_links = {}
    for label, number in expected.items():
        [(href, n)] = _link_for(recs_html, f"<th scope=\"row\">{label}")
        assert n == number, label
        rec_links[label] = href
    [(insp_done, n)] = _link_for(_panel(html, "sup_inspections"), '<th scope="row">Đã kiểm tra')
    assert n == "1"
    [(signed, n)] = _link_for(_panel(html, "sup_visits"), "Biên bản đã ký xác nhận")
    assert n == "2"
    scores = _panel(html, "sup_scores")
    assert [n for _h, n in _link_for(scores, "<th scope=\"row\">Khá")] == ["0", "1", "0", "0", "0"]
    [(gap, n)] = _link_for(scores, "Lượt chênh lệch")
    assert n == "1"
    # Every number's page lists that many records.
    for href, number in ((planned, 4), (made, 3), (cb01_planned, 3), (cb01_made, 2), (lan_planned, 2),
                         (lan_made, 1), (rec_links["Quá hạn chưa khắc phục"], 2), (rec_links["Tổng số kiến nghị"], 5),
                         (rec_links["Đã kiểm chứng"], 1), (insp_done, 1), (signed, 2), (gap, 1)):
        page = client.get(href)
        assert page.status_code == 200, href
        body = page.get_data(as_text=True)
        assert f"<strong>{number}</strong> dòng" in body, href
    overdue = client.get(rec_links["Quá hạn chưa khắc phục"]).get_data(as_text=True)
    assert "Chuẩn bị tài liệu trước 3 ngày" in overdue and "Kiểm điểm việc vắng không lý do" in overdue
    assert "28/02/2023" in overdue and "Mời đảng viên trẻ" not in overdue
    gap_page = client.get(gap).get_data(as_text=True)
    assert "05/01/2023" in gap_page and "-15" in gap_page
    assert client.get("/reports/supervision/nothing").status_code == 404
    assert client.get(f"/reports/supervision/recs?year={YEAR}&state=lost").status_code == 404


def test_dashboard_filters_by_cell_and_quarter(client, auth, org, supervised):
    """A cell and a quarter narrow the supervision panels like the rest of the dashboard."""
    auth.login("admin")
    html = client.get(f"/reports/?year={YEAR}&quarter=1&cell={org.cell.id}").get_data(as_text=True)
    (_p, n_planned), (_m, n_made) = _link_for(_panel(html, "sup_coverage"), "Tất cả chi bộ")
    assert (n_planned, n_made) == ("2", "2")
    assert "CB02" not in _panel(html, "sup_coverage")
    [(_h, total)] = _link_for(_panel(html, "sup_recs"), "Tổng số kiến nghị")
    assert total == "4"


def test_secretary_sees_only_their_cell(client, auth, org, supervised):
    """A secretary's dashboard counts their own cell's supervision only; a member has no access."""
    auth.login("bithu2")
    html = client.get(f"/reports/?year={YEAR}").get_data(as_text=True)
    (_p, n_planned), (_m, n_made) = _link_for(_panel(html, "sup_coverage"), "Tất cả chi bộ")
    assert (n_planned, n_made) == ("1", "1")
    visits = client.get(f"/reports/supervision/visits?year={YEAR}").get_data(as_text=True)
    assert "<strong>1</strong> dòng" in visits and "CB01" not in visits
    auth.logout()
    auth.login("dangvien1")
    assert client.get(f"/reports/supervision/visits?year={YEAR}").status_code == 403


def _csv_rows(response) -> list[list[str]]:
    """A CSV download's rows."""
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))


def test_csv_of_panels_drill_down_and_five_years(client, auth, org, supervised):
    """Panels, drill-down lists and the five-year supervision table download as CSV."""
    auth.login("admin")
    rows = _csv_rows(client.get(f"/reports/export.csv?year={YEAR}&table=sup_recs"))
    assert rows[0] == ["Trạng thái", "Số kiến nghị"] and ["Quá hạn chưa khắc phục", "2"] in rows
    rows = _csv_rows(client.get(f"/reports/supervision/recs?year={YEAR}&state=overdue&format=csv"))
    assert len(rows) == 3 and {r[2] for r in rows[1:]} == {"Chuẩn bị tài liệu trước 3 ngày",
                                                          "Kiểm điểm việc vắng không lý do"}
    rows = _csv_rows(client.get(f"/reports/export.csv?year={YEAR}&table=sup_years"))
    assert rows[0][:3] == ["Năm", "Lượt giám sát theo kế hoạch", "Lượt đã giám sát"]
    by_year = {r[0]: r for r in rows[1:]}
    assert by_year[str(YEAR)] == [str(YEAR), "4", "3", "2", "2", "2", "1", "5", "1", "1", "3", "2"]
    assert by_year[str(LAST)][:3] == [str(LAST), "1", "1"] and by_year[str(YEAR - 4)][1:] == ["0"] * 11


def test_year_on_year_supervision(client, auth, org, supervised):
    """Visits made and recommendations closed, 2023 against 2022."""
    auth.login("admin")
    page = client.get(f"/reports/yoy?year={YEAR}&base={LAST}").get_data(as_text=True)
    assert 'data-testid="yoy-supervision"' in page
    rows = _csv_rows(client.get(f"/reports/yoy?year={YEAR}&base={LAST}&format=csv&table=supervision"))
    table = {r[0]: r[1:] for r in rows[1:]}
    assert table["Lượt giám sát đã thực hiện"] == ["1", "3", "2"]
    assert table["Kiến nghị đã kiểm chứng (khép lại)"] == ["1", "1", "0"]
    assert table["Kiến nghị đưa ra"] == ["1", "5", "4"]


def test_five_year_pack_has_the_supervision_tables(client, auth, app, org, supervised):
    """The pack's XLSX and PDF carry visits, inspections and recommendations per year."""
    from openpyxl import load_workbook
    from pypdf import PdfReader

    app.config["REPORT_PACK_INLINE"] = True
    auth.login("admin")
    made = client.post("/reports/pack", data={"csrf_token": auth.token("/reports/pack"), "end": str(YEAR)})
    job_url = made.headers["Location"]
    book = load_workbook(io.BytesIO(client.get(job_url + "/download.xlsx").data))
    sheets = {}
    for sheet in book.worksheets:
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
        sheets[str(rows[0][0] if rows and rows[0] else "")] = rows
    visits = next(rows for title, rows in sheets.items() if "Giám sát sinh hoạt chi bộ và kiểm tra" in title)
    assert next(r for r in visits if r[0] == YEAR)[:7] == [YEAR, 4, 3, 2, 2, 2, 1]
    assert next(r for r in visits if r[0] == LAST)[:3] == [LAST, 1, 1]
    recs = next(rows for title, rows in sheets.items() if "Kiến nghị sau giám sát" in title)
    assert next(r for r in recs if r[0] == YEAR)[:6] == [YEAR, 5, 1, 1, 3, 2]
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(client.get(job_url + "/download.pdf").data)).pages)
    assert "Kiến nghị sau giám sát" in text and "Giám sát sinh hoạt chi bộ" in text
