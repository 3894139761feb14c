"""Accounts (Tài khoản): the central office's admin creates, edits, resets and locks user accounts.

Accounts belong to central (they sync to every node so people can log in anywhere), so every
view here is for central's admin only. A reset makes a random temporary password shown once and
clears the account's failed-login count; nobody ever chooses another person's password. Such a
password is one-time: its holder must choose their own at first login. A reset or a lock ends every
session the account had open.
"""
from __future__ import annotations

import secrets

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from peewee import fn

from models import Cell, Member, User, ValidationError
from models.audit import history
from models.users import ROLES, clear_failed_logins, end_sessions

from .access import central_admin_required

bp = Blueprint("accounts", __name__, url_prefix="/accounts")


def _get_user_or_404(user_id: str) -> User:
    user = User.get_or_none((User.id == user_id) & User.deleted_at.is_null())
    if user is None:
        abort(404)
    return user


def temporary_password() -> str:
    """A random temporary password people can read aloud (no look-alike characters)."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))


@bp.route("")
@central_admin_required
def account_list():
    """Every account with its role, cell and state."""
    users = list(User.live().order_by(User.role, fn.LOWER(User.username)))
    cells = {c.id: c for c in Cell.live()}
    return render_template("accounts/index.html", users=users, cells=cells, roles=ROLES)


def _form(user: User | None) -> dict:
    if request.method == "POST":
        return {k: (request.form.get(k) or "").strip() for k in ("username", "full_name", "role", "cell", "member")}
    if user is None:
        return {"role": "secretary"}
    return {"username": user.username, "full_name": user.full_name, "role": user.role,
            "cell": user.cell_id or "", "member": user.member_id or ""}


def _apply(user: User, form: dict, errors: dict) -> None:
    user.full_name = form["full_name"]
    user.role = form["role"]
    user.cell = form["cell"] or None if form["role"] in ("secretary", "member") else None
    if user.cell_id and not Cell.live().where(Cell.id == user.cell_id).exists():
        # An unknown id would otherwise reach the database as a foreign-key failure (a 500).
        errors["cell"] = "Không tìm thấy chi bộ này."
        user.cell = None
    user.member = None
    if form["member"]:
        member = Member.get_or_none((Member.id == form["member"]) & Member.deleted_at.is_null())
        if member is None:
            errors["member"] = "Không tìm thấy đảng viên này."
        elif user.cell_id and member.cell_id != user.cell_id:
            errors["member"] = "Đảng viên được gắn phải thuộc chi bộ của tài khoản."
        else:
            user.member = member.id
    if form["role"] == "member" and not form["member"]:
        errors["member"] = "Tài khoản đảng viên phải gắn với hồ sơ của chính đảng viên đó."


def _context(form, errors, user=None, password=""):
    cells = list(Cell.live().order_by(Cell.code))
    members = list(Member.live().order_by(Member.full_name)) if len(cells) else []
    return dict(form=form, errors=errors, user=user, roles=ROLES, cells=cells, members=members,
                password=password)


@bp.route("/new", methods=("GET", "POST"))
@central_admin_required
def account_new():
    """Create an account; its temporary password is shown once."""
    form, errors = _form(None), {}
    if request.method == "POST":
        user = User(username=form["username"])
        _apply(user, form, errors)
        if not errors:
            password = temporary_password()
            try:
                user.set_password(password, temporary=True)
                user.save()
            except ValidationError as exc:
                errors.update(exc.errors)
            else:
                return render_template("accounts/password_shown.html", user=user, password=password,
                                       created=True)
    return render_template("accounts/form.html", **_context(form, errors)), (422 if errors else 200)


@bp.route("/<user_id>", methods=("GET", "POST"))
@central_admin_required
def account_edit(user_id: str):
    """Edit an account's name, role, cell and linked member; shows its change history."""
    user = _get_user_or_404(user_id)
    form, errors = _form(user), {}
    if request.method == "POST":
        if user.id == current_user.id and form["role"] != "admin":
            errors["role"] = "Không thể tự bỏ quyền quản trị của chính mình."
        _apply(user, form, errors)
        if not errors:
            try:
                user.save()
                flash(f"Đã lưu tài khoản {user.username}.", "info")
                return redirect(url_for("accounts.account_list"), 303)
            except ValidationError as exc:
                errors.update(exc.errors)
    return render_template("accounts/form.html", history=history("app_user", user.id), **_context(form, errors, user)), (422 if errors else 200)


@bp.route("/<user_id>/reset", methods=("POST",))
@central_admin_required
def account_reset(user_id: str):
    """Give an account a new temporary password (shown once) and lift its login block."""
    user = _get_user_or_404(user_id)
    password = temporary_password()
    user.set_password(password, temporary=True)
    user.save()
    end_sessions(user.id)
    clear_failed_logins(user.username)
    return render_template("accounts/password_shown.html", user=user, password=password, created=False)


@bp.route("/<user_id>/active", methods=("POST",))
@central_admin_required
def account_active(user_id: str):
    """Lock (deactivate) or unlock an account; a locked account cannot log in anywhere."""
    user = _get_user_or_404(user_id)
    if user.id == current_user.id:
        abort(422, "Không thể tự khóa tài khoản của chính mình.")
    user.active = request.form.get("active") == "1"
    user.save()
    if not user.active:
        end_sessions(user.id)
    flash(f"Đã {'mở khóa' if user.active else 'khóa'} tài khoản {user.username}.", "info")
    return redirect(url_for("accounts.account_list"), 303)
