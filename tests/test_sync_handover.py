"""Handover between nodes over real HTTP: central, doi-1 and doi-2, each its own server and SQLite file.

A member moved at central from doi-1's cell to doi-2's cell reaches doi-2 with his whole history
(status changes, position terms, every past roll-call mark with its meeting); doi-1 is told he left,
stops listing him and refuses to mark him; a mark doi-1 queued offline after the move is set aside
at central while the rest of its queue flows. `nodes assign` / `nodes release` hand a cell over
without touching any token, and the new holder receives the cell's whole history.
"""
from __future__ import annotations

import json
import pytest

from models import Cell, Node, db
from tests.test_sync_integration import Server, free_port, login, node_env, query, run, sync

PASSWORD = "mat-khau-tich-hop"

SETUP_CENTRAL = """
import datetime as dt, json, sys
from app import create_app
from models import Attendance, Cell, Meeting, Member, Organisation, User, db
from models.members import assign_position, change_status
from models.rules import seed_rule_sets
app = create_app()
with app.app_context(), db.connection_context():
    seed_rule_sets()
    org = Organisation.create(name="Đảng bộ Kiểm thử Bàn giao")
    cb01 = Cell.create(organisation=org.id, code="CB01", name="Chi bộ Văn phòng")
    cb02 = Cell.create(organisation=org.id, code="CB02", name="Chi bộ Đội số 1")
    cb03 = Cell.create(organisation=org.id, code="CB03", name="Chi bộ Đội số 2")
    mover = Member.create(cell=cb02.id, full_name="Phạm Văn Chuyển", status="probationary",
                          admitted_on=dt.date(2019, 3, 2))
    stay = [Member.create(cell=cb02.id, full_name=n) for n in ("Hoàng Thị Ở Lại", "Võ Văn Khoa", "Đặng Thị Lan")]
    there = [Member.create(cell=cb03.id, full_name=n) for n in ("Lý Văn Sẵn", "Mai Thị Có")]
    change_status(mover, "full", dt.date(2020, 3, 2), "NQ 05", "Hết thời gian dự bị")
    change_status(mover, "temp_elsewhere", dt.date(2021, 5, 1), "", "Đi học tập trung")
    change_status(mover, "full", dt.date(2022, 5, 1), "", "Về lại chi bộ")
    assign_position(mover, "chi_uy_vien", dt.date(2020, 6, 1))
    assign_position(mover, "pho_bi_thu", dt.date(2022, 6, 1), "Bầu tại đại hội chi bộ")
    for i in range(20):
        meeting = Meeting.create(cell=cb02.id, held_on=dt.date(2023 + i // 12, i % 12 + 1, 5),
                                 title=f"Sinh hoạt kỳ {i + 1}")
        Attendance.create(meeting=meeting.id, member=mover.id, status="present" if i % 4 else "excused",
                          reason="" if i % 4 else "Đi công tác")
        for member in stay:
            Attendance.create(meeting=meeting.id, member=member.id, status="present")
        meeting.status = "closed"
        meeting.save()
    for username, role, cell in (("admin", "admin", None), ("bithu2", "secretary", cb02), ("bithu3", "secretary", cb03)):
        user = User(username=username, role=role, full_name=username, cell=cell.id if cell else None)
        user.set_password(sys.argv[1])
        user.save()
    print(json.dumps({"cb02": cb02.id, "cb03": cb03.id, "mover": mover.id, "stay": [m.id for m in stay],
                      "there": [m.id for m in there]}))
"""

# Two more past roll calls recorded at doi-1 itself (pushed by doi-1, so central's copy has its origin),
# and an open meeting for this month.
ON_DOI_1 = """
import datetime as dt, json, sys
from app import create_app
from models import Meeting, db
from models.meetings import set_attendance
app = create_app()
with app.app_context(), db.connection_context():
    ids = json.loads(sys.argv[1])
    for i in range(2):
        meeting = Meeting.create(cell=ids["cb02"], held_on=dt.date(2024 + (9 + i) // 12, (9 + i) % 12 + 1, 5),
                                 title=f"Sinh hoạt tại đội {i + 1}")
        for member_id in [ids["mover"]] + ids["stay"]:
            set_attendance(meeting, member_id, "present")
        meeting.status = "closed"
        meeting.save()
    today = Meeting.create(cell=ids["cb02"], held_on=dt.date.today(), title="Sinh hoạt tháng này")
    print(today.id)
"""

MOVE_MEMBER = """
import sys
from app import create_app
from models import Member, db
from models.audit import acting_as
app = create_app()
with app.app_context(), db.connection_context(), acting_as("", "Quản trị trung tâm"):
    member = Member.get_by_id(sys.argv[1])
    member.cell = sys.argv[2]
    member.save()
"""

TRY_LOCAL_WRITE = """
import sys
from app import create_app
from models import Meeting, Member, ValidationError, db
app = create_app()
with app.app_context(), db.connection_context():
    member = Member.get_or_none(Member.id == sys.argv[1])
    if member is not None:
        member.full_name = "Sửa tại nút cũ"
    else:
        member = Meeting.get_by_id(sys.argv[1])
        member.title = "Sửa biên bản cũ"
    try:
        member.save()
        print("saved")
    except ValidationError as exc:
        print("refused:", exc)
"""


@pytest.fixture
def three(tmp_path):
    """Central (CB02 held by doi-1, CB03 by doi-2) and both field nodes, each serving HTTP."""
    central = node_env(tmp_path, "central", "central", free_port())
    ids = json.loads(run(central, "-c", SETUP_CENTRAL, PASSWORD).stdout.strip().splitlines()[-1])
    tokens = {}
    for node_id, code in (("doi-1", "CB02"), ("doi-2", "CB03")):
        tokens[node_id] = run(central, "nodes", "register", node_id, "--cells", code).stdout.strip().splitlines()[-1]
    servers = []
    try:
        servers.append(Server(central, tmp_path / "central.log"))
        envs = {"central": central}
        for node_id in ("doi-1", "doi-2"):
            envs[node_id] = node_env(tmp_path, "field", node_id, free_port(), CHIBO_CENTRAL_URL=servers[0].url,
                                     CHIBO_SYNC_TOKEN=tokens[node_id])
        servers.append(Server(envs["doi-1"], tmp_path / "doi-1.log"))
        yield envs, {"doi-1": servers[1]}, ids
    finally:
        for server in servers:
            server.stop()


def ids_of(env, sql: str, *args) -> set[str]:
    """The first column of a query as a set."""
    return {r[0] for r in query(env, sql, *args)}


def mark(session, url: str, csrf: str, meeting_id: str, member_id: str):
    """One roll-call tap over HTTP as the tablet sends it."""
    return session.post(f"{url}/meetings/{meeting_id}/attendance/{member_id}", data={"status": "present"},
                        headers={"HX-Request": "true", "X-CSRFToken": csrf}, timeout=10)


def open_letters(env) -> list[tuple]:
    """Dead letters nobody resolved yet: (node, table, record id, reason)."""
    return query(env, 'SELECT node_id, "table", record_id, reason FROM sync_dead_letter WHERE resolved_at IS NULL')


def test_a_moved_member_reaches_the_new_holder_with_his_whole_history(three):
    """doi-2 gets every status change, term and past mark; doi-1 drops him; its late mark is set aside."""
    envs, servers, ids = three
    central, doi1, doi2 = envs["central"], envs["doi-1"], envs["doi-2"]
    mover = ids["mover"]
    sync(doi1)
    sync(doi2)
    assert len(query(doi1, "SELECT id FROM attendance WHERE member_id=?", mover)) == 20
    assert not query(doi2, "SELECT id FROM member WHERE id=?", mover)

    # doi-1 records two more roll calls itself and opens this month's meeting; central gets them.
    today = run(doi1, "-c", ON_DOI_1, json.dumps(ids)).stdout.strip().splitlines()[-1]
    sync(doi1)
    history = ids_of(central, "SELECT id FROM attendance WHERE member_id=? AND deleted_at IS NULL", mover)
    assert len(history) == 22

    # Central moves him to doi-2's cell while doi-1 is offline; doi-1 still marks him (and a comrade).
    run(central, "-c", MOVE_MEMBER, mover, ids["cb03"])
    url = servers["doi-1"].url
    session, csrf = login(url, "bithu2")
    assert mark(session, url, csrf, today, mover).status_code == 200
    assert mark(session, url, csrf, today, ids["stay"][0]).status_code == 200
    late = query(doi1, "SELECT id FROM attendance WHERE meeting_id=? AND member_id=?", today, mover)[0][0]

    # doi-1's sync: the late mark for him is set aside at central, the rest of its queue flows.
    result = sync(doi1)
    assert "để riêng" in result.stdout
    assert ("doi-1", "attendance", late, "out_of_scope") in open_letters(central)
    assert not query(central, "SELECT id FROM attendance WHERE id=?", late)
    assert query(central, "SELECT status FROM attendance WHERE meeting_id=? AND member_id=?",
                 today, ids["stay"][0]) == [("present",)]
    assert query(central, "SELECT COUNT(*) FROM meeting WHERE id=?", today) == [(1,)]

    # doi-1 was told he left: not on CB02's page or this month's roll call, and cannot be marked.
    assert query(doi1, "SELECT cell_id FROM member WHERE id=?", mover) == [(ids["cb03"],)]
    assert "Phạm Văn Chuyển" not in session.get(f"{url}/cells/{ids['cb02']}", timeout=10).text
    assert "Phạm Văn Chuyển" not in session.get(f"{url}/meetings/{today}", timeout=10).text
    refused = mark(session, url, csrf, today, mover)
    assert refused.status_code == 422 and "đã chuyển sang Chi bộ Đội số 2" in refused.text
    assert "refused" in run(doi1, "-c", TRY_LOCAL_WRITE, mover).stdout
    assert not open_letters(doi1)

    # doi-2 receives him with every status change, position term and past mark (with its meeting).
    sync(doi2)
    assert query(doi2, "SELECT full_name, cell_id, status FROM member WHERE id=?", mover) == [
        ("Phạm Văn Chuyển", ids["cb03"], "full")]
    for table in ("member_status_change", "position"):
        at_central = ids_of(central, f"SELECT id FROM {table} WHERE member_id=?", mover)
        assert len(at_central) == (3 if table == "member_status_change" else 2)
        assert ids_of(doi2, f"SELECT id FROM {table} WHERE member_id=?", mover) == at_central
    assert ids_of(doi2, "SELECT id FROM attendance WHERE member_id=? AND deleted_at IS NULL", mover) == history
    meetings = ids_of(central, "SELECT meeting_id FROM attendance WHERE member_id=? AND deleted_at IS NULL", mover)
    assert ids_of(doi2, "SELECT id FROM meeting") == meetings
    assert query(doi2, "SELECT status, reason FROM attendance WHERE member_id=? ORDER BY id", mover) == query(
        central, "SELECT status, reason FROM attendance WHERE member_id=? AND deleted_at IS NULL ORDER BY id", mover)
    # Only his own marks came along: his old comrades stay with doi-1.
    assert not query(doi2, "SELECT id FROM member WHERE id IN (?, ?, ?)", *ids["stay"])
    assert not open_letters(doi2)
    # His old meetings are read-only context at doi-2; he himself is doi-2's to edit now.
    assert "refused" in run(doi2, "-c", TRY_LOCAL_WRITE, sorted(meetings)[0]).stdout
    assert "saved" in run(doi2, "-c", TRY_LOCAL_WRITE, mover).stdout

    # Nothing is handed over twice: further syncs of both nodes add nothing to central's feed.
    high = query(central, "SELECT MAX(seq) FROM change_log")[0][0]
    sync(doi1)
    sync(doi2)
    sync(doi1)
    # (only doi-2's rename and its audit entry, pushed by doi-2)
    rows = query(central, 'SELECT "table", origin FROM change_log WHERE seq > ? ORDER BY seq', high)
    assert sorted(rows) == [("audit_entry", "doi-2"), ("member", "doi-2")]


def test_nodes_assign_hands_a_cell_over_without_touching_tokens(three):
    """doi-2 gets CB02's whole history with its old token; doi-1, also with its old token, is told it left."""
    envs, servers, ids = three
    central, doi1, doi2 = envs["central"], envs["doi-1"], envs["doi-2"]
    sync(doi1)
    sync(doi2)
    hashes = query(central, "SELECT id, token_hash FROM node ORDER BY id")

    moved = run(central, "nodes", "assign", "doi-2", "--cells", "CB02")
    assert "Đã chuyển chi bộ CB02 (Chi bộ Đội số 1) từ nút doi-1 sang nút doi-2." in moved.stdout
    assert "Mã đồng bộ của các nút không thay đổi" in moved.stdout
    assert query(central, "SELECT id, token_hash FROM node ORDER BY id") == hashes

    # Both nodes sync with the tokens they were deployed with.
    sync(doi1)
    sync(doi2)
    members = ids_of(central, "SELECT id FROM member WHERE cell_id=?", ids["cb02"])
    assert ids_of(doi2, "SELECT id FROM member WHERE cell_id=?", ids["cb02"]) == members
    for table, sql in (("meeting", "SELECT id FROM meeting WHERE cell_id=?"),
                       ("attendance", "SELECT a.id FROM attendance a JOIN meeting m ON m.id = a.meeting_id "
                                      "WHERE m.cell_id=?"),
                       ("member_status_change", "SELECT s.id FROM member_status_change s JOIN member m "
                                                "ON m.id = s.member_id WHERE m.cell_id=?"),
                       ("position", "SELECT p.id FROM position p JOIN member m ON m.id = p.member_id "
                                    "WHERE m.cell_id=?")):
        at_central = ids_of(central, sql, ids["cb02"])
        assert at_central, table
        assert ids_of(doi2, sql, ids["cb02"]) == at_central, table
    assert "bithu2" in ids_of(doi2, "SELECT username FROM app_user")
    assert not open_letters(doi1) and not open_letters(doi2)

    # doi-1 now shows CB02 read-only: the cell is doi-2's, writes are refused locally.
    assert query(doi1, "SELECT node_id FROM cell WHERE id=?", ids["cb02"]) == [("doi-2",)]
    assert "refused" in run(doi1, "-c", TRY_LOCAL_WRITE, ids["mover"]).stdout
    assert "saved" in run(doi2, "-c", TRY_LOCAL_WRITE, ids["mover"]).stdout
    sync(doi2)
    assert query(central, "SELECT full_name FROM member WHERE id=?", ids["mover"]) == [("Sửa tại nút cũ",)]

    # Released back to central: doi-2 is told, keeps a read-only copy, and its token still works.
    released = run(central, "nodes", "release", "--cells", "CB02")
    assert "từ nút doi-2 sang trung tâm" in released.stdout
    sync(doi2)
    assert query(doi2, "SELECT node_id FROM cell WHERE id=?", ids["cb02"]) == [("central",)]
    assert "refused" in run(doi2, "-c", TRY_LOCAL_WRITE, ids["mover"]).stdout
    assert query(central, "SELECT id, token_hash FROM node ORDER BY id") == hashes
    assert not open_letters(doi2)


# -- the CLI's refusals (in process, no servers) --------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["nodes", "assign", "doi-9", "--cells", "CB02"], "Không có nút doi-9"),
    (["nodes", "assign", "doi-1", "--cells", "CB02,CB99"], "Không có chi bộ mã: CB99"),
    (["nodes", "assign", "central", "--cells", "CB02"], "nodes release"),
    (["nodes", "release", "--cells", "KHONG"], "Không có chi bộ mã: KHONG"),
])
def test_nodes_assign_refuses_unknown_nodes_and_cells(runner, app, org, args, message):
    """An unknown node or cell is named in Vietnamese and nothing moves."""
    assert runner.invoke(args=["nodes", "register", "doi-1", "--cells", "CB01"]).exit_code == 0
    result = runner.invoke(args=args)
    assert result.exit_code != 0 and message in result.output
    with app.app_context(), db.connection_context():
        assert Cell.get(Cell.code == "CB02").node_id == "central"
        assert Cell.get(Cell.code == "CB01").node_id == "doi-1"


def test_nodes_assign_and_release_keep_the_token(runner, app, org):
    """assign and release change only which node holds the cell; the token hash stays."""
    token = runner.invoke(args=["nodes", "register", "doi-1"]).output.strip().splitlines()[-1]
    assert runner.invoke(args=["nodes", "register", "doi-2"]).exit_code == 0
    result = runner.invoke(args=["nodes", "assign", "doi-2", "--cells", "CB01,CB02"])
    assert result.exit_code == 0, result.output
    with app.app_context(), db.connection_context():
        assert {c.code: c.node_id for c in Cell.select()} == {"CB01": "doi-2", "CB02": "doi-2"}
        assert Node.authenticate(token).id == "doi-1"
    assert runner.invoke(args=["nodes", "release", "--cells", "CB02"]).exit_code == 0
    with app.app_context(), db.connection_context():
        assert {c.code: c.node_id for c in Cell.select()} == {"CB01": "doi-2", "CB02": "central"}
        assert Node.authenticate(token).id == "doi-1"
