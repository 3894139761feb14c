"""Schema migrations: `db_up()` creates missing tables, then runs numbered steps not yet applied.

Each step is a function taking a `playhouse.migrate` migrator; append new ones to `STEPS` and never
edit an applied one. The applied version is kept in `SyncState` under `schema_version`.
"""
from __future__ import annotations

from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate
from peewee import BigIntegerField, PostgresqlDatabase

from ..base import ChangeLog, SyncState, db
from ..clock import clock


def widen_node_clock_skew(migrator) -> None:
    """node.clock_skew_ms becomes 64-bit on PostgreSQL (SQLite integers already are)."""
    if isinstance(migrator, PostgresqlMigrator):
        migrate(migrator.alter_column_type("node", "clock_skew_ms", BigIntegerField(default=0)))


# Steps after the initial schema; index + 1 is the version they bring the database to.
STEPS: list = [widen_node_clock_skew]

SCHEMA_VERSION = 1 + len(STEPS)


def _migrator():
    target = db.obj
    return PostgresqlMigrator(target) if isinstance(target, PostgresqlDatabase) else SqliteMigrator(target)


def db_up(models) -> int:
    """Bring the schema up to date; restore the clock past every stamp already logged. Return version."""
    with db.atomic():
        db.create_tables(models, safe=True)
        current = int(SyncState.get_value("schema_version", "1"))
        for number, step in enumerate(STEPS, start=2):
            if number > current:
                step(_migrator())
                current = number
        SyncState.set_value("schema_version", str(current))
    last = ChangeLog.select(ChangeLog.hlc).order_by(ChangeLog.hlc.desc()).first()
    if last:
        clock.observe(last.hlc)
    return current
