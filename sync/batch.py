"""Applying a batch of changes (a pushed batch at central, a pulled page at a field node) at speed.

Design (issue 10): the merge rules stay those of `apply_change`, change by change and in order; what
changes is the cost of each step. The batch runs with a `RowCache` (models/rowcache.py) active: the
rows it touches are read once per table, lookups are answered from memory, and the writes are
flushed with one `executemany` per table at the end, all inside the caller's one transaction.
Without a savepoint per change a failing database statement cannot be pinned on one change, so
that case (rare: the checks before a write refuse what the database would) is handled by rolling
the attempt back to its savepoint and applying the batch again row by row, each change in its own
savepoint, exactly as before the speed-up. Both ways give the same tables, change log, conflicts
and dead letters (tests/test_sync_batch.py compares them); `CHIBO_SYNC_APPLY=rowwise` or
`batch.ROWWISE = True` forces the row-by-row way (tests, benchmarks, a suspected fault in the field).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from peewee import DataError, ForeignKeyField, IntegrityError

from models import SYNCED_MODELS, AuditEntry, User, ValidationError, db
from models.rowcache import FlushFailed, activated

from .merge import Outcome, SetAside, in_savepoint

ROWWISE = os.environ.get("CHIBO_SYNC_APPLY", "") == "rowwise"


@dataclass
class BatchResult:
    """What applying a batch did: the outcome of each applied change and the changes refused."""

    outcomes: list[tuple[int, Outcome | None]]
    refused: list[tuple[int, Any, SetAside]]
    rowwise: bool = False


ApplyOne = Callable[[int, Any], "Outcome | None"]


def apply_batch(changes: list[Any], apply_one: ApplyOne) -> BatchResult:
    """Apply every change with `apply_one(index, change)` (inside the caller's write transaction)."""
    if not ROWWISE:
        try:
            with db.atomic():  # a savepoint: a failed attempt leaves nothing behind
                with activated(db.obj) as cache:
                    preload(cache, changes)
                    return _loop(changes, apply_one, careful=False)
        except (IntegrityError, DataError, FlushFailed):
            pass  # a buffered write failed and no change can be blamed: redo the batch row by row
    result = _loop(changes, apply_one, careful=True)
    result.rowwise = True
    return result


def preload(cache, changes: list[Any]) -> None:
    """Read what the batch will look at, one query per table: its records, the records they point to
    (and what those point to: a mark's meeting's cell decides its scope), the records audit rows describe."""
    wanted: dict[type, set] = {}

    def want(model, record_id: Any) -> None:
        if isinstance(record_id, str) and record_id:
            wanted.setdefault(model, set()).add(record_id)

    for change in changes:
        if not isinstance(change, dict):
            continue
        model = SYNCED_MODELS.get(change.get("table"))
        payload = change.get("payload")
        if model is None or not isinstance(payload, dict) or not isinstance(payload.get("fields"), dict):
            continue
        fields = payload["fields"]
        want(model, change.get("record_id"))
        for fk in _foreign_keys(model):
            want(fk.rel_model, fields.get(fk.column_name))
        want(User, payload.get("by"))
        if model is AuditEntry and fields.get("table") in SYNCED_MODELS:
            want(SYNCED_MODELS[fields["table"]], fields.get("record_id"))
    loaded: set = set()
    for _level in range(3):
        for model, ids in list(wanted.items()):
            cache.load(model, ids)
        more: dict[type, set] = {}
        for model, ids in wanted.items():
            rows = cache.rows.get(model._meta.table_name, {})
            for record_id in ids:
                row = rows.get(record_id)
                if row is None or (model, record_id) in loaded:
                    continue
                loaded.add((model, record_id))
                for fk in _foreign_keys(model):
                    target = row.get(fk.name)
                    if isinstance(target, str) and target not in cache.rows.get(fk.rel_model._meta.table_name, {}):
                        more.setdefault(fk.rel_model, set()).add(target)
        if not more:
            return
        wanted = more


_FKS: dict[type, list] = {}


def _foreign_keys(model) -> list:
    """The model's foreign keys (cached)."""
    if model not in _FKS:
        _FKS[model] = [f for f in model._meta.sorted_fields if isinstance(f, ForeignKeyField)]
    return _FKS[model]


def _loop(changes: list[Any], apply_one: ApplyOne, careful: bool) -> BatchResult:
    """Apply the changes in order; refusals are collected (dead letters are the caller's to write)."""
    result = BatchResult([], [])
    for index, change in enumerate(changes):
        try:
            if careful:
                with in_savepoint():
                    outcome = apply_one(index, change)
            else:
                outcome = apply_one(index, change)
        except SetAside as refused:
            result.refused.append((index, change, refused))
            continue
        except ValidationError as exc:
            result.refused.append((index, change, SetAside("invalid", f"Vi phạm quy tắc: {exc}")))
            continue
        except (IntegrityError, DataError) as exc:
            if not careful:
                raise
            result.refused.append((index, change, SetAside("constraint",
                                                           f"Vi phạm ràng buộc dữ liệu: {str(exc)[:200]}")))
            continue
        result.outcomes.append((index, outcome))
    return result
