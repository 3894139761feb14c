"""A served node keeps its database connections between requests (issue 10): central on PostgreSQL.

`python app.py` serves with a connection pool; without it every request started a PostgreSQL server
process (and, on SQLite, a cold page cache). PostgreSQL counts the sessions made to a database, so
forty page requests must not make forty sessions. A pooled connection the server ended (a restart,
the OOM killer, `pg_terminate_backend`) is replaced at checkout, not served: peewee 4.5's pool checks
an idle connection with a `SELECT 1` before handing it out (~0.1 ms on loopback, well under 1 % of a
push; a socket poll in its place was measured at 3 µs and not kept, to keep the pool peewee's own).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from models.migrations import SCHEMA_VERSION
from tests import pgtest
from tests.test_sync_integration import PASSWORD, SETUP_CENTRAL, Server, free_port, login, node_env, run

pytestmark = pytest.mark.skipif(not pgtest.enabled(), reason="PostgreSQL's sessions and pool")


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


def backends(url: str) -> int:
    """Sessions open right now to the database of `url` (the served central's pooled connections)."""
    name = url.rsplit("/", 1)[-1]
    return pgtest.query(pgtest.ADMIN_URL, "SELECT count(*) FROM pg_stat_activity WHERE datname = ?", name)[0][0]


def test_pooled_connections_killed_by_postgresql_are_replaced_not_served(tmp_path):
    """After PostgreSQL ends the pooled connections (as a restart does), the next requests all succeed.

    Sync calls a field node makes (hello, pull), the login form, a logged-in page and a login itself."""
    central = node_env(tmp_path, "central", "central", free_port())
    url = central["CHIBO_DATABASE_URL"]
    run(central, "-c", SETUP_CENTRAL, PASSWORD)
    registered = run(central, "nodes", "register", "doi-1", "--name", "Đội số 1", "--cells", "CB02")
    token = registered.stdout.strip().splitlines()[-1]
    server = Server(central, tmp_path / "central.log")
    try:
        browser, _csrf = login(server.url, "admin")
        cookies = browser.cookies.get_dict()
        bearer = {"Authorization": f"Bearer {token}"}

        def call(kind: str) -> str | None:
            """Make one request of this kind; None when it succeeded with the right content, else what went wrong."""
            if kind == "hello":
                body = {"node_id": "doi-1", "app_version": "0.1.0", "schema_version": SCHEMA_VERSION,
                        "hlc": f"{int(time.time() * 1000):015d}:000001:doi-1", "wall_ms": int(time.time() * 1000)}
                response = requests.post(f"{server.url}/sync/v1/hello", json=body, headers=bearer, timeout=10)
                ok = response.status_code == 200 and response.json()["schema_version"] == SCHEMA_VERSION
            elif kind == "pull":
                response = requests.get(f"{server.url}/sync/v1/pull?cursor=0", headers=bearer, timeout=10)
                changes = response.json()["changes"] if response.status_code == 200 else []
                ok = any(c["table"] == "organisation" for c in changes)
            elif kind == "home":
                response = requests.get(f"{server.url}/", cookies=cookies, timeout=10)
                ok = response.status_code == 200 and "Chi bộ Văn phòng" in response.text
            else:
                response = requests.get(f"{server.url}/login", timeout=10)
                ok = response.status_code == 200 and 'name="csrf_token"' in response.text
            return None if ok else f"{kind}: HTTP {response.status_code} {response.text[:200]!r}"

        kinds = ["hello", "pull", "home", "login"] * 4

        def concurrently() -> list[str]:
            """All kinds at once from 8 threads, so that several pooled connections are in use."""
            with ThreadPoolExecutor(8) as pool:
                return [failure for failure in pool.map(call, kinds) if failure]

        assert concurrently() == [] and concurrently() == []
        pooled = backends(url)
        assert pooled >= 1
        killed = pgtest.query(pgtest.ADMIN_URL, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                                "WHERE datname = ? AND pid <> pg_backend_pid()", url.rsplit("/", 1)[-1])
        assert killed[0][0] == pooled
        deadline = time.monotonic() + 10
        while backends(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        # One at a time first: each request takes the oldest pooled connection, dead ones included.
        failures = [failure for failure in map(call, kinds) if failure] + concurrently()
        login(server.url, "admin")
    finally:
        server.stop()
    log = (tmp_path / "central.log").read_text()
    assert failures == [], f"{len(failures)} of {2 * len(kinds)} requests failed after {pooled} connections were " \
                           f"killed: {failures[:3]}\n{log[-3000:]}"

