"""The sync status screens: the field node's panel with its button, and central's node list."""
from __future__ import annotations

import datetime as dt
import socket

import pytest

from app import create_app
from tests.conftest import PASSWORD, AuthActions, received_from_central
from models import Cell, Meeting, Organisation, User, db
from sync.status import ago_in_words, skew_in_words


def make_admin(app) -> None:
    """An admin account on this node (made directly: a field node normally receives it by sync)."""
    with app.app_context(), db.connection_context(), received_from_central():
        user = User(username="admin", role="admin", full_name="Quản trị")
        user.set_password(PASSWORD)
        user.save()


@pytest.fixture
def field_app(tmp_path):
    """A field node whose central is not reachable (nothing listens on the port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "ROLE": "field", "NODE_ID": "doi-1",
                      "CENTRAL_URL": f"http://127.0.0.1:{port}", "SYNC_TOKEN": "ma-thu",
                      "SYNC_CONNECT_TIMEOUT": 2,
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'field.sqlite3'}"})
    make_admin(app)
    yield app
    if not db.is_closed():
        db.close()


def test_field_status_shows_pending_changes_and_a_failed_run_keeps_them(field_app):
    """The panel counts what waits; pressing the button without a link says so in Vietnamese."""
    with field_app.app_context(), db.connection_context(), received_from_central():
        org = Organisation.create(name="Đảng bộ")
        cell = Cell.create(organisation=org.id, code="CB02", name="Chi bộ Hai", node_id="doi-1")
        Meeting.create(cell=cell.id, held_on=dt.date.today())
    client = field_app.test_client()
    auth = AuthActions(client)
    assert auth.login().status_code == 303
    page = client.get("/sync").get_data(as_text=True)
    assert "chưa lần nào" in page
    pending_before = page.split('data-testid="sync-pending">')[1].split("<")[0]
    assert int(pending_before) >= 3
    auth.token("/sync")
    response = auth.htmx_post("/sync/run")
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert "Đồng bộ thất bại" in fragment and "Không kết nối được tới trung tâm" in fragment
    assert fragment.split('data-testid="sync-pending">')[1].split("<")[0] == pending_before


def test_an_unfinished_rebuild_from_central_is_shown_until_it_completes(field_app):
    """A restored node whose rebuild stopped between pages says its data may be partial, and where it stopped."""
    from models import SyncState

    client = field_app.test_client()
    assert AuthActions(client).login().status_code == 303
    assert 'data-testid="sync-rebuilding"' not in client.get("/sync").get_data(as_text=True)
    with field_app.app_context(), db.connection_context():
        SyncState.set_value("pull_cursor", "1234")
        SyncState.set_value("pull_full", "1")
    page = client.get("/sync").get_data(as_text=True)
    assert 'data-testid="sync-rebuilding"' in page and "chưa xong (dừng ở số 1234)" in page
    with field_app.app_context(), db.connection_context():
        SyncState.set_value("pull_full", "0")  # the last page of the rebuild stores this with its cursor
    assert 'data-testid="sync-rebuilding"' not in client.get("/sync").get_data(as_text=True)


def test_status_run_needs_csrf(field_app):
    """The button is a form: without the CSRF token it is refused (only the API is exempt)."""
    client = field_app.test_client()
    AuthActions(client).login()
    assert client.post("/sync/run").status_code == 400


def test_central_node_list_shows_registered_nodes(client, org, auth, runner):
    """Central lists each node with its state; the field panel address redirects there."""
    assert runner.invoke(args=["nodes", "register", "doi-1", "--name", "Đội số 1", "--cells", "CB02"]).exit_code == 0
    auth.login()
    assert client.get("/sync").status_code == 302
    page = client.get("/sync/nodes").get_data(as_text=True)
    assert 'data-testid="node-doi-1"' in page and "Đội số 1" in page and "chưa lần nào" in page


def test_status_pages_are_admin_only(client, org, auth):
    """A cell secretary may not open the sync screens."""
    auth.login("bithu1")
    assert client.get("/sync/nodes").status_code == 403


@pytest.mark.parametrize("seconds, words", [(5, "vừa xong"), (300, "5 phút trước"), (7300, "2 giờ trước"),
                                            (3 * 86400, "3 ngày trước")])
def test_ago_in_words(seconds, words):
    """Elapsed time reads as people say it."""
    now = dt.datetime(2025, 3, 5, 12, 0)
    assert ago_in_words(now - dt.timedelta(seconds=seconds), now) == words


def test_skew_in_words():
    """Clock skew reads as ahead/behind with units."""
    assert skew_in_words(125_000) == "nhanh 2 phút 5 giây"
    assert skew_in_words(-3_000) == "chậm 3 giây"
    assert skew_in_words(200) == "khớp"
