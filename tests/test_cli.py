"""Operational commands: schema, accounts, node registration, backup, demo data."""
import datetime as dt
import sqlite3

import pytest

from models import Cell, ChangeLog, Member, Meeting, Node, Organisation, User, db
from models.demo import load_demo
from models.nodes import hash_token


def test_db_up_is_idempotent(runner):
    """Running `db up` twice keeps the same schema version and adds no rule set twice."""
    first = runner.invoke(args=["db", "up"])
    second = runner.invoke(args=["db", "up"])
    assert first.exit_code == 0 and second.exit_code == 0
    assert "đã thêm 0 bộ quy tắc" in second.output


def test_users_create_asks_for_a_password(runner, app):
    """An account is created with the typed password, hashed with argon2id, to be changed at first login."""
    result = runner.invoke(args=["users", "create", "vanphong", "--role", "admin"],
                           input="mat-khau-dai-1\nmat-khau-dai-1\n")
    assert result.exit_code == 0, result.output
    with app.app_context(), db.connection_context():
        user = User.get(User.username == "vanphong")
        assert user.password_hash.startswith("temp:$argon2id$")
        assert user.check_password("mat-khau-dai-1") and user.must_change_password


def test_secretary_needs_a_known_cell(runner):
    """A secretary account for an unknown cell code is refused with a Vietnamese message."""
    result = runner.invoke(args=["users", "create", "bt", "--role", "secretary", "--cell", "KHONG"],
                           input="mat-khau-dai-1\nmat-khau-dai-1\n")
    assert result.exit_code != 0 and "Không có chi bộ mã KHONG" in result.output


def test_nodes_register_prints_a_token_once_and_stores_only_its_hash(runner, app, org):
    """The token printed works for authentication; only its hash is stored; cells move to the node."""
    result = runner.invoke(args=["nodes", "register", "doi-1", "--name", "Đội 1", "--cells", "CB02"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    with app.app_context(), db.connection_context():
        node = Node.get_by_id("doi-1")
        assert node.token_hash == hash_token(token) and token not in node.token_hash
        assert Node.authenticate(token).id == "doi-1"
        assert Node.authenticate("sai") is None
        assert Cell.get(Cell.code == "CB02").node_id == "doi-1"
    revoke = runner.invoke(args=["nodes", "revoke", "doi-1"])
    assert revoke.exit_code == 0
    with app.app_context(), db.connection_context():
        assert Node.authenticate(token) is None


def test_registering_a_node_with_cells_hands_their_records_over_at_once(runner, app, org):
    """As `nodes assign` does: the cells' members (written before the node existed) are in the node's
    feed when the command returns, so the node's first pull only reads; a second pass finds nothing."""
    from sync.scope import rehome_cells

    with app.app_context(), db.connection_context():
        members = {m.id for m in Member.select().where(Member.cell == Cell.get(Cell.code == "CB02").id)}
    assert members
    result = runner.invoke(args=["nodes", "register", "doi-1", "--cells", "CB02"])
    assert result.exit_code == 0, result.output
    assert "bản ghi bàn giao" in result.output
    with app.app_context(), db.connection_context():
        handed = {r.record_id for r in ChangeLog.select().where((ChangeLog.scope == "doi-1")
                                                                  & (ChangeLog.table == "member"))}
        assert members <= handed
        assert rehome_cells() == 0


def test_nodes_register_refuses_unknown_cells(runner, org):
    """An unknown cell code is named and nothing is registered."""
    result = runner.invoke(args=["nodes", "register", "doi-2", "--cells", "CB99"])
    assert result.exit_code != 0 and "CB99" in result.output


@pytest.mark.sqlite_only
def test_backup_makes_a_consistent_copy(runner, app, org, tmp_path):
    """The backup is a readable SQLite file holding the same records."""
    result = runner.invoke(args=["backup", "--dir", str(tmp_path / "bk")])
    assert result.exit_code == 0, result.output
    files = list((tmp_path / "bk").glob("chibo-central-*.sqlite3"))
    assert len(files) == 1
    copy = sqlite3.connect(files[0])
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT count(*) FROM member").fetchone()[0] == 9
    copy.close()


def test_demo_data_is_realistic(app):
    """8 cells of 10–25 members with Vietnamese names, positions, probationary and exempted members."""
    with app.app_context(), db.connection_context():
        accounts = load_demo(today=dt.date(2026, 11, 25), start_year=2025)
        assert Organisation.get().name == "Đảng bộ Cục Quản lý thị trường tỉnh Tiền Giang"
        cells = list(Cell.select())
        assert len(cells) == 8
        for cell in cells:
            members = list(Member.select().where(Member.cell == cell.id))
            assert 10 <= len(members) <= 25
            assert sum(m.position == "bi_thu" for m in members) == 1
            assert sum(m.position == "pho_bi_thu" for m in members) == 1
        statuses = {m.status for m in Member.select()}
        assert {"full", "probationary", "exempted"} <= statuses
        assert any(ch in "ăâđêôơư" for m in Member.select() for ch in m.full_name.lower())
        # Monthly meetings with varying attendance, and an upcoming one left open for the roll call.
        assert Meeting.select().where(Meeting.status == "planned").count() >= 8
        rates = {m.held_on for m in Meeting.select().where(Meeting.status == "closed")}
        assert len(rates) > 12
        roles = {a.role for a in accounts}
        assert roles == {"admin", "supervisor", "secretary", "member"}
        assert len({a.password for a in accounts}) == len(accounts)
        assert ChangeLog.select().count() > 1000


def test_demo_command_refuses_to_mix_into_existing_data(runner, org):
    """Demo data is never loaded into a database that already has an organisation."""
    result = runner.invoke(args=["demo"])
    assert result.exit_code != 0 and "đã có dữ liệu" in result.output
