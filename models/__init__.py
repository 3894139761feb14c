"""Models: peewee tables, the synced-record base, and the domain rules as plain functions.

`ALL_MODELS` lists every table in creation order (parents before children); `init_db()` binds the
proxy to SQLite (default) or PostgreSQL from a URL.

SQLite runs in WAL mode with a busy timeout, and every transaction starts with `BEGIN IMMEDIATE`:
a transaction that begins as a reader and later writes cannot wait for the write lock (SQLite answers
"database is locked" at once to avoid a deadlock), whereas one that takes the lock up front waits
up to the busy timeout. So a roll-call tap during a long sync waits milliseconds instead of failing.
"""
from __future__ import annotations

from pathlib import Path

from peewee import SqliteDatabase
from playhouse.db_url import parse

from .base import SYNCED_MODELS, ChangeLog, HlcState, SyncState, SyncedModel, ValidationError, db
from .checklists import Answer, AnswerSet, ChecklistTemplate, TemplateItem, TemplateSection, TemplateVersion
from .clock import clock
from .audit import AuditEntry
from .meetings import Attendance, Meeting
from .meeting_record import Contribution, MeetingGuest, Task, TaskReview, Vote
from .minutes import MinutesRevision
from .planning import Orientation
from .members import Member, MemberStatusChange, Position
from .nodes import Node
from .org import Cell, Organisation
from .roster import ImportJob
from .rules import RuleSet
from .sync_state import AppliedBatch, Conflict, DeadLetter
from .supervision import (AnnualInspection, ModelMeeting, ModelMeetingObserver, Recommendation,
                          RecommendationEvent, SupervisionAssignment, SupervisionVisit)
from .consolidation import AnnualRating, ReportCellYear, ReportJob, ReportMeeting, ReportMonth, ReportState
from .supervision_report import ReportRecommendation, ReportVisit
from .users import KnownAddress, LoginAttempt, User, UserSession

ALL_MODELS = [
    ChangeLog, SyncState, HlcState, Node, AppliedBatch, DeadLetter, Conflict,
    Organisation, Cell, RuleSet, Member, User, Meeting, Attendance,
    MemberStatusChange, Position, AuditEntry, LoginAttempt, KnownAddress, UserSession, ImportJob,
    ChecklistTemplate, TemplateVersion, TemplateSection, TemplateItem, AnswerSet, Answer,
    MeetingGuest, Contribution, Vote, Task, TaskReview, MinutesRevision, Orientation,
    # Supervision (issue 11): plan, visits, recommendations and their events, inspections, model meetings.
    SupervisionAssignment, SupervisionVisit, Recommendation, RecommendationEvent, AnnualInspection,
    ModelMeeting, ModelMeetingObserver,
    ReportMeeting, ReportCellYear, ReportMonth, ReportState, ReportJob, AnnualRating, ReportRecommendation,
    ReportVisit,
]


def _skip_prefix_indexes(models) -> None:
    """Don't index a foreign key on its own when a composite index of the model starts with it.

    The composite index answers every lookup by that column (SQLite and PostgreSQL use a leading
    column), while a second index costs each write: sync applies tens of thousands of rows in a go.
    """
    for model in models:
        leading = {names[0] for names, _unique in getattr(model._meta, "indexes", ()) if len(names) > 1}
        for field in model._meta.sorted_fields:
            if field.index and not field.unique and field.name in leading:
                field.index = False


_skip_prefix_indexes(ALL_MODELS)


def _sqlite_adapters() -> None:
    """Store dates and times in SQLite as Python's default adapters do (`isoformat`, a space before the time).

    Registered explicitly: the defaults are deprecated since Python 3.12; and a C-level method call
    instead of a Python function per value (a synced row has two or three timestamps)."""
    import datetime as dt
    import sqlite3
    from operator import methodcaller

    sqlite3.register_adapter(dt.datetime, methodcaller("isoformat", " "))
    sqlite3.register_adapter(dt.date, methodcaller("isoformat"))


_sqlite_adapters()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "synchronous": "normal",
    "cache_size": -16000,
    # Checkpoint the WAL every ~40 MB instead of every ~4 MB: an index page written by many commits in
    # a row (a synced batch touches pages all over each index) is copied back to the database once, not
    # once per few batches. Measured on a batch apply: 16k -> 26k rows/s for SQLite itself (issue 10).
    "wal_autocheckpoint": 10000,
}


# A served node keeps its connections between requests (`pooled`): a new one costs the page cache
# (SQLite re-reads index pages per request) or a server process (PostgreSQL). Measured on a push of
# 500 changes a request: 20 % of central's apply time went to reconnecting (issue 10).
POOL = {"max_connections": 32, "stale_timeout": 600, "timeout": 10}


# A PostgreSQL host that stops answering (powered off, a dropped VPN, a firewall that eats packets)
# must fail a request within seconds, not hang it until the kernel gives up on TCP (minutes to hours):
# a bound on connecting, and keepalives that notice a dead peer under a running query (~60 s).
PG_CONNECTION = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                 "keepalives_count": 3}


def make_database(url: str, pooled: bool = False):
    """A peewee database for a `sqlite:///path` or `postgresql://…` URL (with a connection pool if `pooled`)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        options = dict(pragmas=SQLITE_PRAGMAS, check_same_thread=False,
                       timeout=SQLITE_PRAGMAS["busy_timeout"] / 1000, lock_type="IMMEDIATE")
        if pooled:
            from playhouse.pool import PooledSqliteDatabase

            # The pool's `timeout` is its wait for a free connection; SQLite's busy timeout is the pragma.
            return PooledSqliteDatabase(path, **POOL, **{k: v for k, v in options.items() if k != "timeout"})
        return SqliteDatabase(path, **options)
    if url.startswith(("postgresql://", "postgres://")):
        from playhouse.postgres_ext import PooledPsycopg3Database, Psycopg3Database

        params = {**PG_CONNECTION, **parse(url)}  # the URL's own query parameters win
        name = params.pop("database")
        return PooledPsycopg3Database(name, **POOL, **params) if pooled else Psycopg3Database(name, **params)
    raise ValueError(f"CHIBO_DATABASE_URL không được hỗ trợ: {url!r} (dùng sqlite:/// hoặc postgresql://)")


def init_db(url: str, pooled: bool = False):
    """Bind the shared proxy to the database at `url` and return it."""
    database = make_database(url, pooled)
    db.initialize(database)
    return database


__all__ = [
    "ALL_MODELS", "Answer", "Contribution", "MeetingGuest", "MinutesRevision", "Orientation", "Task", "TaskReview", "Vote", "AnswerSet", "ChecklistTemplate", "TemplateItem", "TemplateSection", "TemplateVersion", "SYNCED_MODELS", "Attendance", "AuditEntry", "Cell", "LoginAttempt",
    "MemberStatusChange", "Position", "ChangeLog", "Meeting", "Member", "Node",
    "Organisation", "RuleSet", "SyncState", "SyncedModel", "User", "ValidationError", "clock", "db",
    "init_db", "make_database",
]
