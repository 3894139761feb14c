"""Shared fixtures in the flaskr shape: a temporary database per test, `app`, `client`,
`runner`, `auth`, and a small organisation (`org`) with users for each role.

The database is a SQLite file by default; with `CHIBO_TEST_DB=postgres` the app (central) runs on a
fresh PostgreSQL database per test instead (see tests/pgtest.py)."""
from __future__ import annotations

import os

# Cheapest argon2id for the suite (models/users.py); set before the app is imported, kept by node_env.
os.environ.setdefault("CHIBO_TEST_FAST_HASH", "1")

import datetime as dt
import re
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from app import create_app
from models import Cell, Member, Organisation, User, db
from models.meetings import Meeting
from models.rules import seed_rule_sets
from tests import pgtest

PASSWORD = "mat-khau-thu-nghiem"


@contextmanager
def received_from_central():
    """Write on a field node as if the records had arrived from central (lifts the scope guard)."""
    import models.base

    saved = models.base.FIELD_NODE
    models.base.FIELD_NODE = None
    try:
        yield
    finally:
        models.base.FIELD_NODE = saved


def pytest_configure(config):
    """Register the marker of tests that only make sense with central on SQLite."""
    config.addinivalue_line("markers", "sqlite_only: needs central on SQLite (skipped on a PostgreSQL run)")


def pytest_collection_modifyitems(config, items):
    """On a PostgreSQL run, skip the tests marked sqlite_only."""
    if pgtest.enabled():
        skip = pytest.mark.skip(reason="central chạy trên PostgreSQL trong lượt này")
        for item in items:
            if "sqlite_only" in item.keywords:
                item.add_marker(skip)


def pytest_sessionstart(session):
    """On a PostgreSQL run, wait (bounded) for the server before any test starts."""
    if pgtest.enabled():
        pgtest.wait_for_server()
        pgtest.drop_leftovers()


def pytest_sessionfinish(session, exitstatus):
    """Drop the PostgreSQL template database of this run."""
    if pgtest.enabled():
        pgtest.drop_template()


def pytest_report_header(config):
    """Say which database central runs on in this run."""
    return f"central database: {'PostgreSQL ' + pgtest.ADMIN_URL if pgtest.enabled() else 'SQLite'}"


@pytest.fixture(autouse=True)
def _drop_test_databases():
    """Drop the PostgreSQL databases a test made, after everything else of the test is torn down."""
    yield
    if pgtest.enabled():
        pgtest.drop_created()


@pytest.fixture
def database_url(tmp_path):
    """Central's database for this test: a temporary SQLite file, or a fresh PostgreSQL database."""
    if pgtest.enabled():
        return pgtest.new_database()
    return f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture
def app(database_url):
    """A central app on its own temporary database."""
    app = create_app({
        "TESTING": True,
        "SECRET_KEY": "test",
        "SEED_REFERENCE_DATA": False,
        "DATABASE_URL": database_url,
    })
    with app.app_context(), db.connection_context():
        seed_rule_sets()
    yield app
    if not db.is_closed():
        db.close()


@pytest.fixture
def client(app):
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def runner(app):
    """A CLI runner for the app."""
    return app.test_cli_runner()


@dataclass
class Org:
    """The small organisation the tests use."""

    organisation: Organisation
    cell: Cell
    other_cell: Cell
    members: list
    meeting: Meeting


@pytest.fixture
def org(app):
    """Two cells; the first with 8 members (one probationary, one exempted) and a meeting today."""
    with app.app_context(), db.connection_context():
        o = Organisation.create(name="Đảng bộ Thử nghiệm")
        cell = Cell.create(organisation=o.id, code="CB01", name="Chi bộ Một", meeting_day=5)
        other = Cell.create(organisation=o.id, code="CB02", name="Chi bộ Hai", meeting_day=6)
        names = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Phạm Thị Dung",
                 "Hoàng Văn Em", "Võ Thị Giang", "Đặng Văn Hải", "Bùi Thị Khánh"]
        members = []
        for i, name in enumerate(names):
            status = "probationary" if i == 6 else "exempted" if i == 7 else "full"
            members.append(Member.create(cell=cell.id, full_name=name, status=status,
                                         position="bi_thu" if i == 0 else ""))
        Member.create(cell=other.id, full_name="Ngô Văn Khác")
        meeting = Meeting.create(cell=cell.id, held_on=dt.date.today(), starts_at=dt.time(14, 0))
        for username, role, c in [("admin", "admin", None), ("btv", "supervisor", None),
                                  ("bithu1", "secretary", cell), ("bithu2", "secretary", other),
                                  ("dangvien1", "member", cell)]:
            user = User(username=username, role=role, full_name=username, cell=c.id if c else None)
            user.set_password(PASSWORD)
            user.save()
        return Org(o, cell, other, members, meeting)


def csrf_token_from(html: str) -> str:
    """The CSRF token a page carries (hidden input or the body's hx-headers)."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(r'"X-CSRFToken": "([^"]+)"', html)
    assert match, "page carries no CSRF token"
    return match.group(1)


@pytest.fixture
def seeded(app, org):
    """The organisation plus the seeded checklist templates."""
    from models.checklist_seed import seed_checklists

    with app.app_context(), db.connection_context():
        seed_checklists()
    return org


class AuthActions:
    """Log in and out through the real login form, CSRF token included."""

    def __init__(self, client):
        self._client = client
        self.csrf = ""

    def token(self, path: str = "/login") -> str:
        """Fetch a page and return its CSRF token (kept for later posts)."""
        self.csrf = csrf_token_from(self._client.get(path).get_data(as_text=True))
        return self.csrf

    def login(self, username="admin", password=PASSWORD):
        """Post the login form with a fresh CSRF token."""
        token = self.token()
        return self._client.post("/login", data={"username": username, "password": password, "csrf_token": token})

    def logout(self):
        """Post the logout form."""
        return self._client.post("/logout", data={"csrf_token": self.csrf})

    def htmx_post(self, path: str, data=None, **kwargs):
        """POST as htmx does: HX-Request and the CSRF header."""
        headers = {"HX-Request": "true", "X-CSRFToken": self.csrf, **kwargs.pop("headers", {})}
        return self._client.post(path, data=data or {}, headers=headers, **kwargs)


@pytest.fixture
def auth(client):
    """Login helper bound to the test client."""
    return AuthActions(client)
