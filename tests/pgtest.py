"""PostgreSQL for the tests: a fresh database per test, cloned from a schema-only template.

`CHIBO_TEST_DB=postgres` runs the app fixtures, and central in the multi-node tests, on PostgreSQL
(`CHIBO_TEST_PG_URL`, default postgresql://postgres@127.0.0.1:5432/postgres, names the server and
an administrative database). Each test gets its own database named `chibo_t_<pid>_<n>`, made with
`CREATE DATABASE … TEMPLATE` from a template that already holds the schema (much faster than
creating ~25 tables per test) and dropped after the test. Field nodes always stay on SQLite, as in
the field.
"""
from __future__ import annotations

import itertools
import os
import re
import sqlite3
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

ADMIN_URL = os.environ.get("CHIBO_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
_counter = itertools.count(1)
_prefix = f"chibo_t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
_template: str | None = None
_created: list[str] = []


def enabled() -> bool:
    """True when this test run puts central on PostgreSQL."""
    return os.environ.get("CHIBO_TEST_DB", "sqlite").lower() in ("postgres", "postgresql", "pg")


def url_for(name: str) -> str:
    """The URL of database `name` on the test server."""
    parts = urlsplit(ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def _admin():
    """An autocommit connection to the administrative database (CREATE/DROP DATABASE need one)."""
    import psycopg

    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)


def wait_for_server(seconds: float = 30.0) -> None:
    """Wait (bounded) until PostgreSQL accepts connections; fail with a message that says what to do."""
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            with _admin():
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL không trả lời tại {ADMIN_URL} sau {seconds:.0f} giây ({exc}). "
                    "Hãy khởi động PostgreSQL hoặc đặt CHIBO_TEST_PG_URL.") from exc
            time.sleep(0.5)


def drop_leftovers() -> None:
    """Drop test databases left by runs on this machine whose process is gone (killed mid-run)."""
    with _admin() as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'chibo_t_%'")]
        for name in names:
            match = re.match(r"chibo_t_(\d+)_", name)
            if match and not _alive(int(match.group(1))):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _build_template() -> str:
    """Create the schema-only template database once per test session."""
    global _template
    if _template is None:
        from models import ALL_MODELS, db, init_db
        from models.migrations import db_up

        name = f"{_prefix}_tpl"
        with _admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        database = init_db(url_for(name))
        with database.connection_context():
            db_up(ALL_MODELS)
        database.close()
        db.initialize(None)
        _template = name
    return _template


def new_database() -> str:
    """A fresh database with the app's schema; return its URL. Dropped by `drop_created()`."""
    template = _build_template()
    name = f"{_prefix}_{next(_counter)}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    _created.append(name)
    return url_for(name)


def drop_created() -> None:
    """Drop the databases made since the last call (closing any connection left open)."""
    if not _created:
        return
    with _admin() as conn:
        while _created:
            conn.execute(f'DROP DATABASE IF EXISTS "{_created.pop()}" WITH (FORCE)')


def drop_template() -> None:
    """Drop the template at the end of the session."""
    global _template
    drop_created()
    if _template is not None:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{_template}" WITH (FORCE)')
        _template = None


def query(url: str, sql: str, *args) -> list[tuple]:
    """Run a read-only query written for SQLite (`?` placeholders) against either kind of database."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(f"file:{url[len('sqlite:///'):]}?mode=ro", uri=True) as conn:
            return conn.execute(sql, args).fetchall()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(row) for row in conn.execute(re.sub(r"\?", "%s", sql), args).fetchall()]


def tables(url: str) -> list[str]:
    """The app's table names in a database."""
    if url.startswith("sqlite:///"):
        return [r[0] for r in query(url, "SELECT name FROM sqlite_master WHERE type='table' "
                                         "AND name NOT LIKE 'sqlite_%'")]
    return [r[0] for r in query(url, "SELECT table_name FROM information_schema.tables "
                                     "WHERE table_schema='public' AND table_type='BASE TABLE'")]


def columns(url: str, table: str) -> set[str]:
    """The column names of one table."""
    if url.startswith("sqlite:///"):
        return {r[1] for r in query(url, f'PRAGMA table_info("{table}")')}
    return {r[0] for r in query(url, "SELECT column_name FROM information_schema.columns "
                                     "WHERE table_schema='public' AND table_name=?", table)}
