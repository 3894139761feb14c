"""The sync engine: hub-and-spoke replication between field nodes and central.

Layout: `protocol` (wire format, limits, errors), `outbox` (what a field node still has to push),
`scope` (which node a record belongs to; re-homing a cell's records), `server` (central: handshake,
apply a pushed batch, serve the pull feed) and `client` (field node: `run_sync`). The engine knows
the models and `requests`; it never imports blueprints, templates or Flask's request objects, so the
CLI, a web button, a timer and the tests all drive the same functions. See docs/sync-protocol.md.
`run_sync` as exported here is the client's run under the node's one-sync-at-a-time lock
(`scheduler`), so the CLI, the button and the timer never sync at the same time, even from
different processes.
"""
from __future__ import annotations

from .client import SyncReport
from .protocol import Refusal, SyncError
from .scheduler import SyncBusy
from .scheduler import run_sync_exclusive as run_sync

__all__ = ["Refusal", "SyncBusy", "SyncError", "SyncReport", "run_sync"]
