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

from peewee import DataError, IntegrityError

from models import ValidationError, db
from models.rowcache import activated

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
                with activated(db.obj):
                    return _loop(changes, apply_one, careful=False)
        except (IntegrityError, DataError):
            pass  # a statement failed where no change can be blamed: redo the batch row by row
    result = _loop(changes, apply_one, careful=True)
    result.rowwise = True
    return result


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
