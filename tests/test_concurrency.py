"""Sync and the web server share a node safely: real processes, real HTTP, real databases.

A field node's web server takes 300 roll-call taps from two tablets while `flask sync`, in another
process, pulls thousands of changes into the same SQLite file: every tap answers 200 and is stored.
On central, an admin edits members while a field node pushes a long queue: every edit succeeds.
(Before SQLite transactions took the write lock up front, most taps answered 500 "database is
locked".) Central runs on PostgreSQL too when the run asks for it (CHIBO_TEST_DB=postgres).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import pytest

from tests.test_sync_integration import (
    PASSWORD,
    ROOT,
    SETUP_CENTRAL,
    Server,
    free_port,
    login,
    node_env,
    query,
    run,
    sync,
)

PULL_MEMBERS = 2000
TAPS = 300
PUSH_CHANGES = 1500

ADD_MANY_MEMBERS = """
import sys
from app import create_app
from models import Member, db
from models.audit import audit_suppressed
app = create_app()
with app.app_context(), db.connection_context(), db.atomic(), audit_suppressed():
    for i in range(int(sys.argv[2])):
        Member.create(cell=sys.argv[1], full_name=f"Đảng viên Số {i:05d}")
"""

MANY_FIELD_CHANGES = """
import sys
from app import create_app
from models import Meeting, db
from models.audit import audit_suppressed
from models.meetings import set_attendance
app = create_app()
with app.app_context(), db.connection_context(), db.atomic(), audit_suppressed():
    meeting = Meeting.get_by_id(sys.argv[1])
    members = sys.argv[3:]
    states = ("present", "unexcused")
    for i in range(int(sys.argv[2])):
        set_attendance(meeting, members[i % len(members)], states[(i // len(members)) % 2])
"""


@pytest.fixture
def nodes(tmp_path):
    """Central (prepared, doi-1 holds CB02) and field node doi-1 after a first sync, both serving."""
    central_env = node_env(tmp_path, "central", "central", free_port())
    ids = json.loads(run(central_env, "-c", SETUP_CENTRAL, PASSWORD).stdout.strip().splitlines()[-1])
    token = run(central_env, "nodes", "register", "doi-1", "--cells", "CB02").stdout.strip().splitlines()[-1]
    servers = []
    try:
        servers.append(Server(central_env, tmp_path / "central.log"))
        field_env = node_env(tmp_path, "field", "doi-1", free_port(),
                             CHIBO_CENTRAL_URL=servers[0].url, CHIBO_SYNC_TOKEN=token,
                             CHIBO_SYNC_BATCH_SIZE="100", CHIBO_SYNC_PULL_LIMIT="200")
        servers.append(Server(field_env, tmp_path / "field.log"))
        sync(field_env)
        yield central_env, servers[0], field_env, servers[1], ids
    finally:
        for server in servers:
            server.stop()


def new_meeting(server: Server, cell_id: str) -> str:
    """The secretary of CB02 opens a meeting at the field node; return its id."""
    session, csrf = login(server.url, "bithu2")
    response = session.post(f"{server.url}/cells/{cell_id}/meetings/new", allow_redirects=False,
                            data={"csrf_token": csrf, "held_on": time.strftime("%Y-%m-%d"), "kind": "regular",
                                  "starts_at": "14:00", "title": "Sinh hoạt trong lúc đồng bộ"}, timeout=30)
    assert response.status_code == 303, response.text[:500]
    return response.headers["Location"].rstrip("/").split("/")[-1]


def start_sync(env: dict[str, str]) -> subprocess.Popen:
    """`flask --app app sync` in the background, as an operator at the node would run it."""
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "sync"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# The field node is on SQLite in both passes: one run is enough.
@pytest.mark.sqlite_only
def test_taps_during_a_long_pull_all_succeed_and_are_all_stored(nodes):
    """300 taps from two tablets while the node pulls 2,000 new members: zero errors, zero losses."""
    central, _central_server, field, field_server, ids = nodes
    meeting_id = new_meeting(field_server, ids["cb02"])
    # Thousands of writes: more time than the usual command bound on a busy machine.
    made = subprocess.run([sys.executable, "-c", ADD_MANY_MEMBERS, ids["cb02"], str(PULL_MEMBERS)], cwd=ROOT,
                          env=central, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr

    statuses: list[int] = []
    last: dict[str, str] = {}
    moments: list[float] = []
    lock = threading.Lock()

    def tablet(members: list[str], taps: int) -> None:
        """One tablet: log in, then tap its members' tiles in turn with explicit states."""
        session, csrf = login(field_server.url, "bithu2")
        for i in range(taps):
            member = members[i % len(members)]
            status = ("present", "unexcused")[(i // len(members)) % 2]
            response = session.post(f"{field_server.url}/meetings/{meeting_id}/attendance/{member}",
                                    data={"status": status}, headers={"HX-Request": "true", "X-CSRFToken": csrf},
                                    timeout=60)
            with lock:
                statuses.append(response.status_code)
                moments.append(time.monotonic())
                if response.status_code == 200:
                    last[member] = status

    started = time.monotonic()
    puller = start_sync(field)
    tablets = [threading.Thread(target=tablet, args=(ids["two"][:2], TAPS // 2)),
               threading.Thread(target=tablet, args=(ids["two"][2:], TAPS // 2))]
    for t in tablets:
        t.start()
    out, err = puller.communicate(timeout=300)
    finished = time.monotonic()
    for t in tablets:
        t.join(timeout=300)

    assert puller.returncode == 0, out + err
    received = int(re.search(r"đã nhận (\d+) thay đổi", out).group(1))
    assert received >= PULL_MEMBERS
    assert statuses.count(200) == TAPS, {code: statuses.count(code) for code in set(statuses)}
    # The taps really happened while the sync ran (otherwise this proves nothing).
    assert sum(started < m < finished for m in moments) >= 10
    # Every tap was stored (one outbox row each) and the tiles show the last tap.
    assert query(field, "SELECT COUNT(*) FROM change_log WHERE \"table\"='attendance' AND origin='doi-1'")[0][0] == TAPS
    stored = dict(query(field, "SELECT member_id, status FROM attendance WHERE meeting_id=?", meeting_id))
    assert stored == last
    assert query(field, "SELECT COUNT(*) FROM member WHERE cell_id=?", ids["cb02"])[0][0] == PULL_MEMBERS + 4


def test_an_admin_edit_at_central_during_a_push_succeeds(nodes):
    """Central applies a 1,500-change push batch by batch while its admin saves member edits: no 500."""
    central, central_server, field, field_server, ids = nodes
    meeting_id = new_meeting(field_server, ids["cb02"])
    made = subprocess.run([sys.executable, "-c", MANY_FIELD_CHANGES, meeting_id, str(PUSH_CHANGES), *ids["two"]],
                          cwd=ROOT, env=field, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr

    session, csrf = login(central_server.url, "admin")
    member = ids["one"][1]
    pusher = start_sync(field)
    results: list[int] = []
    deadline = time.monotonic() + 300
    while pusher.poll() is None and time.monotonic() < deadline:
        name = f"Trần Thị Bình {len(results) + 1}"
        response = session.post(f"{central_server.url}/members/{member}/edit", allow_redirects=False, timeout=60,
                                data={"csrf_token": csrf, "full_name": name, "gender": "nu", "status": "full",
                                      "cell": ids["cb01"], "birth_year": "", "admitted_on": "",
                                      "full_member_on": "", "card_number": ""})
        results.append(response.status_code)
    out, err = pusher.communicate(timeout=60)

    assert pusher.returncode == 0, out + err
    assert int(re.search(r"Đã gửi (\d+) thay đổi", out).group(1)) >= PUSH_CHANGES
    assert results and all(code == 303 for code in results), results
    assert query(central, "SELECT full_name FROM member WHERE id=?", member) == [(f"Trần Thị Bình {len(results)}",)]
    marks = "SELECT member_id, status FROM attendance WHERE meeting_id=? ORDER BY member_id"
    assert query(central, marks, meeting_id) == query(field, marks, meeting_id)
    assert len(query(central, marks, meeting_id)) == 4
