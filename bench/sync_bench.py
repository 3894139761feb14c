"""Benchmark: a field node's first sync, a push of many changes, and a sync with nothing to do.

Two real nodes as in tests/test_sync_integration.py: central (demo data, a real HTTP server in a
subprocess, its own SQLite file) and field node doi-1 holding two cells (its own SQLite file). Each
step runs `flask --app app sync` as an operator would and reports wall time and changes per second.
Usage: python bench/sync_bench.py [meetings_to_push]
"""
from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent

WRITE_MEETINGS = """
import sys, datetime as dt
from app import create_app
from models import Cell, Meeting, db
from models.meetings import set_attendance
from models.members import roll_for_cell
app = create_app()
with app.app_context(), db.connection_context():
    cell = Cell.get(Cell.code == "CB02")
    roll = [m for m in roll_for_cell(cell.id) if m.counts_for_attendance]
    for i in range(int(sys.argv[1])):
        meeting = Meeting.create(cell=cell.id, held_on=dt.date(2030, 1, 1) + dt.timedelta(days=i),
                                 kind="extraordinary", title=f"Đo tải {i}")
        for member in roll:
            set_attendance(meeting, member.id, "present")
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_for(tmp: Path, role: str, node: str, port: int, **extra: str) -> dict[str, str]:
    """A node's environment (nothing inherited from CHIBO_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIBO_")}
    env.update({"CHIBO_ROLE": role, "CHIBO_NODE_ID": node, "CHIBO_PORT": str(port), "CHIBO_SECRET_KEY": "bench",
                "CHIBO_DATABASE_URL": f"sqlite:///{tmp / node}.sqlite3",
                # Only the measured syncs run: no timer sync in the field node's server.
                "CHIBO_SYNC_INTERVAL": "0", **extra})
    return env


def flask(env: dict[str, str], *args: str) -> str:
    """Run a CLI command (or `python -c` when args start with -c) and return its output."""
    command = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "flask", "--app", "app", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout


def timed_sync(env: dict[str, str], label: str) -> None:
    """Run one sync and print its time and throughput."""
    started = time.monotonic()
    out = flask(env, "sync")
    seconds = time.monotonic() - started
    summary = [line for line in out.splitlines() if line.startswith("Đã gửi")][-1]
    print(f"{label:<28} {seconds:6.2f} s   {summary}")


def main(meetings: int = 40) -> None:
    """Demo data at central, then first sync, a push of `meetings` roll calls, and a no-op sync."""
    tmp = Path(tempfile.mkdtemp())
    port = free_port()
    central = env_for(tmp, "central", "central", port)
    flask(central, "demo")
    token = flask(central, "nodes", "register", "doi-1", "--cells", "CB02,CB03").strip().splitlines()[-1]
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=central,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/login", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        field = env_for(tmp, "field", "doi-1", free_port(), CHIBO_CENTRAL_URL=f"http://127.0.0.1:{port}",
                        CHIBO_SYNC_TOKEN=token)
        timed_sync(field, "first sync (pull)")
        flask(field, "-c", WRITE_MEETINGS, str(meetings))
        with sqlite3.connect(tmp / "doi-1.sqlite3") as conn:
            pending = conn.execute("SELECT COUNT(*) FROM change_log WHERE origin='doi-1'").fetchone()[0]
        print(f"{'written at the field':<28} {pending} changes ({meetings} meetings with roll call)")
        timed_sync(field, "push")
        timed_sync(field, "nothing to do")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
