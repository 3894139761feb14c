"""What the sync status screens show, as plain functions (views and the CLI only format them).

Field node: when the last sync succeeded, the last error, how many changes wait to be pushed, where
the push and pull positions stand. Central: per registered node, when it was last seen, pushed and
pulled, its clock skew and versions, and how many batches it has had applied.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from peewee import fn

import json

from models import Node, SyncState
from models.base import utcnow
from models.sync_state import AppliedBatch, Conflict, DeadLetter

from .outbox import LAST_ERROR, LAST_ERROR_AT, LAST_SUCCESS, PULL_CURSOR, PULL_FULL, pending_count, pushed_seq


@dataclass
class FieldStatus:
    """The field node's sync state."""

    last_success: dt.datetime | None
    last_error: str
    last_error_at: dt.datetime | None
    pending: int
    pushed_seq: int
    pull_cursor: int
    # What central set aside of this node's changes (as central said at the last hello).
    central_dead_letters: list = None
    # Changes from central this node could not apply (kept here, retried after every pull).
    local_dead_letters: list = None
    reconcile_note: str = ""
    verify_result: str = ""
    # A rebuild from central (a new or restored node) stopped between pages: the node's data is partial.
    rebuilding: bool = False

    @property
    def rebuild_note(self) -> str:
        """What to tell the secretary while a rebuild from central is unfinished ("" otherwise)."""
        if not self.rebuilding:
            return ""
        return ("Việc tải lại dữ liệu của nút từ trung tâm chưa xong (dừng ở số "
                f"{self.pull_cursor}): dữ liệu trên máy có thể chưa đầy đủ. Hãy đồng bộ lại khi có mạng; "
                "nút sẽ tải tiếp từ chỗ đã dừng.")

    @property
    def error_is_current(self) -> bool:
        """True when the last run failed (the error is newer than the last success)."""
        if not self.last_error or self.last_error_at is None:
            return False
        return self.last_success is None or self.last_error_at > self.last_success


def _when(key: str) -> dt.datetime | None:
    """A stored ISO timestamp, or None."""
    value = SyncState.get_value(key)
    try:
        return dt.datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def field_status(node_id: str) -> FieldStatus:
    """The sync state of this field node."""
    return FieldStatus(
        last_success=_when(LAST_SUCCESS),
        last_error=SyncState.get_value(LAST_ERROR, "") or "",
        last_error_at=_when(LAST_ERROR_AT),
        pending=pending_count(node_id),
        pushed_seq=pushed_seq(),
        pull_cursor=int(SyncState.get_value(PULL_CURSOR, "0") or 0),
        central_dead_letters=_json_list(SyncState.get_value("central_dead_letters", "[]")),
        local_dead_letters=list(DeadLetter.select().where((DeadLetter.node_id == "central")
                                                          & DeadLetter.resolved_at.is_null())
                                .order_by(DeadLetter.id.desc()).limit(50)),
        reconcile_note=SyncState.get_value("reconcile_note", "") or "",
        verify_result=SyncState.get_value("verify_result", "") or "",
        rebuilding=SyncState.get_value(PULL_FULL, "0") == "1",
    )


def _json_list(text: str | None) -> list:
    """A stored JSON list, or [] when missing or unreadable."""
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def ago_in_words(moment: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """'vừa xong', '5 phút trước', '3 giờ trước', '2 ngày trước' (moment in naive UTC)."""
    if moment is None:
        return "chưa lần nào"
    seconds = int(((now or utcnow()) - moment).total_seconds())
    if seconds < 60:
        return "vừa xong"
    for unit_seconds, word in ((86400, "ngày"), (3600, "giờ"), (60, "phút")):
        if seconds >= unit_seconds:
            return f"{seconds // unit_seconds} {word} trước"
    return "vừa xong"


def skew_in_words(skew_ms: int) -> str:
    """A clock skew for people: 'nhanh 2 phút 5 giây', 'chậm 3 giây', 'khớp'."""
    seconds = abs(int(skew_ms)) // 1000
    if seconds == 0:
        return "khớp"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours} giờ" if hours else "", f"{minutes} phút" if minutes else "", f"{seconds} giây" if seconds else ""]
    return ("nhanh " if skew_ms > 0 else "chậm ") + " ".join(p for p in parts if p)


@dataclass
class NodeRow:
    """One registered node as the central status screen shows it."""

    node: Node
    batches: int
    last_batch_at: dt.datetime | None
    dead_letters: int = 0


def node_overview() -> list[NodeRow]:
    """Every registered node with its applied-batch count, by id."""
    stats = {row.node_id: (row.n, row.last) for row in
             AppliedBatch.select(AppliedBatch.node_id, fn.COUNT(AppliedBatch.batch_id).alias("n"),
                                 fn.MAX(AppliedBatch.applied_at).alias("last"))
             .group_by(AppliedBatch.node_id)}
    letters = {row.node_id: row.n for row in
               DeadLetter.select(DeadLetter.node_id, fn.COUNT(DeadLetter.id).alias("n"))
               .where(DeadLetter.resolved_at.is_null()).group_by(DeadLetter.node_id)}
    rows = []
    for node in Node.select().order_by(Node.id):
        count, last = stats.get(node.id, (0, None))
        if isinstance(last, str):
            last = dt.datetime.fromisoformat(last)
        rows.append(NodeRow(node, count, last, letters.get(node.id, 0)))
    return rows


def open_conflicts():
    """Conflicts waiting for a person at central, oldest first."""
    return Conflict.select().where(Conflict.resolved_at.is_null()).order_by(Conflict.id)


def open_dead_letters():
    """Dead letters nobody has resolved yet, oldest first."""
    return DeadLetter.select().where(DeadLetter.resolved_at.is_null()).order_by(DeadLetter.id)
