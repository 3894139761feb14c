"""The sync engine: hub-and-spoke replication between field nodes and central.

Layout: `protocol` (wire format, limits, errors), `outbox` (what a field node still has to push),
`scope` (which node a record belongs to; re-homing a cell's records), `server` (central: handshake,
apply a pushed batch, serve the pull feed) and `client` (field node: `run_sync`). The engine knows
the models and `requests`; it never imports blueprints, templates or Flask's request objects, so the
CLI, a web button, a timer and the tests all drive the same functions. See docs/sync-protocol.md.
"""
from __future__ import annotations

from .client import SyncReport, run_sync
from .protocol import Refusal, SyncError

__all__ = ["Refusal", "SyncError", "SyncReport", "run_sync"]
