"""Central does not trust a field node beyond its write policy: attacks over real HTTP between real processes.

One central (its own server and SQLite file) for the module, with doi-1 holding CB02 and doi-2 holding
CB03. Each test starts from a fresh copy of doi-1's database taken right after its first sync. The
attacker is doi-1 with a valid token whose own guards are lifted (`models.base.FIELD_NODE = None`
turns off the scope guard and the policy in `save()`); it writes through the models, queues honest work
first, then the attack, and runs `flask --app app sync`. Central's SQLite file must show the attacked
record unchanged, the refusal must be reported, and the honest work queued before it must arrive.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import pytest
import requests

from test_sync_integration import PASSWORD, Server, free_port, node_env, query, run, sync

SETUP = """
import json, sys
from app import create_app
from models import Cell, Member, Organisation, User, db
from models.rules import seed_rule_sets
app = create_app()
with app.app_context(), db.connection_context():
    seed_rule_sets()
    org = Organisation.create(name="Đảng bộ Kiểm thử Tin cậy")
    cells = {code: Cell.create(organisation=org.id, code=code, name=f"Chi bộ {code}") for code in ("CB01", "CB02", "CB03")}
    people = {code: [Member.create(cell=cell.id, full_name=f"Đảng viên {code} số {i}").id for i in range(3)]
              for code, cell in cells.items()}
    accounts = {}
    for username, role, code, member, active in (
            ("admin", "admin", None, None, True), ("btv", "supervisor", None, None, True),
            ("bithu2", "secretary", "CB02", 0, True), ("dangvien2", "member", "CB02", 1, True),
            ("bikhoa2", "member", "CB02", 2, False), ("bithu3", "secretary", "CB03", 0, True)):
        user = User(username=username, role=role, full_name=username, active=active,
                    cell=cells[code].id if code else None, member=people[code][member] if code else None)
        user.set_password(sys.argv[1])
        user.save()
        accounts[username] = user.id
    print(json.dumps({"cells": {c: cell.id for c, cell in cells.items()}, "people": people, "users": accounts}))
"""

# Honest work first (a meeting with its roll call, as the secretary's tablet makes it), then the attack
# with the node's guards lifted. Prints the honest meeting's id.
ATTACK = """
import datetime as dt, json, sys
from app import create_app
from models import Attendance, AuditEntry, Member, User, db
from models.audit import acting_as, audit_suppressed
from models.meetings import Meeting, set_attendance
import models.base

attack, ids = sys.argv[1], json.loads(sys.argv[2])
app = create_app()
with app.app_context(), db.connection_context():
    with acting_as(ids["users"]["bithu2"], "bithu2"):
        meeting = Meeting.create(cell=ids["cells"]["CB02"], held_on=dt.date.today(), title="Họp trung thực")
        for member_id in ids["people"]["CB02"]:
            set_attendance(meeting, member_id, "present")
    models.base.FIELD_NODE = None  # the attacker's build: no scope guard, no policy before queueing
    models.base.SyncedModel.check_columns = lambda self: None  # ... and no column limits
    # Records of other nodes are not here: the attacker points at them by id anyway.
    db.execute_sql("PRAGMA foreign_keys = OFF")
    with audit_suppressed():
        if attack == "secretary_made_admin":
            user = User.get(User.username == "bithu2")
            user.role = "admin"
            user.save()
        elif attack in ("new_admin", "new_secretary"):
            user = User(username="quantri-gia", full_name="Quản trị giả", owner="central",
                        role="admin" if attack == "new_admin" else "secretary",
                        cell=None if attack == "new_admin" else ids["cells"]["CB02"])
            user.set_password("mat-khau-ke-gian")
            user.save()
        elif attack == "unlock":
            user = User.get(User.username == "bikhoa2")
            user.active = True
            user.save()
        elif attack == "member_pointer":
            user = User.get(User.username == "dangvien2")
            user.member = ids["people"]["CB01"][0]
            user.save()
        elif attack == "foreign_mark":
            Attendance.create(meeting=meeting.id, member=ids["people"]["CB03"][0], status="present")
        elif attack == "audit_admin":
            AuditEntry.create(table="app_user", record_id=ids["users"]["admin"], action="update",
                              node="doi-1", scope="doi-1", user_name="Văn phòng Đảng ủy",
                              changes_json=json.dumps({"role": {"old": "admin", "new": "member"}}))
        elif attack == "huge_value":
            member = Member.get_by_id(ids["people"]["CB02"][1])
            member.full_name = "x" * 1_000_000
            member.save()
        else:
            raise SystemExit(f"unknown attack {attack}")
    print(meeting.id)
"""

# One central serves the whole module (module-scoped); the PostgreSQL pass drops each test's databases
# after the test, so this module runs in the SQLite pass (the policy itself is tested on both).
pytestmark = pytest.mark.sqlite_only


@pytest.fixture(scope="module")
def central(tmp_path_factory):
    """Central serving HTTP, doi-1 (CB02) and doi-2 (CB03) registered, doi-1 synced once; yields paths."""
    base = tmp_path_factory.mktemp("trust")
    env = node_env(base, "central", "central", free_port())
    ids = json.loads(run(env, "-c", SETUP, PASSWORD).stdout.strip().splitlines()[-1])
    token = run(env, "nodes", "register", "doi-1", "--cells", "CB02").stdout.strip().splitlines()[-1]
    run(env, "nodes", "register", "doi-2", "--cells", "CB03")
    server = Server(env, base / "central.log")
    try:
        field = node_env(base, "field", "doi-1", free_port(), CHIBO_CENTRAL_URL=server.url,
                         CHIBO_SYNC_TOKEN=token)
        assert "Đồng bộ thành công" in sync(field).stdout
        yield {"env": env, "server": server, "ids": ids, "field": field, "pristine": base / "doi-1.sqlite3"}
    finally:
        server.stop()


@pytest.fixture
def attacker(central, tmp_path):
    """doi-1's environment on a fresh copy of its database as it was after its first sync."""
    field = {**central["field"], "CHIBO_DATABASE_URL": f"sqlite:///{tmp_path / 'doi-1.sqlite3'}"}
    for suffix in ("", "-wal"):
        source = Path(f"{central['pristine']}{suffix}")
        if source.exists():
            shutil.copy(source, tmp_path / f"doi-1.sqlite3{suffix}")
    return field


def central_row(central, sql: str, *args):
    """Rows from central's SQLite file."""
    return query(central["env"], sql, *args)


def test_admin_hashes_never_reach_a_field_node_and_each_node_gets_its_own_accounts(central, attacker):
    """doi-1 holds CB02's accounts and the supervisor's, never an admin's or another node's cell's."""
    usernames = {r[0] for r in query(attacker, "SELECT username FROM app_user")}
    assert usernames == {"btv", "bithu2", "dangvien2", "bikhoa2"}
    admin_hash = central_row(central, "SELECT password_hash FROM app_user WHERE username='admin'")[0][0]
    assert not query(attacker, "SELECT COUNT(*) FROM change_log WHERE payload LIKE ?", f"%{admin_hash}%")[0][0]
    assert not query(attacker, "SELECT COUNT(*) FROM audit_entry WHERE record_id=?", central["ids"]["users"]["admin"])[0][0]


ATTACKS = {
    # attack: (what central must still show, as SQL and its arguments from the ids; the reason central sets it aside)
    "secretary_made_admin": ("SELECT role, cell_id, password_hash, hlc FROM app_user WHERE username='bithu2'",
                             lambda ids: (), ("policy", "out_of_scope")),
    "new_admin": ("SELECT username, role FROM app_user ORDER BY username", lambda ids: (), ("policy", "out_of_scope")),
    "new_secretary": ("SELECT username, role FROM app_user ORDER BY username", lambda ids: (), ("policy", "out_of_scope")),
    "unlock": ("SELECT active, hlc FROM app_user WHERE username='bikhoa2'", lambda ids: (), ("policy", "out_of_scope")),
    "member_pointer": ("SELECT member_id, hlc FROM app_user WHERE username='dangvien2'", lambda ids: (), ("policy", "out_of_scope")),
    "foreign_mark": ("SELECT COUNT(*) FROM attendance WHERE member_id=?",
                     lambda ids: (ids["people"]["CB03"][0],), ("policy", "out_of_scope")),
    "audit_admin": ("SELECT COUNT(*) FROM audit_entry WHERE record_id=?",
                    lambda ids: (ids["users"]["admin"],), ("policy", "out_of_scope")),
    "huge_value": ("SELECT full_name, hlc FROM member WHERE id=?", lambda ids: (ids["people"]["CB02"][1],), ("invalid",)),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_attack_is_refused_central_is_unchanged_and_honest_work_arrives(central, attacker, attack):
    """The attack's change is set aside at central with its reason; central's record is as it was; the roll call arrives."""
    sql, arguments, reasons = ATTACKS[attack]
    ids = central["ids"]
    args = arguments(ids)
    before = central_row(central, sql, *args)
    # One central serves the module: only this attack's dead letters count.
    seen = central_row(central, "SELECT COALESCE(MAX(id), 0) FROM sync_dead_letter")[0][0]
    meeting_id = run(attacker, "-c", ATTACK, attack, json.dumps(ids)).stdout.strip().splitlines()[-1]

    result = sync(attacker, check=False)

    assert "để riêng" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert central_row(central, sql, *args) == before
    letters = central_row(central, "SELECT reason, message FROM sync_dead_letter WHERE node_id='doi-1' AND id > ?",
                          seen)
    assert letters and {reason for reason, _m in letters} <= set(reasons), letters
    assert all(len(message) <= 500 and "x" * 300 not in message for _r, message in letters)
    # Honest work queued before the attack reached central: the meeting and its three marks.
    assert central_row(central, "SELECT title FROM meeting WHERE id=?", meeting_id) == [("Họp trung thực",)]
    assert central_row(central, "SELECT COUNT(*) FROM attendance WHERE meeting_id=?", meeting_id) == [(3,)]
    # The refused change is acknowledged (it never blocks the queue), and nothing huge is echoed back.
    assert len(result.stdout) + len(result.stderr) < 6000 and "x" * 500 not in result.stdout + result.stderr
    pending = query(attacker, "SELECT COUNT(*) FROM change_log WHERE origin='doi-1' AND seq > "
                              "(SELECT CAST(value AS INTEGER) FROM sync_state WHERE key='pushed_seq')")[0][0]
    assert pending == 0


def test_an_honest_secretary_works_at_the_node_and_everything_arrives(central, attacker, tmp_path):
    """Roll call, a member edit and her own password change over HTTP at doi-1: all accepted by central."""
    ids = central["ids"]
    server = Server({**attacker, "CHIBO_PORT": str(free_port())}, tmp_path / "field.log")
    try:
        session = requests.Session()
        url = server.url

        def csrf(path: str) -> str:
            page = session.get(f"{url}{path}", timeout=10).text
            match = re.search(r'name="csrf_token" value="([^"]+)"', page) or re.search(r'"X-CSRFToken": "([^"]+)"', page)
            return match.group(1)

        response = session.post(f"{url}/login", data={"username": "bithu2", "password": PASSWORD,
                                                      "csrf_token": csrf("/login")}, allow_redirects=False, timeout=10)
        assert response.status_code == 303
        token = csrf("/")
        response = session.post(f"{url}/cells/{ids['cells']['CB02']}/meetings/new", allow_redirects=False,
                                data={"csrf_token": token, "held_on": dt.date.today().isoformat(),
                                      "kind": "regular", "starts_at": "14:00", "title": "Họp của bí thư"}, timeout=10)
        assert response.status_code == 303, response.text[:300]
        meeting_id = response.headers["Location"].rstrip("/").split("/")[-1]
        for member_id, status in zip(ids["people"]["CB02"], ("present", "present", "excused")):
            response = session.post(f"{url}/meetings/{meeting_id}/attendance/{member_id}",
                                    data={"status": status, "reason": "Đi công tác"},
                                    headers={"HX-Request": "true", "X-CSRFToken": token}, timeout=10)
            assert response.status_code == 200, response.text[:300]
        member_id = ids["people"]["CB02"][1]
        fields = {"csrf_token": token, "full_name": "Đảng viên CB02 đã sửa tên", "birth_year": "1971",
                  "cell": ids["cells"]["CB02"], "status": "full", "gender": "nam"}
        response = session.post(f"{url}/members/{member_id}/edit", data=fields, allow_redirects=False, timeout=10)
        assert response.status_code in (303, 204), response.text[:500]
        response = session.post(f"{url}/account/password", allow_redirects=False, timeout=10, data={
            "csrf_token": token, "current_password": PASSWORD, "new_password": "mat-khau-moi-cua-bi-thu",
            "confirm_password": "mat-khau-moi-cua-bi-thu"})
        assert response.status_code == 303, response.text[:300]
    finally:
        server.stop()

    result = sync(attacker)

    assert "Đồng bộ thành công" in result.stdout
    assert central_row(central, "SELECT title FROM meeting WHERE id=?", meeting_id) == [("Họp của bí thư",)]
    assert central_row(central, "SELECT COUNT(*) FROM attendance WHERE meeting_id=?", meeting_id) == [(3,)]
    assert central_row(central, "SELECT full_name, birth_year FROM member WHERE id=?", member_id) == [
        ("Đảng viên CB02 đã sửa tên", 1971)]
    node_hash = query(attacker, "SELECT password_hash FROM app_user WHERE username='bithu2'")[0][0]
    assert central_row(central, "SELECT password_hash FROM app_user WHERE username='bithu2'") == [(node_hash,)]
    # The history of those writes arrived with them, attributed to the secretary at doi-1.
    assert central_row(central, "SELECT COUNT(*) FROM audit_entry WHERE node='doi-1' AND record_id=?",
                       member_id)[0][0] >= 1
