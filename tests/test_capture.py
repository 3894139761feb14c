"""Synced-record base: uuid7 keys, clock stamps, tombstones, and change capture in the same transaction."""
import json
import time
import uuid

import pytest

from models import ChangeLog, Member, db
from models.base import apply_wire


def test_every_write_is_captured_with_its_full_state(app, org):
    """Creating and editing a member appends two outbox rows holding the new state each time."""
    with app.app_context(), db.connection_context():
        # Audit rows (models/audit.py) are captured too; count the member's own rows here.
        before = ChangeLog.select().where(ChangeLog.table == "member").count()
        member = Member.create(cell=org.cell.id, full_name="Trương Văn Mới")
        member.full_name = "Trương Văn Mới Sửa"
        member.save()
        rows = list(ChangeLog.select().where(ChangeLog.record_id == member.id).order_by(ChangeLog.seq))
        assert ChangeLog.select().where(ChangeLog.table == "member").count() == before + 2
        assert [json.loads(r.payload)["full_name"] for r in rows] == ["Trương Văn Mới", "Trương Văn Mới Sửa"]
        assert rows[0].hlc < rows[1].hlc and rows[1].origin == "central" and rows[1].scope == "central"
        assert uuid.UUID(member.id).version == 7


def test_a_failed_capture_rolls_back_the_write(app, org, monkeypatch):
    """If the outbox append fails (a crash mid-write), the record is not written either."""
    with app.app_context(), db.connection_context():
        before_members, before_log = Member.select().count(), ChangeLog.select().count()

        def boom(*args, **kwargs):
            raise OSError("đĩa đầy")

        monkeypatch.setattr(ChangeLog, "record", classmethod(boom))
        with pytest.raises(OSError):
            Member.create(cell=org.cell.id, full_name="Không Được Lưu")
        assert Member.select().count() == before_members
        assert ChangeLog.select().count() == before_log


def test_delete_is_a_tombstone_that_syncs(app, org):
    """Soft delete keeps the row, hides it from live queries and logs the tombstone."""
    with app.app_context(), db.connection_context():
        member = Member.get_by_id(org.members[3].id)
        member.soft_delete()
        assert Member.live().where(Member.id == member.id).count() == 0
        last = ChangeLog.select().order_by(ChangeLog.seq.desc()).first()
        assert last.record_id == member.id and json.loads(last.payload)["deleted_at"]
        with pytest.raises(RuntimeError):
            member.delete_instance()


def test_applying_a_received_change_is_idempotent_and_last_writer_wins(app, org):
    """The same change twice applies once; an older stamp never overwrites a newer one."""
    with app.app_context(), db.connection_context():
        member = Member.get_by_id(org.members[0].id)
        newer = dict(member.to_wire(), full_name="Tên Mới", hlc=_stamp(+5000))
        with db.atomic():
            assert apply_wire(Member, newer, origin="doi-1") is True
            assert apply_wire(Member, newer, origin="doi-1") is False
        older = dict(newer, full_name="Tên Cũ", hlc="000000000000001:000000:doi-1")
        with db.atomic():
            assert apply_wire(Member, older, origin="doi-1") is False
        assert Member.get_by_id(member.id).full_name == "Tên Mới"
        logged = ChangeLog.select().where((ChangeLog.record_id == member.id) & (ChangeLog.origin == "doi-1"))
        assert logged.count() == 1


def test_a_stamp_far_in_the_future_is_refused(app, org):
    """A node whose date is a year ahead is refused, so it cannot drag every clock with it."""
    from models import ValidationError

    with app.app_context(), db.connection_context():
        data = dict(Member.get_by_id(org.members[0].id).to_wire(), full_name="X", hlc=_stamp(365 * 86400 * 1000))
        with pytest.raises(ValidationError) as info:
            with db.atomic():
                apply_wire(Member, data, origin="doi-1")
        assert "hlc" in info.value.errors and "chỉnh ngày giờ" in info.value.errors["hlc"]
        assert Member.get_by_id(org.members[0].id).full_name != "X"


def _stamp(offset_ms: int) -> str:
    """A well-formed stamp from doi-1, offset from now."""
    return f"{int(time.time() * 1000) + offset_ms:015d}:000000:doi-1"


@pytest.mark.parametrize("change,field", [
    ({"status": "khong_co"}, "status"),
    ({"nonexistent": 1}, "payload"),
    ({"birth_year": "năm"}, "birth_year"),
])
def test_received_changes_are_validated(app, org, change, field):
    """A received record with an unknown field or value is refused naming the field."""
    from models import ValidationError

    with app.app_context(), db.connection_context():
        data = dict(Member.get_by_id(org.members[0].id).to_wire(), hlc=_stamp(+5000), **change)
        with pytest.raises(ValidationError) as info:
            with db.atomic():
                apply_wire(Member, data, origin="doi-1")
        assert field in info.value.errors


def test_field_node_writes_only_records_in_its_own_scope(tmp_path):
    """On a field node a write to central's records is refused before it can block the push queue."""
    import datetime as dt

    from app import create_app
    from models import Cell, Organisation, ValidationError
    from models.base import apply_wire

    field = create_app({"TESTING": True, "SECRET_KEY": "t", "ROLE": "field", "NODE_ID": "doi-1",
                        "DATABASE_URL": f"sqlite:///{tmp_path / 'field.sqlite3'}"})
    with field.app_context(), db.connection_context():
        # What central sends arrives by apply_wire (not subject to the guard).
        org = Organisation(name="Đảng bộ", hlc=f"{int(time.time() * 1000):015d}:000000:central", owner="central")
        with db.atomic():
            apply_wire(Organisation, org.to_wire(), origin="central")
            mine = Cell(organisation=org.id, code="CB02", name="Chi bộ Hai", node_id="doi-1",
                        hlc=_stamp(1), owner="central")
            apply_wire(Cell, mine.to_wire(), origin="central")
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
