"""Bookkeeping of the sync protocol that lives with the data but never travels.

`AppliedBatch` makes a push idempotent: central keeps, for every batch it applied, the batch id, the
node, the content hash and the exact answer it gave. A batch sent again (the answer was lost on the
way back) gets the stored answer instead of being applied twice; the same id with other content is
refused. The row is written in the same transaction as the batch's data, so the two cannot disagree.
"""
from __future__ import annotations

from peewee import CharField, DateTimeField, IntegerField, TextField

from .base import BaseModel, utcnow


class AppliedBatch(BaseModel):
    """One pushed batch central applied, with the answer it gave (local to central)."""

    batch_id = CharField(primary_key=True, max_length=36)
    node_id = CharField(max_length=32, index=True)
    content_hash = CharField(max_length=64)
    from_seq = IntegerField()
    to_seq = IntegerField()
    change_count = IntegerField(default=0)
    response_json = TextField()
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "sync_applied_batch"
