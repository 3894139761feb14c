"""Scope: which node a record belongs to, and keeping the change feed right when a cell moves.

Design: a record's scope is computed by its model (`sync_scope()`): '*' for what every node receives
(organisation, cells, rule sets), otherwise the id of the node holding the record's cell. The scope is
written into each `ChangeLog` row when the change is captured, so the pull feed can be filtered with
an index. That stamp goes stale when central hands a cell to another node (`nodes register --cells`):
the cell's members, meetings and attendance were logged for the old holder. `rehome_cells()` repairs
this at central before a pull is served: for every cell whose holder differs from the one its records
were last logged for, it appends a fresh change (same payload and clock stamp, new sequence, new
scope) for every record of the cell, parents first, so the new holder pulls them like any other
change. Which records belong to a cell is found from the foreign keys (any synced model with a path
to `Cell`), so models added later are covered without touching this module.
"""
from __future__ import annotations

from collections import deque

from peewee import ForeignKeyField

from models import SYNCED_MODELS, ChangeLog, SyncState, SyncedModel
from models.base import write_transaction
from models.org import CENTRAL_NODE, Cell

HOME_KEY = "cell_home:{}"


def scoped_models() -> list[type[SyncedModel]]:
    """Synced models whose scope depends on data (not '*'), parents before children."""
    return [m for m in topological_models() if m.sync_scope is not SyncedModel.sync_scope and m is not Cell]


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


def rehome_cells(origin: str = CENTRAL_NODE) -> int:
    """Re-log the records of every cell whose holder changed since they were logged. Return rows logged."""
    logged = 0
    homes = {row.key[len(HOME_KEY.format("")):]: row.value
             for row in SyncState.select().where(SyncState.key.startswith(HOME_KEY.format("")))}
    for cell in Cell.select(Cell.id, Cell.node_id):
        # Records of a cell never handed over were logged for central, the default holder.
        if homes.get(cell.id, CENTRAL_NODE) == cell.node_id:
            continue
        with write_transaction():
            # Another worker may have re-homed this cell while we waited for the lock.
            if SyncState.get_value(HOME_KEY.format(cell.id), CENTRAL_NODE) == cell.node_id:
                continue
            for model in scoped_models():
                query = records_of_cell(model, cell.id)
                if query is None:
                    continue
                for record in query:
                    # The model decides; the foreign-key path only narrows the search.
                    if record.sync_scope() == cell.node_id:
                        ChangeLog.record_state(record, origin=origin)
                        logged += 1
            SyncState.set_value(HOME_KEY.format(cell.id), cell.node_id)
    return logged
