"""Field nodes known to central, with a hashed sync token. Local to central: never synced."""
from __future__ import annotations

import hashlib
import hmac
import secrets

from peewee import BigIntegerField, CharField, DateTimeField, IntegerField, TextField

from .base import BaseModel, utcnow


def hash_token(token: str) -> str:
    """SHA-256 of a token (tokens are long random strings, so a fast hash is enough)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Node(BaseModel):
    """A registered field node: its id, name, token hash and what it last told us."""

    id = CharField(primary_key=True, max_length=32)
    name = CharField(max_length=200, default="")
    token_hash = CharField(max_length=64)
    created_at = DateTimeField(default=utcnow)
    revoked_at = DateTimeField(null=True)
    last_seen_at = DateTimeField(null=True)
    last_push_at = DateTimeField(null=True)
    last_pull_at = DateTimeField(null=True)
    app_version = CharField(max_length=40, default="")
    schema_version = IntegerField(default=0)
    # 64-bit: a clock a month off is 2.6e9 ms, past a 32-bit integer (PostgreSQL `integer`).
    clock_skew_ms = BigIntegerField(default=0)
    notes = TextField(default="")

    @classmethod
    def issue_token(cls) -> str:
        """A new random token (shown once, stored only as a hash)."""
        return secrets.token_urlsafe(32)

    @classmethod
    def authenticate(cls, token: str) -> "Node | None":
        """The active node this bearer token belongs to, or None."""
        if not token:
            return None
        digest = hash_token(token)
        node = cls.get_or_none(cls.token_hash == digest)
        if node is None or node.revoked_at is not None:
            return None
        return node if hmac.compare_digest(node.token_hash, digest) else None
