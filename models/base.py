"""The database handle, the base for synced records, and change capture into the outbox.

Design: every record that syncs derives from `SyncedModel`. It carries a uuid7 key made where the
record is created, the node that owns it, created/updated times, a hybrid-logical-clock stamp and a
tombstone. `SyncedModel.save()` writes the row and appends the full new state to `ChangeLog` in the
same transaction, so the outbox can never disagree with the data (a crash loses both or neither).
Changes that arrive from another node are written with `apply_wire()`, which logs them with their
origin so that they are forwarded to others but never echoed back. Only `save()`/`soft_delete()`
capture changes: bulk `Model.update()` queries on synced models are not allowed.
`save()` also calls the audit hook (installed by models/audit.py) in the same transaction, with the
row as it was before; `apply_wire()` does not, because the origin's audit rows arrive by sync.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DateField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    TimeField,
)
from uuid6 import uuid7

from .clock import clock

db = DatabaseProxy()

# Table name -> model class, for every synced model (filled by SyncedModel subclasses).
SYNCED_MODELS: dict[str, type["SyncedModel"]] = {}

# On a field node, the node id: such a node writes only records in its own scope (single writer per
# record), so a write that central would refuse is stopped here with a message instead of blocking
# the node's push queue later. None on central. Set by create_app, like the clock's node id.
FIELD_NODE: str | None = None


def configure_writer(role: str, node_id: str) -> None:
    """Tell the models which node writes here, so field nodes keep to their own scope."""
    global FIELD_NODE
    FIELD_NODE = node_id if role == "field" else None


# Called as AUDIT_HOOK(instance, old_data_or_None) inside save()'s transaction; set by models/audit.py.
# A hook rather than an import keeps base.py free of the audit model (which is itself synced).
AUDIT_HOOK = None


def utcnow() -> dt.datetime:
    """Naive UTC now, the form every stored timestamp uses."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def new_id() -> str:
    """A new uuid7 as text (time-ordered, so index inserts stay local)."""
    return str(uuid7())


class ValidationError(ValueError):
    """A record failed a domain rule; `errors` maps field name to a Vietnamese message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class BaseModel(Model):
    """Base for every table; binds to the proxy configured by create_app."""

    class Meta:
        database = db
        legacy_table_names = False


class SyncedModel(BaseModel):
    """A record that travels between nodes: uuid key, owner, clock stamp, tombstone, change capture."""

    id = CharField(primary_key=True, max_length=36, default=new_id)
    owner = CharField(max_length=32, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    hlc = CharField(max_length=64, index=True, default="")
    deleted_at = DateTimeField(null=True)

    def __init__(self, *args, **kwargs):
        loaded = kwargs.get("__no_default__")
        super().__init__(*args, **kwargs)
        self._is_new = not loaded

    # -- scope and validation ------------------------------------------------------------------
    def sync_scope(self) -> str:
        """The field node this record belongs to, or '*' for records every node receives."""
        return "*"

    def clean(self) -> None:
        """Check domain rules before a write; raise ValidationError. Subclasses extend."""

    def check_columns(self) -> None:
        """Every column's declared limits (lengths, NOT NULL, 64-bit ints, finite floats), as central checks them."""
        from .constraints import column_errors

        errors = column_errors(self)
        if errors:
            raise ValidationError(errors)

    # -- writes --------------------------------------------------------------------------------
    def save(self, *args, **kwargs):
        """Write the row and append its new state to the outbox in one transaction."""
        self.check_columns()  # first, so clean() sees values of the column's type
        self.clean()
        self.check_columns()  # again, for what clean() derived
        with db.atomic():
            scope = self.sync_scope()
            if FIELD_NODE is not None and scope != FIELD_NODE:
                raise ValidationError({"scope": "Dữ liệu này do trung tâm (hoặc nút khác) quản lý; "
                                                "tại nút này chỉ được xem. Hãy sửa tại trung tâm."})
            hook = AUDIT_HOOK
            old = None
            if hook is not None and not self._is_new:
                # The stored row, not the in-memory one: the audit shows what really changed.
                before = type(self).select().where(type(self).id == self.id).dicts().first()
                old = before if before is not None else None
            now = utcnow()
            if self._is_new:
                self.created_at = self.created_at or now
                self.owner = self.owner or clock.node_id
                kwargs["force_insert"] = True
            self.updated_at = now
            self.hlc = clock.now()
            result = super().save(*args, **kwargs)
            was_new = self._is_new
            self._is_new = False
            if hook is not None:
                # Before the record's own outbox row, so that row stays the last one of the write.
                hook(self, None if was_new else old)
            ChangeLog.record(self, origin=clock.node_id, scope=scope)
        return result

    def save_raw(self) -> None:
        """Write the row exactly as received (no new stamp, no capture): used only by apply_wire."""
        if self._is_new:
            Model.save(self, force_insert=True)
        else:
            Model.save(self, only=[f for f in self._meta.sorted_fields if f is not self._meta.primary_key])
        self._is_new = False

    def soft_delete(self) -> None:
        """Mark the record deleted (a tombstone that syncs) instead of removing the row."""
        self.deleted_at = utcnow()
        self.save()

    def delete_instance(self, *args, **kwargs):
        raise RuntimeError("synced records are never hard-deleted: use soft_delete()")

    @classmethod
    def live(cls):
        """Select the records that are not tombstoned."""
        return cls.select().where(cls.deleted_at.is_null())

    # -- wire form -----------------------------------------------------------------------------
    def to_wire(self) -> dict[str, Any]:
        """The record as a JSON-ready dict keyed by column name (foreign keys as ids)."""
        out = {}
        for field in self._meta.sorted_fields:
            value = self.__data__.get(field.name)
            out[field.column_name] = _to_json(value)
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Convert a wire dict into field values; raise ValidationError on unknown or bad fields."""
        if not isinstance(data, dict):
            raise ValidationError({"payload": "dữ liệu bản ghi phải là một đối tượng JSON"})
        by_column = {f.column_name: f for f in cls._meta.sorted_fields}
        unknown = sorted(set(data) - set(by_column))
        if unknown:
            raise ValidationError({"payload": f"trường không tồn tại: {', '.join(unknown)}"})
        values, errors = {}, {}
        for column, field in by_column.items():
            if column not in data:
                if field.null or field.default is not None:
                    continue
                errors[column] = "thiếu giá trị"
                continue
            try:
                values[field.name] = _from_json(field, data[column])
            except (TypeError, ValueError):
                errors[column] = f"giá trị không hợp lệ: {data[column]!r}"
        if errors:
            raise ValidationError(errors)
        return values


class ChangeLog(BaseModel):
    """The outbox and the change feed: one row per captured write, in local order (`seq`)."""

    seq = AutoField()
    table = CharField(max_length=64)
    record_id = CharField(max_length=36, index=True)
    hlc = CharField(max_length=64)
    origin = CharField(max_length=32, index=True)
    scope = CharField(max_length=32, index=True)
    payload = TextField()
    created_at = DateTimeField(default=utcnow)

    @classmethod
    def record(cls, instance: SyncedModel, origin: str, scope: str | None = None) -> "ChangeLog":
        """Append the full current state of `instance` to the log (scope computed unless given)."""
        return cls.create(
            table=instance._meta.table_name,
            record_id=instance.id,
            hlc=instance.hlc,
            origin=origin,
            scope=scope if scope is not None else instance.sync_scope(),
            payload=json.dumps(instance.to_wire(), ensure_ascii=False),
        )


class SyncState(BaseModel):
    """Small key/value facts about sync kept with the data (cursor, last pushed seq, last success)."""

    key = CharField(primary_key=True, max_length=64)
    value = TextField()

    @classmethod
    def get_value(cls, key: str, default: str | None = None) -> str | None:
        """Read one value, or the default when it was never written."""
        row = cls.get_or_none(cls.key == key)
        return row.value if row else default

    @classmethod
    def set_value(cls, key: str, value: str) -> None:
        """Write one value (call inside the transaction that applies the data it describes)."""
        cls.insert(key=key, value=value).on_conflict(
            conflict_target=[cls.key], update={cls.value: value}
        ).execute()


def register(model: type[SyncedModel]) -> type[SyncedModel]:
    """Class decorator: make a synced model known to the sync engine by its table name."""
    SYNCED_MODELS[model._meta.table_name] = model
    return model


def apply_wire(model: type[SyncedModel], data: dict[str, Any], origin: str) -> bool:
    """Write a record received from `origin` if it is newer than ours; log it. Return True if applied.

    Last writer wins per record by clock stamp (then node id, which is part of the stamp); a
    stale or duplicate change is a no-op, which makes applying the same batch twice harmless.
    Call inside the batch transaction.
    """
    values = model.from_wire(data)
    record_id = values.get("id")
    incoming_hlc = values.get("hlc") or ""
    if not record_id or not incoming_hlc:
        raise ValidationError({"payload": "thiếu id hoặc hlc"})
    try:
        clock.observe(incoming_hlc)
    except ValueError as exc:
        raise ValidationError({"hlc": str(exc)}) from None
    current = model.get_or_none(model.id == record_id)
    if current is not None and current.hlc >= incoming_hlc:
        return False
    instance = model(**values)
    instance._is_new = current is None
    instance.clean()
    instance.save_raw()
    ChangeLog.record(instance, origin=origin)
    return True


def _to_json(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return value


def _from_json(field, value: Any) -> Any:
    if value is None:
        if not field.null:
            raise ValueError("null")
        return None
    if isinstance(field, DateTimeField):
        return dt.datetime.fromisoformat(value)
    if isinstance(field, DateField):
        return dt.date.fromisoformat(value)
    if isinstance(field, TimeField):
        return dt.time.fromisoformat(value)
    if isinstance(field, BooleanField):
        if not isinstance(value, bool):
            raise TypeError
        return value
    if isinstance(field, (IntegerField,)) and not isinstance(field, AutoField):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        return value
    if isinstance(field, FloatField):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        return float(value)
    if isinstance(field, (CharField, TextField, ForeignKeyField)):
        if not isinstance(value, str):
            raise TypeError
        if isinstance(field, CharField) and field.max_length and len(value) > field.max_length:
            raise ValueError
        return value
    return value
