"""Bookkeeping of the sync protocol that lives with the data but never travels.

`AppliedBatch` makes a push idempotent: central keeps, for every batch it applied, the batch id, the
node, the content hash and the exact answer it gave. A batch sent again (the answer was lost on the
way back) gets the stored answer instead of being applied twice; the same id with other content is
refused. The row is written in the same transaction as the batch's data, so the two cannot disagree.
"""
from __future__ import annotations

from peewee import AutoField, CharField, DateTimeField, IntegerField, TextField

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
    # Which database of the node sent it ("db_id:generation") and the stamp of its last change:
    # a node restored from a backup, or replaced, is recognised by these at hello.
    source = CharField(max_length=80, default="")
    last_hlc = CharField(max_length=64, default="")

    class Meta:
        table_name = "sync_applied_batch"


class DeadLetter(BaseModel):
    """A change this database could not apply, set aside so the changes behind it flow (local, never synced).

    At central: a pushed change refused by a rule, the write policy, its scope or a missing/deleted
    parent; at a field node: a pulled change it could not apply. It is acknowledged to the sender,
    listed with its reason on both status screens, and retried automatically (missing parents) or
    by a person after a fix. `resolved_at` is set when a retry applied it or a person dismissed it.
    """

    id = AutoField()
    node_id = CharField(max_length=32, index=True)
    batch_id = CharField(max_length=36, default="")
    position = IntegerField(default=0)
    table = CharField(max_length=64)
    record_id = CharField(max_length=36, index=True)
    hlc = CharField(max_length=64, default="")
    change_json = TextField()
    reason = CharField(max_length=32)
    message = TextField(default="")
    attempts = IntegerField(default=1)
    created_at = DateTimeField(default=utcnow)
    resolved_at = DateTimeField(null=True)
    resolution = CharField(max_length=200, default="")

    class Meta:
        table_name = "sync_dead_letter"


class Conflict(BaseModel):
    """A value two places changed concurrently, kept for a person to decide (central only, never synced).

    kind: 'field' (both sides changed one column since they last agreed), 'delete_edit' (a record
    deleted on one side and edited on the other) or 'duplicate' (a unique value, such as a party card
    number, entered for two records). Both values are kept; every node shows the same provisional
    winner (the higher stamp); resolving writes the chosen value as a new change that syncs everywhere.
    """

    id = AutoField()
    table = CharField(max_length=64)
    record_id = CharField(max_length=36, index=True)
    column = CharField(max_length=64, default="")
    kind = CharField(max_length=20, default="field")
    winner_json = TextField(default="null")
    winner_hlc = CharField(max_length=64, default="")
    loser_json = TextField(default="null")
    loser_hlc = CharField(max_length=64, default="")
    other_record_id = CharField(max_length=36, default="")
    node_id = CharField(max_length=32, default="")
    created_at = DateTimeField(default=utcnow)
    resolved_at = DateTimeField(null=True)
    resolved_by = CharField(max_length=120, default="")
    resolution = CharField(max_length=200, default="")

    class Meta:
        table_name = "sync_conflict"
