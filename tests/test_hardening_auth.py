"""Sessions and passwords (issue 8, part 1): revocable sessions, absolute lifetime, one-time passwords,
password rules, the rate-limited current-password check, no enumeration by timing, no admin lock-out."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from models import User, db
from models.users import UserSession

from tests.conftest import PASSWORD, csrf_token_from

NEW_PASSWORD = "mot-cau-de-nho-2026"


def _user(username):
    with db.connection_context():
        return User.get(User.username == username)


def _copy_cookies(source, target):
    """Give `target` the cookies `source` holds (a cookie saved by someone who had the tablet)."""
    for cookie in source._cookies.values():
        target.set_cookie(cookie.key, cookie.value, domain=cookie.domain, path=cookie.path)


def _logged_in(client) -> bool:
    response = client.get("/")
    return response.status_code == 200


@pytest.fixture
def second(app):
    """A second browser on the same server."""
    return app.test_client()


def test_logout_ends_a_saved_copy_of_the_cookie(app, client, auth, org, second):
    """A cookie copied before logout gets the login page afterwards."""
    assert auth.login("bithu1").status_code == 303
    _copy_cookies(client, second)
    assert _logged_in(second)
    auth.token("/")
    assert auth.logout().status_code == 303
    response = second.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_password_change_ends_every_other_session(app, client, auth, org):
    """Changing one's password ends the sessions on other tablets but keeps this one."""
    other = type(auth)(app.test_client())
    assert other.login("bithu1").status_code == 303
    auth.login("bithu1")
    auth.token("/account/password")
    response = client.post("/account/password", data={"csrf_token": auth.csrf, "current_password": PASSWORD,
                                                      "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert response.status_code == 303
    assert _logged_in(client)
    assert other._client.get("/").status_code == 302


def test_admin_reset_and_deactivation_end_sessions_for_good(app, client, auth, org):
    """A reset ends the account's sessions; a lock does too, and unlocking does not revive them."""
    victim = type(auth)(app.test_client())
    victim.login("bithu2")
    saved = app.test_client()
    _copy_cookies(victim._client, saved)
    auth.login("admin")
    auth.token("/accounts")
    user = _user("bithu2")
    assert client.post(f"/accounts/{user.id}/reset", data={"csrf_token": auth.csrf}).status_code == 200
    assert victim._client.get("/").status_code == 302

    victim.login("bithu1")
    _copy_cookies(victim._client, saved)
    target = _user("bithu1")
    assert client.post(f"/accounts/{target.id}/active", data={"csrf_token": auth.csrf, "active": "0"}).status_code == 303
    assert client.post(f"/accounts/{target.id}/active", data={"csrf_token": auth.csrf, "active": "1"}).status_code == 303
    assert saved.get("/").status_code == 302


def test_session_ends_twelve_hours_after_login_however_busy(app, client, auth, org):
    """The absolute lifetime: a session started 12 h ago ends even if it was used a minute ago."""
    auth.login("bithu1")
    assert _logged_in(client)
    with db.connection_context():
        for row in UserSession.select():
            row.created_at -= dt.timedelta(hours=12, minutes=1)
            row.save()
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_login_starts_a_fresh_session(app, client, auth, org):
    """Whatever the cookie held before login is dropped, and each login gets its own session."""
    with client.session_transaction() as sess:
        sess["planted"] = "by-someone-else"
    auth.login("bithu1")
    with client.session_transaction() as sess:
        assert "planted" not in sess
        first = sess["sid"]
    auth.token("/")
    auth.logout()
    auth.login("bithu1")
    with client.session_transaction() as sess:
        assert sess["sid"] != first


def test_one_time_password_must_be_changed_first(app, client, auth, org):
    """After an admin reset the holder reaches only the password form until they choose their own."""
    admin = type(auth)(app.test_client())
    admin.login("admin")
    admin.token("/accounts")
    user = _user("bithu1")
    html = admin._client.post(f"/accounts/{user.id}/reset", data={"csrf_token": admin.csrf}).get_data(as_text=True)
    temporary = html.split('data-testid="temporary-password">')[1].split("<")[0]
    response = auth.login("bithu1", temporary)
    assert response.status_code == 303 and response.headers["Location"].endswith("/account/password")
    blocked = client.get(f"/cells/{org.cell.id}")
    assert blocked.status_code == 302 and blocked.headers["Location"].endswith("/account/password")
    hx = client.get(f"/cells/{org.cell.id}", headers={"HX-Request": "true"})
    assert hx.headers.get("HX-Redirect", "").endswith("/account/password")
    page = client.get("/account/password").get_data(as_text=True)
    assert "mật khẩu tạm thời" in page
    token = csrf_token_from(page)
    done = client.post("/account/password", data={"csrf_token": token, "current_password": temporary,
                                                  "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert done.status_code == 303
    assert client.get(f"/cells/{org.cell.id}").status_code == 200
    assert not _user("bithu1").must_change_password


def test_demo_and_cli_passwords_are_one_time(app, runner, org):
    """The demo's printed passwords and `users create` passwords must be changed at first login."""
    result = runner.invoke(args=["users", "create", "vanphong2", "--role", "admin"],
                           input="mat-khau-dai-1\nmat-khau-dai-1\n")
    assert result.exit_code == 0, result.output
    assert _user("vanphong2").must_change_password
    from models.demo import _account

    with app.app_context(), db.connection_context():
        _account("demo.x", "supervisor", "Người Mẫu", "mẫu")
    assert _user("demo.x").must_change_password


@pytest.mark.parametrize("new, message", [
    ("password1", "quá phổ biến"),
    ("12345678", "quá phổ biến"),
    ("iloveyou", "quá phổ biến"),
    ("BiThu1", "ít nhất 8"),
    ("x" * 257, "tối đa 256"),
])
def test_weak_passwords_are_refused(client, auth, org, new, message):
    """Common passwords and too short or too long ones are refused with a Vietnamese message."""
    auth.login("bithu1")
    auth.token("/account/password")
    response = client.post("/account/password", data={"csrf_token": auth.csrf, "current_password": PASSWORD,
                                                      "new_password": new, "confirm_password": new})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)


def test_password_equal_to_username_is_refused(app, org):
    """A password that is the username (any case) is refused."""
    from models import ValidationError

    with app.app_context(), db.connection_context():
        user = User(username="nguyenvana.cb01", role="admin")
        with pytest.raises(ValidationError, match="trùng với tên đăng nhập"):
            user.set_password("NguyenVanA.CB01")


def test_long_passphrases_are_allowed(client, auth, org):
    """A 64-character (and a 200-character) passphrase is accepted and works at the next login."""
    auth.login("bithu1")
    current = PASSWORD
    for length in (64, 200):
        new = ("câu thần chú dài của chi bộ một " * 10)[:length]
        auth.token("/account/password")
        response = client.post("/account/password", data={"csrf_token": auth.csrf, "current_password": current,
                                                          "new_password": new, "confirm_password": new})
        assert response.status_code == 303, response.get_data(as_text=True)
        current = new
    auth.logout()
    assert auth.login("bithu1", current).status_code == 303


def test_current_password_check_is_rate_limited(client, auth, org):
    """Guessing the current password on the password form is limited like the login."""
    auth.login("bithu1")
    auth.token("/account/password")
    data = {"csrf_token": auth.csrf, "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD}
    for _ in range(5):
        assert client.post("/account/password", data={**data, "current_password": "doan-sai-1"}).status_code == 422
    response = client.post("/account/password", data={**data, "current_password": PASSWORD})
    assert response.status_code == 429 and "thử lại sau" in response.get_data(as_text=True)
    assert _user("bithu1").check_password(PASSWORD)


def test_unknown_username_costs_one_argon2_verification(client, auth, org, monkeypatch):
    """A login for a name that does not exist runs the same argon2 verification as a wrong password."""
    import models.users

    calls = []
    real = models.users._hasher

    class Counting:
        """The real hasher, counting verifications."""

        def verify(self, stored, password):
            calls.append(stored)
            return real.verify(stored, password)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(models.users, "_hasher", Counting())
    auth.login("khong-ton-tai", "mat-khau-bat-ky")
    unknown = len(calls)
    auth.login("bithu1", "mat-khau-bat-ky")
    assert unknown == 1 and len(calls) == 2


def test_guesses_from_elsewhere_never_lock_the_admin_out_of_a_known_address(app, org):
    """Five wrong guesses from another address block that address, not the admin at their own desk."""
    from tests.conftest import AuthActions

    desk = AuthActions(app.test_client())
    desk._client.environ_base["REMOTE_ADDR"] = "10.0.0.5"
    assert desk.login("admin").status_code == 303
    attacker = AuthActions(app.test_client())
    attacker._client.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    for _ in range(5):
        attacker.login("admin", "doan-mo-1")
    assert attacker.login("admin", PASSWORD).status_code == 429
    again = AuthActions(app.test_client())
    again._client.environ_base["REMOTE_ADDR"] = "10.0.0.5"
    assert again.login("admin", PASSWORD).status_code == 303
