"""The database handle, the base for synced records, the database's clock, and change capture.

Design: every record that syncs derives from `SyncedModel`. It carries a uuid7 key made where the
record is created, the node that owns it, created/updated times, a tombstone (`deleted_at`) and a
hybrid-logical-clock stamp **per column**: `hlc` is the newest stamp of the row and `stamps` (JSON)
lists the columns whose stamp is older than `hlc`, so a row written once carries no per-column data.
`SyncedModel.save()` writes the row and appends to `ChangeLog`, in the same transaction, only the
columns the write changed, each with the stamp it replaced (its base): the receiver merges per column
and can tell a concurrent edit (a conflict) from a plain update (see sync/merge.py). A crash loses
the row and its change together or neither.
The clock's state is a row of `hlc_state`, advanced inside the write transaction, so every process
writing to this database (web server, `flask sync`, a timer) shares one clock. Write transactions on
SQLite take the write lock up front (`write_transaction`), so a tap during a sync waits instead of
failing, and on PostgreSQL the clock row is locked until commit, which also makes the change log's
sequence numbers commit in order (the pull feed never skips a row committed late).
Only `save()`/`soft_delete()` capture changes: bulk `Model.update()` queries on synced models are
not allowed outside the sync engine. `save()` calls the audit hook (models/audit.py) in the same
transaction; changes applied from sync do not, because the origin's audit rows arrive by sync.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from peewee import (
    AutoField,
    BigIntegerField,
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
    SqliteDatabase,
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


LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def local_today() -> dt.date:
    """Today in Vietnam, whatever the server's time zone (a server on UTC is still on yesterday until 07:00)."""
    return dt.datetime.now(LOCAL_TZ).date()


def new_id() -> str:
    """A new uuid7 as text (time-ordered, so index inserts stay local)."""
    return str(uuid7())


class ValidationError(ValueError):
    """A record failed a domain rule; `errors` maps field name to a Vietnamese message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors

    def __reduce__(self):
        """Picklable (a worker process can hand it back)."""
        return (type(self), (self.errors,))


class BaseModel(Model):
    """Base for every table; binds to the proxy configured by create_app."""

    class Meta:
        database = db
        legacy_table_names = False


def write_transaction():
    """A transaction that takes SQLite's write lock up front (nested: a savepoint).

    A deferred SQLite transaction that reads and then writes fails at once ("database is locked")
    when another connection wrote in between; taking the lock first makes concurrent writers wait
    for each other (busy_timeout) instead. Other databases get a plain transaction.
    """
    if isinstance(db.obj, SqliteDatabase):
        return db.atomic(lock_type="IMMEDIATE")
    return db.atomic()


class HlcState(BaseModel):
    """The database's clock: the last stamp handed out (one row, advanced in every write transaction)."""

    id = IntegerField(primary_key=True)
    ms = BigIntegerField(default=0)
    counter = IntegerField(default=0)

    class Meta:
        table_name = "hlc_state"


def _read_clock_state() -> tuple[int, int]:
    """Read the clock row; on PostgreSQL lock it until commit (serialises the change feed's writers)."""
    database = db.obj
    lock = "" if isinstance(database, SqliteDatabase) else " FOR UPDATE"
    row = database.execute_sql(f"SELECT ms, counter FROM hlc_state WHERE id = 1{lock}").fetchone()
    if row is None:
        database.execute_sql("INSERT INTO hlc_state (id, ms, counter) VALUES (1, 0, 0)")
        return (0, 0)
    return (int(row[0]), int(row[1]))


def _write_clock_state(state: tuple[int, int]) -> None:
    """Store the clock row (inside the caller's transaction)."""
    database = db.obj
    p = database.param
    database.execute_sql(f"UPDATE hlc_state SET ms = {p}, counter = {p} WHERE id = 1", (state[0], state[1]))


clock.read_state = _read_clock_state
clock.write_state = _write_clock_state

# Columns that are bookkeeping, not data: never merged from the wire (owner is derived by the receiver).
META_COLUMNS = ("id", "owner", "hlc", "stamps", "updated_at")


def data_columns(model: type["SyncedModel"]) -> list[str]:
    """The columns of a synced model that merge per column (tombstone and creation time included)."""
    return list(model_spec(model).columns)


class ModelSpec:
    """What the sync engine reads about a model on every change, worked out once (issue 10: speed).

    Read-only by convention: callers never mutate these lists and maps. Rebuilt when the model's
    fields change (`model_spec` compares the `sorted_fields` list it was built from).
    """

    __slots__ = ("model", "fields", "by_column", "all_columns", "columns", "column_set", "names",
                 "required_new", "defaults", "wire", "fks", "scoped_fks", "plain_init", "temporal")

    def __init__(self, model):
        """Work out the spec of `model` from its current fields."""
        self.model = model
        self.fields = model._meta.sorted_fields
        self.by_column = {f.column_name: f for f in self.fields}
        self.all_columns = frozenset(self.by_column)
        self.columns = tuple(f.column_name for f in self.fields if f.column_name not in META_COLUMNS)
        self.column_set = frozenset(self.columns)
        self.names = tuple(self.by_column[c].name for c in self.columns)
        self.required_new = tuple(c for c in self.columns
                                  if not self.by_column[c].null and self.by_column[c].default is None)
        self.defaults = tuple((self.by_column[c].name, self.by_column[c].default) for c in self.columns)
        # from_wire's per-column converters, in column order (errors are reported in that order).
        self.wire = tuple((column, field, field.name, _converter(field), field.null or field.default is not None)
                          for column, field in self.by_column.items())
        self.fks = tuple(f for f in self.fields if isinstance(f, ForeignKeyField))
        self.scoped_fks = tuple(f for f in self.fks
                                if getattr(f.rel_model, "sync_scope", None) is not SyncedModel.sync_scope)
        # Names of the fields whose values are dates or times (`_to_json` turns them into ISO text).
        self.temporal = frozenset(f.name for f in self.fields if isinstance(f, (DateTimeField, DateField, TimeField)))
        # A model without its own constructor can be made straight from a row (see `as_record`).
        self.plain_init = all("__init__" not in vars(k) for k in model.__mro__
                              if k is not SyncedModel and issubclass(k, SyncedModel))


_SPECS: dict[type, ModelSpec] = {}


def model_spec(model) -> ModelSpec:
    """The cached `ModelSpec` of a model."""
    spec = _SPECS.get(model)
    if spec is None or spec.fields is not model._meta.sorted_fields:
        spec = _SPECS[model] = ModelSpec(model)
    return spec


def as_record(model, data: dict[str, Any]):
    """A stored record as an instance whose __data__ is `data` itself (the caller hands it over).

    The same as `model(__no_default__=True)` then `__data__.update(data)`, `_is_new = False`, without
    the constructor's work when the model has no constructor of its own.
    """
    if model_spec(model).plain_init:
        record = object.__new__(model)
        record.__data__ = data
        record._dirty = set()
        record.__rel__ = {}
    else:
        record = model(__no_default__=True)
        record.__data__.update(data)
    record._is_new = False
    return record


def column_stamps(hlc: str, stamps_json: str, columns: list[str]) -> dict[str, str]:
    """Every column's stamp, from a row's newest stamp and its `stamps` column (see `sparse_stamps`)."""
    listed = json.loads(stamps_json) if stamps_json else {}
    default = listed.get("", hlc)
    return {c: listed.get(c, default) for c in columns}


def sparse_stamps(full: dict[str, str], hlc: str) -> str:
    """The `stamps` column: the smaller of two forms, '' when every column has the row's newest stamp.

    Either the columns older than `hlc` are listed (the rest have `hlc`), or, when most columns share
    one older stamp (a record created once and edited in one column), that stamp is given under the
    key "" and only the other columns are listed.
    """
    for s in full.values():
        if s != hlc:
            break
    else:
        return ""  # every column has the row's newest stamp (the common case: said without sorting)
    older = {c: s for c, s in sorted(full.items()) if s != hlc}
    common = max(set(older.values()), key=list(older.values()).count)
    compact = {"": common, **{c: s for c, s in sorted(full.items()) if s != common}}
    chosen = compact if len(compact) < len(older) else older
    return json.dumps(chosen, separators=(",", ":"))


NATURAL_NAMESPACE = uuid.UUID("3d1f6a52-7b8e-4c1d-9f02-5e6a7b8c9d10")


def natural_id(instance: "SyncedModel") -> str:
    """The id of a natural-key record: the same meeting and member give the same id on every node."""
    parts = [str(instance.__data__.get(name)) for name in instance.natural_key]
    return str(uuid.uuid5(NATURAL_NAMESPACE, ":".join([instance._meta.table_name, *parts])))


def _refuse_deleted_parents(instance: "SyncedModel") -> None:
    """A new record may not hang under a deleted one (a mark for a deleted meeting or member)."""
    for fk in instance._meta.sorted_fields:
        if not isinstance(fk, ForeignKeyField) or fk.rel_model._meta.table_name not in SYNCED_MODELS:
            continue
        target = instance.__data__.get(fk.name)
        if target is None or instance.deleted_at is not None:
            continue
        parent = fk.rel_model
        gone = parent.select(parent.id).where((parent.id == target) & parent.deleted_at.is_null(False)).exists()
        if gone:
            raise ValidationError({fk.name: "Bản ghi liên quan đã bị xóa; không thêm được dữ liệu mới vào đó."})


class SyncedModel(BaseModel):
    """A record that travels between nodes: uuid key, owner, per-column clock stamps, tombstone, capture."""

    id = CharField(primary_key=True, max_length=36, default=new_id)
    owner = CharField(max_length=32, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)
    # Not indexed: no query looks a record up by its stamp, and every index costs each synced write.
    hlc = CharField(max_length=64, default="")
    stamps = TextField(default="")
    deleted_at = DateTimeField(null=True)

    # Columns whose value should be unique among live records; a duplicate that arrives by sync is
    # kept and shown as a conflict to resolve (e.g. the same party card number entered twice).
    sync_unique: tuple[str, ...] = ()
    # Fields that identify a record by nature (a roll-call mark: meeting and member). Such a record's
    # id is derived from them, so the same mark made at two places is one record with a conflict,
    # never two records fighting over a unique index.
    natural_key: tuple[str, ...] = ()

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

    def check_columns(self, only: set[str] | None = None) -> None:
        """Every column's declared limits (lengths, NOT NULL, 64-bit ints, finite floats), as central checks them.

        `only` names the fields to check (the sync engine checks what a change brings; the rest is stored)."""
        from .constraints import column_errors

        errors = column_errors(self, only)
        if errors:
            raise ValidationError(errors)

    # -- writes --------------------------------------------------------------------------------
    def save(self, *args, **kwargs):
        """Write the row and append the columns it changed (with their bases) to the outbox, in one transaction."""
        if self._is_new and self.natural_key:
            self.id = natural_id(self)
        self.check_columns()  # first, so clean() sees values of the column's type
        self.clean()
        self.check_columns()  # again, for what clean() derived
        with write_transaction():
            scope = self.sync_scope()
            if FIELD_NODE is not None and scope != FIELD_NODE:
                raise ValidationError({"scope": "Dữ liệu này do trung tâm (hoặc nút khác) quản lý; "
                                                "tại nút này chỉ được xem. Hãy sửa tại trung tâm."})
            model = type(self)
            old = None
            if not self._is_new:
                # The stored row, not the in-memory one: the change carries what really changed.
                old = model.select().where(model.id == self.id).dicts().first()
            if FIELD_NODE is not None:
                from .policy import check_local_write  # late: the policy module imports the models

                check_local_write(self, old, FIELD_NODE)  # never queue what central's policy refuses
            columns = data_columns(model)
            by_column = {f.column_name: f for f in self._meta.sorted_fields}
            now = utcnow()
            if old is None:
                _refuse_deleted_parents(self)
                self.created_at = self.created_at or now
                self.owner = self.owner or clock.node_id
                kwargs["force_insert"] = True
                changed = columns
                previous = {}
            else:
                if old.get("deleted_at") is not None and self.deleted_at is not None and FIELD_NODE is not None:
                    raise ValidationError({"deleted_at": "Bản ghi này đã bị xóa; không sửa được nữa."})
                changed = [c for c in columns
                           if _to_json(old.get(by_column[c].name)) != _to_json(self.__data__.get(by_column[c].name))]
                if not changed:
                    self._is_new = False
                    return 0
                previous = column_stamps(old["hlc"], old.get("stamps") or "", columns)
            stamp = clock.now(after=old["hlc"] if old else "")
            full = dict(previous)
            full.update({c: stamp for c in changed})
            self.hlc = stamp
            self.stamps = sparse_stamps(full, stamp)
            self.updated_at = now
            result = super().save(*args, **kwargs)
            self._is_new = False
            hook = AUDIT_HOOK
            # Before the record's own outbox row, so that row stays the last one of the write. For
            # the meeting's tap-by-tap records the hook writes no row but names the person, who then
            # travels on the change itself (models/audit.py, CARRIED).
            by = hook(self, old) if hook is not None else None
            fields = {c: _to_json(self.__data__.get(by_column[c].name)) for c in changed}
            payload: dict[str, Any] = {"fields": fields}
            if isinstance(by, dict):
                payload.update(by)
            if old is None:
                payload["new"] = True
            else:
                payload["base"] = {c: previous[c] for c in changed}
                if "deleted_at" in changed and self.deleted_at is not None:
                    # A delete says which version of every column it saw, so an edit it had not seen
                    # (even under a later edit of another column here) is shown, not lost.
                    payload["seen"] = {c: previous[c] for c in columns if c != "deleted_at"}
            ChangeLog.append(model._meta.table_name, self.id, stamp, clock.node_id, scope, payload)
        return result

    def soft_delete(self) -> None:
        """Mark the record deleted (a tombstone that syncs), and its live children with it."""
        with write_transaction():
            for child in self.live_children():
                child.soft_delete()
            self.deleted_at = utcnow()
            self.save()

    def restore(self) -> None:
        """Lift the tombstone, and those of the children deleted with it (a person resolving a conflict)."""
        with write_transaction():
            since = self.deleted_at
            self.deleted_at = None
            self.save()
            if since is None:
                return
            for fk in self._meta.backrefs:
                child_model = fk.model
                if child_model is type(self) or child_model._meta.table_name not in SYNCED_MODELS:
                    continue
                for child in child_model.select().where((fk == self.id) & (child_model.deleted_at >= since)):
                    child.restore()

    def live_children(self) -> list["SyncedModel"]:
        """Live synced records that point at this one through a foreign key (tombstoned with it)."""
        children = []
        for fk in self._meta.backrefs:
            child_model = fk.model
            if child_model is type(self) or child_model._meta.table_name not in SYNCED_MODELS:
                continue
            if getattr(child_model, "cascade_delete", True) is False:
                continue
            children.extend(child_model.live().where(fk == self.id))
        return children

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

    def state_payload(self, only_node: str | None = None) -> tuple[dict[str, Any], str]:
        """The whole record as one change and its stamp: every data column with its own stamp.

        Used for handover and reconcile. `only_node` keeps only the columns last written by that node
        (what a node may push again). The change's stamp is the newest column stamp it carries.
        """
        columns = data_columns(type(self))
        stamps = column_stamps(self.hlc, self.stamps or "", columns)
        if only_node is not None:
            columns = [c for c in columns if stamps[c].rsplit(":", 1)[-1] == only_node]
        top = max((stamps[c] for c in columns), default=self.hlc)
        by_column = {f.column_name: f for f in self._meta.sorted_fields}
        payload = {"fields": {c: _to_json(self.__data__.get(by_column[c].name)) for c in columns},
                   "owner": self.owner}
        older = {c: stamps[c] for c in columns if stamps[c] != top}
        if older:
            payload["stamps"] = older
        return payload, top

    @classmethod
    def from_wire(cls, data: dict[str, Any], partial: bool = False) -> dict[str, Any]:
        """Convert a wire dict (column -> value) into field values; raise ValidationError on bad fields.

        `partial` accepts a subset of the columns (a change carries only what it changed).
        """
        if not isinstance(data, dict):
            raise ValidationError({"payload": "dữ liệu bản ghi phải là một đối tượng JSON"})
        spec = model_spec(cls)
        if not spec.all_columns.issuperset(data):
            unknown = sorted(set(data) - spec.all_columns)
            raise ValidationError({"payload": f"trường không tồn tại: {', '.join(unknown)[:200]}"})
        values, errors = {}, {}
        for column, _field, name, convert, optional in spec.wire:
            if column not in data:
                if partial or optional:
                    continue
                errors[column] = "thiếu giá trị"
                continue
            try:
                values[name] = convert(data[column])
            except (TypeError, ValueError, OverflowError):
                errors[column] = f"giá trị không hợp lệ: {_short(data[column])}"
        if errors:
            raise ValidationError(errors)
        return values


def _short(value: Any, limit: int = 80) -> str:
    """A value for a message, cut so a refusal never echoes a huge value back."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} ký tự)"


class ChangeLog(BaseModel):
    """The outbox and the change feed: one row per captured write or applied change, in commit order (`seq`).

    `payload` is JSON: {"fields": {column: value}, "base": {column: stamp}?, "stamps": {column: stamp}?,
    "seen": stamp?, "owner": node?}; a column missing from "stamps" has the row's `hlc` as its stamp.
    """

    seq = AutoField()
    table = CharField(max_length=64)
    record_id = CharField(max_length=36, index=True)
    hlc = CharField(max_length=64)
    origin = CharField(max_length=32, index=True)
    scope = CharField(max_length=32, index=True)
    payload = TextField()
    created_at = DateTimeField(default=utcnow)

    @classmethod
    def append(cls, table: str, record_id: str, hlc: str, origin: str, scope: str,
               payload: dict[str, Any]) -> int:
        """Append one change (inside the caller's write transaction); return its sequence number."""
        if not isinstance(db.obj, SqliteDatabase):
            # Hold the clock row until commit: sequence numbers are then taken in commit order, so a
            # pull never passes a change that a longer transaction commits later.
            _read_clock_state()
        return cls.insert(table=table, record_id=record_id, hlc=hlc, origin=origin, scope=scope,
                          payload=json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                          created_at=utcnow()).execute()

    @classmethod
    def record_state(cls, instance: SyncedModel, origin: str, scope: str | None = None,
                     only_node: str | None = None) -> int:
        """Append the whole current state of `instance` (every column with its own stamp); 0 if nothing to send."""
        payload, top = instance.state_payload(only_node)
        if not payload["fields"]:
            return 0
        return cls.append(instance._meta.table_name, instance.id, top, origin,
                          scope if scope is not None else instance.sync_scope(), payload)


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


def _to_json(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return value


def _utf8(text: str) -> bool:
    """True when the text can be encoded as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


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
        if not -(2 ** 63) <= value < 2 ** 63:
            raise ValueError
        return value
    if isinstance(field, FloatField):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError
        return value
    if isinstance(field, (CharField, TextField, ForeignKeyField)):
        if not isinstance(value, str):
            raise TypeError
        limit = getattr(field.rel_field if isinstance(field, ForeignKeyField) else field, "max_length", None)
        if limit and len(value) > limit:
            raise ValueError
        # What no column stores (PostgreSQL refuses NUL; a lone surrogate is not UTF-8): as check_columns.
        if "\x00" in value or (not value.isascii() and not _utf8(value)):
            raise ValueError
        return value
    return value


def _converter(field) -> Any:
    """`_from_json` for one field, with the choice of branch made once (what `from_wire` calls per value)."""
    null = field.null

    def none_or(convert):
        def checked(value):
            if value is None:
                if not null:
                    raise ValueError("null")
                return None
            return convert(value)
        return checked

    if isinstance(field, DateTimeField):
        return none_or(dt.datetime.fromisoformat)
    if isinstance(field, DateField):
        return none_or(dt.date.fromisoformat)
    if isinstance(field, TimeField):
        return none_or(dt.time.fromisoformat)
    if isinstance(field, (BooleanField, IntegerField, FloatField, CharField, TextField, ForeignKeyField)):
        if isinstance(field, (CharField, TextField, ForeignKeyField)) and not isinstance(
                field, (BooleanField, IntegerField, FloatField)):
            limit = getattr(field.rel_field if isinstance(field, ForeignKeyField) else field, "max_length", None)

            def text(value):
                if value is None:
                    if not null:
                        raise ValueError("null")
                    return None
                if not isinstance(value, str):
                    raise TypeError
                if limit and len(value) > limit:
                    raise ValueError
                if "\x00" in value or (not value.isascii() and not _utf8(value)):
                    raise ValueError
                return value
            return text
    return lambda value: _from_json(field, value)
