"""Merging one change that arrived from another node into this database, column by column.

Design (docs/sync-protocol.md, "Merge"): every column of a synced row has its own clock stamp. A
change carries the columns it changed, each with its stamp, and — when it is a local edit — the stamp
each column had before (its base). The receiver takes, for each column, the value with the higher
stamp (last writer wins per column), so edits to different columns on two sides both survive and the
result does not depend on the order changes arrive in: every node converges.
Central also tells a concurrent edit from a plain update: when the column's current stamp is newer
than the base the writer saw (and the values differ), both sides changed it since they last agreed.
Both values are kept in a `Conflict` for a person at central; the provisional winner is the higher
stamp, the same on every node. A delete meeting an edit the deleter had not seen, or an edit
arriving for a deleted record, is a 'delete_edit' conflict: the tombstone stays (provisionally), the
edited values stay in the row, nothing is lost. A value of a `sync_unique` column that another live
record already has is kept and shown as a suspected duplicate.
What cannot be applied (bad values, a rule, the write policy, the wrong scope, a parent missing or
deleted) raises `SetAside`; the caller records it as a dead letter inside the same batch transaction
and goes on with the next change, so one bad record never blocks a queue.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from peewee import DataError, IntegrityError

from models import SYNCED_MODELS, ChangeLog, SyncedModel, ValidationError, db
from models.base import (META_COLUMNS, _short, _to_json, as_record, column_stamps, model_spec, sparse_stamps,
                         utcnow)
from models.clock import check_stamp
from models.rowcache import active, peek_row, scope_of
from models.sync_state import Conflict, DeadLetter

try:  # The write policy (trust boundary) lives with the models; absent in older trees.
    from models import policy as _policy
except ImportError:  # pragma: no cover - the policy module ships with the app
    _policy = None


class SetAside(Exception):
    """A change that cannot be applied here: a stable reason code and a short Vietnamese message."""

    def __init__(self, reason: str, message: str):
        """Keep the reason code and the (short) message."""
        super().__init__(message)
        self.reason = reason
        self.message = message[:500]


@dataclass
class Outcome:
    """What merging one change did."""

    applied: list[str] = field(default_factory=list)
    conflicts: int = 0
    created: bool = False


def check_change_shape(change: Any) -> tuple[type[SyncedModel], str, str, dict[str, Any]]:
    """Model, record id, stamp and payload of a change; SetAside('invalid') when malformed."""
    if not isinstance(change, dict):
        raise SetAside("invalid", "Thay đổi không phải là một đối tượng JSON.")
    model = SYNCED_MODELS.get(change.get("table"))
    if model is None:
        raise SetAside("unknown_table", f"Bảng không tồn tại: {_short(change.get('table'))}.")
    record_id, hlc, payload = change.get("record_id"), change.get("hlc"), change.get("payload")
    if not isinstance(record_id, str) or not 0 < len(record_id) <= 36:
        raise SetAside("invalid", "Mã bản ghi (record_id) không hợp lệ.")
    if not isinstance(hlc, str) or not isinstance(payload, dict) or not isinstance(payload.get("fields"), dict):
        raise SetAside("invalid", "Thay đổi thiếu hlc hoặc payload.fields.")
    try:
        check_stamp(hlc)
    except ValueError as exc:
        raise SetAside("invalid", str(exc)[:200]) from None
    for key in ("stamps", "base"):
        stamps = payload.get(key)
        if stamps is None:
            continue
        if not isinstance(stamps, dict) or not all(isinstance(v, str) for v in stamps.values()):
            raise SetAside("invalid", f"payload.{key} phải là một đối tượng cột → dấu thời gian.")
        for value in stamps.values():
            if value:
                try:
                    check_stamp(value)
                except ValueError as exc:
                    raise SetAside("invalid", str(exc)[:200]) from None
    seen = payload.get("seen")
    if seen is not None and not isinstance(seen, str) and not (
            isinstance(seen, dict) and all(isinstance(v, str) for v in seen.values())):
        raise SetAside("invalid", "payload.seen phải là dấu thời gian (hoặc cột → dấu thời gian).")
    return model, record_id, hlc, payload


def apply_change(model: type[SyncedModel], record_id: str, hlc: str, payload: dict[str, Any], origin: str, *,
                 pusher: str | None = None, detect: bool = False, log: bool = True) -> Outcome:
    """Merge one change (call inside a savepoint of the batch transaction); SetAside when it cannot apply.

    `pusher` is the field node that sent it (central checks scope, stamps and the write policy);
    `detect` records conflicts (central); `log` appends what was applied to the change feed.
    """
    spec = model_spec(model)  # columns, maps and field lists, worked out once per model
    columns = spec.columns
    by_column = spec.by_column
    fields: dict[str, Any] = payload["fields"]
    if not spec.column_set.issuperset(fields):
        extra = sorted(set(fields) - spec.column_set)
        raise SetAside("invalid", f"Cột không được đồng bộ hoặc không tồn tại: {', '.join(extra)[:200]}.")
    stamps_in: dict[str, str] = payload.get("stamps") or {}
    base: dict[str, str] | None = payload.get("base")
    if base is None and payload.get("new") is True:
        # A record created on both sides under the same natural key (one roll-call mark for one member
        # at one meeting): the writer had seen nothing, so every differing column is a conflict.
        base = dict.fromkeys(fields, "")
    incoming = {c: stamps_in.get(c) or hlc for c in fields} if stamps_in else dict.fromkeys(fields, hlc)
    if pusher is not None and not (not stamps_in and hlc.split(":", 2)[-1] == pusher):  # usual: one own stamp
        # The stamps were checked by check_change_shape: the node is what follows the second colon.
        foreign = sorted({s.split(":", 2)[-1] for s in set(incoming.values())} - {pusher})
        if foreign:
            raise SetAside("invalid", f"Nút {pusher} gửi dấu thời gian của nút khác ({', '.join(foreign)[:100]}).")
    try:
        values = model.from_wire(fields, partial=True)
    except ValidationError as exc:
        raise SetAside("invalid", f"Bản ghi {model._meta.table_name}/{record_id} không hợp lệ: {exc}") from None

    current = peek_row(model, record_id)  # read only: never mutated below (copied where changed)
    outcome = Outcome()
    # Conflicts are recorded only once the change has passed every check (a refused change leaves none).
    found: list[tuple] = []
    if current is None:
        missing = [c for c in spec.required_new if c not in fields]
        if missing:
            raise SetAside("missing_record", f"Chưa có bản ghi {model._meta.table_name}/{record_id} để cập nhật "
                                             f"(thiếu {', '.join(missing)[:100]}).")
        applied = list(fields)
        new_stamps = {c: incoming.get(c, hlc) for c in columns}
        data: dict[str, Any] = {}
        for name, default in spec.defaults:
            if name in values:
                data[name] = values[name]
            else:
                data[name] = default() if callable(default) else default
        owner = pusher or (payload.get("owner") if isinstance(payload.get("owner"), str) else "") or origin
        data.update(id=record_id, owner=owner[:32])
        outcome.created = True
    else:
        cur_stamps = column_stamps(current["hlc"], current.get("stamps") or "", columns)
        applied = []
        for c in fields:
            n, cur = incoming[c], cur_stamps[c]
            if n == cur:
                continue
            name = by_column[c].name
            if n > cur:
                applied.append(c)
            if detect and base is not None and c in base and cur != base[c] and cur > base[c] and c != "deleted_at":
                if _to_json(current.get(name)) != _to_json(values.get(name)) and not (n < cur and _seen(record_id, n)):
                    winner_incoming = n > cur
                    found.append((model, record_id, c, "field", pusher or origin, dict(
                        winner=(fields[c], n) if winner_incoming else (_to_json(current.get(name)), cur),
                        loser=(_to_json(current.get(name)), cur) if winner_incoming else (fields[c], n))))
        if detect:
            found.extend(_delete_edit(model, record_id, current, cur_stamps, fields, payload, pusher or origin))
        new_stamps = dict(cur_stamps)
        new_stamps.update({c: incoming[c] for c in applied})
        data = dict(current)
        for c in applied:
            data[by_column[c].name] = values[by_column[c].name]
        if not applied:
            _record_found(found, outcome)
            return outcome

    # Straight into __data__ (a model's constructor would make a new id and times it then discards).
    cache = active()
    now = cache.now if cache is not None else utcnow()
    merged = as_record(model, {**data, "hlc": "", "stamps": "", "updated_at": now})
    merged._is_new = current is None
    merged._from_sync = True
    deleted_parents = _check_parents(model, merged, applied)
    scope = None  # the record's scope after the change, when a check worked it out already
    if pusher is not None:
        scope = _check_scope(model, current, merged, pusher, record_id)
        check_parent_scope(model, merged, applied, pusher, record_id)  # handover: a parent moved away
    try:
        # No check_columns() here: from_wire() has checked every value the change brings as strictly
        # (tests/test_constraints.py), defaults are valid and the other columns passed when stored.
        merged.clean()
    except ValidationError as exc:
        raise SetAside("invalid", f"Bản ghi {model._meta.table_name}/{record_id} không hợp lệ: {exc}") from None
    if pusher is not None and _policy is not None:
        try:
            # The policy judges what really changes: columns whose value differs (creation time is
            # bookkeeping: the same roll-call mark made at two places was created at two moments).
            changed = set(applied) if current is None else {
                c for c in applied if c != "created_at"
                and _to_json(current.get(by_column[c].name)) != _to_json(merged.__data__.get(by_column[c].name))}
            _policy.check_remote_change(pusher, model, current, merged, changed)  # the row as it is stored
        except ValueError as exc:
            raise SetAside("policy", str(exc)[:300]) from None
    _record_found(found, outcome)
    if detect:
        outcome.conflicts += _duplicates(model, merged, applied, pusher or origin)

    new_hlc = max(new_stamps.values())
    merged_data = merged.__data__
    row = dict(zip(spec.names, map(merged_data.get, spec.names)))
    row.update(hlc=new_hlc, stamps=sparse_stamps(new_stamps, new_hlc), updated_at=now)
    if current is None:
        row.update(id=record_id, owner=data["owner"])
        if cache is not None:
            cache.write(model, record_id, row, insert=True)
        else:
            model.insert(**row).execute()
    else:
        if cache is not None:
            cache.write(model, record_id, {**current, **row}, insert=False)
        else:
            model.update(**row).where(model.id == record_id).execute()
    outcome.applied = applied
    if log:
        _log_applied(model, record_id, row, by_column, applied, incoming, data, origin, merged,
                     _carried_actor(payload, pusher), scope)
    if pusher is not None:
        outcome.conflicts += _follow_tombstones(model, record_id, current, merged, applied, deleted_parents,
                                                pusher)
    return outcome


def _carried_actor(payload: dict[str, Any], pusher: str | None) -> dict[str, str]:
    """Who made a change, as it travels on the change (models/audit.py CARRIED); checked when a node pushed it.

    A name a node may not claim (an account that cannot work there) is kept as unknown, never dropped
    silently: the change itself is still applied, as its separate audit row would have been refused alone.
    """
    by, name = payload.get("by"), payload.get("by_name")
    if not isinstance(by, str) or not isinstance(name, str):
        return {}
    by, name = by[:36], name[:120]
    if pusher is not None and by and not _may_act_at(by, pusher):
            return {"by": "", "by_name": f"Không xác định (nút {pusher} ghi một tài khoản không làm việc tại nút)"}
    return {"by": by, "by_name": name}


def _may_act_at(user_id: str, node_id: str) -> bool:
    """True when the account can work at the node (remembered for the batch: one roll call names one secretary)."""
    cache = active()
    memo = cache.memo if cache is not None else {}
    key = ("may_act_at", user_id, node_id)
    if key not in memo:
        from models.users import User

        account = peek_row(User, user_id)
        try:
            scope = _as_record(User, account).sync_scope() if account is not None else None
        except Exception:  # noqa: BLE001 - an account whose cell is gone cannot act anywhere
            scope = None
        memo[key] = scope in (node_id, "*")
    return memo[key]


def _log_applied(model, record_id, row, by_column, applied, incoming, data, origin, merged,
                 actor: dict[str, str], scope: str | None = None) -> None:
    """Append what was applied to the change feed, with its origin and author (forwarded to the other nodes).

    `scope` is the record's scope after the change when the scope check worked it out (nothing the
    merge writes in between changes it); otherwise it is worked out here."""
    top = max(map(incoming.__getitem__, applied))
    temporal = model_spec(model).temporal
    values = {}
    for c in applied:
        name = by_column[c].name
        values[c] = _to_json(row[name]) if name in temporal else row[name]
    out = {"fields": values, "owner": data.get("owner") or "", **actor}
    older = {c: incoming[c] for c in applied if incoming[c] != top}
    if older:
        out["stamps"] = older
    if scope is None:
        scope = merged.sync_scope()
    cache = active()
    if cache is not None:
        cache.log((model._meta.table_name, record_id, top, origin, scope, out, cache.now))
    else:
        ChangeLog.append(model._meta.table_name, record_id, top, origin, scope, out)


def _follow_tombstones(model: type[SyncedModel], record_id: str, current: dict | None, merged: SyncedModel,
                       applied: list[str], deleted_parents: list[tuple[type, str]], who: str) -> int:
    """Central keeps deletes whole: a child that arrives under a deleted parent is stored and deleted with it
    (a delete-versus-edit conflict for a person), and a parent deleted by a node takes the children that
    only central had. Both are central's own writes, so every node converges to them."""
    conflicts = 0
    if deleted_parents:
        record = model.get_by_id(record_id)
        conflicts += _tombstone_or_flag(record, who)
        for parent, parent_id in deleted_parents:
            _record_conflict(parent, parent_id, "", "delete_edit", who, winner=("deleted", ""),
                             loser=(f"{model._meta.table_name}/{record_id}", record.hlc))
            conflicts += 1
    elif "deleted_at" in applied and merged.deleted_at is not None and (current or {}).get("deleted_at") is None:
        record = model.get_by_id(record_id)
        for child in record.live_children():
            conflicts += _tombstone_or_flag(child, who)
    return conflicts


def _tombstone_or_flag(record: SyncedModel, who: str) -> int:
    """Delete a record at central; when a rule forbids it (a signed meeting), keep it and show a conflict."""
    try:
        with db.atomic():
            record.soft_delete()
        return 0
    except ValidationError:
        _record_conflict(type(record), record.id, "", "delete_edit", who, winner=("kept", record.hlc),
                         loser=("deleted", ""))
        return 1


def _seen(record_id: str, stamp: str) -> bool:
    """True when this database already logged a change with this stamp for the record (a re-delivery)."""
    return ChangeLog.select().where((ChangeLog.record_id == record_id) & (ChangeLog.hlc == stamp)).exists()


def _check_parents(model: type[SyncedModel], merged: SyncedModel, applied: list[str]) -> list[tuple[type, str]]:
    """SetAside when a foreign key the change sets points to a record missing here; return deleted parents."""
    deleted = []
    for fk in model_spec(model).fks:
        if fk.column_name not in applied and not merged._is_new:
            continue
        target = merged.__data__.get(fk.name)
        if target is None:
            continue
        parent = fk.rel_model
        found = peek_row(parent, target)
        if found is None:
            raise SetAside("missing_parent", f"Bản ghi {model._meta.table_name}/{merged.id} trỏ tới "
                                             f"{parent._meta.table_name}/{target} chưa có tại đây; sẽ thử lại khi "
                                             "bản ghi cha tới.")
        if found.get("deleted_at") is not None and merged.deleted_at is None:
            deleted.append((parent, target))
    return deleted


def _check_scope(model: type[SyncedModel], current: dict | None, merged: SyncedModel, pusher: str,
                 record_id: str) -> str:
    """SetAside('out_of_scope') when the record is not the pusher's, before or after the change.

    Returns the record's scope after the change (then the pusher's own)."""
    scopes = []
    try:
        if current is not None:
            scopes.append(_as_record(model, current).sync_scope())
        scopes.append(merged.sync_scope())
    except ValidationError as exc:
        raise SetAside("missing_parent", f"Không xác định được phạm vi của bản ghi: {exc}") from None
    if scopes[0] == pusher and scopes[-1] == pusher:  # the usual case
        return pusher
    others = sorted(set(s for s in scopes if s != pusher))
    if others:
        raise SetAside("out_of_scope", f"Nút {pusher} không được ghi bản ghi {model._meta.table_name}/{record_id}: "
                                       f"bản ghi thuộc phạm vi {', '.join(others)} (có thể đã chuyển sang nút khác).")
    return scopes[-1]


# -- handover (sync/scope.py): parents that moved away, and notices that a record left ------------

def check_parent_scope(model: type[SyncedModel], merged: SyncedModel, applied: list[str], pusher: str,
                       record_id: str) -> None:
    """SetAside('out_of_scope') when a pushed record points at a scoped parent the pusher no longer holds.

    E.g. a roll-call mark queued offline at the old holder for a member who was moved to a cell of
    another node: the mark's own scope (the meeting's cell) is still the pusher's, its member is not.
    A change that only tombstones the record is let through (a node may delete its own records).
    """
    if applied == ["deleted_at"] and merged.deleted_at is not None:
        return
    for fk in model_spec(model).scoped_fks:
        target = merged.__data__.get(fk.name)
        if target is None or target == record_id:
            continue
        scope = scope_of(fk.rel_model, target, lambda: _stored_scope(fk.rel_model, target))
        if scope is not None and scope not in ("*", pusher):
            raise SetAside("out_of_scope", f"Nút {pusher} không được ghi bản ghi {model._meta.table_name}/{record_id}: "
                                           f"bản ghi {fk.rel_model._meta.table_name}/{target} mà nó trỏ tới đã "
                                           f"chuyển sang phạm vi {scope} (chuyển chi bộ hoặc bàn giao).")


def _stored_scope(model: type[SyncedModel], record_id: str) -> str | None:
    """The scope of a stored record, or None when it is missing or its own parent is."""
    record = _as_record(model, peek_row(model, record_id))
    if record is None:
        return None
    try:
        return record.sync_scope()
    except ValidationError:
        return None


def _as_record(model: type[SyncedModel], row: dict[str, Any] | None) -> SyncedModel | None:
    """A looked-up row as a model instance, straight into __data__ (only its scope is read)."""
    if row is None:
        return None
    return as_record(model, dict(row))


def apply_left_scope(change: Any) -> bool:
    """Apply a left-scope notice from central's feed (payload key "left"); True when the change was one.

    The notice carries the record's state when it left (e.g. a member's new cell): applying it makes
    this node's own scope rules stop listing and writing the record, which stays as a read-only copy.
    A record this node never had is ignored; a state that cannot be applied here is kept as a dead
    letter (reason 'left_scope') so a person sees it. Never raises: it runs outside the caller's try.
    """
    payload = change.get("payload") if isinstance(change, dict) else None
    if not isinstance(payload, dict) or "left" not in payload:
        return False
    try:
        model, record_id, hlc, payload = check_change_shape(change)
        if not model.select().where(model.id == record_id).exists():
            return True
        origin = change.get("origin") if isinstance(change.get("origin"), str) else "central"
        with in_savepoint():
            apply_change(model, record_id, hlc, payload, origin=origin[:32], log=False)
    except SetAside as refused:
        _left_letter(change, refused.message)
    except (IntegrityError, DataError) as exc:
        _left_letter(change, f"Vi phạm ràng buộc dữ liệu: {str(exc)[:200]}")
    return True


def _left_letter(change: dict, message: str) -> None:
    """Keep a left-scope notice that could not be applied, for the status page."""
    DeadLetter.create(node_id="central", batch_id="left-scope", position=0,
                      table=str(change.get("table") or "")[:64], record_id=str(change.get("record_id") or "")[:36],
                      hlc=str(change.get("hlc") or "")[:64], change_json=json.dumps(change, ensure_ascii=False),
                      reason="left_scope", message=("Bản ghi đã chuyển khỏi phạm vi nút nhưng không cập nhật được: "
                                                    + message)[:500])


def _delete_edit(model: type[SyncedModel], record_id: str, current: dict, cur_stamps: dict[str, str],
                 fields: dict[str, Any], payload: dict[str, Any], who: str) -> list[tuple]:
    """A delete-versus-edit conflict to record (the tombstone stays provisionally; edited values stay in the row)."""
    deleting = "deleted_at" in fields and fields["deleted_at"] is not None
    edits = [c for c in fields if c != "deleted_at"]
    if deleting and current.get("deleted_at") is None:
        seen = payload.get("seen")
        if isinstance(seen, dict):
            unseen = any(s > (seen.get(c) or "") for c, s in cur_stamps.items() if c != "deleted_at")
        else:
            unseen = bool(seen) and any(s > seen for c, s in cur_stamps.items() if c != "deleted_at")
        if unseen:
            return [(model, record_id, "", "delete_edit", who, dict(winner=("deleted", fields["deleted_at"]),
                                                                    loser=("edited", current["hlc"])))]
    if edits and not deleting and current.get("deleted_at") is not None and "deleted_at" not in fields:
        return [(model, record_id, "", "delete_edit", who, dict(
            winner=("deleted", cur_stamps["deleted_at"]),
            loser=("edited", payload.get("base") and max(payload["base"].values(), default="") or "")))]
    return []


def _record_found(found: list[tuple], outcome: Outcome) -> None:
    """Record the conflicts a change brought, now that it is being applied."""
    for model, record_id, column, kind, who, sides in found:
        _record_conflict(model, record_id, column, kind, who, **sides)
        outcome.conflicts += 1


def _duplicates(model: type[SyncedModel], merged: SyncedModel, applied: list[str], who: str) -> int:
    """Record a suspected duplicate for each `sync_unique` column whose value another live record has."""
    found = 0
    for column in model.sync_unique:
        field_obj = model._meta.fields[column]
        if field_obj.column_name not in applied or merged.deleted_at is not None:
            continue
        value = getattr(merged, column)
        if value in (None, ""):
            continue
        other = (model.live().select(model.id).where((field_obj == value) & (model.id != merged.id))
                 .tuples().first())
        if other is None:
            continue
        _record_conflict(model, merged.id, field_obj.column_name, "duplicate", who, winner=(value, ""),
                         loser=(value, ""), other_record_id=other[0])
        found += 1
    return found


def _record_conflict(model: type[SyncedModel], record_id: str, column: str, kind: str, who: str, *,
                     winner: tuple[Any, str], loser: tuple[Any, str], other_record_id: str = "") -> None:
    """Keep both sides of a conflict; an open conflict on the same column is updated, not doubled."""
    table = model._meta.table_name
    existing = (Conflict.select().where((Conflict.table == table) & (Conflict.record_id == record_id)
                                        & (Conflict.column == column) & (Conflict.kind == kind)
                                        & (Conflict.resolved_at.is_null())).first())
    values = dict(winner_json=json.dumps(winner[0], ensure_ascii=False), winner_hlc=winner[1] or "",
                  loser_json=json.dumps(loser[0], ensure_ascii=False), loser_hlc=loser[1] or "",
                  node_id=who[:32], other_record_id=other_record_id)
    if existing is not None:
        Conflict.update(**values).where(Conflict.id == existing.id).execute()
    else:
        Conflict.insert(table=table, record_id=record_id, column=column, kind=kind, created_at=utcnow(),
                        **values).execute()


def in_savepoint():
    """A savepoint for one change inside the batch transaction (its partial writes roll back alone)."""
    return db.atomic()


def apply_record(model: type[SyncedModel], record: dict[str, Any], origin: str, **options: Any) -> bool:
    """Merge a whole record given as `to_wire()` (all columns under the record's own stamp). True if applied.

    For seeding, tests and tools; the sync engine itself applies changes with `apply_change`.
    """
    change = {"table": model._meta.table_name, "record_id": record.get("id"), "hlc": record.get("hlc"),
              "payload": {"fields": {c: v for c, v in record.items() if c not in META_COLUMNS},
                          "owner": record.get("owner") or origin}}
    model_, record_id, hlc, payload = check_change_shape(change)
    with in_savepoint():
        return bool(apply_change(model_, record_id, hlc, payload, origin=origin, **options).applied)
