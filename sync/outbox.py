"""Reading the outbox on a field node: what it still has to push, cut into batches.

Design: the outbox is `ChangeLog` itself. A field node pushes only the rows it originated
(`origin == own node id`); rows it received from central carry central's origin and are never sent
back. `SyncState['pushed_seq']` is the highest sequence central has acknowledged; it moves only after
central answered 200 for a batch, so a failed or lost push leaves the queue exactly as it was.
Batches keep the outbox order, which puts every parent before its children (a record is always
saved before anything can point to it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from models import ChangeLog, SyncState

from .protocol import batch_id_for, canonical_json
from .scope import write_transaction

PUSHED_SEQ = "pushed_seq"
PULL_CURSOR = "pull_cursor"
# "1" while a pull that began at cursor 0 (a fresh, replaced or restored node) has not reached the end of
# the feed: every page of it asks for the node's own records too (`full=1`), not only the first.
PULL_FULL = "pull_full"
LAST_SUCCESS = "last_sync_success_at"
LAST_ERROR = "last_sync_error"
LAST_ERROR_AT = "last_sync_error_at"


@dataclass
class Batch:
    """One push batch as it goes on the wire."""

    batch_id: str
    node_id: str
    from_seq: int
    to_seq: int
    changes: list[dict[str, Any]] = field(default_factory=list)
    content_hash: str = ""
    schema_version: int = 0
    # canonical_json(changes), kept from hashing so the body is built without encoding them again
    encoded_changes: bytes = field(default=b"", repr=False, compare=False)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body of `POST /sync/v1/push`."""
        return {
            "batch_id": self.batch_id,
            "node_id": self.node_id,
            "schema_version": self.schema_version,
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "content_hash": self.content_hash,
            "changes": self.changes,
        }

    def canonical_body(self, **extra: Any) -> bytes:
        """canonical_json() of `to_wire()` plus `extra`, byte for byte, reusing the encoded changes.

        canonical_json sorts the keys and separates with "," and ":"; each value is encoded on its
        own the same way, so the object can be assembled from its members' encodings.
        """
        wire = self.to_wire()
        wire.update(extra)
        encoded = self.encoded_changes or canonical_json(self.changes)
        return b"{" + b",".join(canonical_json(key) + b":" + (encoded if key == "changes" else canonical_json(value))
                                for key, value in sorted(wire.items())) + b"}"


def pushed_seq() -> int:
    """The highest outbox sequence central has acknowledged."""
    return int(SyncState.get_value(PUSHED_SEQ, "0") or 0)


def pending_query(node_id: str, after_seq: int | None = None):
    """Outbox rows this node originated and central has not acknowledged yet, in order."""
    after = pushed_seq() if after_seq is None else after_seq
    return (ChangeLog.select()
            .where((ChangeLog.origin == node_id) & (ChangeLog.seq > after))
            .order_by(ChangeLog.seq))


def pending_count(node_id: str) -> int:
    """How many changes are waiting to be pushed."""
    return pending_query(node_id).count()


def next_batch(node_id: str, schema_version: int, size: int, max_bytes: int | None = None,
               after_seq: int | None = None) -> Batch | None:
    """The next batch to push (at most `size` changes and `max_bytes` of JSON), or None when done."""
    rows = (pending_query(node_id, after_seq)
            .select(ChangeLog.seq, ChangeLog.table, ChangeLog.record_id, ChangeLog.hlc, ChangeLog.payload)
            .limit(size).tuples())  # plain tuples: no model instance per row
    rows = list(rows)
    if not rows:
        return None
    loads = json.loads
    changes = [{"table": table, "record_id": record_id, "hlc": hlc, "payload": loads(payload)}
               for _seq, table, record_id, hlc, payload in rows]
    while True:
        encoded = canonical_json(changes)
        digest = hashlib.sha256(encoded).hexdigest()  # protocol.content_hash(changes), encoded once
        from_seq, to_seq = rows[0][0], rows[len(changes) - 1][0]
        batch = Batch(batch_id=batch_id_for(node_id, from_seq, to_seq, digest), node_id=node_id,
                      from_seq=from_seq, to_seq=to_seq, changes=changes, content_hash=digest,
                      schema_version=schema_version, encoded_changes=encoded)
        # Central caps the request size: halve the batch until it fits rather than fail forever.
        if not max_bytes or len(changes) == 1 or len(batch.canonical_body()) <= max_bytes:
            return batch
        changes = changes[: len(changes) // 2]


def acknowledge(to_seq: int) -> None:
    """Record that central applied everything up to `to_seq` (never moves backwards)."""
    with write_transaction():
        if to_seq > pushed_seq():
            SyncState.set_value(PUSHED_SEQ, str(to_seq))
