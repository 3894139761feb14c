"""Accounts: login limits kept in the database, password change and reset, locking, session expiry."""
from __future__ import annotations

import pytest

from tests.conftest import received_from_central
from itsdangerous.timed import TimestampSigner

from app import create_app
from models import LoginAttempt, User, db
from models.audit import AuditEntry

PASSWORD = "mat-khau-thu-nghiem"  # the org fixture's password (tests/conftest.py)


@pytest.fixture
def AuthActions(auth):
    """The login helper class, for a second browser (another person or a restarted server)."""
    return type(auth)


def _user(username):
    with db.connection_context():
        return User.get(User.username == username)


def test_wrong_password_is_refused_and_counted(client, auth, org):
    """A wrong password gets a Vietnamese message and one row in the failure table."""
    response = auth.login("bithu1", "sai-mat-khau")
    assert response.status_code == 422
    assert "Tên đăng nhập hoặc mật khẩu không đúng" in response.get_data(as_text=True)
    with db.connection_context():
        assert LoginAttempt.select().where(LoginAttempt.username == "bithu1").count() == 1


def test_account_blocked_after_five_failures_even_with_right_password(client, auth, org):
    """Five failures lock the account for the window; the right password is then refused too."""
    for _ in range(5):
        assert auth.login("bithu1", "sai-mat-khau").status_code == 422
    response = auth.login("bithu1", PASSWORD)
    assert response.status_code == 429
    assert "thử lại sau" in response.get_data(as_text=True)
    # Another account from the same address is not blocked by bithu1's failures.
    assert auth.login("bithu2", PASSWORD).status_code == 303


def test_address_blocked_after_many_failures_across_accounts(app, client, auth, org):
    """Failures spread over many account names still block the address."""
    app.config["LOGIN_MAX_PER_ADDRESS"] = 4
    for name in ("a1", "a2", "a3", "a4"):
        auth.login(name, "x-sai-mat-khau")
    assert auth.login("admin", PASSWORD).status_code == 429


def test_block_survives_a_restart(tmp_path, org, app, client, auth, AuthActions):
    """The count lives in the database: a new app process on the same file still refuses."""
    for _ in range(5):
        auth.login("bithu1", "sai-mat-khau")
    again = create_app({"TESTING": True, "SECRET_KEY": "test", "DATABASE_URL": app.config["DATABASE_URL"]})
    other = AuthActions(again.test_client())
    assert other.login("bithu1", PASSWORD).status_code == 429


def test_success_clears_account_failures(client, auth, org):
    """A successful login forgets the earlier failures of that account."""
    for _ in range(3):
        auth.login("bithu1", "sai-mat-khau")
    assert auth.login("bithu1", PASSWORD).status_code == 303
    with db.connection_context():
        assert LoginAttempt.select().where(LoginAttempt.username == "bithu1").count() == 0


def test_password_change(client, auth, org):
    """The user changes their password with the current one; the old one stops working."""
    auth.login("bithu1")
    auth.token("/account/password")
    bad = client.post("/account/password", data={"csrf_token": auth.csrf, "current_password": "sai",
                                                 "new_password": "mat-khau-moi-123", "confirm_password": "mat-khau-moi-123"})
    assert bad.status_code == 422 and "Mật khẩu hiện tại không đúng" in bad.get_data(as_text=True)
    short = client.post("/account/password", data={"csrf_token": auth.csrf, "current_password": PASSWORD,
                                                   "new_password": "ngan", "confirm_password": "ngan"})
    assert short.status_code == 422 and "ít nhất 8 ký tự" in short.get_data(as_text=True)
    ok = client.post("/account/password", data={"csrf_token": auth.csrf, "current_password": PASSWORD,
                                                "new_password": "mat-khau-moi-123", "confirm_password": "mat-khau-moi-123"})
    assert ok.status_code == 303
    auth.logout()
    assert auth.login("bithu1", PASSWORD).status_code == 422
    assert auth.login("bithu1", "mat-khau-moi-123").status_code == 303


def test_admin_reset_shows_a_temporary_password_once_and_unblocks(client, auth, org, AuthActions):
    """A reset gives a working temporary password and lifts the login block."""
    other = AuthActions(client.application.test_client())
    for _ in range(5):
        other.login("bithu2", "sai-mat-khau")
    auth.login("admin")
    user = _user("bithu2")
    auth.token("/accounts")
    response = client.post(f"/accounts/{user.id}/reset", data={"csrf_token": auth.csrf})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    temporary = html.split('data-testid="temporary-password">')[1].split("<")[0]
    assert len(temporary) >= 12
    fresh = AuthActions(client.application.test_client())
    assert fresh.login("bithu2", temporary).status_code == 303
    with db.connection_context():
        entry = AuditEntry.select().where((AuditEntry.table == "app_user") & (AuditEntry.record_id == user.id)).order_by(AuditEntry.at.desc()).first()
    assert entry.user_name == "admin" and entry.changes["password_hash"]["new"] == "(đã thay đổi)"
    assert "argon2" not in entry.changes_json


def test_deactivated_account_cannot_log_in_and_open_session_ends(app, client, auth, org, AuthActions):
    """Locking an account refuses its login and ends a session it already had."""
    victim = AuthActions(app.test_client())
    assert victim.login("bithu2").status_code == 303
    auth.login("admin")
    auth.token("/accounts")
    user = _user("bithu2")
    assert client.post(f"/accounts/{user.id}/active", data={"csrf_token": auth.csrf, "active": "0"}).status_code == 303
    assert victim._client.get("/").status_code == 302
    response = AuthActions(app.test_client()).login("bithu2")
    assert response.status_code == 422 and "đã bị khóa" in response.get_data(as_text=True)


def test_admin_creates_account_with_validation(client, auth, org):
    """Creating an account: a duplicate name is refused with input kept; a good one shows its password."""
    auth.login("admin")
    auth.token("/accounts/new")
    dup = client.post("/accounts/new", data={"csrf_token": auth.csrf, "username": "BiThu1", "full_name": "Trùng",
                                            "role": "secretary", "cell": org.cell.id})
    assert dup.status_code == 422
    html = dup.get_data(as_text=True)
    assert "đã có người dùng" in html and 'value="Trùng"' in html
    ok = client.post("/accounts/new", data={"csrf_token": auth.csrf, "username": "phobithu1", "full_name": "Phó Bí thư",
                                           "role": "secretary", "cell": org.cell.id})
    assert ok.status_code == 200 and 'data-testid="temporary-password"' in ok.get_data(as_text=True)
    assert _user("phobithu1").cell_id == org.cell.id


@pytest.mark.parametrize("username", ["btv", "bithu1", "dangvien1"])
def test_only_admin_manages_accounts(client, auth, org, username):
    """Supervisors, secretaries and members get 403 on every account page."""
    auth.login(username)
    target = _user("bithu2")
    assert client.get("/accounts").status_code == 403
    assert client.get(f"/accounts/{target.id}").status_code == 403
    auth.token("/")
    assert client.post(f"/accounts/{target.id}/reset", data={"csrf_token": auth.csrf}).status_code == 403


def test_session_refreshes_while_used_and_expires_when_idle(app, client, auth, org, monkeypatch):
    """Each request renews the 4-hour window; 4 hours without a request ends the session."""
    now = [1_000_000]
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now[0])
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    assert lifetime == 4 * 3600
    auth.login("bithu1")
    for _ in range(3):  # a long meeting: a request every 3 hours keeps the session alive
        now[0] += 3 * 3600
        assert client.get("/").status_code == 200
    now[0] += lifetime + 60
    response = client.get(f"/cells/{org.cell.id}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_expired_session_during_htmx_redirects_to_login_and_back(app, client, auth, org, monkeypatch):
    """An htmx request after expiry gets HX-Redirect to login; logging in returns to the page."""
    now = [2_000_000]
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now[0])
    auth.login("bithu1")
    page = f"/meetings/{org.meeting.id}"
    auth.token(page)
    now[0] += 5 * 3600
    member = org.members[0]
    response = auth.htmx_post(f"/meetings/{org.meeting.id}/attendance/{member.id}",
                              headers={"HX-Current-URL": f"http://localhost{page}"})
    target = response.headers.get("HX-Redirect")
    assert target and target.startswith("/login") and "next=" in target
    assert response.get_data(as_text=True) == ""  # never a login page swapped into a fragment
    token = auth.token(target)
    back = client.post(target, data={"username": "bithu1", "password": PASSWORD, "csrf_token": token})
    assert back.status_code == 303 and back.headers["Location"] == page


def test_cli_reset_password_and_deactivate(app, runner, org, auth, AuthActions):
    """The CLI resets a password (lifting the block) and locks or unlocks an account."""
    for _ in range(5):
        auth.login("bithu1", "sai-mat-khau")
    result = runner.invoke(args=["users", "reset-password", "bithu1", "--password", "mat-khau-cli-123"])
    assert result.exit_code == 0 and "Đã đặt lại mật khẩu" in result.output
    assert AuthActions(app.test_client()).login("bithu1", "mat-khau-cli-123").status_code == 303
    result = runner.invoke(args=["users", "deactivate", "bithu1"])
    assert result.exit_code == 0
    assert AuthActions(app.test_client()).login("bithu1", "mat-khau-cli-123").status_code == 422
    runner.invoke(args=["users", "deactivate", "bithu1", "--undo"])
    assert AuthActions(app.test_client()).login("bithu1", "mat-khau-cli-123").status_code == 303
    assert "bithu1\tsecretary\tCB01\thoạt động" in runner.invoke(args=["users", "list"]).output
    assert runner.invoke(args=["users", "reset-password", "khong-co", "--password", "x" * 9]).exit_code != 0


def test_field_node_changes_passwords_only_of_accounts_it_holds(tmp_path):
    """At a field node an admin (a central account) is sent to central; a local secretary may change theirs."""
    import re

    from models import Cell, Organisation

    field = create_app({"TESTING": True, "SECRET_KEY": "t", "ROLE": "field", "NODE_ID": "doi-1",
                        "DATABASE_URL": f"sqlite:///{tmp_path / 'field.sqlite3'}"})
    with field.app_context(), db.connection_context(), received_from_central():
        o = Organisation.create(name="Đảng bộ")
        cell = Cell.create(organisation=o.id, code="CB01", name="Chi bộ Một", node_id="doi-1")
        for name, role, c in (("admin", "admin", None), ("bithu", "secretary", cell.id)):
            user = User(username=name, role=role, cell=c)
            user.set_password(PASSWORD)
            user.save()
    for name, expected in (("admin", 403), ("bithu", 200)):
        client = field.test_client()
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
        assert client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token}).status_code == 303
        response = client.get("/account/password")
        assert response.status_code == expected
        if expected == 403:
            assert "đổi mật khẩu trên máy chủ trung tâm" in response.get_data(as_text=True)
