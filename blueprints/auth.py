"""Login and logout (Vietnamese pages; the account rules live in models/users.py)."""
from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from models import User

from .web import _local_path

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=("GET", "POST"))
def login():
    """Show the login form; on POST check the password and go where the user was heading."""
    if current_user.is_authenticated and request.method == "GET":
        return redirect(url_for("cells.index"))
    errors, username = {}, ""
    if request.method == "POST":
        username = (request.form.get("username") or "").strip()
        password = request.form.get("password") or ""
        if not username:
            errors["username"] = "Vui lòng nhập tên đăng nhập."
        if not password:
            errors["password"] = "Vui lòng nhập mật khẩu."
        if not errors:
            user = User.get_or_none((User.username == username) & User.deleted_at.is_null())
            if user is None or not user.check_password(password) or not user.is_active:
                errors["form"] = "Tên đăng nhập hoặc mật khẩu không đúng."
            else:
                session.permanent = True
                login_user(user)
                return redirect(_local_path(request.args.get("next") or url_for("cells.index")), 303)
        return render_template("auth/login.html", errors=errors, username=username), 422
    return render_template("auth/login.html", errors=errors, username=username)


@bp.route("/logout", methods=("POST",))
@login_required
def logout():
    """End the session."""
    logout_user()
    flash("Đã đăng xuất.", "info")
    return redirect(url_for("auth.login"), 303)
