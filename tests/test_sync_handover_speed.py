"""Handover at speed (issue 10): the set-based `rehome_cells` writes exactly the feed rows the old one wrote.

The reference below is sync/scope.py's handover before issue 10 (ORM queries per record: each
record's scope, its told scope, its parents), kept as it was apart from the `old_` names. A central
with four cells, three nodes, members with status changes and positions, meetings with roll calls,
tombstones, tasks carried over between meetings, checklists, a supervision visit and accounts goes
through handovers (cells assigned, handed from one node to another, released; members and an account
moved; a moved member's past marks as context of another node). At each step the old code runs in a
transaction that is rolled back, then the new code runs: the rows appended to the feed (table, record,
stamp, origin, scope, payload text, in feed order) and the handover state in `sync_state` must be the
same. Runs on SQLite and, with CHIBO_TEST_DB=postgres, on PostgreSQL.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable

import pytest
from peewee import ForeignKeyField, SqliteDatabase, fn

from models import (SYNCED_MODELS, Answer, Attendance, Cell, ChangeLog, Meeting, Member, Node, Organisation,
                    SyncState, SyncedModel, User, clock, db)
from models.base import write_transaction
from models.checklist_seed import seed_checklists
from models.checklists import TemplateItem, published_for_kind
from models.meeting_record import Task, TaskReview
from models.members import assign_position, change_status
from models.nodes import hash_token
from models.org import CENTRAL_NODE
from models.supervision import Recommendation, RecommendationEvent, SupervisionVisit
from sync import scope
from sync.scope import (CHUNK, HOME_KEY, WATERMARK_KEY, Move, Plan, Reader, _is_scoped, _plain, _scope_of,
                        assign_cells, moved_cells, topological_models)

# -- the reference: the handover before issue 10 ---------------------------------------------------


def old_moved_records(after: int, upto: int) -> list[Move]:
    """Records whose logged scope changed in the feed rows (after, upto]: (record, old scopes, new scope)."""
    rows = (ChangeLog.select(ChangeLog.seq, ChangeLog.table, ChangeLog.record_id, ChangeLog.scope)
            .where((ChangeLog.seq > after) & (ChangeLog.seq <= upto) & _plain(ChangeLog.payload))
            .order_by(ChangeLog.seq).tuples())
    scopes: dict[tuple[str, str], list[str]] = {}
    for _seq, table, record_id, scope_ in rows:
        scopes.setdefault((table, record_id), []).append(scope_)
    moves = []
    by_table: dict[str, list[str]] = {}
    for table, record_id in scopes:
        by_table.setdefault(table, []).append(record_id)
    for table, ids in by_table.items():
        model = SYNCED_MODELS.get(table)
        if model is None:
            continue
        told = old_told_scopes(table, ids, after)
        for record_id in ids:
            seen = scopes[(table, record_id)]
            before = told.get(record_id)
            history = ([before] if before is not None else []) + seen
            if len(set(history)) < 2:
                continue
            record = model.get_or_none(model.id == record_id)
            if record is None:
                continue
            new = _scope_of(record)
            if new is None:
                continue
            moves.append(Move(record, set(history) - {new}, new))
    return moves


def old_told_scopes(table: str, ids: list[str], upto: int | None = None) -> dict[str, str]:
    """For each record id, the scope of its last captured change (at or before `upto`)."""
    out: dict[str, str] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        last = (ChangeLog.select(fn.MAX(ChangeLog.seq))
                .where((ChangeLog.table == table) & ChangeLog.record_id.in_(chunk) & _plain(ChangeLog.payload))
                .group_by(ChangeLog.record_id))
        if upto is not None:
            last = last.where(ChangeLog.seq <= upto)
        for record_id, scope_ in (ChangeLog.select(ChangeLog.record_id, ChangeLog.scope)
                                  .where(ChangeLog.seq.in_(last)).tuples()):
            out[record_id] = scope_
    return out


def old_descendants(roots: Iterable[SyncedModel]) -> list[SyncedModel]:
    """The records under `roots` through every synced foreign key, tombstones included, each once."""
    found: dict[tuple[str, str], SyncedModel] = {}
    frontier: dict[type[SyncedModel], set[str]] = {}
    for root in roots:
        frontier.setdefault(type(root), set()).add(root.id)
    while frontier:
        following: dict[type[SyncedModel], set[str]] = {}
        for parent_model, ids in frontier.items():
            for fk in parent_model._meta.backrefs:
                child_model = fk.model
                if child_model._meta.table_name not in SYNCED_MODELS:
                    continue
                id_list = sorted(ids)
                for start in range(0, len(id_list), CHUNK):
                    for child in child_model.select().where(fk.in_(id_list[start:start + CHUNK])):
                        key = (child_model._meta.table_name, child.id)
                        if key in found:
                            continue
                        found[key] = child
                        following.setdefault(child_model, set()).add(child.id)
        frontier = following
    return list(found.values())


def old_scoped_parents(record: SyncedModel) -> list[SyncedModel]:
    """The records a record points to whose model has a data-dependent scope (nearest first)."""
    parents = []
    for fk in type(record)._meta.sorted_fields:
        if not isinstance(fk, ForeignKeyField) or not _is_scoped(fk.rel_model):
            continue
        target = record.__data__.get(fk.name)
        if target is None or target == record.id:
            continue
        parent = fk.rel_model.get_or_none(fk.rel_model._meta.primary_key == target)
        if parent is not None:
            parents.append(parent)
    return parents


def old_plan_move(move: Move, plan: Plan, include_root: bool) -> None:
    """Plan what the new holder receives and what each old holder is told, for one move."""
    records = ([move.record] if include_root else []) + old_descendants([move.record])
    by_table: dict[str, list[str]] = {}
    for record in records:
        by_table.setdefault(record._meta.table_name, []).append(record.id)
    told = {}
    for table, ids in by_table.items():
        told.update({(table, k): v for k, v in old_told_scopes(table, ids).items()})
    for record in records:
        scope_ = _scope_of(record)
        if scope_ is None or scope_ == "*":
            continue
        before = told.get((record._meta.table_name, record.id))
        is_root = record is move.record
        if scope_ == move.new:
            if is_root or before != move.new:
                plan.add(record, move.new, "state", scope_)
        elif getattr(type(record), "sync_context", True):
            old_add_context(record, scope_, move.new, plan)
        olds = move.old if is_root else ({before} if before else set())
        for old in olds:
            if old != scope_:
                plan.add(record, old, "left", scope_)


def old_add_context(record: SyncedModel, scope_: str, node: str, plan: Plan, depth: int = 0) -> None:
    """Plan `record` as read-only context for `node`, with the scoped parents it points to."""
    if node in scope.NOT_A_NODE or depth > 16:
        return
    plan.add(record, node, "context", scope_)
    for parent in old_scoped_parents(record):
        parent_scope = _scope_of(parent)
        if parent_scope is None or parent_scope in ("*", node):
            continue
        if (parent._meta.table_name, parent.id, node) not in plan.rows:
            old_add_context(parent, parent_scope, node, plan, depth + 1)


def old_write_plan(plan: Plan, origin: str) -> int:
    """Append the planned rows, parents before children, each once; return how many."""
    order = {m._meta.table_name: i for i, m in enumerate(topological_models())}
    items = sorted(plan.rows.items(),
                   key=lambda kv: (order.get(kv[0][0], 0), str(kv[1][0].created_at or ""), kv[0][1], kv[0][2]))
    for (table, record_id, node), (record, kind, scope_) in items:
        state, top = record.state_payload()
        if kind == "state":
            payload: dict[str, Any] = state
        elif kind == "context":
            payload = {"context": scope_, **state}
        else:
            payload = {"left": scope_, **state}
        ChangeLog.append(table, record_id, top, origin, node, payload)
    return len(items)


def old_rehome_cells(origin: str = CENTRAL_NODE) -> int:
    """Hand over every record (and every cell) whose holder changed since the last run; return rows logged."""
    upto = ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0
    mark = int(SyncState.get_value(WATERMARK_KEY, "0") or 0)
    if upto <= mark and not moved_cells():
        return 0
    with write_transaction():
        clock.peek()
        mark = int(SyncState.get_value(WATERMARK_KEY, "0") or 0)
        upto = ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0
        plan = Plan()
        for move in moved_cells():
            old_plan_move(move, plan, include_root=False)
            SyncState.set_value(HOME_KEY.format(move.record.id), move.new)
        if upto > mark:
            for move in old_moved_records(mark, upto):
                old_plan_move(move, plan, include_root=True)
        logged = old_write_plan(plan, origin)
        SyncState.set_value(WATERMARK_KEY, str(ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0))
    return logged


# -- comparing both ------------------------------------------------------------------------------

def feed_after(seq: int) -> list[tuple]:
    """The feed rows after `seq`, in feed order, without their sequence numbers and log times."""
    return list(ChangeLog.select(ChangeLog.table, ChangeLog.record_id, ChangeLog.hlc, ChangeLog.origin,
                                 ChangeLog.scope, ChangeLog.payload)
                .where(ChangeLog.seq > seq).order_by(ChangeLog.seq).tuples())


def handover_state() -> dict[str, str]:
    """The handover's own facts in sync_state: cells' last holders, and whether the watermark is the feed's end."""
    high = ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0
    state = {row.key: row.value for row in SyncState.select()
             if row.key.startswith(HOME_KEY.format("")) or row.key == WATERMARK_KEY}
    # PostgreSQL does not give back sequence numbers at rollback: compare where the watermark is.
    state[WATERMARK_KEY] = "feed end" if state.get(WATERMARK_KEY) == str(high) else state.get(WATERMARK_KEY)
    return state


def old_and_new() -> list[tuple]:
    """Run the old handover (rolled back), then the new one (kept); assert the same rows; return them."""
    high = ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0
    with write_transaction() as txn:
        old_count = old_rehome_cells()
        old_rows, old_state = feed_after(high), handover_state()
        txn.rollback()
    assert (ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0) == high
    new_count = scope.rehome_cells()
    new_rows, new_state = feed_after(high), handover_state()
    assert new_count == old_count == len(new_rows)
    assert [r[:5] for r in new_rows] == [r[:5] for r in old_rows]
    for new, old in zip(new_rows, old_rows):
        assert new[5] == old[5], (new[:5], json.loads(new[5]), json.loads(old[5]))
    assert new_state == old_state and new_state[WATERMARK_KEY] == "feed end"
    return new_rows


def kinds(rows: list[tuple]) -> set[tuple[str, str, str]]:
    """(table, kind, node) of handover rows: what a step sent to whom."""
    out = set()
    for table, _record_id, _hlc, _origin, node, payload in rows:
        first = next(iter(json.loads(payload)))
        out.add((table, first if first in ("left", "context") else "state", node))
    return out


# -- the situation -------------------------------------------------------------------------------

def build(history: int = 3) -> dict[str, Any]:
    """Central with four cells (all its own), three nodes, and history of every kind; return the ids."""
    for node_id in ("doi-1", "doi-2", "doi-3"):
        Node.create(id=node_id, name=node_id, token_hash=hash_token(Node.issue_token()))
    seed_checklists()
    version = published_for_kind("thuong_ky")
    items = list(TemplateItem.select().where(TemplateItem.version == version.id).order_by(TemplateItem.position))[:4]
    org = Organisation.create(name="Đảng bộ Kiểm thử Bàn giao nhanh")
    cells = {code: Cell.create(organisation=org.id, code=code, name=f"Chi bộ {code}") for code in
             ("CB01", "CB02", "CB03", "CB04")}
    members: dict[str, list[Member]] = {}
    for code, cell in cells.items():
        members[code] = [Member.create(cell=cell.id, full_name=f"Đảng viên {code} số {i}",
                                       admitted_on=dt.date(2015, 1, 1 + i)) for i in range(4)]
    mover = members["CB02"][0]
    change_status(mover, "temp_elsewhere", dt.date(2021, 5, 1), "", "Đi học tập trung")
    change_status(mover, "full", dt.date(2022, 5, 1), "", "Về lại chi bộ")
    assign_position(mover, "chi_uy_vien", dt.date(2020, 6, 1))
    assign_position(members["CB03"][1], "pho_bi_thu", dt.date(2022, 6, 1), "Bầu tại đại hội chi bộ")
    supervisor = User.create(username="btv", role="supervisor", full_name="Ủy viên BTV")
    secretary = User.create(username="bithu2", role="secretary", full_name="Bí thư CB02", cell=cells["CB02"].id,
                            member=members["CB02"][1].id)
    User.create(username="bithu3", role="secretary", full_name="Bí thư CB03", cell=cells["CB03"].id)
    User.create(username="admin", role="admin", full_name="Quản trị")
    meetings: dict[str, list[Meeting]] = {}
    for code, cell in cells.items():
        meetings[code] = []
        previous_task = None
        for i in range(history):
            meeting = Meeting.create(cell=cell.id, held_on=dt.date(2024, 1 + i, 5),
                                     title=f"Sinh hoạt {code} kỳ {i + 1}",
                                     chair=members[code][1].id, secretary=members[code][3].id)
            for n, member in enumerate(members[code]):
                Attendance.create(meeting=meeting.id, member=member.id,
                                  status="present" if (n + i) % 3 else "excused",
                                  reason="" if (n + i) % 3 else "Đi công tác")
            task = Task.create(meeting=meeting.id, text=f"Nhiệm vụ {code} {i}", assignee=members[code][i % 4].id,
                               carried_from=previous_task.id if previous_task else None)
            if previous_task is not None:
                TaskReview.create(task=previous_task.id, meeting=meeting.id, outcome="carried")
            previous_task = task
            meetings[code].append(meeting)
        answer_set = scope_answer_set(meetings[code][0], version)
        for n, item in enumerate(items):
            Answer.create(answer_set=answer_set.id, item=item.id, value_json=json.dumps(n), note=f"ghi chú {n}")
    # Tombstones: one mark, and a whole meeting with its roll call.
    Attendance.get((Attendance.meeting == meetings["CB02"][-1].id) & (Attendance.member == members["CB02"][3].id)
                   ).soft_delete()
    meetings["CB03"][-1].soft_delete()
    # A task carried over from itself (bad data, but data): the walk under a record meets the record.
    loop = Task.create(meeting=meetings["CB02"][0].id, text="Nhiệm vụ vòng lặp")
    loop.carried_from = loop.id
    loop.save()
    visit = SupervisionVisit.create(meeting=meetings["CB02"][0].id, supervisor=supervisor.id, score=88.5,
                                    remarks="Sinh hoạt nền nếp")
    recommendation = Recommendation.create(visit=visit.id, text="Chuẩn bị tài liệu sớm hơn",
                                           deadline=dt.date(2024, 6, 30))
    RecommendationEvent.create(recommendation=recommendation.id, state="in_progress", side="cell", by_name="Bí thư")
    return {"cells": cells, "members": members, "meetings": meetings, "secretary": secretary, "mover": mover,
            "loop": loop}


def scope_answer_set(meeting: Meeting, version) -> Any:
    """A self-assessment answer set for a meeting (the cell's own sheet)."""
    from models.checklists import AnswerSet

    return AnswerSet.create(version=version.id, meeting=meeting.id, role="self", answered_by="Bí thư")


def test_set_based_handover_writes_the_rows_the_record_by_record_handover_wrote(app):
    """Assign, hand over, release, move members and an account: each pass gives the old pass's rows."""
    with app.app_context(), db.connection_context():
        s = build()
        cells, members, mover = s["cells"], s["members"], s["mover"]

        # 1. Two cells leave central for their first holders: everything of theirs as state.
        assign_cells(["CB02"], "doi-1")
        assign_cells(["CB03"], "doi-2")
        rows = old_and_new()
        assert {("attendance", "state", "doi-1"), ("attendance", "state", "doi-2"), ("answer", "state", "doi-1"),
                ("recommendation_event", "state", "doi-1"), ("app_user", "state", "doi-1"),
                ("task_review", "state", "doi-2")} <= kinds(rows)
        assert not old_and_new()  # nothing moved since: nothing twice

        # 2. A member moves from doi-1's cell to doi-2's: his history as state, his past marks (and
        # the tasks he was given, the meetings he chaired) as context with their meetings, doi-1 told.
        mover.cell = cells["CB03"].id
        mover.save()
        rows = old_and_new()
        assert {("member", "state", "doi-2"), ("member", "left", "doi-1"), ("member_status_change", "state", "doi-2"),
                ("position", "state", "doi-2"), ("attendance", "context", "doi-2"), ("meeting", "context", "doi-2"),
                ("task", "context", "doi-2")} <= kinds(rows)

        # 3. doi-1's cell goes to doi-3 while, in the same pass, a doi-2 member moves to central's cell
        # and the CB02 secretary's account moves to CB03; a task edited just before is a moved record too.
        s["loop"].text = "Nhiệm vụ vòng lặp (sửa)"
        s["loop"].save()
        assign_cells(["CB02"], "doi-3")
        leaver = members["CB03"][1]
        leaver.cell = cells["CB01"].id
        leaver.save()
        secretary = s["secretary"]
        secretary.cell = cells["CB03"].id
        secretary.save()
        rows = old_and_new()
        assert {("meeting", "state", "doi-3"), ("meeting", "left", "doi-1"), ("attendance", "left", "doi-1"),
                ("member", "left", "doi-2"), ("app_user", "state", "doi-2")} <= kinds(rows)

        # 4. Central's cell (with the member who came to it) goes to doi-1; doi-2's cell is released.
        assign_cells(["CB01"], "doi-1")
        assign_cells(["CB03"], "central")
        rows = old_and_new()
        assert {("member", "state", "doi-1"), ("attendance", "left", "doi-2"),
                ("member", "left", "doi-2")} <= kinds(rows)

        # 5. New history at the new holders, then the first mover goes back to CB02 (now doi-3's),
        # and CB04 goes to doi-2 and straight on to doi-3 before anyone pulls.
        meeting = Meeting.create(cell=cells["CB02"].id, held_on=dt.date(2024, 9, 5), title="Sinh hoạt sau bàn giao")
        Attendance.create(meeting=meeting.id, member=members["CB02"][2].id, status="present")
        mover.cell = cells["CB02"].id
        mover.save()
        assign_cells(["CB04"], "doi-2")
        assign_cells(["CB04"], "doi-3")
        rows = old_and_new()
        assert {("member", "state", "doi-3"), ("attendance", "state", "doi-3")} <= kinds(rows)
        assert not old_and_new()


def test_scopes_read_as_a_set_are_each_records_own_scope(app):
    """The memoised scope of every synced record equals its own `sync_scope()`, missing parents included."""
    with app.app_context(), db.connection_context():
        s = build(history=2)
        assign_cells(["CB02"], "doi-1")
        assign_cells(["CB03"], "doi-2")
        reader = Reader()
        checked = 0
        for model in topological_models():
            ids = [r.id for r in model.select(model.id)]
            records = reader.select(model, model._meta.primary_key, ids)
            assert sorted(r.id for r in records) == sorted(ids)
            for record in records:
                fresh = model.get_by_id(record.id)
                assert reader.scope(record) == _scope_of(fresh), (model._meta.table_name, record.id)
                assert record.__data__ == fresh.__data__
                assert record.state_payload() == fresh.state_payload()
                checked += 1
        assert checked > 200
        # A scope that cannot be computed (the cell is gone from the rows read) is None, as before.
        orphan = Member(id="00000000-0000-0000-0000-00000000dead", cell="no-such-cell", full_name="Không có chi bộ")
        assert reader.scope(orphan) is None and _scope_of(orphan) is None
        assert s["cells"]["CB02"].id


def test_descendants_and_told_scopes_as_sets_match_the_queries_per_record(app):
    """The same records under a cell and a member, the same told scopes, the same moved records."""
    with app.app_context(), db.connection_context():
        s = build(history=2)
        assign_cells(["CB02"], "doi-1")
        scope.rehome_cells()
        mover = s["mover"]
        mover.cell = s["cells"]["CB03"].id
        mover.save()
        for root in (s["cells"]["CB02"], s["cells"]["CB03"], mover):
            new = scope.descendants([root])
            old = old_descendants([root])
            assert sorted((r._meta.table_name, r.id) for r in new) == sorted((r._meta.table_name, r.id) for r in old)
            assert len(new) == len(old) > 3
            if isinstance(db.obj, SqliteDatabase):  # the same queries: the same order
                assert [(r._meta.table_name, r.id) for r in new] == [(r._meta.table_name, r.id) for r in old]
            for table in {r._meta.table_name for r in new}:
                ids = [r.id for r in new if r._meta.table_name == table]
                assert scope.told_scopes(table, ids) == old_told_scopes(table, ids)
                assert scope.told_scopes(table, ids, 5) == old_told_scopes(table, ids, 5)
        high = ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar()
        for after in (0, 1, high // 2, high - 3):
            new = [(m.record.id, m.old, m.new) for m in scope.moved_records(after, high)]
            old = [(m.record.id, m.old, m.new) for m in old_moved_records(after, high)]
            assert new == old
        assert (mover.id, {"doi-1"}, "central") in [(m.record.id, m.old, m.new) for m in scope.moved_records(0, high)]


@pytest.mark.sqlite_only
def test_handing_a_cell_over_costs_statements_per_table_not_per_record(app):
    """A cell with four times the members (and marks) is handed over with no more statements."""
    with app.app_context(), db.connection_context():
        build(history=1)
        counts, logged = [], []
        for code, more_members in (("CB02", 0), ("CB03", 12)):
            cell = Cell.get(Cell.code == code)
            for i in range(more_members):
                Member.create(cell=cell.id, full_name=f"Đảng viên thêm {i}")
            roll = list(Member.select().where(Member.cell == cell.id))
            for i in range(3):
                meeting = Meeting.create(cell=cell.id, held_on=dt.date(2023, 1 + i, 5), title=f"Thêm {i}")
                for member in roll:
                    Attendance.create(meeting=meeting.id, member=member.id, status="present")
            assign_cells([code], "doi-1")
            statements: list[str] = []
            db.obj.connection().set_trace_callback(statements.append)
            try:
                logged.append(scope.rehome_cells())
            finally:
                db.obj.connection().set_trace_callback(None)
            # SQLite traces each row of an executemany: the change log's one INSERT counts once.
            counts.append(len([s for s in statements if not s.startswith("INSERT INTO change_log")]) + 1)
        assert logged[1] > logged[0] + 3 * 12
        assert counts[1] <= counts[0], counts
