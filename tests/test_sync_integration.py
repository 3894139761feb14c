"""Two real nodes over real HTTP: central and field node doi-1, each its own server and SQLite file.

Central is prepared through its CLI (`nodes register`) and a small script using the models; the field
node syncs with `flask --app app sync` as an operator would. The test checks both directions (org and
members down, a meeting with its roll call up, a member added at central down again), that a cell
held by central does not leak to the node, that a refused sync keeps the queue, and that a second
sync changes nothing on either side.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests import pgtest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "mat-khau-tich-hop"
STARTUP_SECONDS = 20
COMMAND_SECONDS = 60

SETUP_CENTRAL = """
import json, sys
from app import create_app
from models import Cell, Member, Organisation, User, db
from models.rules import seed_rule_sets
app = create_app()
with app.app_context(), db.connection_context():
    seed_rule_sets()
    org = Organisation.create(name="Đảng bộ Kiểm thử Đồng bộ")
    cb01 = Cell.create(organisation=org.id, code="CB01", name="Chi bộ Văn phòng")
    cb02 = Cell.create(organisation=org.id, code="CB02", name="Chi bộ Đội số 1")
    one = [Member.create(cell=cb01.id, full_name=n) for n in ("Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường")]
    two = [Member.create(cell=cb02.id, full_name=n, position="bi_thu" if i == 0 else "")
           for i, n in enumerate(("Phạm Văn Dũng", "Hoàng Thị Hoa", "Võ Văn Khoa", "Đặng Thị Lan"))]
    for username, role, cell, member in (("admin", "admin", None, None), ("bithu1", "secretary", cb01, one[0]),
                                         ("bithu2", "secretary", cb02, two[0])):
        user = User(username=username, role=role, full_name=username,
                    cell=cell.id if cell else None, member=member.id if member else None)
        user.set_password(sys.argv[1])
        user.save()
    print(json.dumps({"cb01": cb01.id, "cb02": cb02.id, "one": [m.id for m in one], "two": [m.id for m in two]}))
"""

ADD_MEMBER = """
import sys
from app import create_app
from models import Member, db
app = create_app()
with app.app_context(), db.connection_context():
    print(Member.create(cell=sys.argv[1], full_name="Ngô Thị Mới Vào").id)
"""

WRITE_ON_FIELD = """
import sys, datetime as dt
from app import create_app
from models import Cell, Meeting, db
app = create_app()
with app.app_context(), db.connection_context():
    meeting = Meeting.create(cell=sys.argv[1], held_on=dt.date.today(), title="Ghi trước thay đổi sai")
    # Play an older client without the local scope guard: central must still refuse the rename.
    import models.base
    models.base.FIELD_NODE = None
    cell = Cell.get(Cell.code == "CB01")
    cell.name = "Đổi tên trái phép tại đội"
    cell.save()
    print(meeting.id)
"""

ADD_MEETING = """
import sys, datetime as dt
from app import create_app
from models import Meeting, db
app = create_app()
with app.app_context(), db.connection_context():
    print(Meeting.create(cell=sys.argv[1], held_on=dt.date.today() - dt.timedelta(days=40),
                         title="Họp sau khi bị từ chối").id)
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_env(tmp_path: Path, role: str, node_id: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of one node: its role, id, own database and port; nothing inherited from CHIBO_*.

    Field nodes get a SQLite file; central too, or a fresh PostgreSQL database when the run asks for it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIBO_") or k == "CHIBO_TEST_FAST_HASH"}
    database = (pgtest.new_database() if role == "central" and pgtest.enabled()
                else f"sqlite:///{tmp_path / node_id}.sqlite3")
    env.update({"CHIBO_ROLE": role, "CHIBO_NODE_ID": node_id, "CHIBO_PORT": str(port),
                "CHIBO_HOST": "127.0.0.1", "CHIBO_SECRET_KEY": f"khoa-{node_id}",
                "CHIBO_DATABASE_URL": database, "CHIBO_SYNC_INTERVAL": "0", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `flask --app app …` (or `python -c` when args start with '-c') as that node."""
    command = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "flask", "--app", "app", *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=COMMAND_SECONDS)
    if check:
        assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result


class Server:
    """`python app.py` in a subprocess, waited for with a bounded poll, always terminated."""

    def __init__(self, env: dict[str, str], log: Path):
        """Start the server and wait until it answers /login (bounded)."""
        self.url = f"http://127.0.0.1:{env['CHIBO_PORT']}"
        self._log = log.open("w")
        self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}")
            try:
                if requests.get(f"{self.url}/login", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {STARTUP_SECONDS} s: {log.read_text()}")

    def stop(self) -> None:
        """Terminate the server (kill if it does not stop)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def query(env: dict[str, str], sql: str, *args) -> list[tuple]:
    """Read a node's database directly (SQLite read-only, or PostgreSQL), as an auditor would."""
    return pgtest.query(env["CHIBO_DATABASE_URL"], sql, *args)


def fingerprint(env: dict[str, str]) -> dict[str, object]:
    """Row counts of every table plus a hash of every synced record's id and clock stamp."""
    url = env["CHIBO_DATABASE_URL"]
    tables = [t for t in pgtest.tables(url) if t not in ("sync_state", "node")]
    out: dict[str, object] = {}
    for table in tables:
        out[table] = query(env, f'SELECT COUNT(*) FROM "{table}"')[0][0]
        columns = pgtest.columns(url, table)
        if {"id", "hlc"} <= columns:
            rows = query(env, f'SELECT id, hlc FROM "{table}" ORDER BY id')
            out[f"{table}#hash"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    out["max_seq"] = query(env, "SELECT MAX(seq) FROM change_log")[0][0]
    return out


def sync(env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """The operator's command on the field node."""
    return run(env, "sync", check=check)


@pytest.fixture
def nodes(tmp_path):
    """Central (prepared, doi-1 registered for CB02) and field node doi-1, both serving HTTP."""
    central_env = node_env(tmp_path, "central", "central", free_port())
    ids = json.loads(run(central_env, "-c", SETUP_CENTRAL, PASSWORD).stdout.strip().splitlines()[-1])
    registered = run(central_env, "nodes", "register", "doi-1", "--name", "Đội số 1", "--cells", "CB02")
    token = registered.stdout.strip().splitlines()[-1]
    servers = []
    try:
        servers.append(Server(central_env, tmp_path / "central.log"))
        field_env = node_env(tmp_path, "field", "doi-1", free_port(),
                             CHIBO_CENTRAL_URL=servers[0].url, CHIBO_SYNC_TOKEN=token)
        servers.append(Server(field_env, tmp_path / "field.log"))
        yield central_env, field_env, servers[1], ids
    finally:
        for server in servers:
            server.stop()


def login(base_url: str, username: str) -> tuple[requests.Session, str]:
    """Log in through the real form; return the session and its CSRF token."""
    session = requests.Session()
    page = session.get(f"{base_url}/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = session.post(f"{base_url}/login", data={"username": username, "password": PASSWORD,
                                                       "csrf_token": token}, allow_redirects=False, timeout=10)
    assert response.status_code == 303, response.text[:500]
    return session, token


def test_two_nodes_sync_both_ways_and_a_second_sync_changes_nothing(nodes):
    """Org and members down, a roll call up, a new member down, then a no-op second sync."""
    central, field, field_server, ids = nodes

    # 1. First sync: the organisation, both cells, CB02's members and accounts arrive; CB01's do not.
    first = sync(field)
    assert "Đồng bộ thành công" in first.stdout
    assert query(field, "SELECT name FROM organisation") == [("Đảng bộ Kiểm thử Đồng bộ",)]
    assert {r[0] for r in query(field, "SELECT code FROM cell")} == {"CB01", "CB02"}
    assert query(field, "SELECT node_id FROM cell WHERE code='CB02'") == [("doi-1",)]
    assert {r[0] for r in query(field, "SELECT id FROM member")} == set(ids["two"])
    # Admin accounts (and their password hashes) never leave central.
    assert {r[0] for r in query(field, "SELECT username FROM app_user")} == {"bithu2"}
    assert query(field, "SELECT COUNT(*) FROM rule_set")[0][0] == 2
    # What arrived from central is logged with central's origin: it is not in the node's outbox.
    assert query(field, "SELECT COUNT(*) FROM change_log WHERE origin='doi-1'")[0][0] == 0

    # 2. The secretary of CB02 logs in at the field node and takes a roll call over HTTP.
    session, csrf = login(field_server.url, "bithu2")
    response = session.post(f"{field_server.url}/cells/{ids['cb02']}/meetings/new", allow_redirects=False,
                            data={"csrf_token": csrf, "held_on": time.strftime("%Y-%m-%d"), "kind": "regular",
                                  "starts_at": "14:00", "title": "Sinh hoạt tại Đội số 1"}, timeout=10)
    assert response.status_code == 303, response.text[:500]
    meeting_id = response.headers["Location"].rstrip("/").split("/")[-1]
    marks = {ids["two"][0]: "present", ids["two"][1]: "present", ids["two"][2]: "excused"}
    for member_id, status in marks.items():
        response = session.post(f"{field_server.url}/meetings/{meeting_id}/attendance/{member_id}",
                                data={"status": status, "reason": "Đi công tác"},
                                headers={"HX-Request": "true", "X-CSRFToken": csrf}, timeout=10)
        assert response.status_code == 200, response.text[:500]
    pending = query(field, "SELECT COUNT(*) FROM change_log WHERE origin='doi-1'")[0][0]
    assert pending >= 4

    # 3. A sync with a wrong token is refused clearly, exits non-zero and keeps the queue.
    refused = sync({**field, "CHIBO_SYNC_TOKEN": "ma-sai"}, check=False)
    assert refused.returncode != 0
    assert "mã đồng bộ" in refused.stderr.lower()
    assert query(central, "SELECT COUNT(*) FROM meeting WHERE id=?", meeting_id)[0][0] == 0
    assert query(field, "SELECT value FROM sync_state WHERE key='pushed_seq'") in ([], [("0",)])
    unreachable = sync({**field, "CHIBO_CENTRAL_URL": f"http://127.0.0.1:{free_port()}"}, check=False)
    assert unreachable.returncode != 0 and "Không kết nối được tới trung tâm" in unreachable.stderr
    assert query(field, "SELECT COUNT(*) FROM change_log WHERE origin='doi-1'")[0][0] == pending

    # 4. The real sync pushes the meeting and its attendance to central.
    second = sync(field)
    assert f"Đã gửi {pending} thay đổi" in second.stdout
    assert query(central, "SELECT title, cell_id FROM meeting WHERE id=?", meeting_id) == [
        ("Sinh hoạt tại Đội số 1", ids["cb02"])]
    at_central = dict(query(central, "SELECT member_id, status FROM attendance WHERE meeting_id=?", meeting_id))
    assert at_central == marks
    assert {r[0] for r in query(central, "SELECT DISTINCT origin FROM change_log WHERE record_id=?",
                                meeting_id)} <= {"doi-1", "central"}
    node = query(central, "SELECT last_seen_at, app_version, schema_version FROM node WHERE id='doi-1'")[0]
    assert node[0] and node[1] and node[2] >= 1

    # 5. A member added at central arrives at the field node with the next sync.
    new_member = run(central, "-c", ADD_MEMBER, ids["cb02"]).stdout.strip().splitlines()[-1]
    sync(field)
    assert query(field, "SELECT full_name, cell_id FROM member WHERE id=?", new_member) == [
        ("Ngô Thị Mới Vào", ids["cb02"])]
    assert not query(field, "SELECT id FROM member WHERE cell_id=?", ids["cb01"])

    # 6. Syncing again changes nothing on either side.
    before = (fingerprint(central), fingerprint(field))
    again = sync(field)
    assert "Đã gửi 0 thay đổi" in again.stdout and "đã nhận 0 thay đổi" in again.stdout
    assert (fingerprint(central), fingerprint(field)) == before


def test_a_refused_change_is_set_aside_and_never_blocks_the_queue(nodes):
    """A change central refuses is acknowledged and listed as a dead letter; everything else keeps flowing."""
    central, field, _server, ids = nodes
    sync(field)
    meeting_id = run(field, "-c", WRITE_ON_FIELD, ids["cb02"]).stdout.strip().splitlines()[-1]
    result = sync(field)
    assert "để riêng" in result.stdout
    assert query(central, "SELECT title FROM meeting WHERE id=?", meeting_id) == [("Ghi trước thay đổi sai",)]
    assert query(central, "SELECT name FROM cell WHERE code='CB01'") == [("Chi bộ Văn phòng",)]
    letters = query(central, "SELECT \"table\", reason, message FROM sync_dead_letter WHERE node_id='doi-1' "
                             "AND resolved_at IS NULL")
    assert ("cell", "out_of_scope") in {(t, r) for t, r, _m in letters}
    assert all("CB01" not in m or "phạm vi" in m for _t, _r, m in letters)
    # Nothing is left in the node's queue, and a meeting written afterwards still goes up.
    pushed = int(query(field, "SELECT value FROM sync_state WHERE key='pushed_seq'")[0][0])
    assert query(field, "SELECT COUNT(*) FROM change_log WHERE origin='doi-1' AND seq > ?", pushed)[0][0] == 0
    later = run(field, "-c", ADD_MEETING, ids["cb02"]).stdout.strip().splitlines()[-1]
    sync(field)
    assert query(central, "SELECT title FROM meeting WHERE id=?", later) == [("Họp sau khi bị từ chối",)]
    # The node's status page lists what central set aside, with the reason.
    session, _csrf = login(_server.url, "bithu2")
    page = session.get(f"{_server.url}/sync", timeout=10).text
    assert "để riêng" in page and "cell" in page
