"""Consolidation: the rollup, the dashboard, drill-down, year on year, rating evidence, CSV and the
five-year pack, checked against a small organisation counted by hand and against the demo data."""
from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from models import Attendance, Contribution, Meeting, db
from models.checklists import (AnswerSet, ChecklistTemplate, TemplateItem, TemplateSection, new_draft, publish,
                               set_answer)
from models.consolidation import (AnnualRating, Filters, ReportMeeting, compliance_matrix, meeting_record_rows,
                                  metrics, month_series, month_totals, rating_evidence, rebuild, refresh, total_of)
from models.meeting_record import Task, TaskReview
from models.org import Cell
from models.scoring import score_answer_set

YEAR = 2023


def _meeting(cell, day, kind, start, minutes, marks, spoke=()):
    """A signed meeting with its roll call (member -> status) and contributions (member, kind)."""
    begin = dt.datetime.combine(day, start)
    meeting = Meeting.create(cell=cell.id, kind=kind, held_on=day, starts_at=start,
                             ends_at=(begin + dt.timedelta(minutes=minutes)).time(), status="ended")
    for member, status in marks.items():
        Attendance.create(meeting=meeting.id, member=member.id, status=status,
                          reason="Đi công tác" if status == "excused" else "")
    for member, kind_ in spoke:
        Contribution.create(meeting=meeting.id, member=member.id, kind=kind_)
    return meeting


def _sheet(code, kind):
    """A published two-item sheet: S1 scored out of 60, S2 yes/no worth 40."""
    template = ChecklistTemplate.create(code=code, name=f"Phiếu {code}", kind=kind)
    draft = new_draft(template, total_points=100)
    section = TemplateSection.create(version=draft.id, title="Nội dung", position=1)
    s1 = TemplateItem.create(version=draft.id, section=section.id, position=1, code="S1", text="Chất lượng",
                             type="score", points=60)
    s2 = TemplateItem.create(version=draft.id, section=section.id, position=2, code="S2", text="Đúng trình tự",
                             type="yes_no", points=40)
    publish(draft)
    return draft, s1, s2


@pytest.fixture
def counted(app, org):
    """The hand-counted year 2023.

    CB01 (fixed day 5; members m0–m5 full, m6 probationary, m7 exempted and never marked):
      05/01 regular 100 min: m0–m5 present, m6 excused → 6/7 = 85,7% (> 85: passes);
            contributions m0 ý kiến, m1 tự phê bình, m1 phê bình, m2 ý kiến → 4, speakers 3/6 = 50%;
            self score S1 45 + S2 yes 40 = 85% (Khá); supervisor S1 50 + S2 yes = 90% (Tốt);
            tasks: m0's (done at 07/02), m1's (never reviewed).
      07/02 regular, 60 min (off the fixed day, too short): m0–m4 present, m5 unexcused, m6 excused
            → 5/7 = 71,4% (fails).
      20/02 thematic 105 min: all 7 present (100%).
      March–December: no meeting (10 months missing); Q1 has its thematic meeting, Q2–Q4 none.
    CB02 (fixed day 6; one member): 06/01 regular exactly 90 min, 1/1 present.
    Totals: 4 meetings (3 regular, 1 thematic); on the fixed day 2/3; long enough 3/4; attendance
    19/22 = 86,4%, passing 3/4; excused 2, unexcused 1; contributions 4 (1 self-criticism, 1 criticism).
    """
    with app.app_context(), db.connection_context():
        m = org.members
        cell, other = org.cell, org.other_cell
        from models import Member

        other_member = Member.get(Member.cell == other.id)
        everyone = {x: "present" for x in m[:7]}
        jan = _meeting(cell, dt.date(YEAR, 1, 5), "regular", dt.time(14, 0), 100,
                       {**{x: "present" for x in m[:6]}, m[6]: "excused"},
                       [(m[0], "y_kien"), (m[1], "tu_phe_binh"), (m[1], "phe_binh"), (m[2], "y_kien")])
        feb = _meeting(cell, dt.date(YEAR, 2, 7), "regular", dt.time(14, 0), 60,
                       {**{x: "present" for x in m[:5]}, m[5]: "unexcused", m[6]: "excused"})
        thematic = _meeting(cell, dt.date(YEAR, 2, 20), "thematic", dt.time(8, 0), 105, everyone)
        cb02 = _meeting(other, dt.date(YEAR, 1, 6), "regular", dt.time(14, 0), 90, {other_member: "present"})
        _own, s1, s2 = _sheet("bc-tu-cham", "thuong_ky")
        _sup, t1, t2 = _sheet("bc-giam-sat", "giam_sat")
        own = AnswerSet.create(version=_own.id, meeting=jan.id, role="self")
        set_answer(own, s1, "45")
        set_answer(own, s2, "1")
        sup = AnswerSet.create(version=_sup.id, meeting=jan.id, role="supervisor")
        set_answer(sup, t1, "50")
        set_answer(sup, t2, "1")
        done = Task.create(meeting=jan.id, text="Kiểm tra chợ đầu mối", assignee=m[0].id)
        Task.create(meeting=jan.id, text="Báo cáo chuyên đề", assignee=m[1].id)
        TaskReview.create(task=done.id, meeting=feb.id, outcome="done")
        for meeting in (jan, feb, thematic, cb02):
            meeting.status = "closed"
            meeting.save()
        return {"jan": jan, "feb": feb, "thematic": thematic, "cb02": cb02, "own": own, "sup": sup}


def test_hand_counted_totals(app, org, counted):
    """The year's totals are the hand counts."""
    with app.app_context(), db.connection_context():
        assert refresh() == "full"
        t = metrics(Filters(year=YEAR))[()]
        assert (t["meetings"], t["regular"], t["thematic"]) == (4, 3, 1)
        assert (t["on_schedule"], t["duration_ok"], t["duration_judged"]) == (2, 3, 4)
        assert (t["present"], t["marked"], t["excused"], t["unexcused"]) == (19, 22, 2, 1)
        assert round(t.attendance_rate, 2) == 86.36
        assert (t["attendance_ok"], t["attendance_judged"]) == (3, 4)
        assert (t["contributions"], t["tu_phe_binh"], t["phe_binh"], t.criticism) == (4, 1, 1, 2)
        assert t.participation == 50.0
        assert (t.self_avg, t.sup_avg) == (85.0, 90.0)
        assert t.bands("self")["kha"] == 1 and t.bands("sup")["tot"] == 1
        one = metrics(Filters(year=YEAR, cell_ids=[org.other_cell.id]))[()]
        assert (one["meetings"], one["duration_ok"], one["attendance_ok"]) == (1, 1, 1)
        feb = metrics(Filters(year=YEAR, month=2))[()]
        assert (feb["meetings"], feb["on_schedule"]) == (2, 0)


def test_matrix_and_month_totals_match_the_cell_page(app, org, counted):
    """The matrix says on time / late / missing as the cell page's year_compliance does."""
    from blueprints.cells import meeting_tallies
    from models.planning import year_compliance

    with app.app_context(), db.connection_context():
        refresh()
        cells = [Cell.get_by_id(org.cell.id), Cell.get_by_id(org.other_cell.id)]
        today = dt.date(YEAR + 1, 1, 15)
        matrix = compliance_matrix(cells, YEAR, today)
        states = [matrix[org.cell.id]["months"][m].state for m in range(1, 13)]
        assert states == ["on_time", "late"] + ["missing"] * 10
        assert matrix[org.cell.id]["months"][2].short == 1 and matrix[org.cell.id]["months"][2].low_attendance == 1
        assert [matrix[org.cell.id]["quarters"][q] for q in range(1, 5)] == [True, False, False, False]
        meetings = list(Meeting.live().where(Meeting.cell == org.cell.id))
        compliance = year_compliance(cells[0], YEAR, meetings, meeting_tallies(meetings), today=today)
        missing = [m for m in range(1, 13) if matrix[org.cell.id]["months"][m].state == "missing"]
        assert missing == compliance.missing_months
        totals = month_totals(cells, YEAR, today)
        assert totals[1] == {"on_time": 2, "late": 0, "missing": 0}
        assert totals[2] == {"on_time": 0, "late": 1, "missing": 1}
        assert totals[3] == {"on_time": 0, "late": 0, "missing": 2}


def test_rollup_rows_equal_the_domain_functions(app, org, counted):
    """Each rollup row equals what the cell pages' functions compute from the records."""
    with app.app_context(), db.connection_context():
        refresh()
        rows = {r["meeting"].id: r for r in meeting_record_rows([m.id for m in counted.values() if hasattr(m, "cell_id")])}
        for meeting_id, r in rows.items():
            roll = ReportMeeting.get_by_id(meeting_id)
            assert (roll.present, roll.marked) == (r["present"], r["marked"])
            assert roll.attendance_ok == r["passes"]
            assert roll.minutes == r["minutes"]
            assert roll.duration_ok is (not any("Thời lượng" in f for f in r["flags"]))
            if roll.kind in ("regular", "combined"):  # meeting_flags judges the fixed day of regular ones
                assert roll.on_schedule is (not any("ngày cố định" in f for f in r["flags"]))
            assert (roll.contributions, roll.speakers) == (r["speak"].total, r["speak"].speakers)
            assert (roll.self_pct, roll.sup_pct) == (r["self_pct"], r["sup_pct"])
        assert score_answer_set(counted["own"]).percentage == 85.0


def test_a_meeting_past_midnight_counts_its_real_length(app, org, counted):
    """Tapped 22:30 → 00:15 (next day): the rollup says 105 minutes, as duration_minutes does, not -1,335."""
    from models.meetings import duration_minutes

    with app.app_context(), db.connection_context():
        late = Meeting.get_by_id(counted["thematic"].id)
        late.started_at, late.ended_at = dt.time(22, 30, 0), dt.time(0, 15, 0)
        late.save()
        rebuild()
        assert ReportMeeting.get_by_id(late.id).minutes == duration_minutes(late) == 105.0
        assert metrics(Filters(year=YEAR))[()]["duration_ok"] == 3  # 105 ≥ 90: still long enough


def test_bulk_rebuild_scores_like_the_scoring_engine(app, org, counted, monkeypatch):
    """A full rebuild in bulk (answers loaded per chunk, score_sheet) scores as score_answer_set does."""
    import models.consolidation as consolidation

    with app.app_context(), db.connection_context():
        rebuild()
        exact = ReportMeeting.get_by_id(counted["jan"].id)
        monkeypatch.setattr(consolidation, "_BULK_MIN", 0)
        monkeypatch.setattr("models.scoring.score_answer_set", lambda s: pytest.fail("bulk path not taken"))
        rebuild()
        bulk = ReportMeeting.get_by_id(counted["jan"].id)
        assert (bulk.self_pct, bulk.self_band, bulk.sup_pct, bulk.sup_band) == \
               (exact.self_pct, exact.self_band, exact.sup_pct, exact.sup_band) == (85.0, "kha", 90.0, "tot")


def test_incremental_refresh_follows_the_change_log(app, org, counted):
    """A change after the rollup is read from the change log: only that meeting is recomputed."""
    with app.app_context(), db.connection_context():
        assert refresh() == "full"
        assert refresh() == "none"
        feb = Meeting.get_by_id(counted["feb"].id)
        feb.status = "ended"  # a revision reopens it
        feb.save()
        row = Attendance.get((Attendance.meeting == feb.id) & (Attendance.member == org.members[5].id))
        row.status = "present"
        row.save()
        assert refresh() == "incremental"
        fixed = ReportMeeting.get_by_id(feb.id)
        assert (fixed.present, fixed.marked, fixed.unexcused) == (6, 7, 0)
        assert fixed.attendance_ok is True
        # The per cell-year sums followed: the year read from them equals the sum of its months.
        year = metrics(Filters(year=YEAR))[()]
        assert year.values == total_of(metrics(Filters(year=YEAR), group_by=("month",))).values
        assert (year["present"], year["unexcused"]) == (20, 0)
        # So did the all-cells month sums: they equal the months counted meeting by meeting.
        every = [org.cell.id, org.other_cell.id]
        kept = {k: v.values for k, v in month_series(Filters(year=YEAR)).items()}
        assert kept == {k: v.values for k, v in month_series(Filters(year=YEAR, cell_ids=every)).items()}
        assert kept[(2,)]["present"] == 6 + 7
        feb.soft_delete()
        assert refresh() == "incremental"
        assert ReportMeeting.get_or_none(ReportMeeting.meeting_id == feb.id) is None


def test_rating_evidence_and_quota(app, org, counted):
    """Members' evidence, proposals by the rule set's bands, and the excellent quota flagged."""
    with app.app_context(), db.connection_context():
        ev = rating_evidence(Cell.get_by_id(org.cell.id), YEAR)
        by_name = {m.member.full_name: m for m in ev.members}
        m = org.members
        a = by_name[m[0].full_name]
        assert (a.counted, a.present, a.tasks, a.tasks_done) == (3, 3, 1, 1)
        assert a.points == pytest.approx(95.0) and a.proposed == "excellent"
        assert by_name[m[1].full_name].proposed == "complete"  # (100 + 0 + 85) / 3 = 61,7
        assert by_name[m[5].full_name].proposed == "good"  # (66,7 + 85) / 2 = 75,8
        assert m[7].full_name not in by_name  # exempted: never marked
        assert ev.proposed == "good"  # mean meeting score 85
        assert ev.excellent_count == 4 and ev.excellent_quota == 0 and ev.quota_exceeded


def test_dashboard_page_shows_the_counts_and_drills_down(client, auth, org, counted):
    """The dashboard shows the hand counts; a number opens exactly the meetings behind it."""
    auth.login("admin")
    page = client.get(f"/reports/?year={YEAR}").get_data(as_text=True)
    assert "Tổng hợp sinh hoạt chi bộ năm 2023" in page
    assert "86,4" in page and "<svg" in page
    assert 'data-state="late"' in page and 'data-month-total="2">0 / 1 / 1' in page
    drill = client.get(f"/reports/meetings?year={YEAR}&metric=short").get_data(as_text=True)
    assert 'data-testid="drill-count"><strong>1</strong>' in drill
    assert "07/02/2023" in drill and "Thời lượng 60 phút" in drill
    drill = client.get(f"/reports/meetings?year={YEAR}&metric=low_attendance").get_data(as_text=True)
    assert "07/02/2023" in drill and "chưa đạt" in drill and "05/01/2023" not in drill


def test_secretary_sees_only_their_cell_and_members_are_refused(client, auth, org, counted):
    """A secretary's dashboard counts their own cell; a plain member gets 403."""
    auth.login("bithu2")
    page = client.get(f"/reports/?year={YEAR}").get_data(as_text=True)
    assert 'data-cell="CB02"' in page and 'data-cell="CB01"' not in page
    assert client.get(f"/reports/?year={YEAR}&cell={org.cell.id}").status_code == 404
    auth.logout()
    auth.login("dangvien1")
    assert client.get("/reports/").status_code == 403


def test_yoy_against_baselines(client, auth, app, org, counted):
    """2023 against 2022 (nothing held) shows the change and the per-cell table."""
    auth.login("admin")
    page = client.get(f"/reports/yoy?year={YEAR}&base=2022").get_data(as_text=True)
    assert "Năm 2023 so với 2022" in page and "2023 so với 2022" in page
    assert 'data-testid="yoy-cells"' in page and "CB02" in page
    data = client.get(f"/reports/yoy?year={YEAR}&base=2022&format=csv").data
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    held = next(r for r in rows if r[0] == "Số buổi sinh hoạt đã tổ chức")
    assert held[1:] == ["0", "4", "4"]


def test_csv_has_bom_vietnamese_headers_and_no_formulas(client, auth, app, org, counted):
    """CSV: UTF-8 with BOM, Vietnamese headers; a cell named like a formula is written as text."""
    with app.app_context(), db.connection_context():
        cell = Cell.get_by_id(org.other_cell.id)
        cell.name = '=HYPERLINK("http://x")'
        cell.save()
    auth.login("admin")
    data = client.get(f"/reports/export.csv?table=matrix&year={YEAR}").data
    assert data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["Mã", "Chi bộ", "T1/2023"]
    assert rows[2][1] == "'=HYPERLINK(\"http://x\")"
    assert rows[1][2:4] == ["Đúng lịch", "Lệch ngày (thiếu thời lượng, tỷ lệ dự chưa đạt)"]


def test_decided_level_is_recorded_by_central_admin_only(client, auth, app, org, counted):
    """Central's admin records the decided levels; a wrong level answers 422; a secretary cannot post."""
    auth.login("admin")
    url = f"/reports/rating?cell={org.cell.id}&year={YEAR}"
    page = client.get(url).get_data(as_text=True)
    assert "vượt tỷ lệ cho phép" in page
    member = org.members[0]
    bad = client.post(url, data={"csrf_token": auth.token(url), f"level_member_{member.id}": "rat_tot"})
    assert bad.status_code == 422 and "Mức xếp loại không hợp lệ." in bad.get_data(as_text=True)
    ok = client.post(url, data={"csrf_token": auth.token(url), f"level_member_{member.id}": "good",
                                f"level_cell_{org.cell.id}": "good"})
    assert ok.status_code == 303
    with app.app_context(), db.connection_context():
        row = AnnualRating.get(AnnualRating.subject_id == member.id)
        assert (row.decided_level, row.proposed_level, row.year) == ("good", "excellent", YEAR)
    auth.logout()
    auth.login("bithu1")
    assert client.post(url, data={"csrf_token": auth.token(url)}).status_code == 403


def test_five_year_pack_xlsx_and_pdf(client, auth, app, org, counted):
    """The pack builds (inline here), reports progress done, and its XLSX holds the hand counts."""
    from openpyxl import load_workbook

    app.config["REPORT_PACK_INLINE"] = True
    auth.login("admin")
    bad = client.post("/reports/pack", data={"csrf_token": auth.token("/reports/pack"), "end": "20x"})
    assert bad.status_code == 422 and "Năm cuối kỳ" in bad.get_data(as_text=True)
    assert 'value="20x"' in bad.get_data(as_text=True)
    made = client.post("/reports/pack", data={"csrf_token": auth.token("/reports/pack"), "end": str(YEAR)})
    assert made.status_code == 303
    job_url = made.headers["Location"]
    progress = client.get(job_url + "/progress", headers={"HX-Request": "true"})
    assert progress.status_code == 286 and "đã xong" in progress.get_data(as_text=True)
    book = load_workbook(io.BytesIO(client.get(job_url + "/download.xlsx").data))
    sheet = book.worksheets[0]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[2][0] == "Năm"
    year_row = next(r for r in rows if r[0] == YEAR)
    assert year_row[2] == 3  # regular meetings held
    pdf = client.get(job_url + "/download.pdf").data
    assert pdf.startswith(b"%PDF")
    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "sơ kết" in text.lower() and "Tỷ lệ dự" in text


def test_cli_refresh(runner, app, org, counted):
    """`flask reports refresh` says what it did."""
    first = runner.invoke(args=["reports", "refresh"])
    assert "Đã dựng lại toàn bộ" in first.output
    again = runner.invoke(args=["reports", "refresh"])
    assert "không có thay đổi mới" in again.output


@pytest.mark.sqlite_only  # the demo load is the same code on both; on PostgreSQL it costs ~50 s of CI
def test_demo_rollup_matches_the_cell_pages(app):
    """On the demo data every meeting's rollup row equals the domain functions, and each cell's
    missing months equal year_compliance."""
    from blueprints.cells import meeting_rates, meeting_tallies
    from models.demo import load_demo
    from models.planning import meeting_flags, year_compliance

    with app.app_context(), db.connection_context():
        today = dt.date.today()
        load_demo(start_year=today.year)  # this year only: the full history takes minutes on PostgreSQL
        assert refresh() == "full"
        cells = list(Cell.select().order_by(Cell.code))
        for cell in cells:
            for year in (today.year,):
                meetings = list(Meeting.live().where((Meeting.cell == cell.id)
                                                     & (Meeting.held_on.between(dt.date(year, 1, 1), dt.date(year, 12, 31)))))
                tallies = meeting_tallies(meetings)
                rates = meeting_rates(meetings, tallies)
                rules = {m.rule_set_id: m.rule_set for m in meetings}
                for m in meetings:
                    roll = ReportMeeting.get_by_id(m.id)
                    assert (roll.present, roll.marked) == (rates[m.id]["present"], rates[m.id]["counted"])
                    assert roll.attendance_ok == rates[m.id]["passes"]
                    flags = meeting_flags(m, cell, rules[m.rule_set_id], tallies.get(m.id))
                    if roll.held:
                        assert roll.duration_ok is (not any("Thời lượng" in f for f in flags))
                matrix = compliance_matrix([cell], year, today)
                missing = [mm for mm in range(1, 13) if matrix[cell.id]["months"][mm].state == "missing"]
                assert missing == year_compliance(cell, year, meetings, tallies, today=today).missing_months
        # The visit rollup equals the direct count of the demo's visits (all cells, each cell, none).
        from tests.test_consolidation_supervision import assert_visit_rollup_is_direct

        assert assert_visit_rollup_is_direct((today.year,), [None, []] + [[c.id] for c in cells]) > 0
        held = metrics(Filters(year=today.year))[()]
        regular = Meeting.live().where(Meeting.status.in_(("in_progress", "ended", "closed"))
                                       & Meeting.kind.in_(("regular", "combined"))).count()
        assert held["regular"] == regular > 0
        assert held["present"] == Attendance.live().where(Attendance.status == "present").count()
