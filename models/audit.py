"""The audit trail ("Lịch sử thay đổi"): who changed which synced record, when, where, from what to what.

Design: `SyncedModel.save()` calls `record_change()` (installed as `base.AUDIT_HOOK`) inside the same
transaction as the write, with the stored row as it was before. The acting person comes from the
`current_actor` context variable, which the web layer sets per request (models never import flask);
CLI and background work leave it empty and are recorded as "Hệ thống". `AuditEntry` is itself a
synced record whose scope is the audited record's scope, so a cell's history travels with the cell.
Records applied from sync go through `apply_wire()`/`save_raw()`, which never call the hook: the
origin's own audit rows arrive by sync. The audit model is never audited (no recursion).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator

from peewee import CharField, DateTimeField, TextField

from . import base
from .base import SyncedModel, register, utcnow
from .clock import clock


@dataclass(frozen=True)
class Actor:
    """The person a write is attributed to."""

    user_id: str
    name: str


current_actor: ContextVar[Actor | None] = ContextVar("current_actor", default=None)
_suppressed: ContextVar[bool] = ContextVar("audit_suppressed", default=False)

ACTIONS = {"create": "Tạo mới", "update": "Sửa", "delete": "Xóa"}
# Bookkeeping columns change on every write; they are not what a person changed.
_IGNORED = {"id", "owner", "created_at", "updated_at", "hlc", "stamps", "deleted_at"}
# Never copy secrets into a trail that syncs everywhere; record only that they changed.
_MASKED = {"password_hash"}
_NOT_AUDITED = {"audit_entry"}
# The meeting's tap-by-tap records (a roll-call mark, an answer, a contribution…): a second synced
# record per tap would double what a meeting sends (issue 10). Who made such a change travels on the
# change itself ("by", "by_name" in its payload) and stays in the change log of the node where it was
# made and of central, which keeps it (checked) when it applies the change: `change_history()`.
CARRIED = {"attendance", "answer", "contribution", "vote", "task", "task_review", "meeting_guest"}

FIELD_LABELS = {
    "full_name": "Họ và tên", "birth_year": "Năm sinh", "gender": "Giới tính", "admitted_on": "Ngày vào Đảng",
    "full_member_on": "Ngày chính thức", "card_number": "Số thẻ đảng viên", "status": "Trạng thái",
    "status_note": "Ghi chú trạng thái", "position": "Chức vụ", "cell": "Chi bộ", "name": "Tên",
    "code": "Mã", "cell_type": "Loại hình", "node_id": "Nút quản lý", "meeting_day": "Ngày sinh hoạt cố định",
    "active_from": "Hoạt động từ", "active_to": "Hoạt động đến", "organisation": "Tổ chức đảng",
    "parent": "Cấp trên", "level": "Cấp", "short_name": "Tên viết tắt", "username": "Tên đăng nhập",
    "password_hash": "Mật khẩu", "role": "Vai trò", "member": "Đảng viên", "active": "Đang hoạt động",
    "kind": "Loại", "start_on": "Từ ngày", "end_on": "Đến ngày", "note": "Ghi chú", "decision": "Quyết định",
    "reason": "Lý do", "effective_on": "Hiệu lực từ", "held_on": "Ngày", "title": "Tiêu đề",
}


def _value_labels() -> dict[tuple[str, str], dict]:
    """Codes shown as words (status 'full' -> 'Đảng viên chính thức'); imported late to avoid a cycle."""
    from .members import GENDERS, MEMBER_STATUSES, POSITION_KINDS, POSITIONS
    from .org import CELL_TYPES, ORG_LEVELS
    from .users import ROLES

    return {("member", "status"): MEMBER_STATUSES, ("member", "gender"): GENDERS,
            ("member", "position"): POSITIONS, ("member_status_change", "status"): MEMBER_STATUSES,
            ("position", "kind"): POSITION_KINDS, ("cell", "cell_type"): CELL_TYPES,
            ("organisation", "level"): ORG_LEVELS, ("app_user", "role"): ROLES}


def _show(field, value) -> str:
    """One stored value as a person reads it."""
    from peewee import BooleanField, DateField, ForeignKeyField

    if value is None or value == "":
        return "—"
    if isinstance(field, BooleanField) or isinstance(value, bool):
        return "Có" if value else "Không"
    if isinstance(field, DateField) and isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10]).strftime("%d/%m/%Y")
        except ValueError:
            return value
    if isinstance(field, ForeignKeyField):
        target = field.rel_model.get_or_none(field.rel_model.id == value)
        label = getattr(target, "name", None) or getattr(target, "full_name", None) if target else None
        return label or str(value)
    return str(value)


@register
class AuditEntry(SyncedModel):
    """One change to one synced record."""

    table = CharField(max_length=64, index=True)
    record_id = CharField(max_length=36, index=True)
    action = CharField(max_length=10)
    user_id = CharField(max_length=36, default="")
    user_name = CharField(max_length=120, default="")
    node = CharField(max_length=32, default="")
    at = DateTimeField(default=utcnow)
    changes_json = TextField(default="{}")
    scope = CharField(max_length=32, default="*")

    class Meta:
        table_name = "audit_entry"

    def sync_scope(self) -> str:
        """The audited record's scope, fixed when the entry was made."""
        return self.scope or "*"

    @property
    def changes(self) -> dict[str, dict[str, Any]]:
        """Field name -> {"old": …, "new": …}."""
        return json.loads(self.changes_json or "{}")

    def display_changes(self) -> list[tuple[str, str, str]]:
        """(label, old, new) in Vietnamese: dd/mm/yyyy dates, Có/Không, names instead of ids."""
        model = base.SYNCED_MODELS.get(self.table)
        labels = _value_labels()
        out = []
        for name, change in self.changes.items():
            field = model._meta.fields.get(name) if model else None
            words = labels.get((self.table, name), {})
            old, new = change.get("old"), change.get("new")
            out.append((FIELD_LABELS.get(name, name), words.get(old) or _show(field, old), words.get(new) or _show(field, new)))
        return out

    @property
    def action_label(self) -> str:
        """The action in Vietnamese."""
        return ACTIONS.get(self.action, self.action)


def set_actor(user_id: str, name: str):
    """Attribute the following writes in this context to a person; return a token for reset_actor."""
    return current_actor.set(Actor(str(user_id), name))


def reset_actor(token) -> None:
    """Undo set_actor."""
    current_actor.reset(token)


@contextlib.contextmanager
def acting_as(user_id: str, name: str) -> Iterator[None]:
    """Attribute writes inside the block to a person (CLI, tests)."""
    token = set_actor(user_id, name)
    try:
        yield
    finally:
        reset_actor(token)


@contextlib.contextmanager
def audit_suppressed() -> Iterator[None]:
    """Skip the trail inside the block: only for bulk loads such as demo data."""
    token = _suppressed.set(True)
    try:
        yield
    finally:
        _suppressed.reset(token)


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return value


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields that differ between two rows (old None means a creation: every set field)."""
    out = {}
    for name, value in new.items():
        if name in _IGNORED:
            continue
        before = None if old is None else old.get(name)
        if old is None and value in (None, "", False):
            continue
        if _plain(before) == _plain(value):
            continue
        if name in _MASKED:
            out[name] = {"old": "…" if before else None, "new": "(đã thay đổi)"}
        else:
            out[name] = {"old": _plain(before), "new": _plain(value)}
    return out


def record_change(instance: SyncedModel, old: dict[str, Any] | None) -> AuditEntry | dict[str, str] | None:
    """Write the audit row for one save (the hook); None when nothing a person changed.

    For a table in CARRIED no row is written: the person is returned as {"by", "by_name"} and goes
    on the change itself (`SyncedModel.save()` adds it to the payload).
    """
    table = instance._meta.table_name
    if table in _NOT_AUDITED or _suppressed.get():
        return None
    if table in CARRIED:
        actor = current_actor.get()
        return {"by": actor.user_id if actor else "", "by_name": actor.name if actor else "Hệ thống"}
    new = dict(instance.__data__)
    if old is None:
        action = "delete" if new.get("deleted_at") else "create"
    elif new.get("deleted_at") and not old.get("deleted_at"):
        action = "delete"
    else:
        action = "update"
    changes = diff(old, new)
    if action == "update" and not changes:
        return None
    actor = current_actor.get()
    entry = AuditEntry(
        table=table, record_id=instance.id, action=action,
        user_id=actor.user_id if actor else "", user_name=actor.name if actor else "Hệ thống",
        node=clock.node_id, changes_json=json.dumps(changes, ensure_ascii=False),
        scope=instance.sync_scope(),
    )
    entry.save()
    return entry


@dataclass(frozen=True)
class ChangeEntry:
    """One change of a record as the change log keeps it (the trail of a CARRIED table)."""

    at: dt.datetime
    by_name: str
    node: str
    fields: dict[str, Any]


def change_history(table: str, record_id: str) -> list[ChangeEntry]:
    """A record's changes from this database's change log, newest first, with who made them."""
    from .base import ChangeLog
    from .clock import decode

    out = []
    for row in (ChangeLog.select().where((ChangeLog.table == table) & (ChangeLog.record_id == record_id))
                .order_by(ChangeLog.seq.desc())):
        payload = json.loads(row.payload)
        stamp = decode(row.hlc)
        out.append(ChangeEntry(at=dt.datetime.fromtimestamp(stamp.ms / 1000, dt.timezone.utc).replace(tzinfo=None),
                               by_name=str(payload.get("by_name") or "Không rõ"), node=row.origin,
                               fields=payload.get("fields") or {}))
    return out


def history(table: str, record_id: str) -> list[AuditEntry]:
    """A record's trail, newest first."""
    return list(AuditEntry.live()
                .where((AuditEntry.table == table) & (AuditEntry.record_id == record_id))
                .order_by(AuditEntry.at.desc(), AuditEntry.hlc.desc()))


base.AUDIT_HOOK = record_change
