"""Benchmark: server time of the meeting, cell and minutes pages for a 40-member cell with ten years
of history (a regular meeting every month and a thematic one every quarter, each with its roll call,
contributions, a vote and tasks), through the Flask test client on a real SQLite file.

Prints p50 and p95 per page over N requests (target p50 < 20 ms, p95 < 50 ms).
Usage: python bench/pages.py [requests-per-page]   (CHIBO_BENCH_DB=path keeps and reuses the database)
"""
from __future__ import annotations

import datetime as dt
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from models import Attendance, Cell, Contribution, Meeting, Member, Organisation, Task, User, Vote, db  # noqa: E402
from models.checklist_seed import seed_checklists  # noqa: E402

PASSWORD = "bench-mat-khau"


def build(years: int = 10, members: int = 40) -> tuple[str, str]:
    """Make the cell and its history; return (cell id, id of this month's meeting, held and ended)."""
    rng = random.Random(7)
    o = Organisation.create(name="Đảng bộ Cục Quản lý thị trường")
    cell = Cell.create(organisation=o.id, code="B01", name="Chi bộ Đội QLTT số 1", meeting_day=1)
    roll = [Member.create(cell=cell.id, full_name=f"Đảng viên {i:02d} Nguyễn Văn", status="probationary" if i % 13 == 0 else "full")
            for i in range(members)]
    user = User(username="bithu", role="secretary", full_name="Bí thư", cell=cell.id)
    user.set_password(PASSWORD)
    user.save()
    today = dt.date.today()
    current = None
    for year in range(today.year - years, today.year + 1):
        for month in range(1, 13):
            day = dt.date(year, month, 1)
            if day > today:
                break
            kinds = [("regular", day)] + ([("thematic", dt.date(year, month, 20))] if month % 3 == 0 and dt.date(year, month, 20) <= today else [])
            for kind, held_on in kinds:
                is_current = (year, month, kind) == (today.year, today.month, "regular")
                m = Meeting.create(cell=cell.id, kind=kind, held_on=held_on, starts_at=dt.time(14, 0),
                                   started_at=dt.time(14, 0), ended_at=dt.time(15, 40), status="ended",
                                   chair=roll[0].id, secretary=roll[1].id, conclusion="Chi bộ thống nhất nghị quyết tháng.")
                for member in roll:
                    status = "present" if rng.random() < 0.93 else "excused"
                    Attendance.create(meeting=m.id, member=member.id, status=status,
                                      reason="Đi công tác" if status == "excused" else "")
                for n in range(12):
                    Contribution.create(meeting=m.id, member=roll[(n * 3) % members].id,
                                        kind=("y_kien", "tu_phe_binh", "phe_binh", "de_xuat")[n % 4], summary="Ý kiến")
                Vote.create(meeting=m.id, subject="Thông qua nghị quyết", in_favour=30, against=0, abstain=0, eligible=34)
                for n in range(3):
                    Task.create(meeting=m.id, text=f"Nhiệm vụ {n + 1}", assignee=roll[n].id)
                if is_current:
                    current = m
                else:
                    m.status = "closed"
                    m.save()
    return cell.id, current.id


def percentiles(timings: list[float]) -> tuple[float, float]:
    """p50 and p95 (ms) of a list of timings."""
    timings = sorted(timings)
    return statistics.median(timings), timings[max(0, int(len(timings) * 0.95) - 1)]


def timed(client, pages: dict[str, str], n: int) -> dict[str, list[float]]:
    """n GETs of every page, interleaved (one of each in turn) so the machine's noise hits all alike."""
    timings: dict[str, list[float]] = {label: [] for label in pages}
    for label, path in pages.items():
        client.get(path)  # warm the template cache
    for _ in range(n):
        for label, path in pages.items():
            start = time.perf_counter()
            response = client.get(path)
            timings[label].append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (path, response.status_code)
    return timings


def main(n: int = 100) -> None:
    """Build the history, log in as the secretary and time each page."""
    path = Path(os.environ.get("CHIBO_BENCH_DB") or Path(tempfile.mkdtemp()) / "bench.sqlite3")
    reuse = path.exists()
    app = create_app({"SECRET_KEY": "bench", "DATABASE_URL": f"sqlite:///{path}", "SEED_REFERENCE_DATA": True})
    started = time.perf_counter()
    with app.app_context(), db.connection_context():
        if reuse:
            cell_id = Cell.get(Cell.code == "B01").id
            meeting_id = Meeting.get((Meeting.cell == cell_id) & (Meeting.status == "ended")).id
        else:
            seed_checklists()
            cell_id, meeting_id = build()
        count = Meeting.select().count()
    print(f"dữ liệu: 40 đảng viên, {count} buổi sinh hoạt trong 10 năm (tạo trong {time.perf_counter() - started:.0f} s)")
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    client.post("/login", data={"username": "bithu", "password": PASSWORD, "csrf_token": token})
    pages = {
        "điểm danh  /meetings/<id>": f"/meetings/{meeting_id}",
        "diễn biến  /meetings/<id>/hold": f"/meetings/{meeting_id}/hold",
        "kết luận   /meetings/<id>/conclusion": f"/meetings/{meeting_id}/conclusion",
        "biên bản   /meetings/<id>/minutes": f"/meetings/{meeting_id}/minutes",
        "chi bộ     /cells/<id>": f"/cells/{cell_id}",
    }
    print(f"{n} lần mỗi trang, xen kẽ (ms; mục tiêu p50 < 20, p95 < 50):")
    for label, timings in timed(client, pages, n).items():
        p50, p95 = percentiles(timings)
        flag = "" if p50 < 20 and p95 < 50 else "   << chưa đạt"
        print(f"  {label:42s} p50 {p50:6.1f}   p95 {p95:6.1f}{flag}")
    start = time.perf_counter()
    client.get(f"/meetings/{meeting_id}/minutes.pdf")
    print(f"  {'biên bản PDF (một lần)':42s} {(time.perf_counter() - start) * 1000:6.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
