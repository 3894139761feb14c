"""The write policy of field nodes (models/policy.py), rule by rule, in process.

Central's side is `check_remote_change()` on a record as central has it and the record as a node
would leave it; the node's side is `SyncedModel.save()` on a field node (FIELD_NODE set), which must
refuse the same things with a Vietnamese message before anything is queued, and let every honest
write of a secretary through. Cell CB01 is held by doi-1, CB02 by doi-2.
"""
from __future__ import annotations

import datetime as dt
import json
from contextlib import contextmanager

import pytest
from peewee import CharField

import models.base
from models import SYNCED_MODELS, AuditEntry, Cell, ChangeLog, Member, SyncedModel, User, ValidationError, db
from models.audit import acting_as
from models.checklist_seed import seed_checklists
from models.checklists import Answer, AnswerSet, TemplateItem, TemplateVersion, answer_set_for, set_answer
from models.clock import clock
from models.meetings import Attendance, Meeting, set_attendance
from models.members import MemberStatusChange, Position, assign_position, change_status
from models.policy import FIXED, POLICIES, PolicyViolation, changed_columns, check_remote_change
from sync.protocol import Refusal

from tests.conftest import PASSWORD

ARGON = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


@pytest.fixture
def held(app, org):
    """Inside the app: CB01 held by doi-1 (with a secretary and a member account), CB02 by doi-2."""
    with app.app_context(), db.connection_context():
        for cell, node in ((org.cell, "doi-1"), (org.other_cell, "doi-2")):
            cell = Cell.get_by_id(cell.id)
            cell.node_id = node
            cell.save()
        member_account = User.get(User.username == "dangvien1")
        member_account.member = org.members[3].id
        member_account.save()
        yield org


@contextmanager
def field_node(node_id: str = "doi-1"):
    """Write as field node `node_id` does: its scope guard and policy on, its id in every stamp."""
    saved = models.base.FIELD_NODE, clock.node_id
    models.base.FIELD_NODE, clock.node_id = node_id, node_id
    try:
        yield
    finally:
        models.base.FIELD_NODE, clock.node_id = saved


def remote(node_id: str, record: SyncedModel, **changes) -> None:
    """Central's check of a pushed update: `record` as stored, changed by `changes`."""
    model = type(record)
    current = model.get_by_id(record.id)
    merged = model(**{**current.__data__, **changes})
    check_remote_change(node_id, model, current, merged, changed_columns(model, current, merged))


def remote_create(node_id: str, record: SyncedModel) -> None:
    """Central's check of a pushed creation (owner defaults to the pusher, as a node's save() makes it)."""
    record.owner = record.owner or node_id
    check_remote_change(node_id, type(record), None, record, changed_columns(type(record), None, record))


def user(username: str) -> User:
    """An account by name."""
    return User.get(User.username == username)


# -- the policy as data ----------------------------------------------------------------------------

def test_every_synced_table_has_a_policy():
    """A new synced model without a policy entry fails here (and is refused by default at runtime)."""
    assert sorted(SYNCED_MODELS) == sorted(POLICIES)


def test_a_table_without_a_policy_is_refused():
    """Default deny: a synced table nobody wrote a policy for cannot be written by a node."""
    class Unlisted(SyncedModel):
        class Meta:
            table_name = "unlisted_thing"

    with pytest.raises(PolicyViolation, match="chưa có chính sách"):
        check_remote_change("doi-1", Unlisted, None, Unlisted(owner="doi-1"), {"id", "owner"})


def test_the_policy_names_only_real_columns_and_never_identity_role_or_scope_columns():
    """Every writable column exists; none is id/owner/created_at, a role, a lock or a cell's holder."""
    forbidden = FIXED | {"role", "username", "active", "node_id", "node", "scope", "member_id", "cell_id"}
    for table, policy in POLICIES.items():
        columns = {f.column_name for f in SYNCED_MODELS[table]._meta.sorted_fields}
        assert policy.update <= columns, table
        # A member may move among the node's own cells (the scope check before and after keeps it there).
        assert not (policy.update & forbidden) - ({"cell_id"} if table == "member" else set()), table
    assert POLICIES["app_user"].update == {"password_hash"} and not POLICIES["app_user"].create


@pytest.mark.parametrize("table", ["organisation", "cell", "rule_set", "checklist_template", "template_version",
                                   "template_section", "template_item"])
def test_central_only_tables_refuse_every_write_from_a_node(held, table):
    """Organisation, cells, rules and templates are central's: a node creates, edits and deletes none."""
    seed_checklists()
    model = SYNCED_MODELS[table]
    record = model.select().first()
    text_column = next(f.name for f in model._meta.sorted_fields
                       if f.name not in ("id", "owner", "hlc") and isinstance(f, CharField))
    with pytest.raises(PolicyViolation, match="chỉ trung tâm sửa được"):
        remote("doi-1", record, **{text_column: "đổi"})
    with pytest.raises(PolicyViolation):
        remote("doi-1", record, deleted_at=dt.datetime(2025, 1, 1))
    fresh = model(**{k: v for k, v in record.__data__.items() if k != "id"})
    fresh.owner = ""
    with pytest.raises(PolicyViolation, match="chỉ trung tâm tạo được"):
        remote_create("doi-1", fresh)


# -- accounts --------------------------------------------------------------------------------------

def test_admin_accounts_never_leave_central_and_supervisors_reach_every_node(held):
    """Scope of accounts: admin 'central' (never served), supervisor '*', a cell's people their node."""
    assert user("admin").sync_scope() == "central"
    assert user("btv").sync_scope() == "*"
    assert user("bithu1").sync_scope() == "doi-1" and user("dangvien1").sync_scope() == "doi-1"
    assert user("bithu2").sync_scope() == "doi-2"
    logged = {row.record_id: row.scope for row in ChangeLog.select().where(ChangeLog.table == "app_user")}
    assert logged[user("admin").id] == "central"


@pytest.mark.parametrize("changes, column", [
    ({"role": "admin"}, "role"),
    ({"role": "supervisor"}, "role"),
    ({"active": False}, "active"),
    ({"username": "admin2"}, "username"),
    ({"full_name": "Người khác"}, "full_name"),
    ({"cell": "other"}, "cell_id"),
    ({"owner": "doi-1"}, "owner"),
    ({"deleted_at": dt.datetime(2025, 1, 1)}, "deleted_at"),
])
def test_a_node_changes_nothing_of_its_secretary_but_the_password(held, changes, column):
    """Role, lock, name, username, cell, owner, deletion: refused with the column named."""
    if changes.get("cell") == "other":
        changes = {"cell": held.other_cell.id}
    with pytest.raises(PolicyViolation) as refused:
        remote("doi-1", user("bithu1"), **changes)
    assert column in str(refused.value) or refused.value.column == "deleted_at"


def test_unlocking_a_locked_account_is_refused(held):
    """An account central locked stays locked whatever a node pushes."""
    locked = user("bithu1")
    locked.active = False
    locked.save()
    with pytest.raises(PolicyViolation, match="active"):
        remote("doi-1", locked, active=True)


def test_a_node_stores_a_new_password_hash_only_as_argon2id(held):
    """Own password change or a rehash at login passes; a plaintext or foreign hash does not."""
    remote("doi-1", user("bithu1"), password_hash=ARGON)
    with pytest.raises(PolicyViolation, match="argon2id"):
        remote("doi-1", user("bithu1"), password_hash="matkhau123")


def test_a_member_account_cannot_be_pointed_at_another_cells_member(held):
    """member_id is central's to set; and an account's member must be in the account's cell."""
    stranger = Member.get(Member.cell == held.other_cell.id)
    with pytest.raises(PolicyViolation, match="member_id"):
        remote("doi-1", user("dangvien1"), member=stranger.id)


@pytest.mark.parametrize("role", ["admin", "supervisor", "secretary", "member"])
def test_a_node_creates_no_account_of_any_role(held, role):
    """Accounts are made at central only, whatever role, owner or password a node sends."""
    fake = User(username=f"moi-{role}", role=role, cell=held.cell.id if role in ("secretary", "member") else None,
                password_hash=ARGON, owner="central")
    with pytest.raises(PolicyViolation):
        remote_create("doi-1", fake)
    fake.owner = "doi-1"
    with pytest.raises(PolicyViolation, match="chỉ trung tâm tạo được"):
        remote_create("doi-1", fake)


# -- roll call, meetings, members ------------------------------------------------------------------

def test_a_roll_call_mark_needs_a_member_of_the_meetings_cell(held):
    """A mark for another cell's (another node's) member is refused; one for the cell's own passes."""
    stranger = Member.get(Member.cell == held.other_cell.id)
    with pytest.raises(PolicyViolation, match="không thuộc chi bộ của buổi sinh hoạt"):
        remote_create("doi-1", Attendance(meeting=held.meeting.id, member=stranger.id, status="present"))
    remote_create("doi-1", Attendance(meeting=held.meeting.id, member=held.members[0].id, status="present"))


def test_a_mark_keeps_its_meeting_and_member_but_may_change_status_and_be_removed(held):
    """Status, reason and tombstone are the node's; the member of a mark is not."""
    mark = set_attendance(held.meeting, held.members[0].id, "present")
    remote("doi-1", mark, status="excused", reason="Ốm")
    remote("doi-1", mark, deleted_at=dt.datetime(2025, 1, 1))
    with pytest.raises(PolicyViolation, match="member_id"):
        remote("doi-1", mark, member=held.members[1].id)


def test_a_node_edits_and_moves_its_members_but_never_deletes_or_reowns_them(held):
    """Content edits and a move between cells pass the policy; delete and owner changes do not."""
    member = held.members[0]
    remote("doi-1", member, full_name="Nguyễn Văn An Sửa", birth_year=1970, status="exempted")
    remote("doi-1", member, cell=held.other_cell.id)  # the scope check (not the policy) keeps it in doi-1
    with pytest.raises(PolicyViolation, match="xóa"):
        remote("doi-1", member, deleted_at=dt.datetime(2025, 1, 1))
    with pytest.raises(PolicyViolation, match="owner"):
        remote("doi-1", member, owner="doi-1-gia")
    with pytest.raises(PolicyViolation, match="created_at"):
        remote("doi-1", member, created_at=dt.datetime(2000, 1, 1))


def test_a_created_record_belongs_to_the_node_that_made_it(held):
    """A new record with another owner (e.g. faked as central) is refused."""
    with pytest.raises(PolicyViolation, match="chủ sở hữu"):
        remote_create("doi-1", Member(cell=held.cell.id, full_name="Giả mạo", owner="central"))
    remote_create("doi-1", Member(cell=held.cell.id, full_name="Đảng viên mới"))


def test_meetings_keep_their_cell_and_status_changes_are_never_edited(held):
    """A meeting is edited but not moved; a status-change event is written once."""
    remote("doi-1", held.meeting, title="Đổi tiêu đề", status="closed")
    with pytest.raises(PolicyViolation, match="cell_id"):
        remote("doi-1", held.meeting, cell=held.other_cell.id)
    event = change_status(held.members[1], "exempted", dt.date.today(), "NQ 1", "Ốm dài ngày")
    with pytest.raises(PolicyViolation):
        remote("doi-1", event, reason="Sửa lý do")


def test_positions_are_cell_committee_terms_only(held):
    """A node opens and ends cell-committee terms; a higher committee's position is central's."""
    remote_create("doi-1", Position(member=held.members[2].id, kind="chi_uy_vien", start_on=dt.date.today()))
    with pytest.raises(PolicyViolation, match="chi ủy"):
        remote_create("doi-1", Position(member=held.members[2].id, kind="uy_vien_btv", start_on=dt.date.today()))
    term = assign_position(held.members[2], "chi_uy_vien", dt.date.today())
    remote("doi-1", term, end_on=dt.date.today())
    with pytest.raises(PolicyViolation, match="kind"):
        remote("doi-1", term, kind="bi_thu")


def test_an_answer_must_belong_to_its_sheets_version(held):
    """An answer for an item of another version is refused; the sheet must use a published version."""
    seed_checklists()
    sheet = answer_set_for(held.meeting, "thuong_ky", "self")
    own_item = TemplateItem.get(TemplateItem.version == sheet.version_id)
    foreign = TemplateItem.select().where(TemplateItem.version != sheet.version_id).first()
    remote_create("doi-1", Answer(answer_set=sheet.id, item=own_item.id, value_json="true"))
    with pytest.raises(PolicyViolation, match="phiên bản phiếu"):
        remote_create("doi-1", Answer(answer_set=sheet.id, item=foreign.id, value_json="true"))
    draft = TemplateVersion.create(template=sheet.version.template_id, number=99, status="draft")
    with pytest.raises(PolicyViolation, match="đã ban hành"):
        remote_create("doi-1", AnswerSet(version=draft.id, meeting=held.meeting.id, role="self"))


# -- audit trail -----------------------------------------------------------------------------------

def audit(record_table: str, record_id: str, **over) -> AuditEntry:
    """An audit entry as node doi-1 would make it (fields overridable)."""
    values = dict(table=record_table, record_id=record_id, action="update", node="doi-1", scope="doi-1",
                  changes_json=json.dumps({"role": {"old": "admin", "new": "member"}}))
    values.update(over)
    return AuditEntry(**values)


def test_audit_entries_describe_only_the_nodes_own_records_and_name_the_pusher(held):
    """About an admin's account, another node's member, with a faked node or scope: refused."""
    remote_create("doi-1", audit("member", held.members[0].id))
    remote_create("doi-1", audit("member", "0190e4c2-0000-7000-8000-00000000abcd"))  # arrives just after
    stranger = Member.get(Member.cell == held.other_cell.id)
    for entry, reason in ((audit("app_user", user("admin").id), "ngoài phạm vi"),
                          (audit("member", stranger.id), "ngoài phạm vi"),
                          (audit("member", held.members[0].id, node="central"), "đúng nút"),
                          (audit("member", held.members[0].id, scope="*"), "phạm vi của nút"),
                          (audit("audit_entry", held.members[0].id), "bảng đồng bộ"),
                          (audit("bang_la", held.members[0].id), "bảng đồng bộ"),
                          (audit("member", held.members[0].id, user_id=user("admin").id), "người thực hiện")):
        with pytest.raises(PolicyViolation, match=reason):
            remote_create("doi-1", entry)


def test_audit_entries_are_never_rewritten_by_a_node(held):
    """History is written once: a node edits or deletes no entry, even its own."""
    entry = audit("member", held.members[0].id)
    entry.owner = "doi-1"
    with field_node():
        entry.save()
    with pytest.raises(PolicyViolation):
        remote("doi-1", entry, changes_json="{}")
    with pytest.raises(PolicyViolation):
        remote("doi-1", entry, deleted_at=dt.datetime(2025, 1, 1))


# -- messages --------------------------------------------------------------------------------------

def test_refusals_never_echo_a_huge_value(held):
    """A 1 MB value is cut: the policy message and every text of a refusal body stay short."""
    huge = "x" * 1_000_000
    with pytest.raises(PolicyViolation) as refused:
        remote_create("doi-1", Member(cell=held.cell.id, full_name="A", owner=huge))
    assert len(str(refused.value)) <= 300
    body = Refusal(422, "invalid_record", f"Không hợp lệ: {huge}", errors={"full_name": huge},
                   record={"index": 1, "table": "member", "record_id": huge}).body()
    assert len(json.dumps(body, ensure_ascii=False)) < 2000
    assert body["message"].startswith("Không hợp lệ: xxx")


# -- the same policy on the field node, before anything is queued ----------------------------------

def queued() -> int:
    """Changes in this database's outbox."""
    return ChangeLog.select().count()


def test_an_honest_secretary_writes_pass_both_checks(held):
    """Roll call, sheet answers, member edits and moves, status, terms, own password: saved and queued."""
    seed_checklists()
    with field_node(), acting_as(user("bithu1").id, "Bí thư Một"):
        before = queued()
        meeting = Meeting.create(cell=held.cell.id, held_on=dt.date.today() - dt.timedelta(days=40), kind="extraordinary", title="Họp tại đội")
        for member in held.members[:3]:
            set_attendance(meeting, member.id, "present")
        set_attendance(meeting, held.members[0].id, None)  # one tap more: excused
        member = Member.get_by_id(held.members[1].id)
        member.full_name, member.birth_year = "Trần Thị Bình Sửa", 1975
        member.save()
        newcomer = Member.create(cell=held.cell.id, full_name="Đảng viên Mới Chuyển Đến")
        change_status(newcomer, "probationary", dt.date.today(), "", "")
        assign_position(held.members[2], "pho_bi_thu", dt.date.today())
        sheet = answer_set_for(meeting, "thuong_ky", "self", by="bithu1")
        set_answer(sheet, TemplateItem.get(TemplateItem.version == sheet.version_id, TemplateItem.type == "yes_no"),
                   "1")
        me = user("bithu1")
        me.set_password("mat-khau-moi-cua-toi")
        me.save()
        assert me.check_password("mat-khau-moi-cua-toi")
        made = queued() - before
    assert made >= 15
    rows = ChangeLog.select().where(ChangeLog.origin == "doi-1").order_by(ChangeLog.seq)
    assert {r.scope for r in rows} == {"doi-1"}


@pytest.mark.parametrize("attack, field", [
    ("admin_role", "scope"), ("role", "role"), ("unlock", "active"), ("member", "member"), ("create_account", "policy"),
    ("foreign_mark", "policy"), ("audit_admin", "policy"), ("delete_member", "deleted_at"),
])
def test_the_field_node_refuses_locally_what_central_would_refuse(held, attack, field):
    """Each attack stops at save() with a Vietnamese message, and nothing reaches the outbox."""
    stranger = Member.get(Member.cell == held.other_cell.id)
    locked = user("dangvien1")
    locked.active = False
    locked.save()
    before = queued()
    with field_node(), pytest.raises(ValidationError) as refused:
        if attack in ("admin_role", "role"):
            # An admin's account is central's scope: the scope guard stops it before the policy.
            account = user("bithu1")
            account.role = "admin" if attack == "admin_role" else "member"
            account.save()
        elif attack == "unlock":
            locked.active = True
            locked.save()
        elif attack == "member":
            account = user("dangvien1")
            account.member = stranger.id
            account.save()
        elif attack == "create_account":
            fake = User(username="quantri2", role="secretary", cell=held.cell.id, owner="central")
            fake.set_password(PASSWORD)
            fake.save()
        elif attack == "foreign_mark":
            Attendance.create(meeting=held.meeting.id, member=stranger.id, status="present")
        elif attack == "audit_admin":
            audit("app_user", user("admin").id).save()
        elif attack == "delete_member":
            Member.get_by_id(held.members[4].id).soft_delete()
    assert field in refused.value.errors
    message = refused.value.errors[field]
    assert message.startswith("Trung tâm sẽ từ chối" if field != "scope" else "Dữ liệu này") and len(message) < 400
    assert queued() == before


def test_the_node_refuses_an_account_pointed_at_another_member_of_its_own_cell(held):
    """Even inside the cell, which member an account belongs to is central's decision."""
    with field_node(), pytest.raises(ValidationError, match="member_id"):
        account = user("dangvien1")
        account.member = held.members[5].id
        account.save()


def test_a_supervisor_on_a_site_visit_scores_the_meeting_at_the_node(held):
    """The supervisor's account reaches every node; their sheet for the node's meeting is the node's to send."""
    seed_checklists()
    before = queued()
    with field_node(), acting_as(user("btv").id, "Ủy viên Ban Thường vụ"):
        sheet = answer_set_for(held.meeting, "thuong_ky", "supervisor", by="btv")
        item = TemplateItem.get(TemplateItem.version == sheet.version_id, TemplateItem.type == "yes_no")
        set_answer(sheet, item, "1")
    entries = AuditEntry.select().where(AuditEntry.user_id == user("btv").id)
    # The sheet and its audit row, and the answer, which names the supervisor on the change itself.
    assert queued() - before >= 3 and {e.node for e in entries} == {"doi-1"}
    answer_change = (ChangeLog.select().where(ChangeLog.table == "answer").order_by(ChangeLog.seq.desc()).first())
    assert json.loads(answer_change.payload)["by"] == user("btv").id
