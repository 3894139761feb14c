"""Synced-record base: uuid7 keys, per-column clock stamps, tombstones, change capture in the same transaction."""
import json
import time
import uuid

import pytest

from models import ChangeLog, Member, db
from models.base import write_transaction
from sync.merge import SetAside, apply_record


def test_every_write_is_captured_with_the_columns_it_changed(app, org):
    """Creating a member logs every column; an edit logs only the changed column with the stamp it replaced."""
    with app.app_context(), db.connection_context():
        before = ChangeLog.select().where(ChangeLog.table == "member").count()
        member = Member.create(cell=org.cell.id, full_name="Trương Văn Mới")
        member.full_name = "Trương Văn Mới Sửa"
        member.save()
        rows = list(ChangeLog.select().where(ChangeLog.record_id == member.id).order_by(ChangeLog.seq))
        assert ChangeLog.select().where(ChangeLog.table == "member").count() == before + 2
        first, second = (json.loads(r.payload) for r in rows)
        assert first["fields"]["full_name"] == "Trương Văn Mới" and "cell_id" in first["fields"]
        assert second["fields"] == {"full_name": "Trương Văn Mới Sửa"}
        assert second["base"] == {"full_name": rows[0].hlc}
        assert rows[0].hlc < rows[1].hlc and rows[1].origin == "central" and rows[1].scope == "central"
        assert uuid.UUID(member.id).version == 7


def test_saving_without_a_change_logs_nothing(app, org):
    """A save that changes no column writes no change (nothing to sync)."""
    with app.app_context(), db.connection_context():
        member = Member.get_by_id(org.members[0].id)
        before = ChangeLog.select().count()
        member.save()
        assert ChangeLog.select().count() == before


def test_a_failed_capture_rolls_back_the_write(app, org, monkeypatch):
    """If the outbox append fails (a crash mid-write), the record is not written either."""
    with app.app_context(), db.connection_context():
        before_members, before_log = Member.select().count(), ChangeLog.select().count()

        def boom(*args, **kwargs):
            raise OSError("đĩa đầy")

        monkeypatch.setattr(ChangeLog, "append", classmethod(boom))
        with pytest.raises(OSError):
            Member.create(cell=org.cell.id, full_name="Không Được Lưu")
        assert Member.select().count() == before_members
        assert ChangeLog.select().count() == before_log


def test_delete_is_a_tombstone_that_syncs_and_takes_its_children(app, org):
    """Soft delete keeps the row, hides it from live queries, logs the tombstone and tombstones the roll call."""
    from models.meetings import Attendance

    with app.app_context(), db.connection_context():
        mark = Attendance.create(meeting=org.meeting.id, member=org.members[1].id, status="present")
        org.meeting.soft_delete()
        assert Attendance.live().where(Attendance.id == mark.id).count() == 0
        member = Member.get_by_id(org.members[3].id)
        member.soft_delete()
        assert Member.live().where(Member.id == member.id).count() == 0
        last = ChangeLog.select().order_by(ChangeLog.seq.desc()).first()
        payload = json.loads(last.payload)
        assert last.record_id == member.id and payload["fields"]["deleted_at"] and payload["seen"]
        with pytest.raises(RuntimeError):
            member.delete_instance()


def test_applying_a_received_record_is_idempotent_and_newer_columns_win(app, org):
    """The same change twice applies once; an older stamp never overwrites a newer one."""
    with app.app_context(), db.connection_context():
        member = Member.get_by_id(org.members[0].id)
        newer = dict(member.to_wire(), full_name="Tên Mới", hlc=_stamp(+5000))
        with write_transaction():
            assert apply_record(Member, newer, origin="doi-1") is True
            assert apply_record(Member, newer, origin="doi-1") is False
        older = dict(newer, full_name="Tên Cũ", hlc="000000000000001:000000:doi-1")
        with write_transaction():
            assert apply_record(Member, older, origin="doi-1") is False
        assert Member.get_by_id(member.id).full_name == "Tên Mới"
        logged = ChangeLog.select().where((ChangeLog.record_id == member.id) & (ChangeLog.origin == "doi-1"))
        assert logged.count() == 1


def test_a_stamp_far_in_the_future_is_kept_but_does_not_drag_the_clock(app, org):
    """A record stamped a year ahead is stored, the clock stays near real time, and a later edit still wins."""
    from models import clock

    with app.app_context(), db.connection_context():
        ahead = _stamp(365 * 86400 * 1000)
        data = dict(Member.get_by_id(org.members[0].id).to_wire(), full_name="Từ Tương Lai", hlc=ahead)
        with write_transaction():
            assert apply_record(Member, data, origin="doi-1")
            clock.observe(ahead)
            assert clock.ahead_ms(clock.now()) < 60_000
        member = Member.get_by_id(org.members[0].id)
        member.full_name = "Sửa Sau Đó"
        member.save()
        assert Member.get_by_id(member.id).full_name == "Sửa Sau Đó" and member.hlc > ahead


def _stamp(offset_ms: int) -> str:
    """A well-formed stamp from doi-1, offset from now."""
    return f"{int(time.time() * 1000) + offset_ms:015d}:000000:doi-1"


@pytest.mark.parametrize("change,field", [
    ({"status": "khong_co"}, "Trạng thái"),
    ({"nonexistent": 1}, "nonexistent"),
    ({"birth_year": "năm"}, "birth_year"),
])
def test_received_changes_are_validated(app, org, change, field):
    """A received record with an unknown column or a bad value is set aside naming it; nothing is written."""
    with app.app_context(), db.connection_context():
        before = Member.get_by_id(org.members[0].id).to_wire()
        data = dict(before, hlc=_stamp(+5000), **change)
        with pytest.raises(SetAside) as info:
            with write_transaction():
                apply_record(Member, data, origin="doi-1")
        assert field in info.value.message
        assert Member.get_by_id(org.members[0].id).to_wire() == before


def test_field_node_writes_only_records_in_its_own_scope(tmp_path):
    """On a field node a write to central's records is refused before it can block the push queue."""
    import datetime as dt

    from app import create_app
    from models import Cell, Organisation, ValidationError

    field = create_app({"TESTING": True, "SECRET_KEY": "t", "ROLE": "field", "NODE_ID": "doi-1",
                        "DATABASE_URL": f"sqlite:///{tmp_path / 'field.sqlite3'}"})
    with field.app_context(), db.connection_context():
        # What central sends arrives through the merge (not subject to the guard).
        org = Organisation(name="Đảng bộ", hlc=f"{int(time.time() * 1000):015d}:000000:central", owner="central")
        with write_transaction():
            apply_record(Organisation, org.to_wire(), origin="central")
            mine = Cell(organisation=org.id, code="CB02", name="Chi bộ Hai", node_id="doi-1",
                        hlc=_stamp(1), owner="central")
            apply_record(Cell, mine.to_wire(), origin="central")
        before = ChangeLog.select().count()
        organisation = Organisation.get_by_id(org.id)
        organisation.name = "Đổi tên tại nút"
        with pytest.raises(ValidationError) as info:
            organisation.save()
        assert "chỉ được xem" in info.value.errors["scope"]
        assert Organisation.get_by_id(org.id).name == "Đảng bộ" and ChangeLog.select().count() == before
        # A member of a cell this node holds is written here as usual.
        Member.create(cell=mine.id, full_name="Phan Văn Tại Chỗ", admitted_on=dt.date(2020, 1, 1))
        assert ChangeLog.select().count() > before
