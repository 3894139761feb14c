"""Benchmark: server time of one roll-call tap (write + outbox + re-render of tile and summary).

Runs against a real SQLite file holding the demo organisation (meetings since 2025), through the
Flask test client (no network), and prints the median and 95th percentile over N taps.
Usage: python bench/rollcall_tap.py [taps]
"""
from __future__ import annotations

import datetime as dt
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from models import Meeting, Member, db  # noqa: E402
from models.demo import load_demo  # noqa: E402


def main(taps: int = 300) -> None:
    """Load demo data, log in as a secretary, tap tiles round-robin and print timings."""
    tmp = Path(tempfile.mkdtemp())
    app = create_app({"SECRET_KEY": "bench", "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}"})
    with app.app_context(), db.connection_context():
        accounts = {a.username: a.password for a in load_demo(start_year=2025)}
        meeting = Meeting.select().where(Meeting.status == "planned").order_by(Meeting.held_on).first()
        members = [m.id for m in Member.live().where((Member.cell == meeting.cell_id)
                                                      & Member.status.in_(("full", "probationary")))]
        from models import Cell
        code = Cell.get_by_id(meeting.cell_id).code.lower()
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    client.post("/login", data={"username": f"bithu.{code}", "password": accounts[f"bithu.{code}"], "csrf_token": token})
    headers = {"HX-Request": "true", "X-CSRFToken": token}
    timings = []
    for i in range(taps):
        start = time.perf_counter()
        response = client.post(f"/meetings/{meeting.id}/attendance/{members[i % len(members)]}", headers=headers)
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
    timings.sort()
    p95 = timings[int(len(timings) * 0.95) - 1]
    print(f"roll-call tap, {taps} taps, {len(members)} members, {dt.date.today():%d/%m/%Y}:")
    print(f"  median {statistics.median(timings):.1f} ms   p95 {p95:.1f} ms   max {timings[-1]:.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
