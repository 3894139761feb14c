"""What differs on a PostgreSQL central: columns wide enough, migrations of older databases.

These run on either database; the PostgreSQL pass (CHIBO_TEST_DB=postgres) is where they bite.
"""
from __future__ import annotations

import time

import pytest

from models import Node, db
from models.migrations import SCHEMA_VERSION, PostgresqlMigrator, widen_node_clock_skew
from tests import pgtest
from tests.test_sync_api import NODE, org, stamp, token  # noqa: F401 - fixtures

DAY_MS = 24 * 3600 * 1000


def test_hello_from_a_node_whose_clock_is_a_month_slow_is_recorded_not_a_500(client, org, token):
    """A skew of 30 days (2.6e9 ms, past a 32-bit integer) is stored and shown, never a server error."""
    headers = {"Authorization": f"Bearer {token}"}
    slow = int(time.time() * 1000) - 30 * DAY_MS
    body = {"node_id": NODE, "app_version": "0.1.0", "schema_version": SCHEMA_VERSION,
            "hlc": f"{slow:015d}:000000:{NODE}", "wall_ms": slow}
    response = client.post("/sync/v1/hello", json=body, headers=headers)
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    assert Node.get_by_id(NODE).clock_skew_ms < -29 * DAY_MS


@pytest.mark.skipif(not pgtest.enabled(), reason="only PostgreSQL has 32-bit integer columns")
def test_the_migration_widens_clock_skew_in_an_older_postgresql_database(app):
    """A database made before the fix (integer column) holds a month of skew after `db up`'s step."""
    with app.app_context(), db.connection_context():
        db.execute_sql("ALTER TABLE node ALTER COLUMN clock_skew_ms TYPE integer")
        widen_node_clock_skew(PostgresqlMigrator(db.obj))
        kind = db.execute_sql("SELECT data_type FROM information_schema.columns "
                              "WHERE table_name='node' AND column_name='clock_skew_ms'").fetchone()[0]
        assert kind == "bigint"
        Node.create(id="doi-9", token_hash="x" * 64, clock_skew_ms=-40 * DAY_MS)
        assert Node.get_by_id("doi-9").clock_skew_ms == -40 * DAY_MS
