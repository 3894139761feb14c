"""Schema migrations: `db_up()` creates missing tables, then runs numbered steps not yet applied.

Each step is a function taking a `playhouse.migrate` migrator; append new ones to `STEPS` and never
edit an applied one. Steps must be idempotent (a new database already has the columns, made by
`create_tables`). The applied version is kept in `SyncState` under `schema_version`.
`db_up()` also gives a new database its identity (`db_id`, generation 1), which the sync handshake
compares to recognise a restored or replaced database.
"""
from __future__ import annotations

import uuid

from peewee import BigIntegerField, PostgresqlDatabase
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator, migrate

from ..base import SYNCED_MODELS, ChangeLog, HlcState, SyncState, db, write_transaction
from ..clock import decode

DB_ID = "db_id"
DB_GENERATION = "db_generation"


def _columns(table: str) -> set[str]:
    return {c.name for c in db.get_columns(table)}


def step_per_column_stamps(migrator) -> None:
    """Per-column clock stamps on every synced table; restore metadata on applied batches."""
    from ..sync_state import AppliedBatch

    operations = []
    for table, model in SYNCED_MODELS.items():
        if "stamps" not in _columns(table):
            operations.append(migrator.add_column(table, "stamps", model.stamps))
    for name in ("source", "last_hlc"):
        if name not in _columns(AppliedBatch._meta.table_name):
            operations.append(migrator.add_column(AppliedBatch._meta.table_name, name, AppliedBatch._meta.fields[name]))
    migrate(*operations)
    # A party card number entered at two places is a conflict to resolve, not a wall: plain index.
    unique = [i for i in db.get_indexes("member") if i.columns == ["card_number"] and i.unique]
    for index in unique:
        migrate(migrator.drop_index("member", index.name))
    if not any(i.columns == ["card_number"] for i in db.get_indexes("member")):
        migrate(migrator.add_index("member", ("card_number",), False))


def widen_node_clock_skew(migrator) -> None:
    """node.clock_skew_ms becomes 64-bit on PostgreSQL (SQLite integers already are)."""
    if isinstance(migrator, PostgresqlMigrator):
        migrate(migrator.alter_column_type("node", "clock_skew_ms", BigIntegerField(default=0)))




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


def _meeting_indexes(migrator) -> None:
    """Version 5: indexes for the cell's calendar (meeting by cell and day) and a member's absences."""
    for table, columns in (("meeting", ["cell_id", "held_on"]), ("attendance", ["member_id", "status"])):
        if not any(i.columns == columns for i in db.get_indexes(table)):
            migrate(migrator.add_index(table, columns, False))


# Steps after the initial schema; index + 1 is the version they bring the database to.
STEPS: list = [widen_node_clock_skew, step_per_column_stamps, _meeting_hold, _meeting_indexes]

SCHEMA_VERSION = 1 + len(STEPS)


def drop_unused_indexes(models) -> None:
    """Drop indexes an older release created and this one does not declare (idempotent; no schema step).

    The stamp (`hlc`) of every synced table, and a foreign key's own index where a composite index
    now starts with it: nothing reads through them and each costs every write (issue 10). A
    foreign key's index is dropped only when the composite index is really there.
    """
    from peewee import ForeignKeyField

    for model in models:
        table = model._meta.table_name
        if not db.table_exists(table):
            continue
        present = {i.name: i.columns for i in db.get_indexes(table)}
        stamp = model._meta.fields.get("hlc")
        unused = [f"{table}_hlc"] if stamp is not None and not stamp.index else []
        for field in model._meta.sorted_fields:
            if isinstance(field, ForeignKeyField) and not field.index and not field.unique:
                name = f"{table}_{field.column_name}"
                if any(cols[0] == field.column_name and len(cols) > 1 for n, cols in present.items() if n != name):
                    unused.append(name)
        for name in unused:
            if name in present:
                db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')


def _migrator():
    target = db.obj
    return PostgresqlMigrator(target) if isinstance(target, PostgresqlDatabase) else SqliteMigrator(target)


def db_up(models) -> int:
    """Bring the schema up to date and give the database its identity and clock row. Return version."""
    with write_transaction():
        fresh = not db.table_exists(SyncState._meta.table_name)
        db.create_tables(models, safe=True)
        current = int(SyncState.get_value("schema_version", str(SCHEMA_VERSION) if fresh else "1"))
        for number, step in enumerate(STEPS, start=2):
            if number > current:
                step(_migrator())
                current = number
        SyncState.set_value("schema_version", str(current))
        drop_unused_indexes(models)
        if SyncState.get_value(DB_ID) is None:
            SyncState.set_value(DB_ID, str(uuid.uuid4()))
            SyncState.set_value(DB_GENERATION, "1")
        if HlcState.get_or_none(HlcState.id == 1) is None:
            # An older database: start the clock at the newest stamp it logged.
            last = ChangeLog.select(ChangeLog.hlc).order_by(ChangeLog.hlc.desc()).first()
            stamp = decode(last.hlc) if last else None
            HlcState.insert(id=1, ms=stamp.ms if stamp else 0, counter=stamp.counter if stamp else 0).execute()
    return current


def database_identity() -> tuple[str, int]:
    """This database's id and generation (the generation grows when it is restored or reconciled)."""
    return (SyncState.get_value(DB_ID, "") or "", int(SyncState.get_value(DB_GENERATION, "1") or 1))


def bump_generation() -> int:
    """Start a new generation of this database (after a restore); call inside a write transaction."""
    generation = database_identity()[1] + 1
    SyncState.set_value(DB_GENERATION, str(generation))
    return generation
