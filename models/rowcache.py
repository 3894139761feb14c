"""A batch's view of the database: rows read once, writes buffered and flushed in bulk (a unit of work).

Design (issue 10): applying a batch of 500 changes row by row cost ~6 statements per change, most of
the time spent building SQL text. While a batch is applied a `RowCache` is active: the rows the
batch touches and the rows they point to are read up front with one query per table; every lookup
the merge, the scope rules and the write policy make (`lookup_row`, `lookup`) is answered from it;
the rows the batch writes go into it and into a buffer. `flush()` writes the buffer with one
`executemany` per table and statement kind (inserts in table order, parents first; then updates;
then the change log), with fixed SQL on the raw cursor.
The cache never changes what a batch does, because it guards the connection: any other statement
(a rule that queries the database, an ORM write, a savepoint) first flushes the buffer, so it sees
every earlier write, and a statement that may write clears the cached rows, so nothing stale is read
afterwards. Code that knows nothing about the cache stays correct; only its speed depends on it.
The guard acts only in the context (thread) that activated the cache.
"""
from __future__ import annotations

import contextlib
import json
import operator

from peewee import DataError, IntegrityError
from peewee import __exception_wrapper__ as _driver_errors
from contextvars import ContextVar
from typing import Any, Iterable, Iterator

# Statements that never change data: the cached rows stay valid across them.
_READ_ONLY = ("SELECT", "SAVEPOINT", "RELEASE", "BEGIN", "PRAGMA")
_CHUNK = 400  # ids per IN (...) list, below SQLite's limit on bound variables


def _payload_encoder():
    """json.dumps(payload, ensure_ascii=False, separators=(",", ":")) for the change log, made once.

    The C encoder is built once and reused (JSONEncoder.encode builds a new one per call: 40 % of the
    cost for a roll-call mark's payload); its circular-reference check is off, as a payload is a tree."""
    from json.encoder import c_encode_basestring, c_make_encoder

    if c_make_encoder is None or c_encode_basestring is None:  # a Python without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def refuse(value):
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    encoder = c_make_encoder(None, refuse, c_encode_basestring, None, ":", ",", False, False, True)
    return lambda payload: "".join(encoder(payload, 0))


_ENCODE_PAYLOAD = _payload_encoder()

_active: ContextVar["RowCache | None"] = ContextVar("rowcache", default=None)


class FlushFailed(BaseException):
    """A buffered write failed while another statement was about to run.

    The failure belongs to an earlier change of the batch, not to the code whose statement triggered
    the flush, so it must not be caught as that code's own error (an `except IntegrityError` or even
    `except Exception` there would blame the wrong change): it derives from BaseException and only
    the batch runner (sync/batch.py) catches it, to redo the batch row by row.
    """


class RowCache:
    """Rows by table and id (None: known not to exist) plus the writes not yet flushed."""

    def __init__(self, database):
        """An empty cache on `database` (the peewee database the batch writes to)."""
        self.database = database
        self.rows: dict[str, dict[str, dict[str, Any] | None]] = {}
        self.inserts: dict[str, dict[str, dict[str, Any]]] = {}
        self.updates: dict[str, dict[str, dict[str, Any]]] = {}
        self.models: dict[str, Any] = {}
        self.log_rows: list[tuple] = []
        self.flushing = False
        self.memo: dict[Any, Any] = {}  # answers worth keeping for the batch (e.g. may this account act here)
        # Scopes of records the batch points to (a roll call's 22 marks name one meeting): cleared when a
        # row of a table some scope is read through is written, or when the cache is cleared.
        self.scopes: dict[tuple[str, Any, str], Any] = {}
        self.scope_tags: set[str] = set()
        # One time for the rows and change-log entries a batch writes: they commit together.
        from .base import utcnow

        self.now = utcnow()
        self.stats = {"queries": 0, "flushes": 0, "foreign": 0, "cleared": 0}

    # -- reads ---------------------------------------------------------------------------------
    def get(self, model, record_id: Any) -> dict[str, Any] | None:
        """The row (field name -> value) or None; read from the database when not cached yet."""
        table = model._meta.table_name
        rows = self.rows.get(table)
        if rows is None or record_id not in rows:
            self.load(model, [record_id])
            rows = self.rows[table]
        return rows.get(record_id)

    def load(self, model, ids: Iterable[Any]) -> None:
        """Read the rows of `ids` not cached yet, one query per chunk."""
        table = model._meta.table_name
        rows = self.rows.setdefault(table, {})
        wanted = [i for i in dict.fromkeys(ids) if i is not None and i not in rows]
        if not wanted:
            return
        # Every buffered write is in `rows` already, so an id not there has none: read it directly.
        fields = model._meta.sorted_fields
        columns = ", ".join(f'"{f.column_name}"' for f in fields)
        key = model._meta.primary_key.column_name
        cursor = self.database.cursor()
        array = hasattr(cursor, "copy")  # PostgreSQL: one array parameter (a long IN list is slow to parse)
        for start in range(0, len(wanted), _CHUNK):
            part = wanted[start:start + _CHUNK]
            with _driver_errors:  # driver errors become peewee's, as for any other query
                if array:
                    cursor.execute(f'SELECT {columns} FROM "{table}" WHERE "{key}" = ANY(%s)', (part,))
                else:
                    marks = ", ".join([self.database.param] * len(part))
                    cursor.execute(f'SELECT {columns} FROM "{table}" WHERE "{key}" IN ({marks})', part)
            self.stats["queries"] += 1
            for raw in cursor.fetchall():
                row = {f.name: (f.python_value(v) if v is not None else None) for f, v in zip(fields, raw)}
                rows[row[model._meta.primary_key.name]] = row
        for i in wanted:
            rows.setdefault(i, None)

    # -- writes --------------------------------------------------------------------------------
    def write(self, model, record_id: str, row: dict[str, Any], insert: bool) -> None:
        """Keep the new state of a row (field name -> value) and buffer its write."""
        table = model._meta.table_name
        self.models[table] = model
        self.rows.setdefault(table, {})[record_id] = row
        if table == "app_user":
            self.memo.clear()  # answers about accounts may change with them
        if self.scopes and table in _scope_parents():
            if insert:  # a new row changes no other record's scope; its own may have been "missing"
                for tag in self.scope_tags:
                    self.scopes.pop((table, record_id, tag), None)
            else:  # an update may move a whole subtree (a meeting to another cell)
                self.scopes.clear()
        if insert or record_id in self.inserts.get(table, ()):
            self.inserts.setdefault(table, {})[record_id] = row
        else:
            self.updates.setdefault(table, {})[record_id] = row

    def log(self, values: tuple) -> None:
        """Buffer one change-log row: (table, record_id, hlc, origin, scope, payload dict, created_at)."""
        self.log_rows.append(values)

    def flush(self) -> None:
        """Write the buffer: inserts table by table (parents first), then updates, then the change log."""
        if not (self.inserts or self.updates or self.log_rows):
            return
        self.flushing = True
        try:
            with _driver_errors:  # driver errors become peewee's IntegrityError/DataError, as for any query
                self._write_buffer()
            self.stats["flushes"] += 1
        except Exception:
            # The statements ran in the caller's transaction; the caller rolls it back.
            self.rows.clear()
            self.memo.clear()
            self.scopes.clear()
            raise
        finally:
            self.inserts.clear()
            self.updates.clear()
            self.log_rows.clear()
            self.flushing = False

    def _write_buffer(self) -> None:
        """The statements of `flush()`."""
        from . import ALL_MODELS, ChangeLog

        order = {m._meta.table_name: n for n, m in enumerate(ALL_MODELS)}
        cursor = self.database.cursor()
        p = self.database.param
        copy = hasattr(cursor, "copy")  # PostgreSQL (psycopg 3): COPY, one stream instead of a statement per row
        for table in sorted(self.inserts, key=lambda t: order.get(t, len(order))):
            model = self.models[table]
            fields = model._meta.sorted_fields
            columns = ", ".join(chr(34) + f.column_name + chr(34) for f in fields)
            rows = _params(fields, self.inserts[table].values())
            if copy:
                _copy_rows(cursor, f'COPY "{table}" ({columns}) FROM STDIN', rows)
            else:
                cursor.executemany(f'INSERT INTO "{table}" ({columns}) VALUES ({", ".join([p] * len(fields))})', rows)
        for table in sorted(self.updates, key=lambda t: order.get(t, len(order))):
            model = self.models[table]
            key = model._meta.primary_key
            fields = [f for f in model._meta.sorted_fields if f is not key]
            sets = ", ".join(f'"{f.column_name}" = {p}' for f in fields)
            sql = f'UPDATE "{table}" SET {sets} WHERE "{key.column_name}" = {p}'
            cursor.executemany(sql, _params(fields + [key], ({**row, key.name: i}
                                                            for i, row in self.updates[table].items())))
        if self.log_rows:
            created = ChangeLog._meta.fields["created_at"]
            encode = _ENCODE_PAYLOAD  # the text ChangeLog.append writes: json.dumps(..., ensure_ascii=False, separators)
            rows = [(t, r, h, o, s, encode(payload), created.db_value(at)) for t, r, h, o, s, payload, at in self.log_rows]
            columns = '"table", "record_id", "hlc", "origin", "scope", "payload", "created_at"'
            if copy:  # sequence numbers are taken in row order, as with one INSERT per row
                _copy_rows(cursor, f'COPY "change_log" ({columns}) FROM STDIN', rows)
            else:
                cursor.executemany(f'INSERT INTO "change_log" ({columns}) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})',
                                   rows)

    # -- the guard -----------------------------------------------------------------------------
    def before_statement(self, sql: str) -> None:
        """Another statement is about to run on the connection: flush first; forget rows it may change."""
        self.stats["foreign"] += 1
        try:
            self.flush()
        except (IntegrityError, DataError) as exc:  # anything else is a crash, and stays one
            raise FlushFailed(str(exc)) from exc
        if not sql.lstrip()[:9].upper().startswith(_READ_ONLY) and (self.rows or self.memo or self.scopes):
            self.rows.clear()
            self.memo.clear()
            self.scopes.clear()
            self.stats["cleared"] += 1


def _copy_rows(cursor, sql: str, rows: list) -> None:
    """Stream rows into a PostgreSQL table with COPY (a refused row fails the whole COPY, like executemany)."""
    with cursor.copy(sql) as stream:
        for row in rows:
            stream.write_row(row)


def _params(fields: list, rows: Iterable[dict[str, Any]]) -> list[Any]:
    """Each row's values in `fields` order as the driver takes them (`field.db_value` of each value).

    For peewee's own field types `db_value` returns a value of the right Python type unchanged (a str
    for a text column, a datetime for a timestamp…), and whether it does depends only on the type. So
    the values are taken with one C call per row, and `db_value` runs only for rows whose tuple of value
    types is not known to pass unchanged (found out once per tuple of types, by running it)."""
    names = [f.name for f in fields]
    getter = operator.itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
    plain = all(_type_decides(f) for f in fields)
    passing: dict[tuple, bool] = {}
    out = []
    for row in rows:
        try:
            values = getter(row)
        except KeyError:  # a row without every field: the slow way
            out.append([None if row.get(f.name) is None else f.db_value(row.get(f.name)) for f in fields])
            continue
        if plain:
            types = tuple(map(type, values))
            known = passing.get(types)
            if known is None:
                known = passing[types] = all(v is None or f.db_value(v) is v for f, v in zip(fields, values))
            if known:
                out.append(values)
                continue
        out.append([None if v is None else f.db_value(v) for f, v in zip(fields, values)])
    return out


def _type_decides(field) -> bool:
    """True when the field's db_value is peewee's own, whose result depends on the value's type alone."""
    from peewee import ForeignKeyField

    if isinstance(field, ForeignKeyField):
        return type(field).db_value is ForeignKeyField.db_value and _type_decides(field.rel_field)
    return type(field).db_value is _PEEWEE_DB_VALUE and getattr(type(field), "adapt", None) in _PEEWEE_ADAPTS


def _peewee_adapts() -> set:
    """The `adapt` of peewee's text, number, boolean and date/time fields (a type check and a conversion)."""
    import peewee

    kinds = (peewee.CharField, peewee.TextField, peewee.IntegerField, peewee.BigIntegerField, peewee.AutoField,
             peewee.BooleanField, peewee.FloatField, peewee.DateTimeField, peewee.DateField, peewee.TimeField)
    return {kind.adapt for kind in kinds}


from peewee import Field as _Field  # noqa: E402 - used by the two helpers above

_PEEWEE_DB_VALUE = _Field.db_value
_PEEWEE_ADAPTS = _peewee_adapts()


_SCOPE_PARENTS: set[str] = set()


def _scope_parents() -> set[str]:
    """Tables a record's scope may be read through: every table a synced model points to."""
    if not _SCOPE_PARENTS:
        from .base import SYNCED_MODELS
        from peewee import ForeignKeyField

        _SCOPE_PARENTS.update(f.rel_model._meta.table_name for m in SYNCED_MODELS.values()
                              for f in m._meta.sorted_fields if isinstance(f, ForeignKeyField))
    return _SCOPE_PARENTS


def scope_of(model, record_id: Any, compute, tag: str = "") -> Any:
    """`compute()` (the scope of a record the batch points to), remembered for the batch while valid.

    `tag` tells apart callers whose answers differ for the same record (e.g. None versus an error
    for a missing one); a `compute()` that raises is not remembered."""
    cache = _active.get()
    if cache is None:
        return compute()
    key = (model._meta.table_name, record_id, tag)
    scopes = cache.scopes
    found = scopes.get(key, _UNKNOWN)
    if found is _UNKNOWN:
        cache.scope_tags.add(tag)
        found = scopes[key] = compute()
    return found


def install(database) -> None:
    """Guard `database` (once): statements run while a cache is active in this context go through it."""
    if getattr(database, "_rowcache_guarded", False):
        return
    original = database._execute_cursor

    def guarded(sql, params, **options):
        cache = _active.get()
        if cache is not None and cache.database is database and not cache.flushing:
            cache.before_statement(sql)
        return original(sql, params, **options)

    database._execute_cursor = guarded
    database._rowcache_guarded = True


@contextlib.contextmanager
def activated(database) -> Iterator[RowCache]:
    """Make a fresh cache active in this context; flush it when the block ends without an error."""
    install(database)
    cache = RowCache(database)
    token = _active.set(cache)
    try:
        yield cache
        cache.flush()
    finally:
        _active.reset(token)


def active() -> RowCache | None:
    """The cache of the batch being applied in this context, or None."""
    return _active.get()


def lookup_row(model, record_id: Any) -> dict[str, Any] | None:
    """A row as {field name: value} (tombstones included), from the active cache or the database."""
    if record_id is None:
        return None
    cache = _active.get()
    if cache is not None:
        row = cache.get(model, record_id)
        return dict(row) if row is not None else None
    return model.select().where(model._meta.primary_key == record_id).dicts().first()


def peek_row(model, record_id: Any) -> dict[str, Any] | None:
    """`lookup_row` for a caller that only reads the row: the cached row itself, not a copy (never mutate it)."""
    if record_id is None:
        return None
    cache = _active.get()
    if cache is not None:
        rows = cache.rows.get(model._meta.table_name)
        if rows is not None:
            row = rows.get(record_id, _UNKNOWN)
            if row is not _UNKNOWN:
                return row
        return cache.get(model, record_id)
    return model.select().where(model._meta.primary_key == record_id).dicts().first()


_UNKNOWN = object()  # a row the cache has not read yet (None: known not to exist)


def lookup(model, record_id: Any, name: str) -> Any:
    """One field of a row (None when the row is missing)."""
    row = peek_row(model, record_id)
    return None if row is None else row.get(name)
