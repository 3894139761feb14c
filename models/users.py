"""User accounts and roles. Accounts sync to the nodes where their people log in (see `sync_scope`).

Passwords are argon2id hashes (argon2-cffi); a hash made with older parameters is replaced at the
next successful login. No account has a default password.

Failed logins are counted in `LoginAttempt`, a local table that never syncs (each node defends
itself), so a restart does not reset the count. An account or an address with too many failures in
the window is refused until the window has passed, even with the right password.
"""
from __future__ import annotations

import datetime as dt

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask_login import UserMixin

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, fn

from .base import BaseModel, SyncedModel, ValidationError, register, utcnow
from .members import Member
from .org import CENTRAL_NODE, Cell

ROLES = {
    "admin": "Quản trị (Văn phòng Đảng ủy)",
    "supervisor": "Ủy viên Ban Thường vụ",
    "secretary": "Bí thư / Phó Bí thư chi bộ",
    "member": "Đảng viên",
}

_hasher = PasswordHasher()


@register
class User(UserMixin, SyncedModel):
    """A person who logs in; a secretary or member is tied to one cell."""

    username = CharField(max_length=60, unique=True)
    full_name = CharField(max_length=120, default="")
    password_hash = CharField(max_length=255, default="")
    role = CharField(max_length=20, default="member")
    cell = ForeignKeyField(Cell, null=True, backref="users", on_delete="RESTRICT")
    member = ForeignKeyField(Member, null=True, backref="users", on_delete="RESTRICT")
    active = BooleanField(default=True)

    # An account is never sent to another node as read-only context when a member moves (handover,
    # sync/scope.py): its password hash stays with the node that holds the account's cell.
    sync_context = False

    class Meta:
        table_name = "app_user"

    def sync_scope(self) -> str:
        """Which nodes receive the account (and its password hash).

        An admin's account never leaves central ('central' is never served to a field node); a
        supervisor's goes everywhere, to log in on site visits; a cell's secretary or member travels
        with the cell (their member record lives there).
        """
        if self.role == "admin":
            return CENTRAL_NODE
        if self.role == "supervisor" or not self.cell_id:
            return "*"
        return Cell.get_by_id(self.cell_id).node_id

    @property
    def is_active(self) -> bool:
        """Flask-Login: deactivated or deleted accounts cannot log in."""
        return bool(self.active) and self.deleted_at is None

    def clean(self) -> None:
        """Username and a known role; secretaries and members need a cell."""
        errors = {}
        self.username = (self.username or "").strip()
        if not self.username:
            errors["username"] = "Vui lòng nhập tên đăng nhập."
        elif not all(ch.isalnum() or ch in "._-" for ch in self.username) or len(self.username) > 60:
            errors["username"] = "Tên đăng nhập chỉ gồm chữ, số, dấu chấm, gạch nối, gạch dưới."
        elif User.get_or_none((fn.LOWER(User.username) == self.username.lower()) & (User.id != self.id)):
            errors["username"] = f"Tên đăng nhập {self.username} đã có người dùng."
        if self.role not in ROLES:
            errors["role"] = "Vai trò không hợp lệ."
        elif self.role in ("secretary", "member") and not self.cell_id:
            errors["cell"] = "Bí thư và đảng viên phải gắn với một chi bộ."
        if errors:
            raise ValidationError(errors)

    def set_password(self, password: str) -> None:
        """Hash and store a new password (argon2id)."""
        if len(password or "") < 8:
            raise ValidationError({"password": "Mật khẩu phải có ít nhất 8 ký tự."})
        self.password_hash = _hasher.hash(password)

    def check_password(self, password: str, rehash: bool = True) -> bool:
        """Verify a password; rehash (and save) when the stored parameters are outdated and `rehash`.

        A field node passes rehash=False for accounts it does not hold: central would refuse that
        write when the node pushes it.
        """
        try:
            _hasher.verify(self.password_hash, password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if rehash and _hasher.check_needs_rehash(self.password_hash):
            self.password_hash = _hasher.hash(password)
            self.save()
        return True

    def can_read_cell(self, cell_id: str) -> bool:
        """Admins and supervisors read every cell; others only their own."""
        return self.role in ("admin", "supervisor") or self.cell_id == cell_id

    def can_write_cell(self, cell_id: str) -> bool:
        """Admins write every cell; a secretary only theirs; supervisors and members never."""
        return self.role == "admin" or (self.role == "secretary" and self.cell_id == cell_id)


class LoginAttempt(BaseModel):
    """One failed login, by account name and by address. Local to this node: never synced."""

    username = CharField(max_length=60, index=True)
    address = CharField(max_length=64, index=True)
    at = DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "login_attempt"


# Defaults; the app may override them with CHIBO_LOGIN_* settings passed to these functions.
LOGIN_WINDOW_MINUTES = 15
LOGIN_MAX_PER_ACCOUNT = 5
LOGIN_MAX_PER_ADDRESS = 20


def login_blocked(username: str, address: str, *, window_minutes: int = LOGIN_WINDOW_MINUTES,
                  max_per_account: int = LOGIN_MAX_PER_ACCOUNT,
                  max_per_address: int = LOGIN_MAX_PER_ADDRESS) -> int:
    """Minutes to wait before trying again (0 when a login may be tried now)."""
    since = utcnow() - dt.timedelta(minutes=window_minutes)
    recent = LoginAttempt.select().where(LoginAttempt.at >= since)
    waits = []
    for query, limit in ((recent.where(LoginAttempt.username == username.lower()), max_per_account),
                         (recent.where(LoginAttempt.address == address), max_per_address)):
        rows = list(query.select(LoginAttempt.at).order_by(LoginAttempt.at.desc()).limit(limit))
        if len(rows) >= limit:
            # Free again when the oldest of the last `limit` failures leaves the window.
            free_at = rows[-1].at + dt.timedelta(minutes=window_minutes)
            waits.append(max(1, int((free_at - utcnow()).total_seconds() // 60) + 1))
    return max(waits, default=0)


def record_failed_login(username: str, address: str) -> None:
    """Count one failed login against the account name and the address (and drop rows a day old)."""
    LoginAttempt.create(username=(username or "").lower()[:60], address=(address or "")[:64])
    # Only the window matters; pruning here keeps a password-guessing run from growing the table.
    LoginAttempt.delete().where(LoginAttempt.at < utcnow() - dt.timedelta(days=1)).execute()


def clear_failed_logins(username: str) -> None:
    """Forget an account's failures after a successful login or a password reset."""
    LoginAttempt.delete().where(LoginAttempt.username == (username or "").lower()).execute()


def prune_login_attempts(older_than_days: int = 7) -> int:
    """Delete old failure rows (they only matter inside the window). Return how many."""
    cutoff = utcnow() - dt.timedelta(days=older_than_days)
    return LoginAttempt.delete().where(LoginAttempt.at < cutoff).execute()


def users_by_role(role: str):
    """Live accounts with a role (query)."""
    return User.live().where(User.role == role).order_by(fn.LOWER(User.username))
