"""The indexes the cell and meeting pages read by are added to an existing database, once."""
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
