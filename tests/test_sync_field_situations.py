"""Issue 7's field situations, each over real HTTP between real processes with their own SQLite files.

Central and field node doi-1 run as `python app.py`; the operator syncs with `flask --app app sync`
(a third process), and edits are made either through the running web server (a secretary on the
tablet) or by a short script (an admin at central). Wrong clocks are real: a process started with
CHIBO_CLOCK_OFFSET_MS sees its wall clock shifted.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_sync_push_readahead import Relay
from tests.test_sync_integration import (PASSWORD, SETUP_CENTRAL, Server, free_port, login, node_env, query, run,
                                         sync)


EDIT_AT_CENTRAL = """
import sys
from app import create_app
from models import Member, db
app = create_app()
with app.app_context(), db.connection_context():
    member = Member.get_by_id(sys.argv[1])
    setattr(member, sys.argv[2], int(sys.argv[3]) if sys.argv[2] == "birth_year" else sys.argv[3])
    member.save()
"""

DELETE_AT_CENTRAL = """
import sys
from app import create_app
from models import Member, db
app = create_app()
with app.app_context(), db.connection_context():
    Member.get_by_id(sys.argv[1]).soft_delete()
"""

ADD_MEMBER_WITH_CARD = """
import sys
from app import create_app
from models import Member, db
app = create_app()
with app.app_context(), db.connection_context():
    print(Member.create(cell=sys.argv[1], full_name=sys.argv[2], card_number=sys.argv[3]).id)
"""

MEETING_WITH_MARK = """
import sys, datetime as dt
from app import create_app
from models import Attendance, Meeting, db
app = create_app()
with app.app_context(), db.connection_context():
    meeting = Meeting.create(cell=sys.argv[1], held_on=dt.date.today() - dt.timedelta(days=int(sys.argv[3])),
                             title=sys.argv[4])
    Attendance.create(meeting=meeting.id, member=sys.argv[2], status="present")
    print(meeting.id)
"""


@pytest.fixture
def setup(tmp_path):
    """Central prepared (doi-1 holds CB02) and its server; the field node's environment (no server yet)."""
    central_env = node_env(tmp_path, "central", "central", free_port())
    ids = json.loads(run(central_env, "-c", SETUP_CENTRAL, PASSWORD).stdout.strip().splitlines()[-1])
    token = run(central_env, "nodes", "register", "doi-1", "--name", "Đội số 1",
                "--cells", "CB02").stdout.strip().splitlines()[-1]
    central = Server(central_env, tmp_path / "central.log")
    field_env = node_env(tmp_path, "field", "doi-1", free_port(), CHIBO_CENTRAL_URL=central.url,
                         CHIBO_SYNC_TOKEN=token)
    try:
        yield central_env, field_env, central, ids, tmp_path
    finally:
        central.stop()


def member_name(env, member_id):
    """A member's name as stored on a node."""
    return query(env, "SELECT full_name FROM member WHERE id=?", member_id)[0][0]


def edit_on_tablet(server: Server, member_id: str, cell_id: str, **fields) -> None:
    """The secretary edits a member through the field node's web form (keeps the other fields)."""
    session, csrf = login(server.url, "bithu2")
    page = session.get(f"{server.url}/members/{member_id}/edit", timeout=10)
    assert page.status_code == 200, page.text[:300]
    data = {"csrf_token": csrf, "full_name": fields.get("full_name", ""), "cell": cell_id, "gender": "nam",
            "status": "full", "position": "", "birth_year": "", "admitted_on": "", "full_member_on": "",
            "card_number": "", "status_note": ""}
    import re
    for name in list(data):
        match = re.search(rf'name="{name}"[^>]*value="([^"]*)"', page.text)
        if match and name not in fields and name != "csrf_token":
            data[name] = match.group(1)
    data.update(fields)
    response = session.post(f"{server.url}/members/{member_id}/edit", data=data, allow_redirects=False, timeout=10)
    assert response.status_code in (302, 303), response.text[:500]


def test_the_clock_lives_with_the_data_and_wrong_clocks_never_brick_a_node(setup):
    """A tablet edit after another process pulled wins; a fast clock is refused at hello, then syncs once fixed."""
    central_env, field_env, central, ids, tmp = setup
    member = ids["two"][1]
    # Central's clock runs 2 minutes ahead (inside the accepted window): its stamps are "in the future".
    central.stop()
    central_env = {**central_env, "CHIBO_CLOCK_OFFSET_MS": str(120_000)}
    central = Server(central_env, tmp / "central2.log")
    try:
        field_server = Server(field_env, tmp / "field.log")
        try:
            sync(field_env)
            run(central_env, "-c", EDIT_AT_CENTRAL, member, "full_name", "Tên Do Trung Tâm Đặt")
            sync(field_env)  # another process pulls central's newer stamp
            assert member_name(field_env, member) == "Tên Do Trung Tâm Đặt"
            # The secretary, on the web server that was running all along, corrects the name.
            edit_on_tablet(field_server, member, ids["cb02"], full_name="Tên Bí Thư Sửa Sau")
            result = sync(field_env)
            assert "Đồng bộ thành công" in result.stdout
            assert member_name(central_env, member) == "Tên Bí Thư Sửa Sau"
            assert query(central_env, "SELECT COUNT(*) FROM sync_conflict")[0][0] == 0
        finally:
            field_server.stop()

        # The field machine's clock is set three days ahead: it starts and works, but central refuses
        # its hello (and shows why) while its queue is kept.
        fast = {**field_env, "CHIBO_CLOCK_OFFSET_MS": str(3 * 86400_000)}
        run(fast, "-c", EDIT_AT_CENTRAL, ids["two"][2], "birth_year", "1975")
        refused = sync(fast, check=False)
        assert refused.returncode != 0 and "nhanh hơn trung tâm" in refused.stderr
        skew = query(central_env, "SELECT clock_skew_ms FROM node WHERE id='doi-1'")[0][0]
        assert skew > 2 * 86400_000
        admin, _ = login(central.url, "admin")
        assert "bị từ chối đến khi chỉnh giờ" in admin.get(f"{central.url}/sync/nodes", timeout=10).text
        # Fixed clock: the node starts at once (no waiting for its old stamps) and the queued edit goes up.
        fixed_server = Server(field_env, tmp / "field2.log")
        fixed_server.stop()
        sync(field_env)
        assert query(central_env, "SELECT birth_year FROM member WHERE id=?", ids["two"][2]) == [(1975,)]
        # A later honest edit at central of the same field still wins over the old fast stamp.
        run(central_env, "-c", EDIT_AT_CENTRAL, ids["two"][2], "birth_year", "1976")
        sync(field_env)
        assert query(field_env, "SELECT birth_year FROM member WHERE id=?", ids["two"][2]) == [(1976,)]
        # A clock set back a year: the node starts and syncs (a warning, not a wall).
        slow = {**field_env, "CHIBO_CLOCK_OFFSET_MS": str(-365 * 86400_000)}
        run(slow, "-c", EDIT_AT_CENTRAL, ids["two"][3], "full_name", "Sửa Khi Đồng Hồ Lùi")
        back = sync(slow)
        assert "chậm" in back.stdout
        assert member_name(central_env, ids["two"][3]) == "Sửa Khi Đồng Hồ Lùi"
    finally:
        central.stop()


def test_per_field_merge_conflicts_deletes_and_duplicates(setup):
    """Different fields merge; the same field is a conflict a person resolves; delete vs edit and duplicates are shown."""
    central_env, field_env, central, ids, _tmp = setup
    sync(field_env)
    a, b, c = ids["two"][1], ids["two"][2], ids["two"][3]
    # Offline at the same time: the node renames A and B, and deletes nothing; central changes A's birth
    # year, renames B differently, and deletes C which the node corrects.
    run(field_env, "-c", EDIT_AT_CENTRAL, a, "full_name", "Hoàng Thị Hoa (đổi tên)")
    run(field_env, "-c", EDIT_AT_CENTRAL, b, "full_name", "Võ Văn Khoa — bản ở đội")
    run(field_env, "-c", EDIT_AT_CENTRAL, c, "full_name", "Đặng Thị Lan (sửa chính tả)")
    run(central_env, "-c", EDIT_AT_CENTRAL, a, "birth_year", "1980")
    run(central_env, "-c", EDIT_AT_CENTRAL, b, "full_name", "Võ Văn Khoa — bản trung tâm")
    run(central_env, "-c", DELETE_AT_CENTRAL, c)
    # The same card number entered at both places, and a mark for the member central deleted.
    run(central_env, "-c", ADD_MEMBER_WITH_CARD, ids["cb02"], "Người Nhập Ở Trung Tâm", "0123456")
    twin = run(field_env, "-c", ADD_MEMBER_WITH_CARD, ids["cb02"], "Người Nhập Ở Đội", "0123456").stdout.split()[-1]
    meeting = run(field_env, "-c", MEETING_WITH_MARK, ids["cb02"], c, "35", "Họp có điểm danh người đã xóa"
                  ).stdout.split()[-1]
    later = run(field_env, "-c", MEETING_WITH_MARK, ids["cb02"], a, "70", "Họp sau đó").stdout.split()[-1]

    sync(field_env)
    sync(field_env)
    # Different fields: both kept, on both sides.
    for env in (central_env, field_env):
        assert query(env, "SELECT full_name, birth_year FROM member WHERE id=?", a) == [("Hoàng Thị Hoa (đổi tên)", 1980)]
    # Same field: one provisional winner everywhere, both values kept in a conflict at central.
    assert member_name(central_env, b) == member_name(field_env, b)
    conflicts = query(central_env, "SELECT id, kind, \"column\", winner_json, loser_json FROM sync_conflict "
                                   "WHERE record_id=? AND resolved_at IS NULL", b)
    assert len(conflicts) == 1 and conflicts[0][1:3] == ("field", "full_name")
    assert {json.loads(conflicts[0][3]), json.loads(conflicts[0][4])} == {"Võ Văn Khoa — bản ở đội",
                                                                          "Võ Văn Khoa — bản trung tâm"}
    # Delete vs edit: still deleted (provisionally) with the correction kept, and shown.
    for env in (central_env, field_env):
        assert query(env, "SELECT full_name, deleted_at IS NOT NULL FROM member WHERE id=?", c) == [
            ("Đặng Thị Lan (sửa chính tả)", 1)]
    assert query(central_env, "SELECT kind FROM sync_conflict WHERE record_id=?", c) == [("delete_edit",)]
    # The mark for the deleted member is kept but deleted with him (part of the same conflict, nothing
    # live under a deleted record); the meeting and later meetings still arrived.
    assert query(central_env, "SELECT COUNT(*) FROM meeting WHERE id IN (?, ?)", meeting, later)[0][0] == 2
    for env in (central_env, field_env):
        assert query(env, "SELECT deleted_at IS NOT NULL FROM attendance WHERE meeting_id=? AND member_id=?",
                     meeting, c) == [(1,)]
    # The duplicate card number is a suspected duplicate, not a wall: both people exist at central.
    assert query(central_env, "SELECT COUNT(*) FROM member WHERE card_number='0123456'")[0][0] == 2
    assert query(central_env, "SELECT kind FROM sync_conflict WHERE record_id=?", twin) == [("duplicate",)]

    # A person at central resolves: keep the node's spelling for B, restore C, merge the twin.
    admin, csrf = login(central.url, "admin")
    page = admin.get(f"{central.url}/sync/conflicts", timeout=10).text
    assert "Xung đột" in page and "Võ Văn Khoa — bản ở đội" in page and "Khôi phục bản ghi" in page
    for record_id, choice in ((b, None), (c, "restore"), (twin, "merge")):
        conflict_id, kind, _col, winner, loser = query(
            central_env, "SELECT id, kind, \"column\", winner_json, loser_json FROM sync_conflict WHERE record_id=? "
                         "AND resolved_at IS NULL", record_id)[0]
        if choice is None:
            choice = "winner" if json.loads(winner) == "Võ Văn Khoa — bản ở đội" else "loser"
        response = admin.post(f"{central.url}/sync/conflicts/{conflict_id}", data={"csrf_token": csrf, "choice": choice},
                              allow_redirects=False, timeout=10)
        assert response.status_code == 303
    assert query(central_env, "SELECT COUNT(*) FROM sync_conflict WHERE resolved_at IS NULL")[0][0] == 0
    sync(field_env)
    for env in (central_env, field_env):
        assert member_name(env, b) == "Võ Văn Khoa — bản ở đội"
        assert query(env, "SELECT deleted_at IS NULL FROM member WHERE id=?", c) == [(1,)]
        # Restoring the member restored the roll-call mark that was deleted with him.
        assert query(env, "SELECT deleted_at IS NULL FROM attendance WHERE meeting_id=? AND member_id=?",
                     meeting, c) == [(1,)]
        assert query(env, "SELECT COUNT(*) FROM member WHERE card_number='0123456' AND deleted_at IS NULL")[0][0] == 1


def test_restores_on_either_side_lose_nothing(setup):
    """A node restored from its backup gets back what it pushed after it; a restored central gets it again."""
    central_env, field_env, central, ids, tmp = setup
    sync(field_env)
    field_db = field_env["CHIBO_DATABASE_URL"][len("sqlite:///"):]
    field_backup = run(field_env, "backup", "--dir", str(tmp / "b1")).stdout.strip().split()[-1]
    after_backup = run(field_env, "-c", MEETING_WITH_MARK, ids["cb02"], ids["two"][0], "30", "Họp sau bản sao lưu"
                       ).stdout.split()[-1]
    sync(field_env)
    # The field machine's disk dies; it is restored from last night's backup.
    for suffix in ("-wal", "-shm"):
        Path(field_db + suffix).unlink(missing_ok=True)
    shutil.copy(field_backup, field_db)
    restored = sync(field_env)
    assert "khôi phục" in restored.stdout
    assert query(field_env, "SELECT title FROM meeting WHERE id=?", after_backup) == [("Họp sau bản sao lưu",)]
    assert query(field_env, "SELECT COUNT(*) FROM attendance WHERE meeting_id=?", after_backup)[0][0] == 1



def test_a_central_restored_from_its_backup_gets_back_what_it_lost(setup):
    """Central restored (flask restore, a new generation): the node pushes again and pulls what is new."""
    central_env, field_env, central, ids, tmp = setup
    if not central_env["CHIBO_DATABASE_URL"].startswith("sqlite:///"):
        pytest.skip("a PostgreSQL central is restored with pg_restore; the flask restore path is SQLite")
    sync(field_env)
    central.stop()
    central_backup = run(central_env, "backup", "--dir", str(tmp / "b2")).stdout.strip().split()[-1]
    central = Server(central_env, tmp / "central3.log")
    try:
        lost = run(field_env, "-c", MEETING_WITH_MARK, ids["cb02"], ids["two"][1], "60", "Họp mà trung tâm sẽ mất"
                   ).stdout.split()[-1]
        sync(field_env)
        assert query(central_env, "SELECT COUNT(*) FROM meeting WHERE id=?", lost)[0][0] == 1
        central.stop()
        run(central_env, "restore", central_backup, "--yes")
        central = Server(central_env, tmp / "central4.log")
        assert query(central_env, "SELECT COUNT(*) FROM meeting WHERE id=?", lost)[0][0] == 0
        again = sync(field_env)
        assert "khôi phục" in again.stdout
        assert query(central_env, "SELECT title FROM meeting WHERE id=?", lost) == [("Họp mà trung tâm sẽ mất",)]
        assert query(central_env, "SELECT COUNT(*) FROM attendance WHERE meeting_id=?", lost)[0][0] == 1
        # And what central writes after its restore still reaches the node.
        run(central_env, "-c", EDIT_AT_CENTRAL, ids["two"][2], "full_name", "Sửa Sau Khi Khôi Phục")
        sync(field_env)
        assert member_name(field_env, ids["two"][2]) == "Sửa Sau Khi Khôi Phục"
    finally:
        central.stop()


MEETINGS_WITH_MARKS = """
import sys, datetime as dt
from app import create_app
from models import Attendance, Meeting, db
app = create_app()
with app.app_context(), db.connection_context():
    made = []
    for i in range(int(sys.argv[3])):
        meeting = Meeting.create(cell=sys.argv[1], held_on=dt.date.today() - dt.timedelta(days=100 + i),
                                 kind="extraordinary", title=f"Họp sau sao lưu {i + 1}")
        Attendance.create(meeting=meeting.id, member=sys.argv[2], status="present")
        made.append(meeting.id)
    print(" ".join(made))
"""


def test_a_restored_node_gets_back_all_its_own_records_over_many_pull_pages(setup):
    """After a restore the node pulls its whole scope again: its own records on every page, not only the first.

    Central's pages leave out a node's own changes except from cursor 0 (a restored node asks again); pages
    after the first used to leave them out, so what did not fit on the first page never came back."""
    central_env, field_env, central, ids, tmp = setup
    sync(field_env)
    field_db = field_env["CHIBO_DATABASE_URL"][len("sqlite:///"):]
    field_backup = run(field_env, "backup", "--dir", str(tmp / "b1")).stdout.strip().split()[-1]
    made = run(field_env, "-c", MEETINGS_WITH_MARKS, ids["cb02"], ids["two"][0], "6").stdout.split()
    sync(field_env)
    assert query(central_env, "SELECT COUNT(*) FROM meeting WHERE title LIKE ?", "Họp sau sao lưu %")[0][0] == 6
    for suffix in ("-wal", "-shm"):
        Path(field_db + suffix).unlink(missing_ok=True)
    shutil.copy(field_backup, field_db)
    # The node's scope takes many pages, and the link drops while the third one is on its way.
    relay = Relay(central.url, lose_pull=3)
    try:
        cut = sync({**field_env, "CHIBO_SYNC_PULL_LIMIT": "4", "CHIBO_CENTRAL_URL": relay.url}, check=False)
    finally:
        relay.close()
    assert cut.returncode != 0 and relay.lost == [-3]
    assert "tải lại dữ liệu của nút từ trung tâm chưa xong" in cut.stderr  # the secretary is told it is partial
    assert "khôi phục" in query(field_env, "SELECT value FROM sync_state WHERE key='reconcile_note'")[0][0]
    assert query(field_env, "SELECT value FROM sync_state WHERE key='pull_full'") == [("1",)]
    sync({**field_env, "CHIBO_SYNC_PULL_LIMIT": "4"})  # the link is back: the rebuild goes on where it stopped
    placeholders = ", ".join("?" * len(made))
    assert query(field_env, f"SELECT COUNT(*) FROM meeting WHERE id IN ({placeholders})", *made)[0][0] == 6
    assert query(field_env, f"SELECT COUNT(*) FROM attendance WHERE meeting_id IN ({placeholders})", *made)[0][0] == 6
    # Nothing is left out at the node and nothing was set aside on the way.
    assert query(field_env, "SELECT COUNT(*) FROM sync_dead_letter WHERE resolved_at IS NULL")[0][0] == 0
    assert query(field_env, "SELECT value FROM sync_state WHERE key='pull_full'") == [("0",)]
