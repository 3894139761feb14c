"""Schema migrations: `db_up()` creates missing tables, then runs numbered steps not yet applied.

Each step is a function taking a `playhouse.migrate` migrator; append new ones to `STEPS` and never
edit an applied one. The applied version is kept in `SyncState` under `schema_version`.
"""
from __future__ import annotations

from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate
from peewee import PostgresqlDatabase

from ..base import ChangeLog, SyncState, db
from ..clock import clock



def add_missing_columns(migrator, model, names) -> None:
    """Add the model's fields `names` that its table lacks (a fresh database already has them)."""
    table = model._meta.table_name
    have = {c.name for c in db.get_columns(table)}
    for name in names:
        field = model._meta.fields[name]
        if field.column_name not in have:
            migrate(migrator.add_column(table, field.column_name, field))


def _meeting_hold(migrator) -> None:
    """Version 2: what happened at a meeting (times, place, chair, secretary, conclusion, moves),
    late arrival / early leave on the roll call."""
    from ..meetings import Attendance, Meeting

    add_missing_columns(migrator, Meeting, ("place", "started_at", "ended_at", "chair", "secretary",
                                            "conclusion_kind", "conclusion", "moved_from", "move_reason",
                                            "lessons"))
    add_missing_columns(migrator, Attendance, ("arrived_late", "left_early"))


# Steps after the initial schema; index + 1 is the version they bring the database to.
STEPS: list = [_meeting_hold]

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
