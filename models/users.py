"""User accounts and roles. Accounts sync to the nodes where their people log in (see `sync_scope`).

Passwords are argon2id hashes (argon2-cffi); a hash made with older parameters is replaced at the
next successful login. No account has a default password.

A password set by someone else (demo, `users create`, an admin reset) is a one-time password: its
stored hash carries the `TEMPORARY_MARK` prefix, which travels with the hash to every node, and its
holder must choose a new password before doing anything else. New passwords are refused when they
are on zxcvbn's list of 30,000 common passwords or equal the username; up to 256 characters allowed.

Failed logins are counted in `LoginAttempt`, a local table that never syncs (each node defends
itself), so a restart does not reset the count. An address with too many failures in the window is
refused until the window has passed. An account with too many failures is refused too, except from
an address where that account logged in successfully before (`KnownAddress`): a stranger's guesses
can delay a person only on addresses they never used, never lock the admin out of their own desk.

Sessions are rows of `UserSession` (local, never synced): login makes a fresh random token kept in
the signed cookie and only its hash here. Logout, a password change or reset, and a deactivation
delete every row of the account, so a cookie saved earlier is worth nothing; a row also dies after
an absolute lifetime (12 h) and when the account's password hash changed (a reset made at central
and synced here ends the sessions this node had).
"""
from __future__ import annotations

import datetime as dt
import os
import hashlib
import hmac
import secrets
from functools import lru_cache

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

# Argon2id with the library's defaults (RFC 9106 low-memory profile). The test suite alone sets
# CHIBO_TEST_FAST_HASH=1 for the smallest cost, so its hundreds of logins stay fast; the hashes are
# still argon2id and verify the same way.
_hasher = (PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
           if os.environ.get("CHIBO_TEST_FAST_HASH") == "1" else PasswordHasher())

# Prefix of a stored hash whose password was chosen by someone else and must be changed at first login.
TEMPORARY_MARK = "temp:"
PASSWORD_MIN = 8
PASSWORD_MAX = 256
# Verified when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    """zxcvbn's ranked list of 30,000 common passwords (a maintained package, loaded once)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def password_problem(password: str, username: str = "") -> str | None:
    """Why a new password is refused (a Vietnamese message), or None when it may be used."""
    password = password or ""
    if len(password) < PASSWORD_MIN:
        return f"Mật khẩu phải có ít nhất {PASSWORD_MIN} ký tự."
    if len(password) > PASSWORD_MAX:
        return f"Mật khẩu dài tối đa {PASSWORD_MAX} ký tự."
    folded = password.lower()
    if username and folded == username.strip().lower():
        return "Mật khẩu không được trùng với tên đăng nhập."
    if folded in _common_passwords() or len(set(folded)) <= 2:
        return "Mật khẩu này quá phổ biến, dễ bị đoán. Vui lòng chọn mật khẩu khác."
    return None


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

    def set_password(self, password: str, temporary: bool = False) -> None:
        """Hash and store a new password (argon2id); a temporary one must be changed at first login."""
        problem = None if temporary and len(password or "") >= PASSWORD_MIN else password_problem(password, self.username)
        if problem:
            raise ValidationError({"password": problem})
        self.password_hash = (TEMPORARY_MARK if temporary else "") + _hasher.hash(password)

    @property
    def must_change_password(self) -> bool:
        """True while the account still has a one-time password set by someone else."""
        return (self.password_hash or "").startswith(TEMPORARY_MARK)

    def check_password(self, password: str, rehash: bool = True) -> bool:
        """Verify a password; rehash (and save) when the stored parameters are outdated and `rehash`.

        A field node passes rehash=False for accounts it does not hold: central would refuse that
        write when the node pushes it.
        """
        stored = self.password_hash or ""
        mark = TEMPORARY_MARK if stored.startswith(TEMPORARY_MARK) else ""
        if not verify_password(stored[len(mark):], password):
            return False
        if rehash and _hasher.check_needs_rehash(stored[len(mark):]):
            self.password_hash = mark + _hasher.hash(password)
            self.save()
        return True

    def can_read_cell(self, cell_id: str) -> bool:
        """Admins and supervisors read every cell; others only their own."""
        return self.role in ("admin", "supervisor") or self.cell_id == cell_id

    def can_write_cell(self, cell_id: str) -> bool:
        """Admins write every cell; a secretary only theirs; supervisors and members never."""
        return self.role == "admin" or (self.role == "secretary" and self.cell_id == cell_id)


def verify_password(stored_hash: str, password: str) -> bool:
    """Argon2 verification; a missing or broken hash still costs one full verification."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, (password or "")[:PASSWORD_MAX * 4]) and bool(stored_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def burn_password_check(password: str) -> None:
    """Spend the time of one verification for an unknown username (no account enumeration by timing)."""
    verify_password(_DUMMY_HASH, password + "\x00")


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
    """Minutes to wait before trying again (0 when a login may be tried now).

    The account's limit does not apply at an address the account has logged in from before, so
    guesses from elsewhere cannot lock its owner out; the address's own limit still applies.
    """
    since = utcnow() - dt.timedelta(minutes=window_minutes)
    recent = LoginAttempt.select().where(LoginAttempt.at >= since)
    waits = []
    checks = [(recent.where(LoginAttempt.address == address), max_per_address)]
    if not address_known(username, address):
        checks.append((recent.where(LoginAttempt.username == username.lower()), max_per_account))
    for query, limit in checks:
        rows = list(query.select(LoginAttempt.at).order_by(LoginAttempt.at.desc()).limit(limit))
        if len(rows) >= limit:
            # Free again when the oldest of the last `limit` failures leaves the window.
            free_at = rows[-1].at + dt.timedelta(minutes=window_minutes)
            waits.append(max(1, int((free_at - utcnow()).total_seconds() // 60) + 1))
    return max(waits, default=0)


class KnownAddress(BaseModel):
    """An address from which an account has logged in successfully. Local to this node: never synced."""

    username = CharField(max_length=60, index=True)
    address = CharField(max_length=64)
    at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "known_address"
        indexes = ((("username", "address"), True),)


def remember_address(username: str, address: str) -> None:
    """Note a successful login's address, so this account's failure count never blocks it there."""
    KnownAddress.insert(username=(username or "").lower()[:60], address=(address or "")[:64], at=utcnow()) \
        .on_conflict(conflict_target=[KnownAddress.username, KnownAddress.address],
                     update={KnownAddress.at: utcnow()}).execute()


def address_known(username: str, address: str) -> bool:
    """True when this account has logged in from this address before."""
    return KnownAddress.select().where((KnownAddress.username == (username or "").lower())
                                       & (KnownAddress.address == (address or ""))).exists()


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


class UserSession(BaseModel):
    """One logged-in session: the hash of its cookie token. Local to this node: never synced."""

    id = CharField(primary_key=True, max_length=64)
    user_id = CharField(max_length=36, index=True)
    password_fp = CharField(max_length=64)
    address = CharField(max_length=64, default="")
    created_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "user_session"


SESSION_ABSOLUTE_HOURS = 12


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _password_fp(user: User) -> str:
    # A change of password hash (own change, reset here or synced from central) ends the session.
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()


def start_session(user: User, address: str = "") -> str:
    """Open a new session for the account; return the token to keep in the signed cookie."""
    token = secrets.token_urlsafe(32)
    UserSession.create(id=_token_hash(token), user_id=user.id, password_fp=_password_fp(user),
                       address=(address or "")[:64])
    # Sessions past their lifetime are only pruned here: checks read, they never write.
    UserSession.delete().where(UserSession.created_at < utcnow() - dt.timedelta(hours=SESSION_ABSOLUTE_HOURS * 2)).execute()
    return token


def session_valid(token: str | None, user: User, absolute_hours: float = SESSION_ABSOLUTE_HOURS) -> bool:
    """True when `token` is a live session of `user`: not ended, not too old, same password."""
    if not token or not isinstance(token, str):
        return False
    row = UserSession.get_or_none(UserSession.id == _token_hash(token))
    if row is None or row.user_id != user.id:
        return False
    if row.created_at < utcnow() - dt.timedelta(hours=absolute_hours):
        return False
    return hmac.compare_digest(row.password_fp, _password_fp(user))


def end_sessions(user_id: str) -> int:
    """End every session of an account (logout, password change or reset, deactivation)."""
    return UserSession.delete().where(UserSession.user_id == user_id).execute()
