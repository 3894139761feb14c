"""The sync API at central refuses a bad batch clearly and sets a bad change aside without blocking the rest.

A batch whose envelope is wrong (token, JSON, shape, hash, node, size, reused id) is refused whole
with a precise 4xx and nothing is written. A change inside a good batch that central cannot apply
(unknown table, bad value, missing or deleted parent, outside the node's scope, a stamp that is not
the node's) is set aside as a dead letter — acknowledged, listed with its reason — while the valid
changes around it are applied: each such test checks both.
"""
from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import time
import tracemalloc
import uuid

import pytest

from tests.conftest import PASSWORD, Org
from models import SYNCED_MODELS, Attendance, Cell, ChangeLog, Meeting, Member, Node, Organisation, User, db
from models.migrations import SCHEMA_VERSION
from models.base import data_columns
from models.sync_state import AppliedBatch, DeadLetter
from sync.protocol import batch_id_for, content_hash

NODE = "doi-1"
_counter = itertools.count(1)


@pytest.fixture
def org(app):
    """Two cells (CB01 stays at central, CB02 goes to doi-1) with members; no accounts (hashing is slow)."""
    with app.app_context(), db.connection_context():
        o = Organisation.create(name="Đảng bộ Thử nghiệm Đồng bộ")
        cell = Cell.create(organisation=o.id, code="CB01", name="Chi bộ Một")
        other = Cell.create(organisation=o.id, code="CB02", name="Chi bộ Hai")
        members = [Member.create(cell=cell.id, full_name=name)
                   for name in ("Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường")]
        for name in ("Ngô Văn Khác", "Phan Thị Đội"):
            Member.create(cell=other.id, full_name=name)
        meeting = Meeting.create(cell=cell.id, held_on=dt.date.today())
        return Org(o, cell, other, members, meeting)


@pytest.fixture
def token(org, runner):
    """Register doi-1 holding the second cell (CB02) through the real CLI; return its token."""
    result = runner.invoke(args=["nodes", "register", NODE, "--cells", "CB02"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def stamp(node: str = NODE) -> str:
    """A fresh clock stamp made by `node`."""
    return f"{int(time.time() * 1000):015d}:{next(_counter):06d}:{node}"


def change(record, node: str = NODE) -> dict:
    """A new record (every column) as a field node would push it."""
    record.hlc = stamp(node)
    record.owner = node
    wire = record.to_wire()
    return {"table": record._meta.table_name, "record_id": record.id, "hlc": record.hlc,
            "payload": {"fields": {c: wire[c] for c in data_columns(type(record))}}}


def set_aside(response, index: int, reason: str) -> dict:
    """Assert the batch was accepted with exactly one change set aside (and kept as a dead letter)."""
    assert response.status_code == 200, response.get_json()
    items = response.get_json()["set_aside"]
    assert [(i["index"], i["reason"]) for i in items] == [(index, reason)], items
    assert DeadLetter.select().where((DeadLetter.reason == reason) & (DeadLetter.position == index)
                                     & DeadLetter.resolved_at.is_null()).count() == 1
    assert len(items[0]["message"]) <= 300
    return items[0]


def batch(changes: list[dict], batch_id: str | None = None, node: str = NODE, **overrides) -> dict:
    """A push body with a correct hash and (unless given) a stable id."""
    digest = content_hash(changes)
    body = {"batch_id": batch_id or batch_id_for(node, 1, len(changes), digest), "node_id": node,
            "schema_version": SCHEMA_VERSION, "from_seq": 1, "to_seq": len(changes),
            "content_hash": digest, "changes": changes}
    body.update(overrides)
    return body


def push(client, body, token: str | None, raw: bytes | None = None):
    """POST a batch (or raw bytes) with the Bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else json.dumps(body)
    return client.post("/sync/v1/push", data=data, headers=headers, content_type="application/json")


def counts() -> dict[str, int]:
    """Row counts of every synced table, the outbox and the idempotency store."""
    out = {name: model.select().count() for name, model in SYNCED_MODELS.items()}
    out["change_log"] = ChangeLog.select().count()
    out["applied_batch"] = AppliedBatch.select().count()
    return out


def new_meeting(org) -> Meeting:
    """A meeting of the cell held by doi-1, not yet known to central."""
    return Meeting(cell=org.other_cell.id, held_on=dt.date.today(), title="Sinh hoạt tại đội")


def test_valid_batch_is_applied_and_logged_with_origin(client, org, token):
    """A meeting and its attendance pushed by the node appear at central, logged with the node as origin."""
    meeting = new_meeting(org)
    member = Member.get(Member.cell == org.other_cell.id)
    mark = Attendance(meeting=meeting.id, member=member.id, status="present")
    response = push(client, batch([change(meeting), change(mark)]), token)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    assert answer["applied"] == 2 and answer["ack_seq"] == 2
    assert Meeting.get_by_id(meeting.id).title == "Sinh hoạt tại đội"
    assert Attendance.get_by_id(mark.id).status == "present"
    rows = ChangeLog.select().where(ChangeLog.record_id.in_([meeting.id, mark.id]))
    assert {(r.origin, r.scope) for r in rows} == {(NODE, NODE)}
    assert Node.get_by_id(NODE).last_push_at is not None


@pytest.mark.parametrize("header, code", [
    (None, "unauthorized"),
    ("Bearer sai-ma-dong-bo", "unauthorized"),
    ("Basic dXNlcjpwYXNz", "unauthorized"),
])
def test_push_without_a_valid_token_is_401(client, org, token, header, code):
    """No token, a wrong one or another scheme: 401, nothing applied."""
    before = counts()
    headers = {"Authorization": header} if header else {}
    response = client.post("/sync/v1/push", json=batch([change(new_meeting(org))]), headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == code
    assert "WWW-Authenticate" in response.headers
    assert counts() == before


def test_push_with_a_revoked_token_is_401(client, org, token, runner):
    """A revoked node is told so, and nothing is applied."""
    assert runner.invoke(args=["nodes", "revoke", NODE]).exit_code == 0
    before = counts()
    response = push(client, batch([change(new_meeting(org))]), token)
    assert response.status_code == 401
    body = response.get_json()
    assert body["error"] == "revoked" and "thu hồi" in body["message"]
    assert counts() == before


def test_a_logged_in_browser_session_is_not_a_sync_credential(app, client, org, token, auth):
    """Cookies never authenticate the sync API (and it needs no CSRF token)."""
    with app.app_context(), db.connection_context():
        admin = User(username="admin", role="admin", full_name="Quản trị")
        admin.set_password(PASSWORD)
        admin.save()
    assert auth.login().status_code == 303
    response = client.post("/sync/v1/push", json=batch([change(new_meeting(org))]))
    assert response.status_code == 401


@pytest.mark.parametrize("raw, error", [
    (b"{not json", "bad_json"),
    ("\"chỉ là chuỗi\"".encode(), "bad_request"),
    (json.dumps({"batch_id": "6d0f3c9a-2b1e-4f5a-8c7d-9e0a1b2c3d4e"}).encode(), "bad_request"),
])
def test_malformed_push_is_400(client, org, token, raw, error):
    """Broken JSON, a non-object, or missing fields: 400 naming the problem."""
    before = counts()
    response = push(client, None, token, raw=raw)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == error and body["message"]
    assert counts() == before


def test_missing_fields_are_named(client, org, token):
    """The 400 lists the missing fields."""
    response = push(client, None, token, raw=json.dumps({"batch_id": str(uuid.uuid4())}).encode())
    assert set(response.get_json()["fields"]) >= {"node_id", "changes", "content_hash"}


def test_content_hash_mismatch_is_400(client, org, token):
    """A batch whose changes do not match its hash is refused as damaged."""
    body = batch([change(new_meeting(org))])
    body["changes"][0]["payload"]["fields"]["title"] = "đã bị sửa trên đường"
    before = counts()
    response = push(client, body, token)
    assert response.status_code == 400 and response.get_json()["error"] == "hash_mismatch"
    assert counts() == before


def _canonical(body: dict, **extra) -> bytes:
    """The body as a field node sends it (Batch.canonical_body: canonical JSON, changes encoded once)."""
    from sync.outbox import Batch

    wire = Batch(batch_id=body["batch_id"], node_id=body["node_id"], from_seq=body["from_seq"],
                 to_seq=body["to_seq"], changes=body["changes"], content_hash=body["content_hash"],
                 schema_version=body["schema_version"])
    return wire.canonical_body(**extra)


def test_a_canonical_push_is_checked_on_its_bytes(client, org, token, monkeypatch):
    """The client's canonical body is hashed as it arrived, without encoding the changes again; a body in
    any other layout (json.dumps with spaces, as the tests above send) is still checked by re-encoding."""
    meeting = new_meeting(org)
    raw = _canonical(batch([change(meeting)]), db_id="8c6f2d0e", generation=2)
    monkeypatch.setattr("sync.server.content_hash", lambda changes: pytest.fail("the changes were encoded again"))
    response = push(client, None, token, raw=raw)
    assert response.status_code == 200 and response.get_json()["applied"] == 1, response.get_json()
    assert Meeting.get_by_id(meeting.id).title == "Sinh hoạt tại đội"


def test_a_canonical_push_damaged_on_the_way_is_400(client, org, token):
    """One changed word inside the changes' bytes (still valid JSON): refused whole, nothing applied."""
    meeting = new_meeting(org)
    raw = _canonical(batch([change(meeting)]))
    damaged = raw.replace("Sinh hoạt tại đội".encode(), "Sinh hoạt tại chợ".encode())
    assert damaged != raw
    before = counts()
    response = push(client, None, token, raw=damaged)
    assert response.status_code == 400 and response.get_json()["error"] == "hash_mismatch"
    assert counts() == before


def test_unknown_table_is_set_aside(client, org, token):
    """A change for a table central does not know is set aside; the valid change before it is applied."""
    meeting = new_meeting(org)
    bad = {"table": "khong_co_bang", "record_id": str(uuid.uuid4()), "hlc": stamp(), "payload": {"fields": {}}}
    set_aside(push(client, batch([change(meeting), bad]), token), 1, "unknown_table")
    assert Meeting.get_by_id(meeting.id).title == "Sinh hoạt tại đội"


def test_status_that_does_not_exist_is_set_aside(client, org, token):
    """An attendance status outside the list is set aside naming the rule; the meeting before it arrives."""
    meeting = new_meeting(org)
    member = Member.get(Member.cell == org.other_cell.id)
    mark = Attendance(meeting=meeting.id, member=member.id, status="co_mat_mot_nua")
    item = set_aside(push(client, batch([change(meeting), change(mark)]), token), 1, "invalid")
    assert item["record_id"] == mark.id and "điểm danh" in item["message"]
    assert Attendance.get_or_none(Attendance.id == mark.id) is None
    assert Meeting.get_or_none(Meeting.id == meeting.id) is not None


def test_unknown_member_waits_as_missing_parent_and_applies_when_it_arrives(client, org, token):
    """Attendance for a member central has not seen yet is set aside, then applied once the member arrives."""
    meeting = new_meeting(org)
    newcomer = Member(cell=org.other_cell.id, full_name="Người Đến Sau")
    mark = Attendance(meeting=meeting.id, member=newcomer.id, status="present")
    item = set_aside(push(client, batch([change(meeting), change(mark)]), token), 1, "missing_parent")
    assert "member" in item["message"]
    later = batch([change(newcomer)])
    later.update(from_seq=3, to_seq=3)
    later["batch_id"] = batch_id_for(NODE, 3, 3, later["content_hash"])
    answer = push(client, later, token).get_json()
    assert answer["retried"] == 1
    assert Attendance.get_by_id(mark.id).status == "present"
    assert DeadLetter.select().where(DeadLetter.resolved_at.is_null()).count() == 0


@pytest.mark.parametrize("field, value, expected", [("hlc", "khong-phai-dau-thoi-gian", "invalid"),
                                                    ("title", 12345, "invalid"),
                                                    ("khong_co_truong", "x", "invalid")])
def test_invalid_payload_fields_are_set_aside(client, org, token, field, value, expected):
    """A bad clock stamp, a wrongly typed field or an unknown field: set aside, the rest applied."""
    good_meeting, bad_meeting = new_meeting(org), new_meeting(org)
    good, bad = change(good_meeting), change(bad_meeting)
    if field == "hlc":
        bad["hlc"] = value
    else:
        bad["payload"]["fields"][field] = value
    set_aside(push(client, batch([good, bad]), token), 1, expected)
    assert Meeting.get_or_none(Meeting.id == good_meeting.id) is not None
    assert Meeting.get_or_none(Meeting.id == bad_meeting.id) is None


def test_stamp_of_another_node_is_set_aside(client, org, token):
    """A node may only push changes it stamped itself."""
    meeting = new_meeting(org)
    set_aside(push(client, batch([change(meeting, node="central")]), token), 0, "invalid")
    assert Meeting.get_or_none(Meeting.id == meeting.id) is None


def test_record_of_a_cell_held_elsewhere_is_set_aside(client, org, token):
    """A meeting for central's cell (CB01) is out of doi-1's scope: set aside; the valid meeting arrives."""
    good = new_meeting(org)
    foreign = Meeting(cell=org.cell.id, held_on=dt.date.today())
    set_aside(push(client, batch([change(good), change(foreign)]), token), 1, "out_of_scope")
    assert Meeting.get_or_none(Meeting.id == foreign.id) is None
    assert Meeting.get_or_none(Meeting.id == good.id) is not None


def test_moving_a_foreign_record_into_scope_is_set_aside(client, org, token):
    """Editing an existing member of CB01 so that it lands in CB02 is refused (scope before the change)."""
    member = org.members[1]
    member.cell = org.other_cell.id
    member.full_name = "Tên bị đổi"
    set_aside(push(client, batch([change(member)]), token), 0, "out_of_scope")
    assert Member.get_by_id(member.id).full_name == "Trần Thị Bình"


def test_organisation_records_are_central_only(client, org, token):
    """A field node may not write cells (scope '*'): set aside."""
    cell = org.other_cell
    cell.name = "Đổi tên từ đội"
    item = set_aside(push(client, batch([change(cell)]), token), 0, "out_of_scope")
    assert "phạm vi" in item["message"]
    assert Cell.get_by_id(cell.id).name == "Chi bộ Hai"


def test_wrong_node_id_in_batch_is_403(client, org, token):
    """A batch claiming another node's id is refused."""
    response = push(client, batch([change(new_meeting(org), node="doi-2")], node="doi-2"), token)
    assert response.status_code == 403 and response.get_json()["error"] == "wrong_node"


def test_same_batch_twice_gets_the_same_answer_and_no_duplicates(client, org, token):
    """Resending a batch (answer lost on the way) returns the stored answer and writes nothing."""
    meeting = new_meeting(org)
    body = batch([change(meeting)])
    first = push(client, body, token)
    assert first.status_code == 200
    after_first = counts()
    second = push(client, body, token)
    assert second.status_code == 200
    assert second.get_json() == first.get_json()
    assert second.headers.get("X-Chibo-Replay") == "1"
    assert counts() == after_first
    assert Meeting.select().where(Meeting.id == meeting.id).count() == 1


def test_same_batch_id_with_other_content_is_409(client, org, token):
    """Reusing a batch id for different changes: 409 and nothing applied."""
    first = batch([change(new_meeting(org))])
    assert push(client, first, token).status_code == 200
    before = counts()
    other = batch([change(new_meeting(org))], batch_id=first["batch_id"])
    response = push(client, other, token)
    assert response.status_code == 409 and response.get_json()["error"] == "batch_conflict"
    assert counts() == before


def test_oversize_request_is_413(app, client, org, token):
    """A body over SYNC_MAX_REQUEST_BYTES is refused before it is read."""
    app.config["SYNC_MAX_REQUEST_BYTES"] = 2000
    changes = [change(new_meeting(org)) for _ in range(20)]
    before = counts()
    response = push(client, batch(changes), token)
    assert response.status_code == 413 and response.get_json()["error"] == "too_large"
    assert counts() == before


def push_gzip(client, data: bytes, token: str, encoding: str = "gzip"):
    """POST already compressed bytes as a field node does (Content-Encoding set)."""
    return client.post("/sync/v1/push", data=data, content_type="application/json",
                       headers={"Authorization": f"Bearer {token}", "Content-Encoding": encoding})


def test_a_gzip_compressed_push_is_applied_like_a_plain_one(client, org, token):
    """A node on a slow link gzips its batch: central applies it and answers as for the plain body."""
    meeting = new_meeting(org)
    body = batch([change(meeting)])
    response = push_gzip(client, gzip.compress(json.dumps(body).encode()), token)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["applied"] == 1
    assert Meeting.get_by_id(meeting.id).title == "Sinh hoạt tại đội"
    # Sent again plain (the same batch id): a replay, not a second copy.
    again = push(client, body, token)
    assert again.status_code == 200 and again.headers.get("X-Chibo-Replay") == "1"
    assert Meeting.select().where(Meeting.id == meeting.id).count() == 1


def test_a_gzip_body_of_several_members_is_read_whole(client, org, token):
    """gzip allows members one after another; every one is read (nothing is silently dropped)."""
    raw = json.dumps(batch([change(new_meeting(org)), change(new_meeting(org))])).encode()
    response = push_gzip(client, gzip.compress(raw[:100]) + gzip.compress(raw[100:]), token)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["applied"] == 2


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not_gzip", "empty"])
def test_a_damaged_gzip_push_is_400_and_writes_nothing(client, org, token, damage):
    """Compressed bytes broken on the way are refused as such (bad_gzip), before anything is applied."""
    packed = gzip.compress(json.dumps(batch([change(new_meeting(org))])).encode())
    data = {"truncated": packed[:-9], "flipped": packed[:40] + bytes([packed[40] ^ 0xFF]) + packed[41:],
            "not_gzip": b'{"batch_id": "x"}', "empty": b""}[damage]
    before = counts()
    response = push_gzip(client, data, token)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"] == "bad_gzip"
    assert "gzip" in response.get_json()["message"]
    assert counts() == before


def test_a_gzip_body_expanding_past_the_limit_is_413(app, client, org, token):
    """A small compressed body that expands past SYNC_MAX_REQUEST_BYTES is refused, not inflated whole."""
    app.config["SYNC_MAX_REQUEST_BYTES"] = 100_000
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
    assert len(bomb) < 100_000
    before = counts()
    tracemalloc.start()
    try:
        response = push_gzip(client, bomb, token)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413 and response.get_json()["error"] == "too_large"
    assert "giải nén" in response.get_json()["message"]
    assert peak < 5_000_000, f"{peak} bytes held to refuse it: the body was inflated past the limit"
    assert counts() == before


def test_a_push_in_another_content_encoding_is_415(client, org, token):
    """Only gzip (or no coding) is understood; anything else is named in a 415, nothing is applied."""
    before = counts()
    response = push_gzip(client, json.dumps(batch([change(new_meeting(org))])).encode(), token, encoding="br")
    assert response.status_code == 415 and response.get_json()["error"] == "unsupported_encoding"
    assert "br" in response.get_json()["message"]
    assert counts() == before


def test_too_many_changes_is_413(app, client, org, token):
    """A batch over SYNC_MAX_BATCH_CHANGES is refused."""
    app.config["SYNC_MAX_BATCH_CHANGES"] = 2
    response = push(client, batch([change(new_meeting(org)) for _ in range(3)]), token)
    assert response.status_code == 413


def test_stale_change_does_not_overwrite_newer_data(client, org, token):
    """Last writer wins per column by clock stamp: an older stamp is acknowledged but skipped."""
    meeting = new_meeting(org)
    old = change(meeting)
    old["hlc"] = "000000000000001:000000:doi-1"
    newer = change(meeting)
    assert push(client, batch([newer]), token).status_code == 200
    response = push(client, batch([old]), token)
    assert response.status_code == 200 and response.get_json()["skipped"] == 1
    assert Meeting.get_by_id(meeting.id).hlc == newer["hlc"]


def test_hello_records_versions_and_refuses_another_schema(client, org, token):
    """The handshake records the node's versions and clock; a different schema gets a clear refusal."""
    headers = {"Authorization": f"Bearer {token}"}
    body = {"node_id": NODE, "app_version": "0.1.0", "schema_version": SCHEMA_VERSION, "hlc": stamp(),
            "wall_ms": int(time.time() * 1000) + 60_000}
    response = client.post("/sync/v1/hello", json=body, headers=headers)
    assert response.status_code == 200
    assert response.get_json()["schema_version"] == SCHEMA_VERSION
    assert response.get_json()["request_encodings"] == ["gzip"]  # a node may compress its pushes
    node = Node.get_by_id(NODE)
    assert node.last_seen_at is not None and node.app_version == "0.1.0"
    assert 55_000 < node.clock_skew_ms < 65_000
    older = client.post("/sync/v1/hello", json={**body, "schema_version": SCHEMA_VERSION - 1}, headers=headers)
    assert older.status_code == 426 and "cập nhật" in older.get_json()["message"]
    newer = client.post("/sync/v1/hello", json={**body, "schema_version": SCHEMA_VERSION + 1}, headers=headers)
    assert newer.status_code == 409 and newer.get_json()["error"] == "schema_mismatch"


def test_pull_serves_scope_and_star_but_not_other_cells(client, org, token):
    """The feed holds the organisation, cells and CB02's members, never CB01's members."""
    headers = {"Authorization": f"Bearer {token}"}
    cursor, changes = 0, []
    while True:
        page = client.get(f"/sync/v1/pull?cursor={cursor}&limit=3", headers=headers).get_json()
        changes += page["changes"]
        assert len(page["changes"]) <= 3
        assert page["next_cursor"] >= cursor
        cursor = page["next_cursor"]
        if not page["more"]:
            break
    ids = {c["record_id"] for c in changes}
    assert org.organisation.id in ids and org.cell.id in ids and org.other_cell.id in ids
    other_members = {m.id for m in Member.select().where(Member.cell == org.other_cell.id)}
    assert other_members and other_members <= ids
    assert not ({m.id for m in org.members} & ids)
    assert org.meeting.id not in ids
    seqs = [c["seq"] for c in changes]
    assert seqs == sorted(seqs)
    # Nothing new: an empty page that keeps the cursor.
    last = client.get(f"/sync/v1/pull?cursor={cursor}", headers=headers).get_json()
    assert last["changes"] == [] and last["next_cursor"] == cursor and last["more"] is False


def test_pull_never_echoes_the_nodes_own_changes(client, org, token):
    """What the node pushed does not come back to it."""
    headers = {"Authorization": f"Bearer {token}"}
    top = client.get("/sync/v1/pull?cursor=0&limit=100000", headers=headers).get_json()["next_cursor"]
    meeting = new_meeting(org)
    assert push(client, batch([change(meeting)]), token).status_code == 200
    page = client.get(f"/sync/v1/pull?cursor={top}", headers=headers).get_json()
    assert meeting.id not in {c["record_id"] for c in page["changes"]}
    # A node rebuilding its scope (restored, replaced) asks for them on every page with full=1.
    rebuild = client.get(f"/sync/v1/pull?cursor={top}&full=1", headers=headers).get_json()
    assert meeting.id in {c["record_id"] for c in rebuild["changes"]}


@pytest.mark.parametrize("query", ["cursor=abc", "cursor=-1", "limit=0"])
def test_pull_with_a_bad_cursor_is_400(client, org, token, query):
    """cursor and limit must be non-negative integers."""
    response = client.get(f"/sync/v1/pull?{query}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400


def test_pull_without_token_is_401(client, org, token):
    """The feed is not readable without a token."""
    assert client.get("/sync/v1/pull?cursor=0").status_code == 401


def test_hello_refuses_a_clock_far_in_the_future(client, org, token):
    """A node whose device clock runs days ahead is told to fix it; its skew is recorded (and shown)."""
    ahead = int(time.time() * 1000) + 3 * 24 * 3600 * 1000
    body = {"node_id": NODE, "app_version": "0.1.0", "schema_version": SCHEMA_VERSION,
            "hlc": f"{ahead:015d}:000000:{NODE}", "wall_ms": ahead}
    response = client.post("/sync/v1/hello", json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 409 and response.get_json()["error"] == "clock_drift"
    assert "ngày giờ" in response.get_json()["message"]
    assert Node.get_by_id(NODE).clock_skew_ms > 2 * 24 * 3600 * 1000


def test_sync_api_is_not_served_by_a_field_node(tmp_path):
    """A field node is not a hub: its sync API answers 404."""
    from app import create_app

    field = create_app({"TESTING": True, "SECRET_KEY": "t", "ROLE": "field", "NODE_ID": "doi-9",
                        "DATABASE_URL": f"sqlite:///{tmp_path / 'field.sqlite3'}"})
    response = field.test_client().get("/sync/v1/pull?cursor=0", headers={"Authorization": "Bearer x"})
    assert response.status_code == 404


def pull_all(client, token: str, cursor: int = 0) -> tuple[list[dict], int]:
    """Every change after `cursor`, page by page; return them and the final cursor."""
    changes = []
    while True:
        page = client.get(f"/sync/v1/pull?cursor={cursor}&limit=50",
                          headers={"Authorization": f"Bearer {token}"}).get_json()
        changes += page["changes"]
        cursor = page["next_cursor"]
        if not page["more"]:
            return changes, cursor


def test_a_cell_handed_over_later_brings_its_history(app, client, org, token):
    """When central gives the node another cell, the cell's existing records arrive on the next pull."""
    _, cursor = pull_all(client, token)
    with app.app_context(), db.connection_context():
        cell = Cell.get_by_id(org.cell.id)
        cell.node_id = NODE
        cell.save()
    changes, end = pull_all(client, token, cursor)
    ids = [c["record_id"] for c in changes]
    assert {m.id for m in org.members} <= set(ids) and org.meeting.id in ids
    # Parents first: the cell change comes before its members.
    assert ids.index(org.cell.id) < min(ids.index(m.id) for m in org.members)
    # Re-homing happens once: a further pull is empty.
    assert pull_all(client, token, end)[0] == []


def test_the_same_batch_pushed_twice_at_once_is_applied_once(app, org, token):
    """Two workers receiving the same batch at the same moment: one applies, the other replays."""
    from concurrent.futures import ThreadPoolExecutor

    meetings = [new_meeting(org) for _ in range(30)]
    body = batch([change(m) for m in meetings])
    before = ChangeLog.select().count()

    def send(_):
        """One worker's request."""
        return push(app.test_client(), body, token)

    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(send, range(2)))
    assert [r.status_code for r in answers] == [200, 200]
    assert answers[0].get_json() == answers[1].get_json()
    assert sorted(r.headers.get("X-Chibo-Replay", "0") for r in answers) == ["0", "1"]
    assert ChangeLog.select().count() == before + len(meetings)
    assert AppliedBatch.select().count() == 1
