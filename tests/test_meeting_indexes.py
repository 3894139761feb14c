"""The indexes the cell and meeting pages read by are added to an existing database, once."""
import pytest
from peewee import SqliteDatabase

from models import ALL_MODELS, SyncState, db
from models.migrations import SCHEMA_VERSION, db_up


def index_columns(table: str) -> list[list[str]]:
    """The column lists of a table's indexes."""
    return [i.columns for i in db.get_indexes(table)]


def test_an_existing_database_gets_the_calendar_indexes_once(app):
    """A version-4 database without the indexes gets them from `db up`; a second run changes nothing."""
    with app.app_context(), db.connection_context():
        for table, columns in (("meeting", ["cell_id", "held_on"]), ("attendance", ["member_id", "status"])):
            name = next(i.name for i in db.get_indexes(table) if i.columns == columns)
            db.execute_sql(f'DROP INDEX "{name}"')
        SyncState.set_value("schema_version", str(SCHEMA_VERSION - 1))
        assert ["cell_id", "held_on"] not in index_columns("meeting")
        assert db_up(ALL_MODELS) == SCHEMA_VERSION
        assert db_up(ALL_MODELS) == SCHEMA_VERSION
        assert index_columns("meeting").count(["cell_id", "held_on"]) == 1
        assert index_columns("attendance").count(["member_id", "status"]) == 1


def test_indexes_nothing_reads_through_are_dropped_from_an_older_database(app):
    """An older database's stamp indexes and foreign-key indexes covered by a composite one go on `db up`.

    What reads through them still has an index: the composite one starting with the same column."""
    with app.app_context(), db.connection_context():
        db.execute_sql('CREATE INDEX "attendance_hlc" ON "attendance" ("hlc")')
        db.execute_sql('CREATE INDEX "attendance_meeting_id" ON "attendance" ("meeting_id")')
        db.execute_sql('CREATE INDEX "meeting_cell_id" ON "meeting" ("cell_id")')
        db.execute_sql('CREATE INDEX "member_hlc" ON "member" ("hlc")')
        assert ["meeting_id"] in index_columns("attendance")
        db_up(ALL_MODELS)
        for table in ("attendance", "meeting", "member"):
            assert ["hlc"] not in index_columns(table)
        assert ["meeting_id"] not in index_columns("attendance")
        assert ["cell_id"] not in index_columns("meeting")
        # Still indexed: by the composite index, and a foreign key with no composite index keeps its own.
        assert ["meeting_id", "member_id"] in index_columns("attendance")
        assert ["cell_id", "held_on"] in index_columns("meeting")
        assert ["cell_id"] in index_columns("member")
        assert ["member_id"] in index_columns("position")


def test_a_roll_call_lookup_still_uses_an_index(app):
    """The attendance of a meeting is read through the (meeting, member) index, not a table scan (SQLite)."""
    with app.app_context(), db.connection_context():
        if not isinstance(db.obj, SqliteDatabase):
            pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
        plan = " ".join(str(r) for r in db.execute_sql(
            "EXPLAIN QUERY PLAN SELECT * FROM attendance WHERE meeting_id = ?", ("x",)).fetchall())
        assert "attendance_meeting_id_member_id" in plan, plan
