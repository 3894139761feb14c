"""User accounts and roles. Accounts sync to every node so people can log in at any field office.

Passwords are argon2id hashes (argon2-cffi); a hash made with older parameters is replaced at the
next successful login. No account has a default password.
"""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask_login import UserMixin
from peewee import BooleanField, CharField, ForeignKeyField

from .base import SyncedModel, ValidationError, register
from .members import Member
from .org import Cell

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

    class Meta:
        table_name = "app_user"

    def sync_scope(self) -> str:
        """A cell's secretary or member travels with the cell (their member record lives there); others everywhere."""
        return Cell.get_by_id(self.cell_id).node_id if self.cell_id else "*"

    @property
    def is_active(self) -> bool:
        """Flask-Login: deactivated or deleted accounts cannot log in."""
        return bool(self.active) and self.deleted_at is None

    def clean(self) -> None:
        """Username and a known role; secretaries and members need a cell."""
        errors = {}
        if not (self.username or "").strip():
            errors["username"] = "Vui lòng nhập tên đăng nhập."
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

    def check_password(self, password: str) -> bool:
        """Verify a password; rehash (and save) when the stored parameters are outdated."""
        try:
            _hasher.verify(self.password_hash, password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if _hasher.check_needs_rehash(self.password_hash):
            self.password_hash = _hasher.hash(password)
            self.save()
        return True

    def can_read_cell(self, cell_id: str) -> bool:
        """Admins and supervisors read every cell; others only their own."""
        return self.role in ("admin", "supervisor") or self.cell_id == cell_id

    def can_write_cell(self, cell_id: str) -> bool:
        """Admins write every cell; a secretary only theirs; supervisors and members never."""
        return self.role == "admin" or (self.role == "secretary" and self.cell_id == cell_id)
