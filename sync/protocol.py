"""The wire format shared by the sync client (field node) and server (central): version, limits,
the canonical content hash, the batch id, and the errors both sides raise.

Design: every limit is a configuration value with a default here (`SYNC_DEFAULTS`), read through
`setting()`, so a deployment can tune them with `CHIBO_SYNC_*` variables and no number is buried in
the code. The content hash is SHA-256 over a canonical JSON form that another client can reproduce
(see docs/sync-protocol.md). Batch ids are derived from the node, the sequence range and the hash, so
a retried batch carries the same id and central can answer it from its idempotency store.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Mapping

PROTOCOL_VERSION = 1
API_PREFIX = "/sync/v1"

# Namespace for batch ids (uuid5): fixed forever, so ids stay stable across releases.
BATCH_NAMESPACE = uuid.UUID("6f1c2f0e-52b4-4c8e-9a57-0c9d3c1b7a11")

SYNC_DEFAULTS: dict[str, int] = {
    # Changes per pushed batch (the design said "about 500"; 2,000 measured faster, see app.py).
    "SYNC_BATCH_SIZE": 2000,
    # Changes per pull page when the client does not ask for fewer, and the most it may ask for.
    "SYNC_PULL_LIMIT": 2000,
    "SYNC_PULL_MAX_LIMIT": 2000,
    # 1: a field node asks for the next pull page while it applies one (central builds it and the link
    # carries it meanwhile); 0: one page at a time.
    "SYNC_PULL_AHEAD": 1,
    # 1: a field node gzips its pushes when central accepts it (a batch of roll-call marks shrinks ~9x,
    # for ~5 ms of the sender thread per 1,000 changes); 0: never (a proxy that mangles them).
    "SYNC_COMPRESS": 1,
    # Central refuses a batch with more changes than this (413).
    "SYNC_MAX_BATCH_CHANGES": 5000,
    # Central refuses a request body larger than this (413).
    "SYNC_MAX_REQUEST_BYTES": 8 * 1024 * 1024,
    # Client timeouts in seconds: connecting, and waiting for an answer (a big batch takes a while).
    "SYNC_CONNECT_TIMEOUT": 10,
    "SYNC_READ_TIMEOUT": 120,
    # A node whose clock is further off than this gets a warning in the handshake.
    "SYNC_MAX_CLOCK_SKEW_MS": 60 * 1000,
    # A node whose device clock is further ahead of central's than this is refused at hello (409
    # clock_drift) until it is fixed; stamps already made are never refused (see models/clock.py).
    "SYNC_MAX_CLOCK_AHEAD_MS": 5 * 60 * 1000,
}


def setting(config: Mapping[str, Any], name: str) -> int:
    """A sync limit from the app config, falling back to its documented default."""
    value = config.get(name)
    return int(value) if value not in (None, "") else SYNC_DEFAULTS[name]


def canonical_json(value: Any) -> bytes:
    """The canonical encoding hashed on both sides: sorted keys, no spaces, UTF-8, no ASCII escapes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def content_hash(changes: list[dict[str, Any]]) -> str:
    """SHA-256 (hex) of a batch's change list in canonical form."""
    return hashlib.sha256(canonical_json(changes)).hexdigest()


def sent_changes_hash(body: Any, raw: bytes) -> str | None:
    """SHA-256 (hex) of the "changes" member of a push exactly as its bytes arrived, or None.

    A field node sends its push as canonical JSON (Batch.canonical_body), so the member's bytes are the
    canonical encoding its content_hash was taken over: hashing them checks the batch without encoding
    it again (7 % of central's apply time, issue 10). Found by rebuilding the small members around it
    from the parsed body; any other layout gives None and the caller hashes the parsed changes."""
    if not isinstance(body, dict) or "changes" not in body or not isinstance(raw, (bytes, bytearray)):
        return None
    try:
        members = {key: canonical_json(key) + b":" + canonical_json(value) for key, value in body.items()
                   if key != "changes"}
    except (TypeError, ValueError):
        return None
    prefix = b"{" + b"".join(members[key] + b"," for key in sorted(members) if key < "changes") + b'"changes":'
    suffix = b"".join(b"," + members[key] for key in sorted(members) if key > "changes") + b"}"
    if len(raw) < len(prefix) + len(suffix) + 2 or not raw.startswith(prefix) or not raw.endswith(suffix):
        return None
    return hashlib.sha256(memoryview(raw)[len(prefix):len(raw) - len(suffix)]).hexdigest()


def batch_id_for(node_id: str, from_seq: int, to_seq: int, digest: str) -> str:
    """A stable batch id: the same node, range and content always give the same id (safe retries)."""
    return str(uuid.uuid5(BATCH_NAMESPACE, f"{node_id}:{from_seq}:{to_seq}:{digest}"))


class SyncError(Exception):
    """A sync run failed; the message is Vietnamese and says what to do. The queue is kept."""

    def __init__(self, message: str, status: int | None = None, code: str = ""):
        """Keep the HTTP status and error code central gave, when there was one."""
        super().__init__(message)
        self.status = status
        self.code = code


class Refusal(Exception):
    """Central refuses a request: HTTP status, a stable error code, a Vietnamese message, details."""

    def __init__(self, status: int, code: str, message: str, **details: Any):
        """A refusal with its status, code, message and any details for the JSON body."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON body of the refusal; no text in it longer than a few hundred characters."""
        return _clip_strings({"error": self.code, "message": self.message, **self.details})


# A refused value may be megabytes long: a refusal names it, never sends it back whole.
MAX_REFUSAL_TEXT = 400


def _clip_strings(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_REFUSAL_TEXT else value[: MAX_REFUSAL_TEXT - 1] + "…"
    if isinstance(value, dict):
        return {k: _clip_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clip_strings(v) for v in value]
    return value
