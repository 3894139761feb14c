"""Benchmark: consolidation at national scale on PostgreSQL.

Generates (with COPY, never the ORM row by row) 5,000 cells × 5 years: a regular meeting every month
(the middle month of each quarter combined with the thematic one) ≈ 300,000 meetings, ~23 members per
cell ≈ 7 million roll-call marks, ~5 contributions per meeting and a scored self-assessment sheet per
meeting, and supervision (4 plan lines per cell a year, visits, recommendations with their events,
inspections); builds the rollup; then times the consolidated dashboard for one year (all cells), a year
against two baseline years, and the five-year pack (XLSX + PDF), and prints `key=value` lines
(medians of several runs). Targets: dashboard_year_ms < 500, yoy_ms < 500, five_year_pack_s < 5.

Measured on a 2-core machine shared with other work (02/12/2026, full scale, 300,000 meetings,
6.9 million marks, 1.5 million contributions, 300,000 scored sheets): generate 66–113 s, rollup build
41–84 s, dashboard_year_ms 80, yoy_ms 62, five_year_pack_s 2.7, incremental refresh after one change
~0.05–0.4 s. Cost: the dashboard and year-on-year read per cell-year and all-cells month sums, so they
grow with the number of cells (500 cells: 38 ms and 23 ms) and not with years (500 cells × 10 years:
42 ms and 24 ms); the pack grows with cells (its per-cell table: 0.6 s at 500, 2.7 s at 5,000); the
full rebuild grows with meetings and marks.
With supervision data (02/12/2026, 5,000 cells: 100,000 plan lines, 90,000 visits, 135,000
recommendations, 270,000 follow-up events, 500 inspections; machine shared and noisy): dashboard_year_ms
730–830 (75–116 without the supervision panels: coverage ~300, visit totals ~100–200, score bands
~150–230, recommendations ~15–30 from their cached states), yoy_ms 460–555, five_year_pack_s 4.3–4.9
(supervision's five years ~2.3 s, mostly coverage per year). Over target: the visit queries read the
year's meetings (or rollup rows) to place each visit in a year and cell.
With the visit rollup `report_visit` (each visit's year, month, cell, visitor, scores, signed; kept
by refresh() like report_recommendation; coverage's visits made, visit totals and score bands read it
by year) (02/12/2026, full scale, same data sizes, machine shared): generate 67 s, rollup build 53 s,
dashboard_year_ms 488, yoy_ms 224, five_year_pack_s 3.63, incremental refresh 0.2 s. At 1,000 cells
on the same database, old code then new: dashboard 192 -> 120 ms (97 in a quieter run), yoy 108 -> 76
(59), pack 1.31 -> 1.36 s (1.23); 500 cells: dashboard 120 -> 84, yoy 66 -> 48. Measured at 1,000
cells (per call): coverage 54 -> 18 ms (direct vs rolled), visit totals 17 -> 3, score bands 30 -> 11
(the last after the full-scale run, not measured at 5,000). What is left grows with cells, not years:
the dashboard without the supervision panels (47 ms at 1,000 cells: the compliance matrix rendered
for every cell), coverage's plan lines (a scan of supervision_assignment, which has no index on year:
~9 ms at 1,000 cells, ~2 ms with one, but an index is a schema step) and its rows per cell and visitor.

Usage: python bench/national.py [--cells 5000] [--years 5] [--runs 5] [--keep]
       (PostgreSQL at CHIBO_BENCH_PG, default postgresql://postgres@127.0.0.1:5432; the database
       `chibo_national` is created and dropped at the end unless --keep)
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("CHIBO_TEST_FAST_HASH", "1")

import psycopg  # noqa: E402

from app import create_app  # noqa: E402
from models import Answer, AnswerSet, Attendance, Cell, Contribution, Meeting, Member, Organisation, User, db  # noqa: E402
from models.checklists import ChecklistTemplate, TemplateItem, TemplateSection, new_draft, publish  # noqa: E402
from models.rules import RuleSet  # noqa: E402

BASE_URL = os.environ.get("CHIBO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB_NAME = "chibo_national"
PASSWORD = "bench-mat-khau-quoc-gia"
BIG = (Member, Meeting, Attendance, Contribution, AnswerSet, Answer)


def _admin(sql: str) -> None:
    with psycopg.connect(f"{BASE_URL}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def _text(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (dt.date, dt.time, dt.datetime)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    return str(value)


class Copier:
    """COPY rows of one model: the columns given per row, every other column from its default."""

    def __init__(self, cursor, model, columns: list[str]):
        self.model, self.columns = model, columns
        now = dt.datetime(2026, 1, 1)
        fixed = {"owner": "central", "created_at": now, "updated_at": now, "hlc": "", "stamps": "",
                 "deleted_at": None}
        self.rest = []
        for f in model._meta.sorted_fields:
            if f.column_name in columns:
                continue
            value = fixed[f.name] if f.name in fixed else (f.default() if callable(f.default) else f.default)
            self.rest.append((f.column_name, value))
        names = columns + [c for c, _v in self.rest]
        self.suffix = "\t" + "\t".join(_text(v) for _c, v in self.rest) if self.rest else ""
        self.manager = cursor.copy(f"COPY {model._meta.table_name} ({', '.join(names)}) FROM STDIN")
        self.buffer = io.StringIO()
        self.count = 0

    def __enter__(self):
        self.copy = self.manager.__enter__()
        return self

    def row(self, *values) -> None:
        self.buffer.write("\t".join(_text(v) for v in values) + self.suffix + "\n")
        self.count += 1
        if self.count % 20000 == 0:
            self.copy.write(self.buffer.getvalue())
            self.buffer = io.StringIO()

    def __exit__(self, *exc):
        self.copy.write(self.buffer.getvalue())
        return self.manager.__exit__(*exc)


def uid(kind: int, n: int) -> str:
    """A deterministic uuid-shaped id per table and number (uuid7 layout, ordered)."""
    return f"0190{kind:04x}-0000-7000-8000-{n:012x}"


def generate(cells: int, years: list[int], seed: int = 12) -> dict:
    """Fill the database; return counts."""
    rng = random.Random(seed)
    org = Organisation.create(name="Đảng bộ quốc gia (thử tải)")
    template = ChecklistTemplate.create(code="bench-thuong-ky", name="Phiếu chấm thường kỳ (thử tải)", kind="thuong_ky")
    version = new_draft(template, total_points=100)
    section = TemplateSection.create(version=version.id, title="Nội dung", position=1)
    s1 = TemplateItem.create(version=version.id, section=section.id, position=1, code="S1", text="Chất lượng",
                             type="score", points=60)
    s2 = TemplateItem.create(version=version.id, section=section.id, position=2, code="S2", text="Đúng trình tự",
                             type="yes_no", points=40)
    publish(version)
    supervisors = []
    for i in range(60):  # the accounts sent on visits (made before COPY holds the connection)
        user = User(username=f"btv{i:02d}", role="supervisor", full_name=f"Ủy viên Ban Thường vụ {i + 1}")
        user.set_password(PASSWORD)
        user.save()
        supervisors.append(user.id)
    raw = db.connection()
    counts = dict.fromkeys(("cells", "members", "meetings", "attendance", "contributions", "answer_sets", "answers"), 0)
    rules = {}
    national = sorted((r for r in RuleSet.select() if r.organisation_id is None), key=lambda r: r.effective_from,
                      reverse=True)
    with raw.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no FK triggers while bulk loading
        dropped = []
        for model in BIG:
            cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT LIKE %s",
                        (model._meta.table_name, "%pkey"))
            for name, definition in cur.fetchall():
                dropped.append(definition)
                cur.execute(f'DROP INDEX "{name}"')
        with Copier(cur, Cell, ["id", "organisation_id", "code", "name", "meeting_day", "active_from"]) as cc:
            for c in range(cells):
                cc.row(uid(1, c), org.id, f"C{c:05d}", f"Chi bộ số {c + 1}", 1 + c % 28, dt.date(2015, 1, 1))
        counts["cells"] = cells
        roll: list[list[str]] = []
        with Copier(cur, Member, ["id", "cell_id", "full_name", "status"]) as mc:
            n = 0
            for c in range(cells):
                ids = []
                for _ in range(rng.randint(19, 27)):
                    mc.row(uid(2, n), uid(1, c), f"Đảng viên {n}", "full")
                    ids.append(uid(2, n))
                    n += 1
                roll.append(ids)
            counts["members"] = n
        meetings = []
        with Copier(cur, Meeting, ["id", "cell_id", "kind", "held_on", "starts_at", "ends_at", "status", "is_model",
                                   "rule_set_id"]) as mt:
            n = 0
            for c in range(cells):
                day = 1 + c % 28
                for y in years:
                    for month in range(1, 13):
                        combined = month in (2, 5, 8, 11)
                        held = dt.date(y, month, day if rng.random() < 0.9 else min(day + 1, 28) if day < 28 else 27)
                        if held not in rules:  # no query while COPY holds the connection
                            rules[held] = next((r.id for r in national if r.effective_from <= held
                                                and (r.effective_to is None or held <= r.effective_to)), None)
                        minutes = rng.randint(110, 150) if combined else rng.randint(80, 125)
                        start = dt.datetime.combine(held, dt.time(14, 0))
                        mt.row(uid(3, n), uid(1, c), "combined" if combined else "regular", held, start.time(),
                               (start + dt.timedelta(minutes=minutes)).time(), "closed", rng.random() < 0.005,
                               rules[held])
                        meetings.append((uid(3, n), c))
                        n += 1
            counts["meetings"] = n
        with Copier(cur, Attendance, ["id", "meeting_id", "member_id", "status", "reason"]) as at:
            n = 0
            present_of = {}
            for meeting_id, c in meetings:
                present = []
                for member_id in roll[c]:
                    r = rng.random()
                    status = "present" if r < 0.9 else "excused" if r < 0.98 else "unexcused"
                    at.row(uid(4, n), meeting_id, member_id, status, "Đi công tác" if status == "excused" else "")
                    n += 1
                    if status == "present":
                        present.append(member_id)
                present_of[meeting_id] = present
            counts["attendance"] = n
        kinds = ["y_kien"] * 6 + ["tu_phe_binh"] * 2 + ["phe_binh"] * 1 + ["de_xuat"]
        with Copier(cur, Contribution, ["id", "meeting_id", "member_id", "kind"]) as ct:
            n = 0
            for meeting_id, _c in meetings:
                speakers = present_of[meeting_id]
                for _ in range(rng.randint(3, 7)):
                    ct.row(uid(5, n), meeting_id, rng.choice(speakers), rng.choice(kinds))
                    n += 1
            counts["contributions"] = n
        with Copier(cur, AnswerSet, ["id", "version_id", "meeting_id", "role"]) as st:
            for i, (meeting_id, _c) in enumerate(meetings):
                st.row(uid(6, i), version.id, meeting_id, "self")
            counts["answer_sets"] = len(meetings)
        with Copier(cur, Answer, ["id", "answer_set_id", "item_id", "value_json"]) as an:
            for i in range(len(meetings)):
                an.row(uid(7, 2 * i), uid(6, i), s1.id, str(rng.randint(35, 60)))
                an.row(uid(7, 2 * i + 1), uid(6, i), s2.id, "true" if rng.random() < 0.9 else "false")
            counts["answers"] = 2 * len(meetings)
        counts.update(_supervision(cur, rng, cells, years, meetings, supervisors))
        cur.execute("SET session_replication_role = DEFAULT")
        for definition in dropped:
            cur.execute(definition)
        cur.execute("ANALYZE")
    raw.commit()
    return counts


def _supervision(cur, rng, cells: int, years: list[int], meetings: list, supervisors: list[str]) -> dict:
    """Plan lines (4 per cell-year), visits (90 % of them), 0–3 recommendations per visit with their
    follow-up events, one inspection per 50 cells a year."""
    from models.supervision import (AnnualInspection, Recommendation, RecommendationEvent, SupervisionAssignment,
                                    SupervisionVisit)

    counts = dict.fromkeys(("plan_lines", "visits", "recommendations", "rec_events", "inspections"), 0)
    lines, visits = Copier(cur, SupervisionAssignment, ["id", "cell_id", "supervisor_id", "year", "month", "source"]), []
    with lines:
        for c in range(cells):
            for yi, y in enumerate(years):
                for q, month in enumerate((2, 5, 8, 11)):
                    who = supervisors[(c + q) % len(supervisors)]
                    lines.row(uid(8, counts["plan_lines"]), uid(1, c), who, y, month, "auto")
                    counts["plan_lines"] += 1
                    if rng.random() < 0.9:
                        meeting_id = meetings[(c * len(years) + yi) * 12 + month - 1][0]
                        visits.append((meeting_id, who, dt.date(y, month, 1)))
    with Copier(cur, SupervisionVisit, ["id", "meeting_id", "supervisor_id", "score", "confirmed_at"]) as vc:
        for n, (meeting_id, who, day) in enumerate(visits):
            vc.row(uid(9, n), meeting_id, who, rng.randint(50, 100), dt.datetime.combine(day, dt.time(17, 0)))
        counts["visits"] = len(visits)
    recs = []
    with Copier(cur, Recommendation, ["id", "visit_id", "text", "deadline"]) as rc:
        for n, (_m, _w, day) in enumerate(visits):
            for _ in range(rng.randint(0, 3)):
                rc.row(uid(10, len(recs)), uid(9, n), "Khắc phục hạn chế đã nêu", day + dt.timedelta(days=45))
                recs.append(uid(10, len(recs)))
        counts["recommendations"] = len(recs)
    moves = [[], [("in_progress", "cell")], [("done", "cell")], [("done", "cell"), ("verified", "supervisor")]]
    with Copier(cur, RecommendationEvent, ["id", "recommendation_id", "state", "side", "hlc"]) as ec:
        n = 0
        for rec_id in recs:
            for state, side in [("open", "supervisor")] + rng.choice(moves):
                ec.row(uid(11, n), rec_id, state, side, f"{n:020d}")
                n += 1
        counts["rec_events"] = n
    with Copier(cur, AnnualInspection, ["id", "cell_id", "year", "status", "conclusion", "done_on"]) as ic:
        for y in years:
            for c in range(0, cells, 50):
                ic.row(uid(12, counts["inspections"]), uid(1, c), y, "done", "Đạt yêu cầu", dt.date(y, 11, 20))
                counts["inspections"] += 1
    return counts


def median_ms(fn, runs: int) -> float:
    """The median wall time of fn() in milliseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    """Generate, build the rollup, time the reports, print key=value lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=5000)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database chibo_national afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept database instead of generating")
    args = parser.parse_args()
    today = dt.date.today()
    years = list(range(today.year - args.years, today.year))
    if not args.reuse:
        _admin(f"DROP DATABASE IF EXISTS {DB_NAME}")
        _admin(f"CREATE DATABASE {DB_NAME}")
    app = create_app({"SECRET_KEY": "bench", "DATABASE_URL": f"{BASE_URL}/{DB_NAME}", "WTF_CSRF_ENABLED": False,
                      "REPORT_PACK_INLINE": True})
    try:
        with app.app_context(), db.connection_context():
            if not args.reuse:
                start = time.perf_counter()
                counts = generate(args.cells, years)
                print(f"generate_s={time.perf_counter() - start:.1f}")
                for key, value in counts.items():
                    print(f"{key}={value}")
                admin = User(username="quantri", role="admin", full_name="Văn phòng Đảng ủy")
                admin.set_password(PASSWORD)
                admin.save()
            from models.consolidation import refresh
            start = time.perf_counter()
            refresh(full=True)
            print(f"rollup_build_s={time.perf_counter() - start:.1f}")
        client = app.test_client()
        client.post("/login", data={"username": "quantri", "password": PASSWORD})
        year = years[-1]
        ok = client.get(f"/reports/?year={year}")
        assert ok.status_code == 200, ok.status_code
        print(f"dashboard_year_ms={median_ms(lambda: client.get(f'/reports/?year={year}'), args.runs):.0f}")
        base = f"base={years[0]}&base={years[1]}" if len(years) > 2 else f"base={years[0]}"
        assert client.get(f"/reports/yoy?year={year}&{base}").status_code == 200
        print(f"yoy_ms={median_ms(lambda: client.get(f'/reports/yoy?year={year}&{base}'), args.runs):.0f}")
        print(f"drilldown_ms={median_ms(lambda: client.get(f'/reports/meetings?year={year}&metric=low_attendance'), args.runs):.0f}")
        with app.app_context(), db.connection_context():
            from blueprints.reports import build_pack
            from models.consolidation import refresh

            cells = list(Cell.select().order_by(Cell.code))
            sizes = {}

            def pack():
                xlsx, pdf = build_pack(cells, year, "Báo cáo sơ kết 5 năm (thử tải)")
                sizes["xlsx"], sizes["pdf"] = len(xlsx), len(pdf)

            print(f"five_year_pack_s={median_ms(pack, max(args.runs // 2, 1)) / 1000:.2f}")
            print(f"pack_xlsx_bytes={sizes['xlsx']}")
            print(f"pack_pdf_bytes={sizes['pdf']}")
            meeting = Meeting.select().order_by(Meeting.held_on.desc()).first()
            meeting.status = "ended"
            meeting.save()
            start = time.perf_counter()
            mode = refresh()
            print(f"incremental_refresh_ms={(time.perf_counter() - start) * 1000:.0f} ({mode})")
            start = time.perf_counter()
            refresh()
            print(f"noop_refresh_ms={(time.perf_counter() - start) * 1000:.1f}")
    finally:
        if not db.is_closed():
            db.close()
        if not args.keep:
            _admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


if __name__ == "__main__":
    main()
