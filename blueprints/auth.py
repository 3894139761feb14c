"""Login, logout and one's own password (Vietnamese pages; the account rules live in models/users.py).

Failed logins are counted in the database per account name and per address (`LoginAttempt`), so
the limit survives a restart; a blocked login is refused even with the right password and says how
long to wait (an account's own limit never applies at an address it logged in from before). An
unknown username costs the same argon2 verification as a wrong password.

Login starts a fresh session (the old cookie's contents are dropped and a new server-side session
row is made, see models/users.py); logout and a password change end every session of the account.
A person holding a one-time password reaches only the password form until they choose their own.
The current-password check on that form is rate-limited like the login itself.
Each request made by a logged-in person sets the audit actor (models/audit.py), so every write it
causes is attributed to them.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from models import User, ValidationError
from models.audit import reset_actor, set_actor
from models.users import (
    LOGIN_MAX_PER_ACCOUNT,
    LOGIN_MAX_PER_ADDRESS,
    LOGIN_WINDOW_MINUTES,
    burn_password_check,
    clear_failed_logins,
    end_sessions,
    login_blocked,
    password_problem,
    record_failed_login,
    remember_address,
    start_session,
)

from .web import _local_path

bp = Blueprint("auth", __name__)


@bp.before_app_request
def _set_audit_actor():
    """End a locked account's sessions; attribute writes to the person; hold one-time passwords at the form."""
    if current_user.is_authenticated and not current_user.is_active:
        # Flask-Login checks is_active only at login: a lock must also end sessions already open.
        end_sessions(current_user.id)
        logout_user()
        session.clear()
    if current_user.is_authenticated:
        g._audit_token = set_actor(current_user.id, current_user.full_name or current_user.username)
        if current_user.must_change_password and request.endpoint not in _ALLOWED_WITH_ONE_TIME_PASSWORD \
                and request.blueprint != "sync_api":
            target = url_for("auth.password_change")
            if request.headers.get("HX-Request"):
                return "", 200, {"HX-Redirect": target}
            return redirect(target, 303 if request.method != "GET" else 302)
    return None


# What a person with a one-time password may reach before choosing their own.
_ALLOWED_WITH_ONE_TIME_PASSWORD = {"auth.password_change", "auth.logout", "auth.login", "static",
                                   "favicon"}


@bp.teardown_app_request
def _reset_audit_actor(_exc):
    """Forget the actor so a reused worker thread never inherits it."""
    token = g.pop("_audit_token", None)
    if token is not None:
        reset_actor(token)


def _limits() -> dict:
    cfg = current_app.config
    return {"window_minutes": int(cfg.get("LOGIN_WINDOW_MINUTES", LOGIN_WINDOW_MINUTES)),
            "max_per_account": int(cfg.get("LOGIN_MAX_PER_ACCOUNT", LOGIN_MAX_PER_ACCOUNT)),
            "max_per_address": int(cfg.get("LOGIN_MAX_PER_ADDRESS", LOGIN_MAX_PER_ADDRESS))}


@bp.route("/login", methods=("GET", "POST"))
def login():
    """Show the login form; on POST check the limits and the password, then go where the user was heading."""
    if current_user.is_authenticated and request.method == "GET":
        return redirect(url_for("cells.index"))
    errors, username = {}, ""
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        address = request.remote_addr or ""
        if not username:
            errors["username"] = "Vui lòng nhập tên đăng nhập."
        if not password:
            errors["password"] = "Vui lòng nhập mật khẩu."
        if not errors:
            wait = login_blocked(username, address, **_limits())
            if wait:
                errors["form"] = (f"Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau {wait} phút "
                                  "hoặc liên hệ Văn phòng Đảng ủy để đặt lại mật khẩu.")
                return render_template("auth/login.html", errors=errors, username=username), 429
            user = User.get_or_none((User.username == username) & User.deleted_at.is_null())
            if user is None:
                burn_password_check(password)
            if user is None or not user.check_password(password, rehash=account_writable_here(user)):
                record_failed_login(username, address)
                errors["form"] = "Tên đăng nhập hoặc mật khẩu không đúng."
            elif not user.is_active:
                errors["form"] = "Tài khoản đã bị khóa. Vui lòng liên hệ Văn phòng Đảng ủy."
            elif user.must_change_password and not account_writable_here(user):
                errors["form"] = ("Tài khoản đang dùng mật khẩu tạm thời. Vui lòng đăng nhập tại máy chủ "
                                  "trung tâm để đặt mật khẩu riêng trước.")
            else:
                clear_failed_logins(username)
                remember_address(username, address)
                _start_fresh_session(user)
                if user.must_change_password:
                    flash("Đồng chí đang dùng mật khẩu tạm thời: vui lòng đặt mật khẩu riêng để tiếp tục.", "info")
                    return redirect(url_for("auth.password_change"), 303)
                return redirect(_local_path(request.args.get("next") or url_for("cells.index")), 303)
        return render_template("auth/login.html", errors=errors, username=username), 422
    return render_template("auth/login.html", errors=errors, username=username)


def _start_fresh_session(user: User) -> None:
    """Drop whatever the old cookie held and log in with a new server-side session."""
    csrf_token = session.get("csrf_token")
    session.clear()
    if csrf_token:
        # The CSRF secret is kept: it is only a same-origin proof, never an identity, and pages
        # already open in this browser (another tab) keep working across the login.
        session["csrf_token"] = csrf_token
    session.permanent = True
    session["sid"] = start_session(user, request.remote_addr or "")
    login_user(user)


def account_writable_here(user: User) -> bool:
    """Central writes every account; a field node only those of the cells it holds (single writer)."""
    return current_app.config["ROLE"] == "central" or user.sync_scope() == current_app.config["NODE_ID"]


@bp.route("/logout", methods=("POST",))
@login_required
def logout():
    """End every session of this account (a cookie saved earlier gets the login page)."""
    end_sessions(current_user.id)
    logout_user()
    session.clear()
    flash("Đã đăng xuất.", "info")
    return redirect(url_for("auth.login"), 303)


@bp.route("/account/password", methods=("GET", "POST"))
@login_required
def password_change():
    """Change one's own password: the current one, then the new one twice; other sessions end."""
    if not account_writable_here(current_user):
        abort(403, "Tài khoản này do trung tâm quản lý: vui lòng đổi mật khẩu trên máy chủ trung tâm.")
    errors = {}
    if request.method == "POST":
        current = request.form.get("current_password") or ""
        new = request.form.get("new_password") or ""
        confirm = request.form.get("confirm_password") or ""
        user = User.get_by_id(current_user.id)
        # The current-password check is a password guess like a login: same counters, same limits.
        key, address = f"@{user.username}", request.remote_addr or ""
        wait = login_blocked(key, address, **_limits())
        if wait:
            errors["current_password"] = f"Nhập sai quá nhiều lần. Vui lòng thử lại sau {wait} phút."
            return render_template("auth/password.html", errors=errors, forced=user.must_change_password), 429
        if not user.check_password(current):
            record_failed_login(key, address)
            errors["current_password"] = "Mật khẩu hiện tại không đúng."
        if new != confirm:
            errors["confirm_password"] = "Hai lần nhập mật khẩu mới không khớp."
        if new and new == current:
            errors["new_password"] = "Mật khẩu mới phải khác mật khẩu hiện tại."
        elif "new_password" not in errors and password_problem(new, user.username):
            errors["new_password"] = password_problem(new, user.username)
        if not errors:
            try:
                user.set_password(new)
                user.save()
            except ValidationError as exc:
                errors.update({"new_password": exc.errors.get("password", str(exc))})
        if not errors:
            clear_failed_logins(key)
            end_sessions(user.id)
            _start_fresh_session(user)
            flash("Đã đổi mật khẩu.", "info")
            return redirect(url_for("cells.index"), 303)
    return render_template("auth/password.html", errors=errors,
                           forced=current_user.must_change_password), (422 if errors else 200)
