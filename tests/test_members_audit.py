"""The audit trail: who, when, which node, old and new values; it syncs with the record's scope;
changes applied from sync and the audit rows themselves create no new audit rows."""
from __future__ import annotations

import json

from models import AuditEntry, Cell, ChangeLog, Member, db
from models.audit import acting_as, audit_suppressed, history
from sync.merge import apply_record
from models.clock import clock


def test_create_update_delete_are_recorded_with_actor_and_values(app, org):
    """Each write of a member leaves one entry naming the actor, the node and the changed fields."""
    with app.app_context(), db.connection_context(), acting_as("u-1", "Nguyễn Văn Thư Ký"):
        member = Member.create(cell=org.cell.id, full_name="Tô Văn Mới", birth_year=1980)
        member.birth_year = 1981
        member.save()
        member.save()  # nothing changed: no entry
        member.soft_delete()
        entries = list(reversed(history("member", member.id)))
    assert [e.action for e in entries] == ["create", "update", "delete"]
    assert all(e.user_id == "u-1" and e.user_name == "Nguyễn Văn Thư Ký" and e.node == "central" for e in entries)
    assert entries[0].changes["full_name"] == {"old": None, "new": "Tô Văn Mới"}
    assert entries[1].changes == {"birth_year": {"old": 1980, "new": 1981}}
    assert ("Năm sinh", "1980", "1981") in entries[1].display_changes()


def test_writes_without_a_person_are_attributed_to_the_system(app, org):
    """CLI and background writes have no actor: they are recorded as 'Hệ thống'."""
    with app.app_context(), db.connection_context():
        entry = history("member", org.members[0].id)[0]
    assert entry.user_id == "" and entry.user_name == "Hệ thống"


def test_audit_rows_sync_with_the_records_scope_and_are_not_audited(app, org):
    """An entry about a field node's member is logged for that node; entries have no entries."""
    with app.app_context(), db.connection_context():
        cell = Cell.get_by_id(org.other_cell.id)
        cell.node_id = "doi-2"
        cell.save()
        member = Member.create(cell=cell.id, full_name="Người Đội Hai")
        entry = AuditEntry.get((AuditEntry.table == "member") & (AuditEntry.record_id == member.id))
        logged = ChangeLog.get((ChangeLog.table == "audit_entry") & (ChangeLog.record_id == entry.id))
        assert entry.scope == "doi-2" and logged.scope == "doi-2"
        assert AuditEntry.select().where(AuditEntry.table == "audit_entry").count() == 0


def test_changes_applied_from_sync_make_no_new_audit_rows(app, org):
    """A member and its audit entry arriving from a field node are stored as they came, nothing added."""
    with app.app_context(), db.connection_context():
        member = Member.get_by_id(org.members[0].id)
        wire = member.to_wire()
        wire["full_name"] = "Tên Sửa Ở Đội"
        wire["hlc"] = clock.now().replace(":central", ":doi-1")
        before = AuditEntry.select().count()
        with db.atomic():
            assert apply_record(Member, wire, origin="doi-1")
        assert AuditEntry.select().count() == before
        assert Member.get_by_id(member.id).full_name == "Tên Sửa Ở Đội"
        # The origin's own audit entry arrives by sync too and is stored without another entry.
        remote = AuditEntry(table="member", record_id=member.id, action="update", user_name="Bí thư Đội 1",
                            node="doi-1", changes_json=json.dumps({"full_name": {"old": "Nguyễn Văn An",
                                                                                  "new": "Tên Sửa Ở Đội"}}),
                            scope="central")
        remote.hlc, remote.owner = clock.now().replace(":central", ":doi-1"), "doi-1"
        with db.atomic():
            assert apply_record(AuditEntry, remote.to_wire(), origin="doi-1")
        assert AuditEntry.select().count() == before + 1
        assert history("member", member.id)[0].user_name == "Bí thư Đội 1"


def test_suppressed_bulk_load_leaves_no_trail(app, org):
    """Demo loading runs with the trail off."""
    with app.app_context(), db.connection_context():
        before = AuditEntry.select().count()
        with audit_suppressed():
            Member.create(cell=org.cell.id, full_name="Dữ Liệu Mẫu")
        assert AuditEntry.select().count() == before


def test_history_is_shown_to_readers_not_to_members(client, auth, org):
    """The profile's 'Lịch sử thay đổi' is for secretaries and above; a member sees their record only."""
    with db.connection_context():
        from models import User

        user = User.get(User.username == "dangvien1")
        user.member = org.members[2].id
        user.save()
    auth.login("dangvien1")
    assert "Lịch sử thay đổi" not in client.get(f"/members/{org.members[2].id}").get_data(as_text=True)
    auth.logout()
    auth.login("btv")
    assert "Lịch sử thay đổi" in client.get(f"/members/{org.members[2].id}").get_data(as_text=True)


def test_history_shows_words_not_codes(app, org):
    """A status change reads 'Đảng viên dự bị' → 'Đảng viên chính thức', not codes."""
    with app.app_context(), db.connection_context():
        member = Member.get_by_id(org.members[6].id)
        member.status = "full"
        member.save()
        entry = history("member", member.id)[0]
    assert ("Trạng thái", "Đảng viên dự bị", "Đảng viên chính thức") in entry.display_changes()
