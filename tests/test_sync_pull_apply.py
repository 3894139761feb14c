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


class ScriptedCentral:
    """Central's pull answers from a list of pages, recording each request and what was applied meanwhile.

    Has `post_encoded`, as the real client does, so the node asks for pages ahead."""

    def __init__(self, pages: list[list[dict]]):
        """`pages`: each page's changes; page k's next_cursor is its last seq."""
        self.pages = pages
        self.asked: list[tuple[int, bool, str]] = []  # (cursor, full, the cursor stored at the node then)

    def post_encoded(self, *args, **kwargs):  # pragma: no cover - only its presence matters here
        raise AssertionError("no pushes in this test")

    def call(self, method, path, params=None, **kwargs):
        """Serve the page that follows `cursor`."""
        cursor, full = int(params["cursor"]), params.get("full") == 1
        # The node's stored cursor as another connection sees it (committed pages only).
        import sqlite3
        stored = sqlite3.connect(db.database).execute("SELECT value FROM sync_state WHERE key = 'pull_cursor'").fetchall()
        self.asked.append((cursor, full, stored[0][0] if stored else "0"))
        time.sleep(0.05)  # central building the page, the link carrying it
        ends = [0] + [page[-1]["seq"] for page in self.pages]
        index = ends.index(cursor)
        if index == len(self.pages):
            return 200, {"cursor": cursor, "next_cursor": cursor, "more": False, "changes": []}
        page = self.pages[index]
        return 200, {"cursor": cursor, "next_cursor": page[-1]["seq"], "more": index + 1 < len(self.pages),
                     "changes": page}


def test_pages_are_asked_for_ahead_and_a_failed_page_drops_what_was_asked_ahead(field, monkeypatch):
    """While page k is applied page k+1 is already asked for; when applying fails nothing after it is applied,
    and the next run asks again from the stored cursor: every record arrives once."""
    from sync import client as sync_client

    org = Organisation(name="Đảng bộ")
    cell = Cell(organisation=org.id, code="CB02", name="Chi bộ Hai", node_id="doi-1")
    members = [Member(cell=cell.id, full_name=f"Đảng Viên Số {i}") for i in range(9)]
    changes = [change(org), change(cell)] + [change(m) for m in members]
    pages = [changes[0:4], changes[4:8], changes[8:]]
    central = ScriptedCentral(pages)
    real_apply = sync_client.apply_pull_page
    calls = []

    def failing_on_page_two(page, next_cursor, node_id, full=False):
        calls.append(next_cursor)
        if len(calls) == 1:  # applying page 1 takes a while: page 2's request goes out meanwhile (a busy CI
            deadline = time.monotonic() + 5  # machine may start that thread late; without read-ahead it never comes)
            while len(central.asked) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        if len(calls) == 2:
            raise RuntimeError("mất điện giữa trang")
        return real_apply(page, next_cursor, node_id, full=full)

    monkeypatch.setattr(sync_client, "apply_pull_page", failing_on_page_two)
    report = sync_client.SyncReport()
    with pytest.raises(RuntimeError):
        sync_client.pull_all(central, field.config, report, lambda _message: None)
    first_end = pages[0][-1]["seq"]
    assert SyncState.get_value(PULL_CURSOR) == str(first_end)
    assert Member.select().count() == 2  # page 1 only: page 2 failed, page 3 (asked for ahead) was dropped
    # Page 2 was asked for while page 1 was being applied (the node had not stored page 1's cursor yet).
    assert central.asked[:2] == [(0, True, "0"), (first_end, True, "0")]
    assert len(central.asked) == 3
    monkeypatch.setattr(sync_client, "apply_pull_page", real_apply)
    sync_client.pull_all(central, field.config, report, lambda _message: None)
    assert central.asked[3][:2] == (first_end, True)  # asked again from the stored cursor, still a rebuild
    assert Member.select().count() == 9 and Cell.select().count() == 1
    assert SyncState.get_value(PULL_CURSOR) == str(pages[-1][-1]["seq"])
    assert SyncState.get_value("pull_full") == "0"
