"""Scope: which node a record belongs to, and handing records over when it changes (handover).

Design: a record's scope is computed by its model (`sync_scope()`): '*' for what every node receives
(organisation, cells, rule sets), otherwise the id of the node holding the record's cell. The scope is
written into each `ChangeLog` row when the change is captured, so the pull feed is filtered with an
index. A record's scope changes in two ways, both only at central: a record is moved (a member
re-assigned to a cell another node holds: one captured change, scope = the new holder, carrying only
the changed column), or a cell is handed to another node (`nodes assign` / `nodes release`): every
record of the cell changes scope without a change of its own.
`rehome_cells()` runs at central before a pull is served (and after `nodes assign`). It finds both
kinds of move since its last run (a record whose logged scope changed; a cell whose holder differs
from the one recorded in `sync_state`) and appends to the feed, in one write transaction:
- for the **new holder**, the whole state (`state_payload`, every column with its own stamp) of the
  moved record and of every record under it (found through the foreign keys, tombstones included:
  a member's status changes, position terms and attendance rows); a record under it that stays in
  another node's scope (a past attendance row of the old cell's meeting) is sent as read-only
  **context** (payload key "context" = its real scope) together with the scoped parents it needs
  (the meeting). A field node's own scope guard then makes context read-only there. A model can
  opt out of being context with `sync_context = False` (accounts: a password hash stays home);
- for the **old holder**, a **left-scope notice** per record that left it (payload key "left" = the
  new scope, and the record's state when it left): the node applies that state (e.g. the member's new
  cell), so its own scope rules stop listing and writing it (`sync.merge.apply_left_scope`).
Parents come before children (models in foreign-key order) and each record is sent once per node.
Which records are under a moved one is found from the foreign keys of every registered synced model,
so models added later are covered without touching this module. Handover rows are recognised by the
first key of their payload and never count as a move themselves.
Speed (issue 10): a pass reads by the set (`Reader`): the records under a moved one level by level, one
query per foreign key and chunk of ids; told scopes one query per chunk; each model's scope computed
once per distinct input (a roll call's marks share their meeting's); the rows are written with one
`executemany`. It plans exactly the rows the record-by-record code planned
(tests/test_sync_handover_speed.py keeps that code and compares).
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable

from peewee import DoesNotExist, Field, ForeignKeyField, SqliteDatabase, fn
from peewee import _StringField, __exception_wrapper__

from models import SYNCED_MODELS, ChangeLog, SyncState, SyncedModel, ValidationError, clock, db
from models.base import as_record, utcnow, write_transaction
from models.org import CENTRAL_NODE, Cell

HOME_KEY = "cell_home:{}"
# The last change-log sequence number examined for moved records.
WATERMARK_KEY = "handover_seq"
# Payloads of handover rows start with these keys (json.dumps keeps key order; captured changes
# start with "fields"), so a handover row is told apart with a prefix match on the feed.
LEFT_PREFIX = '{"left":'
CONTEXT_PREFIX = '{"context":'
# Scopes that are not a field node: nothing is sent to them and nobody pulls for them.
NOT_A_NODE = ("*", CENTRAL_NODE)
CHUNK = 500
# One encoder for every payload written (json.dumps with these options makes a new one per call).
_ENCODE_PAYLOAD = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def scoped_models() -> list[type[SyncedModel]]:
    """Synced models whose scope depends on data (not '*'), parents before children."""
    return [m for m in topological_models() if _is_scoped(m) and m is not Cell]


def _is_scoped(model: type[SyncedModel]) -> bool:
    """True when the model computes its scope from its data (it overrides `sync_scope`)."""
    return model.sync_scope is not SyncedModel.sync_scope


def topological_models() -> list[type[SyncedModel]]:
    """Every synced model ordered so that a model comes after every model it points to."""
    models = list(SYNCED_MODELS.values())
    done: list[type[SyncedModel]] = []
    seen: set = set()

    def visit(model, trail=()):
        """Depth-first: place every parent before `model` (self-references and cycles ignored)."""
        if model in seen or model in trail:
            return
        for fk in model._meta.refs:
            if fk.rel_model is not model and fk.rel_model in SYNCED_MODELS.values():
                visit(fk.rel_model, trail + (model,))
        seen.add(model)
        done.append(model)

    for model in models:
        visit(model)
    return done


def path_to_cell(model: type[SyncedModel]) -> list[ForeignKeyField] | None:
    """The shortest chain of foreign keys leading from `model` to `Cell`, or None."""
    queue = deque([(model, [])])
    visited = {model}
    while queue:
        current, path = queue.popleft()
        for fk in current._meta.sorted_fields:
            if not isinstance(fk, ForeignKeyField) or fk.rel_model in visited:
                continue
            if fk.rel_model is Cell:
                return path + [fk]
            visited.add(fk.rel_model)
            queue.append((fk.rel_model, path + [fk]))
    return None


def records_of_cell(model: type[SyncedModel], cell_id: str):
    """Query the rows of `model` (tombstones included) reached from the cell through foreign keys."""
    path = path_to_cell(model)
    if path is None:
        return None
    query = model.select()
    for fk in path[:-1]:
        query = query.join(fk.rel_model, on=(fk == fk.rel_model._meta.primary_key))
    return query.where(path[-1] == cell_id).order_by(model.created_at, model.id)


# -- reading a pass's records as sets --------------------------------------------------------------

class _Reads(dict):
    """A copy of a record's field values that notes which fields are read (see `Reader.scope`)."""

    __slots__ = ("read",)

    def get(self, key, default=None):
        self.read.append(key)
        return dict.get(self, key, default)

    def __getitem__(self, key):
        self.read.append(key)
        return dict.__getitem__(self, key)

    def __contains__(self, key):
        self.read.append(key)
        return dict.__contains__(self, key)

    def _all(self):
        """Reading the whole record: every field counts as read."""
        self.read.extend(dict.keys(self))
        return self

    def __iter__(self):
        return dict.__iter__(self._all())

    def keys(self):
        return dict.keys(self._all())

    def values(self):
        return dict.values(self._all())

    def items(self):
        return dict.items(self._all())

    def copy(self):
        return dict(dict.items(self._all()))


class Reader:
    """One handover pass's reads: rows fetched by the set (one query per table and chunk of ids), scopes memoised.

    Valid for one pass only: the pass writes nothing it reads before `write_plan`, so a row or a scope
    read once stays true until then.
    """

    def __init__(self) -> None:
        """An empty reader on the current database."""
        self.database = db.obj
        self.records: dict[tuple[str, Any], SyncedModel | None] = {}
        # model -> [(fields read, {their values: scope})]: see `scope`.
        self.memo: dict[type, list[tuple[tuple[str, ...], dict[tuple, str | None]]]] = {}

    def select(self, model: type[SyncedModel], field: Field, values: list[Any]) -> list[SyncedModel]:
        """The records of `model` (tombstones included) whose `field` is one of `values`: one query per chunk.

        Fixed SQL on the raw cursor: peewee spent ~1 ms building the text of each 500-id IN list. The
        rows are converted as peewee converts them (`python_value` per column), so the records are the
        same as `model.select().where(field.in_(values))` gives, in the same order; a row read before
        in the pass is the record read then (a roll-call mark is reached from its meeting and its member).
        """
        fields = model._meta.sorted_fields
        columns = ", ".join(f'"{f.column_name}"' for f in fields)
        # None where python_value leaves text and NULL as they are (no call needed for them).
        convert = [None if _text_as_is(f) else f.python_value for f in fields]
        names = [f.name for f in fields]
        table = model._meta.table_name
        key = fields.index(model._meta.primary_key)
        key_as_is = convert[key] is None
        param = self.database.param
        cursor = self.database.cursor()
        records = self.records
        out = []
        for start in range(0, len(values), CHUNK):
            part = values[start:start + CHUNK]
            marks = ", ".join([param] * len(part))
            with __exception_wrapper__:
                cursor.execute(f'SELECT {columns} FROM "{table}" WHERE "{field.column_name}" IN ({marks})',
                               [field.db_value(v) for v in part])
                raw_rows = cursor.fetchall()
            for raw in raw_rows:
                if key_as_is:
                    known = records.get((table, raw[key]))
                    if known is not None:
                        out.append(known)
                        continue
                data = {}
                for name, conv, value, f in zip(names, convert, raw, fields):
                    if conv is None and (value is None or value.__class__ is str):
                        data[name] = value
                    else:
                        data[name] = f.python_value(value)
                record = as_record(model, data)
                records[(table, data[names[key]])] = record
                out.append(record)
        return out

    def get(self, model: type[SyncedModel], record_id: Any) -> SyncedModel | None:
        """The record with this id (tombstones included), or None; read once per pass."""
        found = self.records.get((model._meta.table_name, record_id), _UNREAD)
        if found is _UNREAD:
            self.load(model, [record_id])
            found = self.records[(model._meta.table_name, record_id)]
        return found

    def load(self, model: type[SyncedModel], ids: Iterable[Any]) -> None:
        """Read the records of `ids` not read yet, one query per chunk (missing ones remembered as None)."""
        table = model._meta.table_name
        wanted = [i for i in dict.fromkeys(ids) if i is not None and (table, i) not in self.records]
        if wanted:
            self.select(model, model._meta.primary_key, wanted)
            for i in wanted:
                self.records.setdefault((table, i), None)

    def scope(self, record: SyncedModel) -> str | None:
        """`record.sync_scope()` (None when it cannot be computed), computed once per distinct input.

        A model's scope is a function of the record's fields and of other rows (its meeting's cell),
        and no row changes during the pass. So when `sync_scope()` read fields f1..fn of one record,
        any record of the model with the same values of f1..fn gets the same answer: the function
        takes the same path. The roll call of a meeting costs one scope query instead of one per mark.
        """
        model = type(record)
        patterns = self.memo.setdefault(model, [])
        data = record.__data__
        for names, answers in patterns:
            try:
                values = tuple(data.get(n, _UNREAD) for n in names)
                if values in answers:
                    return answers[values]
            except TypeError:  # a value that cannot be a key: compute it
                break
        tracked = _Reads(data)
        tracked.read = []
        record.__data__ = tracked
        try:
            scope = _scope_of(record)
        finally:
            record.__data__ = data
        if not dict.__eq__(tracked, data):  # it wrote to the record: keep that, and remember nothing
            data.update(tracked)
            return scope
        names = tuple(dict.fromkeys(tracked.read))
        try:
            values = tuple(data.get(n, _UNREAD) for n in names)
            for known, answers in patterns:
                if known == names:
                    answers[values] = scope
                    break
            else:
                patterns.append((names, {values: scope}))
        except TypeError:
            pass
        return scope


_UNREAD = object()


def _text_as_is(field: Field) -> bool:
    """True when the field's python_value returns text and None unchanged (peewee's plain string fields)."""
    while isinstance(field, ForeignKeyField) and type(field).python_value is ForeignKeyField.python_value:
        field = field.rel_field
    return (isinstance(field, _StringField) and type(field).python_value is Field.python_value
            and type(field).adapt is _StringField.adapt)


# -- finding what moved ------------------------------------------------------------------------

@dataclass
class Move:
    """One record (or cell) whose holder changed: where its records were, and where they go now."""

    record: SyncedModel
    old: set[str] = field(default_factory=set)
    new: str = ""


def _plain(column):
    """A condition keeping captured changes only (not handover rows)."""
    return ~(column.startswith(LEFT_PREFIX)) & ~(column.startswith(CONTEXT_PREFIX))


def _plain_sql() -> tuple[str, list[str]]:
    """`_plain` as SQL text on `payload` and its parameters (peewee's startswith: ILIKE, LIKE on SQLite)."""
    database = db.obj
    like = "LIKE" if isinstance(database, SqliteDatabase) else "ILIKE"
    p = database.param
    return f"NOT (payload {like} {p}) AND NOT (payload {like} {p})", [LEFT_PREFIX + "%", CONTEXT_PREFIX + "%"]


def moved_records(after: int, upto: int, reader: Reader | None = None) -> list[Move]:
    """Records whose logged scope changed in the feed rows (after, upto]: (record, old scopes, new scope)."""
    reader = reader or Reader()
    database = db.obj
    p = database.param
    plain, params = _plain_sql()
    # One scan in seq order, grouped here: faster than GROUP BY in SQL, which sorts the whole window.
    rows = database.execute_sql(
        f'SELECT "table", record_id, scope FROM change_log WHERE seq > {p} AND seq <= {p} AND {plain} '
        "ORDER BY seq", [after, upto, *params]).fetchall()
    # table -> record id -> the scopes seen, in order (a plain string while there is only one).
    by_table: dict[str, dict[str, Any]] = {}
    for table, record_id, scope in rows:
        ids = by_table.get(table)
        if ids is None:
            ids = by_table[table] = {}
        seen = ids.get(record_id)
        if seen is None:
            ids[record_id] = scope
        elif seen.__class__ is str:
            if scope != seen:
                ids[record_id] = [seen, scope]
        elif scope not in seen:
            seen.append(scope)
    moves = []
    for table, ids in by_table.items():
        model = SYNCED_MODELS.get(table)
        if model is None:
            continue
        # The scope told at or before `after`: none when it is 0 (sequence numbers start at 1).
        told = told_scopes(table, list(ids), after) if after > 0 else {}
        candidates = []
        for record_id, seen in ids.items():
            before = told.get(record_id)
            if seen.__class__ is str:
                if before is None or before == seen:
                    continue
                seen = [seen]
            candidates.append((record_id, set(seen) | ({before} if before is not None else set())))
        reader.load(model, [record_id for record_id, _history in candidates])
        for record_id, history in candidates:
            record = reader.get(model, record_id)
            if record is None:
                continue
            new = reader.scope(record)
            if new is None:
                continue
            moves.append(Move(record, history - {new}, new))
    return moves


def told_scopes(table: str, ids: list[str], upto: int | None = None) -> dict[str, str]:
    """For each record id, the scope of its last captured change (at or before `upto`): one query per chunk."""
    database = db.obj
    p = database.param
    plain, params = _plain_sql()
    bound = f" AND seq <= {p}" if upto is not None else ""
    out: dict[str, str] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        marks = ", ".join([p] * len(chunk))
        sql = (f"SELECT record_id, scope FROM change_log WHERE seq IN (SELECT MAX(seq) FROM change_log "
               f'WHERE "table" = {p} AND record_id IN ({marks}) AND {plain}{bound} GROUP BY record_id)')
        args = [table, *chunk, *params] + ([upto] if upto is not None else [])
        for record_id, scope in database.execute_sql(sql, args).fetchall():
            out[record_id] = scope
    return out


def moved_cells() -> list[Move]:
    """Cells whose holder differs from the one their records were last handed to."""
    homes = {row.key[len(HOME_KEY.format("")):]: row.value
             for row in SyncState.select().where(SyncState.key.startswith(HOME_KEY.format("")))}
    # Records of a cell never handed over were logged for central, the default holder.
    return [Move(cell, {homes.get(cell.id, CENTRAL_NODE)}, cell.node_id) for cell in Cell.select()
            if homes.get(cell.id, CENTRAL_NODE) != cell.node_id]


# -- what goes with a moved record ---------------------------------------------------------------

def _scope_of(record: SyncedModel) -> str | None:
    """The record's scope now, or None when it cannot be computed (a parent is missing)."""
    try:
        return record.sync_scope()
    except (ValidationError, DoesNotExist):
        return None


def descendants(roots: Iterable[SyncedModel], reader: Reader | None = None) -> list[SyncedModel]:
    """The records under `roots` through every synced foreign key, tombstones included, each once.

    Level by level: one query per foreign key and chunk of the level's ids (a cell's members and
    meetings, then every roll call of them...), never one per record.
    """
    reader = reader or Reader()
    found: dict[tuple[str, str], SyncedModel] = {}
    frontier: dict[type[SyncedModel], set[str]] = {}
    for root in roots:
        frontier.setdefault(type(root), set()).add(root.id)
    while frontier:
        following: dict[type[SyncedModel], set[str]] = {}
        for parent_model, ids in frontier.items():
            for fk in parent_model._meta.backrefs:
                child_model = fk.model
                if child_model._meta.table_name not in SYNCED_MODELS:
                    continue
                for child in reader.select(child_model, fk, sorted(ids)):
                    key = (child_model._meta.table_name, child.id)
                    if key in found:
                        continue
                    found[key] = child
                    following.setdefault(child_model, set()).add(child.id)
        frontier = following
    return list(found.values())


def scoped_parents(record: SyncedModel, reader: Reader | None = None) -> list[SyncedModel]:
    """The records a record points to whose model has a data-dependent scope (nearest first)."""
    reader = reader or Reader()
    parents = []
    for fk in type(record)._meta.sorted_fields:
        if not isinstance(fk, ForeignKeyField) or not _is_scoped(fk.rel_model):
            continue
        target = record.__data__.get(fk.name)
        if target is None or target == record.id:
            continue
        parent = reader.get(fk.rel_model, target)
        if parent is not None:
            parents.append(parent)
    return parents


def _read_parents(records: list[SyncedModel], node: str, reader: Reader) -> None:
    """Read ahead, one query per table and level, the scoped parents `add_context` will look up."""
    level = records
    for _depth in range(17):
        wanted: dict[type[SyncedModel], list[Any]] = {}
        for record in level:
            for fk in type(record)._meta.sorted_fields:
                if isinstance(fk, ForeignKeyField) and _is_scoped(fk.rel_model):
                    target = record.__data__.get(fk.name)
                    if target is not None and target != record.id:
                        wanted.setdefault(fk.rel_model, []).append(target)
        if not wanted:
            return
        level = []
        for model, ids in wanted.items():
            reader.load(model, ids)
            for record_id in dict.fromkeys(ids):
                parent = reader.records.get((model._meta.table_name, record_id))
                if parent is not None and reader.scope(parent) not in (None, "*", node):
                    level.append(parent)


@dataclass
class Plan:
    """The rows one handover pass appends: per (table, id, node) one state, context or left row."""

    rows: dict[tuple[str, str, str], tuple[SyncedModel, str, str]] = field(default_factory=dict)

    def add(self, record: SyncedModel, node: str, kind: str, scope: str) -> None:
        """Plan one row for `node` (first plan wins: each record goes once to each node)."""
        if node in NOT_A_NODE:
            return
        self.rows.setdefault((record._meta.table_name, record.id, node), (record, kind, scope))


def plan_move(move: Move, plan: Plan, include_root: bool, reader: Reader | None = None) -> None:
    """Plan what the new holder receives and what each old holder is told, for one move."""
    reader = reader or Reader()
    records = ([move.record] if include_root else []) + descendants([move.record], reader)
    by_table: dict[str, list[str]] = {}
    for record in records:
        by_table.setdefault(record._meta.table_name, []).append(record.id)
    told = {}
    for table, ids in by_table.items():
        told.update({(table, k): v for k, v in told_scopes(table, ids).items()})
    scopes = [reader.scope(record) for record in records]
    _read_parents([r for r, s in zip(records, scopes) if s not in (None, "*", move.new)
                   and getattr(type(r), "sync_context", True)], move.new, reader)
    for index, (record, scope) in enumerate(zip(records, scopes)):
        if scope is None or scope == "*":
            continue
        before = told.get((record._meta.table_name, record.id))
        # By position: the reader hands back the root itself if it is also found under itself (a cycle).
        is_root = include_root and index == 0
        if scope == move.new:
            if is_root or before != move.new:
                plan.add(record, move.new, "state", scope)
        elif getattr(type(record), "sync_context", True):
            # History that stays in another node's scope: read-only context, with the parents it needs.
            add_context(record, scope, move.new, plan, reader=reader)
        # The old holders that had it in scope are told it left.
        olds = move.old if is_root else ({before} if before else set())
        for old in olds:
            if old != scope:
                plan.add(record, old, "left", scope)


def add_context(record: SyncedModel, scope: str, node: str, plan: Plan, depth: int = 0,
                reader: Reader | None = None) -> None:
    """Plan `record` as read-only context for `node`, with the scoped parents it points to."""
    if node in NOT_A_NODE or depth > 16:
        return
    reader = reader or Reader()
    plan.add(record, node, "context", scope)
    for parent in scoped_parents(record, reader):
        parent_scope = reader.scope(parent)
        if parent_scope is None or parent_scope in ("*", node):
            continue
        if (parent._meta.table_name, parent.id, node) not in plan.rows:
            add_context(parent, parent_scope, node, plan, depth + 1, reader)


def write_plan(plan: Plan, origin: str) -> int:
    """Append the planned rows, parents before children, each once, with one statement; return how many.

    Called inside `rehome_cells`' transaction, which already holds the feed's lock on PostgreSQL
    (the clock row), as `ChangeLog.append` would take it.
    """
    order = {m._meta.table_name: i for i, m in enumerate(topological_models())}
    items = sorted(plan.rows.items(),
                   key=lambda kv: (order.get(kv[0][0], 0), str(kv[1][0].created_at or ""), kv[0][1], kv[0][2]))
    if not items:
        return 0
    encode = _ENCODE_PAYLOAD
    created = ChangeLog._meta.fields["created_at"].db_value(utcnow())
    values = []
    for (table, record_id, node), (record, kind, scope) in items:
        state, top = record.state_payload()
        if kind == "state":
            payload: dict[str, Any] = state
        elif kind == "context":
            payload = {"context": scope, **state}
        else:
            payload = {"left": scope, **state}
        values.append((table, record_id, top, origin, node, encode(payload), created))
    database = db.obj
    p = database.param
    with __exception_wrapper__:
        database.cursor().executemany(
            f'INSERT INTO change_log ("table", record_id, hlc, origin, scope, payload, created_at) '
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})", values)
    return len(items)


def rehome_cells(origin: str = CENTRAL_NODE) -> int:
    """Hand over every record (and every cell) whose holder changed since the last run; return rows logged.

    Called by central before every pull page and after `nodes assign`; cheap when nothing moved.
    """
    upto = ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0
    mark = int(SyncState.get_value(WATERMARK_KEY, "0") or 0)
    if upto <= mark and not moved_cells():
        return 0
    with write_transaction():
        # On PostgreSQL this locks the clock row: every writer of the feed before us has committed.
        clock.peek()
        mark = int(SyncState.get_value(WATERMARK_KEY, "0") or 0)
        upto = ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0
        plan = Plan()
        reader = Reader()
        for move in moved_cells():
            plan_move(move, plan, include_root=False, reader=reader)
            SyncState.set_value(HOME_KEY.format(move.record.id), move.new)
        if upto > mark:
            for move in moved_records(mark, upto, reader):
                plan_move(move, plan, include_root=True, reader=reader)
        logged = write_plan(plan, origin)
        SyncState.set_value(WATERMARK_KEY, str(ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0))
    return logged


# -- handing cells over (the `nodes assign` / `nodes release` commands) ---------------------------

class HandoverError(ValueError):
    """A handover that cannot be done, with a Vietnamese message."""


def assign_cells(codes: list[str], node_id: str) -> list[tuple[Cell, str]]:
    """Give the cells with these codes to `node_id` (central included); return (cell, previous holder).

    Changes only `Cell.node_id` through save() (so it syncs and is audited); tokens are not touched.
    """
    from models import Node

    codes = [c.strip() for c in codes if c and c.strip()]
    if not codes:
        raise HandoverError("Hãy nêu mã chi bộ, ví dụ --cells CB02,CB03.")
    if node_id != CENTRAL_NODE and Node.get_or_none(Node.id == node_id) is None:
        raise HandoverError(f"Không có nút {node_id}. Hãy đăng ký nút trước: "
                            f"flask --app app nodes register {node_id} --cells ...")
    found = {c.code: c for c in Cell.live().where(Cell.code.in_(codes))}
    missing = [c for c in codes if c not in found]
    if missing:
        raise HandoverError(f"Không có chi bộ mã: {', '.join(missing)}.")
    moved = []
    with write_transaction():
        for code in codes:
            cell = found[code]
            previous = cell.node_id
            if previous != node_id:
                cell.node_id = node_id
                cell.save()
            moved.append((cell, previous))
    return moved


def handover_rows(table: str, record_id: str) -> list[dict[str, Any]]:
    """The handover rows logged for one record (for tools and tests): node, kind and scope."""
    out = []
    for row in ChangeLog.select().where((ChangeLog.table == table) & (ChangeLog.record_id == record_id)):
        payload = json.loads(row.payload)
        for kind in ("left", "context"):
            if kind in payload:
                out.append({"node": row.scope, "kind": kind, "scope": payload[kind], "seq": row.seq})
    return out
