"""A served node keeps its database connections between requests (issue 10): central on PostgreSQL.

`python app.py` serves with a connection pool; without it every request started a PostgreSQL server
process (and, on SQLite, a cold page cache). PostgreSQL counts the sessions made to a database, so
forty page requests must not make forty sessions.
"""
from __future__ import annotations

import pytest
import requests

from tests import pgtest
from tests.test_sync_integration import PASSWORD, SETUP_CENTRAL, Server, free_port, node_env, run

pytestmark = pytest.mark.skipif(not pgtest.enabled(), reason="the session count is PostgreSQL's")


def sessions(url: str) -> int:
    """Sessions established so far to the database of `url` (PostgreSQL 14+)."""
    name = url.rsplit("/", 1)[-1]
    return pgtest.query(pgtest.ADMIN_URL, "SELECT sessions FROM pg_stat_database WHERE datname = %s", name)[0][0]


def test_forty_requests_reuse_a_few_connections(tmp_path):
    central = node_env(tmp_path, "central", "central", free_port())
    run(central, "-c", SETUP_CENTRAL, PASSWORD)
    server = Server(central, tmp_path / "central.log")
    try:
        before = sessions(central["CHIBO_DATABASE_URL"])
        with requests.Session() as browser:
            for _ in range(40):
                assert browser.get(f"{server.url}/login", timeout=10).status_code == 200
        made = sessions(central["CHIBO_DATABASE_URL"]) - before
    finally:
        server.stop()
    # waitress serves with 8 threads: at most one connection each (the pool hands them back).
    assert made <= 8, f"{made} sessions for 40 requests"
