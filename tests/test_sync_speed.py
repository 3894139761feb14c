"""Issue 10's behaviour (not its speed, which bench/sync.py measures): what a tap sends and who it names.

A roll-call mark is one change, not two: the person who made it travels on the change ("by",
"by_name") instead of in a second synced audit record. Central keeps the name in its change log when
the account may work at the pushing node, and says "Không xác định" when a node names someone else.
"""
from __future__ import annotations

import json

from models import Attendance, ChangeLog, Member, User, db
from models.audit import AuditEntry, acting_as, change_history
from models.meetings import set_attendance
from tests.test_sync_api import NODE, batch, change, new_meeting, org, push, token  # noqa: F401 (fixtures)


def _account(username: str, role: str, cell_id: str | None) -> User:
    """An account without a real password hash (none is needed here)."""
    return User.create(username=username, full_name=f"Người dùng {username}", role=role, cell=cell_id,
                       password_hash="$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA")


def test_a_mark_is_one_change_that_names_the_secretary(app, org):
    """A tap writes one outbox row (no audit record), and the row says who tapped."""
    with app.app_context(), db.connection_context():
        secretary = _account("bithu1", "secretary", org.cell.id)
        before = ChangeLog.select().count()
        audits = AuditEntry.select().count()
        with acting_as(secretary.id, "Bí thư Một"):
            mark = set_attendance(org.meeting, org.members[0].id, "present")
        rows = list(ChangeLog.select().where(ChangeLog.seq > 0).order_by(ChangeLog.seq)
                    .offset(before))
        assert [r.table for r in rows] == ["attendance"]
        assert AuditEntry.select().count() == audits
        payload = json.loads(rows[0].payload)
        assert (payload["by"], payload["by_name"]) == (secretary.id, "Bí thư Một")
        trail = change_history("attendance", mark.id)
        assert [(e.by_name, e.fields.get("status")) for e in trail] == [("Bí thư Một", "present")]


def test_central_keeps_the_name_a_node_may_give_and_flags_one_it_may_not(app, client, org, token):
    """The node's secretary is kept; a central admin named by the node is 'Không xác định'."""
    with app.app_context(), db.connection_context():
        own = _account("bithu2", "secretary", org.other_cell.id)
        admin = _account("quantri", "admin", None)
        meeting = new_meeting(org)
        members = list(Member.select().where(Member.cell == org.other_cell.id).order_by(Member.full_name))
        changes = [change(meeting)]
        for member, (by, name) in zip(members, [(own.id, "Bí thư Đội"), (admin.id, "Quản trị")]):
            mark = Attendance(meeting=meeting.id, member=member.id, status="present")
            item = change(mark)
            item["payload"].update(by=by, by_name=name)
            changes.append(item)
    response = push(client, batch(changes), token)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["applied"] == 3 and not response.get_json()["set_aside"]
    with app.app_context(), db.connection_context():
        names = sorted(change_history("attendance", c["record_id"])[0].by_name for c in changes[1:])
    assert names[0] == "Bí thư Đội"
    assert names[1].startswith("Không xác định") and NODE in names[1]
