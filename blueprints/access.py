"""Loading records with scope checks: 404 when missing, 403 when someone else's.

Every view that loads a cell-scoped record goes through these helpers, so permissions are enforced
where records are loaded, not by hiding buttons.
"""
from __future__ import annotations

from functools import wraps

from flask import abort, current_app
from flask_login import current_user

from models import Cell, Meeting, Member


def role_required(*roles: str):
    """View decorator: only users with one of `roles` may call it (403 otherwise)."""
    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return current_app.login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)
        return wrapped
    return decorator


def readable_cells():
    """The cells the current user may read (query)."""
    query = Cell.live()
    if current_user.role not in ("admin", "supervisor"):
        query = query.where(Cell.id == current_user.cell_id)
    return query


def get_cell_or_404(cell_id: str, write: bool = False) -> Cell:
    """Load a live cell the user may read (or write)."""
    cell = Cell.get_or_none((Cell.id == cell_id) & Cell.deleted_at.is_null())
    if cell is None:
        abort(404)
    allowed = current_user.can_write_cell(cell.id) if write else current_user.can_read_cell(cell.id)
    if not allowed:
        abort(403)
    return cell


def get_meeting_or_404(meeting_id: str, write: bool = False) -> Meeting:
    """Load a live meeting whose cell the user may read (or write)."""
    meeting = Meeting.get_or_none((Meeting.id == meeting_id) & Meeting.deleted_at.is_null())
    if meeting is None:
        abort(404)
    get_cell_or_404(meeting.cell_id, write=write)
    if write and not held_here(meeting.cell):
        abort(403, "Chi bộ này do nút khác quản lý; tại đây chỉ được xem.")
    return meeting


def readable_members():
    """The members the current user may read (query): all, their cell's, or only their own record."""
    query = Member.live()
    if current_user.role in ("admin", "supervisor"):
        return query
    if current_user.role == "secretary":
        return query.where(Member.cell == current_user.cell_id)
    return query.where(Member.id == (current_user.member_id or ""))


def can_read_member(member: Member) -> bool:
    """Admins and supervisors read everyone; a secretary their cell; a member only themselves."""
    if current_user.role in ("admin", "supervisor"):
        return True
    if current_user.role == "secretary":
        return member.cell_id == current_user.cell_id
    return bool(current_user.member_id) and member.id == current_user.member_id


def can_edit_members(cell: Cell) -> bool:
    """Write a cell's members: its secretary or an admin, on the node that holds the cell.

    Central may also correct any member (it consolidates the roster); a field node writes only the
    cells it holds, and its edits flow to central by sync.
    """
    if not current_user.can_write_cell(cell.id):
        return False
    if held_here(cell):
        return True
    return current_app.config["ROLE"] == "central" and current_user.role == "admin"


def get_member_or_404(member_id: str, write: bool = False) -> Member:
    """Load a live member the user may read (or edit): 404 when missing, 403 when not theirs."""
    member = Member.get_or_none((Member.id == member_id) & Member.deleted_at.is_null())
    if member is None:
        abort(404)
    if not can_read_member(member):
        abort(403)
    if write and not can_edit_members(member.cell):
        abort(403, "Đồng chí không có quyền sửa hồ sơ đảng viên của chi bộ này tại nút này.")
    return member


def central_admin_required(view):
    """View decorator: admins on the central node only (central owns accounts and the organisation)."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()
        if current_user.role != "admin":
            abort(403)
        if current_app.config["ROLE"] != "central":
            abort(403, "Tài khoản và cơ cấu tổ chức chỉ được sửa tại trung tâm; nút này nhận qua đồng bộ.")
        return view(*args, **kwargs)
    return wrapped


def held_here(cell: Cell) -> bool:
    """True when this node holds the cell, so its meetings may be written here (single writer)."""
    return cell.node_id == current_app.config["NODE_ID"]
