"""Resolving what sync set aside for a person at central: conflicts and dead letters.

Design: a resolution is an ordinary write at central (`save()`), so it gets a new clock stamp above
both sides and syncs everywhere like any other change; the conflict or dead letter row only records
who decided what. Plain functions: the views call them, and tests and the CLI can too.
"""
from __future__ import annotations

import json
from typing import Any

from peewee import IntegrityError

from models import SYNCED_MODELS, SyncedModel, db
from models.base import utcnow, write_transaction
from models.sync_state import Conflict, DeadLetter

from .merge import SetAside
from .server import retry_one

KIND_LABELS = {"field": "Cùng một trường bị sửa ở hai nơi", "delete_edit": "Một nơi xóa, nơi khác sửa",
               "duplicate": "Nghi trùng (cùng giá trị duy nhất)"}
REASON_LABELS = {"invalid": "Dữ liệu không hợp lệ", "policy": "Vượt quyền của nút", "out_of_scope": "Ngoài phạm vi nút",
                 "missing_parent": "Chưa có bản ghi cha", "parent_deleted": "Bản ghi cha đã bị xóa",
                 "missing_record": "Chưa có bản ghi", "constraint": "Vi phạm ràng buộc", "unknown_table": "Bảng lạ"}


class ResolveError(ValueError):
    """A resolution that cannot be carried out (Vietnamese message)."""


def _record(conflict: Conflict) -> SyncedModel:
    """The record a conflict is about."""
    model = SYNCED_MODELS.get(conflict.table)
    record = model.get_or_none(model.id == conflict.record_id) if model else None
    if record is None:
        raise ResolveError("Không tìm thấy bản ghi của xung đột này.")
    return record


def resolve_conflict(conflict_id: int, choice: str, who: str) -> str:
    """Carry out a person's choice ('winner'/'loser' for a field, 'restore'/'keep_deleted', 'merge'/'distinct')."""
    with write_transaction():
        conflict = Conflict.get_or_none((Conflict.id == conflict_id) & Conflict.resolved_at.is_null())
        if conflict is None:
            raise ResolveError("Xung đột này không còn (đã có người xử lý).")
        record = _record(conflict)
        if conflict.kind == "field":
            if choice not in ("winner", "loser"):
                raise ResolveError("Hãy chọn một trong hai giá trị.")
            value = json.loads(conflict.winner_json if choice == "winner" else conflict.loser_json)
            field = next(f for f in record._meta.sorted_fields if f.column_name == conflict.column)
            values = type(record).from_wire({conflict.column: value}, partial=True)
            setattr(record, field.name, values[field.name])
            if choice == "loser":
                record.save()
            note = f"Giữ giá trị {value!r}"
        elif conflict.kind == "delete_edit":
            if choice == "restore":
                record.restore()
                note = "Khôi phục bản ghi (giữ nội dung đã sửa)"
            elif choice == "keep_deleted":
                if record.deleted_at is None:
                    record.soft_delete()
                note = "Giữ việc xóa"
            else:
                raise ResolveError("Hãy chọn khôi phục hoặc giữ việc xóa.")
        elif conflict.kind == "duplicate":
            if choice == "merge":
                other = type(record).get_or_none(type(record).id == conflict.other_record_id)
                if other is None or other.deleted_at is not None:
                    raise ResolveError("Bản ghi trùng kia không còn; không gộp được.")
                merge_into(record, other)
                note = f"Gộp vào bản ghi {other.id}"
            elif choice == "distinct":
                note = "Không phải trùng (đã kiểm tra)"
            else:
                raise ResolveError("Hãy chọn gộp hoặc không trùng.")
        else:
            raise ResolveError("Loại xung đột không xác định.")
        Conflict.update(resolved_at=utcnow(), resolved_by=who[:120], resolution=note[:200]).where(
            Conflict.id == conflict.id).execute()
    return note


def merge_into(duplicate: SyncedModel, keep: SyncedModel) -> int:
    """Point every child of `duplicate` at `keep`, then tombstone `duplicate`. Return children moved."""
    moved = 0
    for fk in duplicate._meta.backrefs:
        child_model = fk.model
        if child_model._meta.table_name not in SYNCED_MODELS:
            continue
        for child in list(child_model.live().where(fk == duplicate.id)):
            setattr(child, fk.name, keep.id)
            try:
                with db.atomic():
                    child.save()
            except IntegrityError:
                # The kept record already has the same child (e.g. a roll-call mark for that meeting).
                child = child_model.get_by_id(child.id)
                child.soft_delete()
            moved += 1
    duplicate.soft_delete()
    return moved


def retry_dead_letter(letter_id: int) -> str:
    """Apply a dead letter again now (after a fix); return what happened, in Vietnamese."""
    with write_transaction():
        letter = DeadLetter.get_or_none((DeadLetter.id == letter_id) & DeadLetter.resolved_at.is_null())
        if letter is None:
            raise ResolveError("Thay đổi này không còn trong danh sách để riêng.")
        if retry_one(letter, central=letter.node_id != "central"):
            return "Đã áp dụng thay đổi."
        letter = DeadLetter.get_by_id(letter_id)
        return f"Vẫn chưa áp dụng được: {letter.message}"


def dismiss_dead_letter(letter_id: int, who: str, why: str) -> None:
    """Close a dead letter without applying it (the sender's value is not wanted); the reason is kept."""
    if not (why or "").strip():
        raise ResolveError("Vui lòng ghi lý do bỏ qua thay đổi này.")
    with write_transaction():
        updated = DeadLetter.update(resolved_at=utcnow(), resolution=f"Bỏ qua ({who}): {why.strip()}"[:200]).where(
            (DeadLetter.id == letter_id) & DeadLetter.resolved_at.is_null()).execute()
    if not updated:
        raise ResolveError("Thay đổi này không còn trong danh sách để riêng.")


def describe_change(letter: DeadLetter) -> dict[str, Any]:
    """The columns a dead letter would have written, for the screen."""
    try:
        change = json.loads(letter.change_json)
        fields = change.get("payload", {}).get("fields", {})
    except (ValueError, AttributeError):
        return {}
    return {k: (v if not isinstance(v, str) or len(v) <= 120 else v[:120] + "…") for k, v in fields.items()
            if k not in ("password_hash",)} if isinstance(fields, dict) else {}


__all__ = ["KIND_LABELS", "REASON_LABELS", "ResolveError", "SetAside", "describe_change", "dismiss_dead_letter",
           "merge_into", "resolve_conflict", "retry_dead_letter"]
