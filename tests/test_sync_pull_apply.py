"""A field node applying central's feed: what it cannot apply is set aside, never a wall, and retried."""
from __future__ import annotations

import datetime as dt
import time

import pytest

from app import create_app
from models import Attendance, Cell, Meeting, Member, Organisation, SyncState, db
from models.base import data_columns
from models.sync_state import DeadLetter
from sync.client import apply_pull_page
from sync.outbox import PULL_CURSOR
from sync.status import field_status

_n = iter(range(1, 10_000))


def change(record, node="central") -> dict:
    """A record as central's feed carries it (every column, central's stamp)."""
    record.hlc = f"{int(time.time() * 1000):015d}:{next(_n):06d}:{node}"
    wire = record.to_wire()
    return {"seq": next(_n), "table": record._meta.table_name, "record_id": record.id, "hlc": record.hlc,
            "origin": node, "payload": {"fields": {c: wire[c] for c in data_columns(type(record))}, "owner": node}}


@pytest.fixture
def field(tmp_path):
    """A field node doi-1 on its own SQLite file."""
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "ROLE": "field", "NODE_ID": "doi-1",
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'field.sqlite3'}"})
    with app.app_context(), db.connection_context():
        yield app


def test_a_change_the_node_cannot_apply_is_set_aside_shown_and_retried(field):
    """A roll-call mark that arrives before its member waits aside; the cursor moves; it applies later."""
    org = Organisation(name="Đảng bộ")
    cell = Cell(organisation=org.id, code="CB02", name="Chi bộ Hai", node_id="doi-1")
    member = Member(cell=cell.id, full_name="Phạm Văn Đến Sau")
    meeting = Meeting(cell=cell.id, held_on=dt.date.today(), title="Họp tháng")
    mark = Attendance(meeting=meeting.id, member=member.id, status="present")
    bad = Meeting(cell=cell.id, held_on=dt.date.today(), title="Loại lạ", kind="khong_co_loai")
    applied, aside = apply_pull_page([change(org), change(cell), change(meeting), change(mark), change(bad)], 10, "doi-1")
    assert (applied, aside) == (3, 2)
    assert SyncState.get_value(PULL_CURSOR) == "10"
    status = field_status("doi-1")
    assert {(d.table, d.reason) for d in status.local_dead_letters} == {("attendance", "missing_parent"),
                                                                         ("meeting", "invalid")}
    # The member arrives on the next page: the waiting mark is applied, the bad meeting still waits.
    apply_pull_page([change(member)], 11, "doi-1")
    assert Attendance.get_by_id(mark.id).status == "present"
    open_letters = DeadLetter.select().where(DeadLetter.resolved_at.is_null())
    assert [(d.table, d.reason) for d in open_letters] == [("meeting", "invalid")]
    assert Meeting.get_or_none(Meeting.id == bad.id) is None
