"""On PostgreSQL the change feed hands out changes in commit order: a reader never passes a change
that a longer transaction commits later (a real PostgreSQL, two connections, real threads)."""
from __future__ import annotations

import threading
import time

import pytest

from app import create_app
from models import ChangeLog, Member, Organisation, Cell, db
from models.base import write_transaction
from tests import pgtest


@pytest.fixture
def pg_app():
    """Central on a fresh PostgreSQL database (this test is about PostgreSQL itself)."""
    pgtest.wait_for_server(30)
    url = pgtest.new_database()
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "SEED_REFERENCE_DATA": False, "DATABASE_URL": url})
    yield app
    if not db.is_closed():
        db.close()
    pgtest.drop_created()


def test_a_change_committed_late_is_never_skipped_by_a_reader(pg_app):
    """A long transaction's change gets a lower sequence only if it commits first; readers see no gap."""
    with pg_app.app_context(), db.connection_context():
        org = Organisation.create(name="Đảng bộ PostgreSQL")
        cell = Cell.create(organisation=org.id, code="PG1", name="Chi bộ PG")
        start = ChangeLog.select().count()
    slow_started = threading.Event()
    errors: list[BaseException] = []

    def slow_writer():
        """Open a write, hold it while another writer commits, then commit."""
        try:
            with db.connection_context():
                with write_transaction():
                    # A feed row written without a stamp of its own (as handover and reconcile do).
                    ChangeLog.append("member", "00000000-0000-7000-8000-000000000001", "", "central", "*",
                                     {"fields": {"full_name": "Người Ghi Chậm"}})
                    slow_started.set()
                    time.sleep(1.5)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def fast_writer():
        """Write and commit at once, while the slow writer is open."""
        try:
            slow_started.wait(5)
            with db.connection_context():
                Member.create(cell=cell.id, full_name="Người Ghi Nhanh")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    seen_sequences: list[list[int]] = []

    def reader():
        """Poll the feed like a pulling node: the visible sequence numbers must never have a hole below the top."""
        with db.connection_context():
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                seen_sequences.append([r.seq for r in ChangeLog.select(ChangeLog.seq).order_by(ChangeLog.seq)])
                time.sleep(0.05)

    threads = [threading.Thread(target=f) for f in (slow_writer, fast_writer, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors, errors
    with pg_app.app_context(), db.connection_context():
        names = [ChangeLog.get_by_id(s).payload for s in [r.seq for r in ChangeLog.select().order_by(ChangeLog.seq)][start:]]
        assert any("Người Ghi Chậm" in n for n in names) and any("Người Ghi Nhanh" in n for n in names)
        slow = next(i for i, n in enumerate(names) if "Người Ghi Chậm" in n)
        fast = next(i for i, n in enumerate(names) if "Người Ghi Nhanh" in n)
        # The slow transaction began first and held the feed: the fast one waited and came after it.
        assert slow < fast
    # Every snapshot a reader saw is a prefix of the final feed: nothing appeared below a seen number later.
    final = seen_sequences[-1]
    for snapshot in seen_sequences:
        assert snapshot == final[:len(snapshot)]
