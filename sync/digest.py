"""Checksums of a node's scope, per table, to prove that a node and central agree after a reconcile.

Design: after a restore on either side (or on demand, `flask sync --verify`) the node asks central
for the digest of its scope — per synced table, the count of records and a SHA-256 over the sorted
`id:hlc` pairs — and computes the same locally. A table that differs is compared record by record
(`GET /sync/v1/digest?table=T` lists central's ids and stamps): what central lacks or has older is
queued again in the node's outbox as whole records, what the node lacks is pulled again from the
start of the feed. The check repeats until both agree (bounded), and the outcome is kept for the
status screens. A record's `hlc` is the newest of its column stamps, the same on both sides once
they converged, so equal digests mean equal data.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

from models import SYNCED_MODELS, SyncedModel
from models.org import Cell

from .scope import path_to_cell


def scoped_rows(model: type[SyncedModel], node_id: str) -> Iterable[tuple[str, str]]:
    """(id, hlc) of every record of `model` in the node's scope ('*' or the node), tombstones included."""
    if model.sync_scope is SyncedModel.sync_scope:
        yield from model.select(model.id, model.hlc).tuples()
        return
    path = path_to_cell(model) if model is not Cell else None
    if path is not None and _scope_follows_cell(model):
        query = model.select(model.id, model.hlc)
        for fk in path[:-1]:
            query = query.join(fk.rel_model, on=(fk == fk.rel_model._meta.primary_key))
        last = path[-1]
        query = query.join(Cell, on=(last == Cell.id)).where(Cell.node_id == node_id)
        yield from query.tuples()
        return
    for record in model.select():
        try:
            scope = record.sync_scope()
        except Exception:  # noqa: BLE001 - a record whose parent is missing is simply not in scope
            continue
        if scope in ("*", node_id):
            yield record.id, record.hlc


def _scope_follows_cell(model: type[SyncedModel]) -> bool:
    """True when the model says its scope is its cell's holder (no other rule, no nullable link)."""
    path = path_to_cell(model)
    return bool(path) and not any(fk.null for fk in path) and getattr(model, "scope_follows_cell", True)


def table_digest(rows: Iterable[tuple[str, str]]) -> dict[str, object]:
    """Count and SHA-256 over sorted `id:hlc` lines."""
    pairs = sorted(rows)
    digest = hashlib.sha256("\n".join(f"{i}:{h}" for i, h in pairs).encode()).hexdigest()
    return {"count": len(pairs), "hash": digest}


def scope_digest(node_id: str) -> dict[str, dict[str, object]]:
    """The digest of every synced table within the node's scope."""
    return {table: table_digest(scoped_rows(model, node_id)) for table, model in sorted(SYNCED_MODELS.items())}


def scope_ids(table: str, node_id: str) -> dict[str, str]:
    """id -> hlc of one table within the node's scope."""
    model = SYNCED_MODELS[table]
    return dict(scoped_rows(model, node_id))
