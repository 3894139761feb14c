"""Applying a batch at speed gives exactly the row-by-row result, in one transaction (issue 10).

"Speed never buys a weaker guarantee": a batch applied with the row cache (sync/batch.py,
models/rowcache.py) must leave every database exactly as the old row-by-row way
(`sync.batch.ROWWISE = True`) leaves it. Each test runs the same thing twice, once per way, on two
databases that start identical (ids from a seeded generator, stored times and clock stamps from a
pinned clock, `tests.sync_sim.pin_utcnow`), and compares everything that matters:
- every synced table's rows, every column but `updated_at`;
- the change log in order (table, record, stamp, origin, scope, payload, created_at; `seq` too on
  SQLite). On PostgreSQL `seq` and the ids of conflicts and dead letters are compared by order only:
  a sequence is not transactional, so a fast attempt rolled back (and redone row by row) leaves a gap;
- conflicts, dead letters, the stored push answers, the database clock, the sync state.
1. Random histories: the in-process multi-node simulation of the convergence test (tests/sync_sim.py)
   plays each seeded history once per way; central and every node are compared after the quiesce, with
   the transcript. A second group pushes and pulls perturbed batches (a duplicate roll-call mark under
   another id, which only the database's unique index refuses, so the fast attempt fails and is redone
   row by row; a mark whose meeting does not exist; a change out of the node's scope; a bad value; a
   term the policy refuses; a copy of a new member, which makes a duplicate card number).
2. Targeted batches at central through `sync.server.apply_push`, both ways compared.
3. Atomicity: a crash in the middle of the flush leaves nothing of the batch; the batch sent again
   applies completely, with the result of a batch applied once. Also with the process killed.
4. Pull side: `sync.client.apply_pull_page` on a field node's database, both ways; the cursor is
   stored with the data (a crash leaves the old cursor).
Every comparison also checks that the fast way was really taken (or attempted and redone), so the
test cannot pass by comparing the row-by-row way with itself. Ids drawn by a fast attempt that failed
(rolled back, nothing of it stored) are given back to the run's seeded generator, so that the redo
draws the ids the row-by-row run drew. In perturbed histories an error outside the protocol becomes
a 500 at central or a stopped sync at a node (as the web server and the scheduler make of it) and
is reported with the history's seed; `play_twice(seed, perturbed)` replays one history.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import multiprocessing
import os
import random
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from peewee import SqliteDatabase

import models.base
import tests.sync_sim as sync_sim
from app import create_app
from models import SYNCED_MODELS, Attendance, Cell, ChangeLog, Meeting, Member, Node, Organisation, clock, db
from models.base import data_columns, natural_id
from models.members import Position
from models.migrations import SCHEMA_VERSION
from models.nodes import hash_token
from models.rowcache import RowCache
from models.sync_state import AppliedBatch, DeadLetter
from sync import batch as batch_module
from sync.client import apply_pull_page
from sync.outbox import PULL_CURSOR
from sync.client import run_sync
from sync.protocol import SyncError, batch_id_for, content_hash
from sync.server import apply_push
from tests import pgtest
from tests.sync_sim import CENTRAL, NODES, Sim, SimTransport, pin_utcnow, random_history

CONFIG = {"ROLE": "central", "NODE_ID": "central", "APP_VERSION": "test"}


# -- the two ways ------------------------------------------------------------------------------------

class Ways:
    """Which way each batch took: 'fast', 'fast-failed' (the attempt raised, in its loop or its last
    flush; a database error is then redone row by row) or 'rowwise' (each change in a savepoint)."""

    def __init__(self, rng: random.Random | None = None):
        self.events: list[str] = []
        self.rng = rng
        self._loop = batch_module._loop
        self._activated = batch_module.activated

    def loop(self, changes, apply_one, careful):
        if careful:
            self.events.append("rowwise")
        return self._loop(changes, apply_one, careful)

    @contextlib.contextmanager
    def activated(self, database):
        # A failed attempt is rolled back whole; so are, here, the ids it drew from the run's seeded
        # generator (every model instance draws one), else every later id, and in the simulation every
        # later random choice, would differ from the row-by-row run for no reason of the database's.
        state = self.rng.getstate() if self.rng is not None else None
        try:
            with self._activated(database) as cache:
                yield cache
        except BaseException:
            self.events.append("fast-failed")
            if state is not None:
                self.rng.setstate(state)
            raise
        self.events.append("fast")


@contextlib.contextmanager
def way(rowwise: bool, rng: random.Random | None = None):
    """Apply batches row by row (True) or fast (False) inside the block; yield the record of the ways taken.

    `rng`: the seeded generator ids come from in this run, rewound when a fast attempt fails.
    """
    saved = batch_module.ROWWISE, batch_module._loop, batch_module.activated
    ways = Ways(rng)
    batch_module.ROWWISE = rowwise
    batch_module._loop, batch_module.activated = ways.loop, ways.activated
    try:
        yield ways
    finally:
        batch_module.ROWWISE, batch_module._loop, batch_module.activated = saved


def check_ways(fast: Ways, rowwise: Ways, redo: bool | None = None) -> None:
    """The fast run took the fast way (and, when `redo` says so, had to redo a batch); the other never did."""
    assert set(rowwise.events) == {"rowwise"}, rowwise.events
    assert "fast" in fast.events or "fast-failed" in fast.events, fast.events
    if redo is True:
        assert "fast-failed" in fast.events, f"the fast attempt was expected to fail and be redone: {fast.events}"
    if redo is False:
        assert set(fast.events) == {"fast"}, f"the fast way was expected to succeed: {fast.events}"


# -- what is compared --------------------------------------------------------------------------------

def dump(database) -> dict[str, Any]:
    """Everything a batch can change in one database, in comparable form (raw SELECTs, no model code)."""
    serial = isinstance(database, SqliteDatabase)
    cursor = database.cursor()

    def rows(sql: str) -> list[dict[str, Any]]:
        cursor.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values)) for values in cursor.fetchall()]

    def without(row: dict, *names: str) -> dict:
        return {k: v for k, v in row.items() if k not in names}

    out: dict[str, Any] = {}
    for table in sorted(SYNCED_MODELS):
        out[table] = {r["id"]: without(r, "updated_at") for r in rows(f'SELECT * FROM "{table}"')}
    # Sequence numbers and ids are compared on SQLite (rolled back with the transaction) and by order
    # only on PostgreSQL (a sequence is not transactional: a rolled-back attempt leaves a gap).
    out["change_log"] = [dict(without(r, *(() if serial else ("seq",))), payload=json.loads(r["payload"]))
                         for r in rows('SELECT * FROM "change_log" ORDER BY "seq"')]
    out["sync_conflict"] = [without(r, *(() if serial else ("id",)))
                            for r in rows('SELECT * FROM "sync_conflict" ORDER BY "id"')]
    out["sync_dead_letter"] = [dict(without(r, *(() if serial else ("id",))), change_json=json.loads(r["change_json"]))
                               for r in rows('SELECT * FROM "sync_dead_letter" ORDER BY "id"')]
    out["sync_applied_batch"] = {r["batch_id"]: dict(r, response_json=json.loads(r["response_json"]))
                                 for r in rows('SELECT * FROM "sync_applied_batch"')}
    out["hlc_state"] = rows('SELECT * FROM "hlc_state"')
    # The database's own id is made when the database is (not by a batch).
    out["sync_state"] = {r["key"]: r["value"] for r in rows('SELECT * FROM "sync_state"') if r["key"] != "db_id"}
    return out


def differences(fast: dict[str, Any], rowwise: dict[str, Any], where: str = "") -> list[str]:
    """What differs between the two dumps, row by row and column by column (empty when identical)."""
    out = []
    for key in sorted(set(fast) | set(rowwise)):
        a, b = fast.get(key), rowwise.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and all(isinstance(v, dict) for v in [*a.values(), *b.values()]):
            pairs = [(f"{key}/{k}", a.get(k), b.get(k)) for k in sorted(set(a) | set(b), key=str)]
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                out.append(f"{where}{key}: {len(a)} rows fast, {len(b)} row by row")
            pairs = [(f"{key}[{n}]", x, y) for n, (x, y) in enumerate(itertools.zip_longest(a, b))]
        else:
            pairs = [(key, a, b)]
        for name, x, y in pairs:
            if x == y:
                continue
            if isinstance(x, dict) and isinstance(y, dict):
                for column in sorted(set(x) | set(y)):
                    if x.get(column) != y.get(column):
                        out.append(f"{where}{name}.{column}: fast {x.get(column)!r} / row by row {y.get(column)!r}")
            else:
                out.append(f"{where}{name}: fast {x!r} / row by row {y!r}")
    return out


def assert_same(fast: dict[str, Any], rowwise: dict[str, Any], where: str = "") -> None:
    """Fail with the differences, precisely."""
    found = differences(fast, rowwise, where)
    assert not found, f"{len(found)} differences between the fast and the row-by-row way:\n" + "\n".join(found[:40])


def test_the_comparison_sees_a_difference():
    """The comparison is not blind: one column, one log row or one dead letter more is reported by name."""
    base = {"member": {"m1": {"id": "m1", "full_name": "A"}}, "change_log": [{"hlc": "1"}],
            "sync_dead_letter": [], "hlc_state": [{"ms": 1}]}
    other = json.loads(json.dumps(base))
    other["member"]["m1"]["full_name"] = "B"
    other["change_log"].append({"hlc": "2"})
    other["sync_dead_letter"].append({"reason": "constraint"})
    found = differences(base, other)
    assert "member/m1.full_name: fast 'A' / row by row 'B'" in found
    assert any(f.startswith("change_log: 1 rows fast, 2 row by row") for f in found)
    assert any(f.startswith("sync_dead_letter[0]") for f in found)
    assert differences(base, json.loads(json.dumps(base))) == []


# -- 1. random histories -----------------------------------------------------------------------------

def _uuid5(*parts: Any) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, ":".join(str(p) for p in parts)))


def perturb_push(body: dict, cells: dict[str, str]) -> dict:
    """A pushed batch with bad changes added, decided by its content (a re-sent batch is perturbed alike)."""
    rng = random.Random(body["content_hash"])
    changes = list(body["changes"])
    if not changes or rng.random() < 0.4:
        return body
    node = body["node_id"]
    stamp = changes[-1]["hlc"]
    extra: list[tuple[int, dict]] = []
    for n, change in enumerate(changes):
        if change["table"] == "attendance" and change["payload"].get("new") and rng.random() < 0.7:
            # The same mark under another id: passes every check, the unique (meeting, member) index refuses it.
            extra.append((rng.choice((n, n + 1)), dict(change, record_id=_uuid5("dup", change["record_id"]))))
        elif change["table"] == "member" and change["payload"].get("new") and rng.random() < 0.5:
            # Two copies of a new member under other ids, with one card number (a duplicate).
            payload = dict(change["payload"], fields=dict(change["payload"]["fields"], card_number="00000001"))
            for copy in ("copy", "copy-2"):
                extra.append((n + 1, dict(change, record_id=_uuid5(copy, change["record_id"]), payload=payload)))
    others = [cell for holder, cell in sorted(cells.items()) if holder != node]
    member_fields = {"full_name": "Người ngoài", "birth_year": 1970, "gender": "nam", "admitted_on": None,
                     "full_member_on": None, "card_number": None, "status": "full", "status_note": "",
                     "position": "", "created_at": "2026-01-01T00:00:00", "deleted_at": None}
    roll = rng.random()
    if roll < 0.3:  # a member created in another node's (or central's) cell
        extra.append((rng.randint(0, len(changes)), {
            "table": "member", "record_id": _uuid5("outside", body["content_hash"]), "hlc": stamp,
            "payload": {"fields": dict(member_fields, cell_id=rng.choice(others)), "new": True}}))
    elif roll < 0.5:  # a bad value
        extra.append((rng.randint(0, len(changes)), {
            "table": "meeting", "record_id": _uuid5("badkind", body["content_hash"]), "hlc": stamp,
            "payload": {"fields": {"cell_id": cells[node], "held_on": "2025-06-01", "kind": "khong_co",
                                   "title": "Loại lạ", "created_at": "2026-01-01T00:00:00", "deleted_at": None},
                        "new": True}}))
    elif roll < 0.7:  # a mark for a meeting that does not exist (missing_parent, retried after every batch)
        extra.append((rng.randint(0, len(changes)), {
            "table": "attendance", "record_id": _uuid5("orphan", body["content_hash"]), "hlc": stamp,
            "payload": {"fields": {"meeting_id": _uuid5("nomeeting", body["content_hash"]),
                                   "member_id": _uuid5("nomember", body["content_hash"]), "status": "present",
                                   "reason": "", "created_at": "2026-01-01T00:00:00", "deleted_at": None},
                        "new": True}}))
    elif roll < 0.85:  # a term the policy keeps for central, for a member of the batch
        member = next((c["record_id"] for c in changes if c["table"] == "member"), None)
        if member is not None:
            extra.append((len(changes), {
                "table": "position", "record_id": _uuid5("term", body["content_hash"]), "hlc": stamp,
                "payload": {"fields": {"member_id": member, "kind": "dang_uy_vien", "start_on": "2025-01-01",
                                       "end_on": None, "note": "", "created_at": "2026-01-01T00:00:00",
                                       "deleted_at": None}, "new": True}}))
    if not extra:
        return body
    for position, change in sorted(extra, key=lambda e: -e[0]):
        changes.insert(position, change)
    return dict(body, changes=changes, content_hash=content_hash(changes))


def perturb_page(answer: dict, node: str) -> dict:
    """A pulled page with a copy of a roll-call mark under another id (the node's unique index refuses it)."""
    changes = answer.get("changes") or []
    rng = random.Random(json.dumps(changes, sort_keys=True))
    marks = [n for n, c in enumerate(changes) if c["table"] == "attendance" and "meeting_id" in c["payload"]["fields"]]
    if not marks or rng.random() < 0.5:
        return answer
    n = rng.choice(marks)
    copy = dict(changes[n], record_id=_uuid5("pulled-dup", changes[n]["record_id"]))
    return dict(answer, changes=changes[:n + 1] + [copy] + changes[n + 1:])


# Errors other than the protocol's, in perturbed histories: at central they become a 500 answer (as the
# web server gives), at a node they stop the sync run (as the scheduler reports it), and they are listed
# so a run with one is reported, never taken as normal.
UNEXPECTED: list[str] = []


class PerturbingTransport(SimTransport):
    """The simulation's link, with bad changes added to pushed batches and pulled pages."""

    def call(self, method: str, path: str, json: Any = None, params: dict | None = None) -> tuple[int, dict]:
        if path == "/push" and isinstance(json, dict):
            json = perturb_push(json, self.sim.cells)
        try:
            status, answer = super().call(method, path, json=json, params=params)
        except SyncError:
            raise
        except Exception as exc:  # noqa: BLE001 - what the web server would turn into a 500
            UNEXPECTED.append(f"central, {path} from {self.node_id}: {type(exc).__module__}.{type(exc).__name__}: "
                              f"{str(exc)[:120]}")
            return 500, {"error": "internal", "message": "Lỗi máy chủ."}
        if path == "/pull" and status == 200:
            answer = perturb_page(answer, self.node_id)
        return status, answer


def run_sync_reporting(config, **options):
    """`run_sync`, with an error other than the protocol's turned into a stopped run (and listed)."""
    try:
        return run_sync(config, **options)
    except SyncError:
        raise
    except Exception as exc:  # noqa: BLE001 - the scheduler records it and tries again later
        UNEXPECTED.append(f"{config['NODE_ID']}, sync: {type(exc).__module__}.{type(exc).__name__}: {str(exc)[:120]}")
        raise SyncError(f"lỗi: {type(exc).__name__}") from exc


def play_twice(seed: int, perturbed: bool) -> list[str]:
    """Play one history fast and row by row; the differences found (empty when identical)."""
    runs = []
    for rowwise in (False, True):
        with tempfile.TemporaryDirectory(prefix=f"chibo-batch-{seed}-", dir=_scratch()) as directory, \
                way(rowwise) as ways, _transport(perturbed):
            sim = Sim(Path(directory), seed, fixed_time=True)
            ways.rng = sim.rng  # the simulation's ids come from the history's generator
            try:
                random_history(sim, sim.rng.randint(8, 32))
                try:
                    sim.quiesce()
                    ending = "quiet"
                except AssertionError as exc:  # compared like the rest: it must happen both ways or neither
                    ending = str(exc)
                state = {name: dump(sim.dbs[name]) for name in (CENTRAL,) + NODES}
            finally:
                sim.close()
            unexpected = list(UNEXPECTED)
        runs.append((state, [s.text for s in sim.steps], ending, ways, unexpected))
    (fast, fast_steps, fast_end, fast_ways, fast_errors), (slow, slow_steps, slow_end, slow_ways, slow_errors) = runs
    problems = [f"unexpected error, fast: {e}" for e in fast_errors[:3]]
    problems += [f"unexpected error, row by row: {e}" for e in slow_errors[:3]]
    for n, (x, y) in enumerate(itertools.zip_longest(fast_steps, slow_steps)):
        if x != y:  # where the two runs parted (the tables below show what it left)
            problems.append(f"transcript step {n + 1}: fast {x!r}\n    row by row {y!r}")
            break
    if fast_end != slow_end:
        problems.append(f"quiesce: fast {fast_end!r} / row by row {slow_end!r}")
    for name in (CENTRAL,) + NODES:
        problems += differences(fast[name], slow[name], where=f"{name}: ")[:12]
    if not problems:
        check_ways(fast_ways, slow_ways)
    if problems:
        problems.insert(0, f"history seed {seed} ({'perturbed' if perturbed else 'plain'}); fast ways: "
                           f"{dict((e, fast_ways.events.count(e)) for e in set(fast_ways.events))}")
    return problems


@contextlib.contextmanager
def _transport(perturbed: bool):
    """Perturbed histories: the perturbing link, and unexpected errors listed in UNEXPECTED (emptied first)."""
    saved = sync_sim.SimTransport, sync_sim.run_sync
    UNEXPECTED.clear()
    if perturbed:
        sync_sim.SimTransport, sync_sim.run_sync = PerturbingTransport, run_sync_reporting
    try:
        yield
    finally:
        sync_sim.SimTransport, sync_sim.run_sync = saved


def _scratch() -> str | None:
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


GROUP = 25
# 100 histories: the plain ones overlap the convergence test's 1,000, so most weight is on the perturbed.
GROUPS = [("plain", 101 + GROUP * n) for n in range(1)] + [("perturbed", 501 + GROUP * n) for n in range(3)]


@pytest.mark.sqlite_only  # the simulation keeps every node, central included, on SQLite files
@pytest.mark.parametrize("kind,first", GROUPS, ids=[f"{k}-{f}" for k, f in GROUPS])
def test_random_histories_give_the_same_databases_both_ways(kind, first):
    """Each history of the group leaves central and every node identical, fast or row by row."""
    failures = []
    for seed in range(first, first + GROUP):
        problems = play_twice(seed, kind == "perturbed")
        if problems:
            failures.append("\n".join(problems[:30]))
    assert not failures, f"{len(failures)} of {GROUP} histories differ; the first:\n{failures[0]}"


@pytest.mark.sqlite_only  # the simulation keeps every node, central included, on SQLite files
def test_perturbed_histories_do_reach_the_redo_and_the_dead_letters():
    """The perturbed group is not vacuous: row by row its batches leave the dead letters a database or the
    checks refuse, and fast they make the fast attempt fail (to be redone) as well as succeed.

    Policy refusals and duplicate card numbers are drawn too, but whether these seeds reach them varied
    between runs (a nondeterminism of the simulation not pinned down yet); the targeted tests below
    cover both kinds in both ways, so they are not required here.
    """
    reasons: set[str] = set()
    events: list[str] = []
    wanted = {"constraint", "missing_parent", "out_of_scope", "invalid"}
    # Each kind of perturbation is drawn at random: look at up to 40 seeds, stopping once all are seen.
    for rowwise, seeds in ((True, range(501, 541)), (False, range(501, 509))):
        for seed in seeds:
            if rowwise and wanted <= reasons:
                break
            with tempfile.TemporaryDirectory(dir=_scratch()) as directory, way(rowwise) as ways, _transport(True):
                sim = Sim(Path(directory), seed, fixed_time=True)
                ways.rng = sim.rng
                try:
                    random_history(sim, sim.rng.randint(8, 32))
                    if rowwise:
                        for name in (CENTRAL,) + NODES:
                            with sim.acting(name):
                                reasons |= {d.reason for d in DeadLetter.select()}
                finally:
                    sim.close()
            events += ways.events
    assert wanted <= reasons, reasons
    assert "fast-failed" in events and "fast" in events, set(events)


# -- 2. targeted batches at central ------------------------------------------------------------------

T0 = dt.datetime(2026, 3, 2, 8, 0, 0)
T0_MS = int(T0.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
TODAY = dt.date(2026, 3, 2)


def rid(name: str) -> str:
    """A fixed record id, the same in both runs."""
    return _uuid5("chibo-batch-test", name)


class Central:
    """Central on one database, with a fixed clock, the organisation of the tests and the nodes' pushes."""

    def __init__(self, now: list[int]):
        self.now = now
        self.counter = itertools.count(1)
        self.answers: list[dict] = []
        org = Organisation.create(id=rid("org"), name="Đảng bộ Thử nghiệm")
        self.cells = {holder: Cell.create(id=rid(f"cell-{holder}"), organisation=org.id, code=code,
                                          name=f"Chi bộ {code}", node_id=holder)
                      for holder, code in (("central", "CB01"), ("doi-1", "CB02"), ("doi-2", "CB03"))}
        self.members = {}
        for holder in ("central", "doi-1", "doi-2"):
            for n in range(4):
                key = f"{holder}-m{n}"
                self.members[key] = Member.create(id=rid(key), cell=self.cells[holder].id,
                                                  full_name=f"Đảng viên {key}", birth_year=1970 + n,
                                                  card_number=f"{holder[-1]}000000{n}" if n == 0 else None)
        self.meeting = Meeting.create(id=rid("doi-1-meeting"), cell=self.cells["doi-1"].id, held_on=TODAY,
                                      title="Họp tháng 3")
        for node in ("doi-1", "doi-2"):
            Node.create(id=node, name=node, token_hash=hash_token(f"token-{node}"))
        self.tick()

    def tick(self, ms: int = 1000) -> None:
        """Let the wall clock move on."""
        self.now[0] += ms

    def stamp(self, node: str = "doi-1") -> str:
        """A stamp made by a node now (its own counter)."""
        return f"{self.now[0]:015d}:{next(self.counter):06d}:{node}"

    def push(self, changes: list[dict], node: str = "doi-1", batch_id: str | None = None) -> dict:
        """One batch through central's handler, JSON round-tripped as on the wire; return the answer."""
        digest = content_hash(changes)
        body = {"batch_id": batch_id or batch_id_for(node, 1, len(changes), digest), "node_id": node,
                "schema_version": SCHEMA_VERSION, "from_seq": 1, "to_seq": len(changes),
                "content_hash": digest, "changes": changes, "db_id": f"db-{node}", "generation": 1}
        body = json.loads(json.dumps(body, ensure_ascii=False))
        answer, _replayed = apply_push(Node.get_by_id(node), body, CONFIG)
        self.answers.append(answer)
        self.tick()
        return answer


def created(record, stamp: str) -> dict:
    """A new record as a field node pushes it (every column, `new`)."""
    wire = record.to_wire()
    return {"table": record._meta.table_name, "record_id": record.id, "hlc": stamp,
            "payload": {"fields": {c: wire[c] for c in data_columns(type(record))}, "new": True}}


def edited(record, stamp: str, **values: Any) -> dict:
    """An edit of some columns, with the stamps they had (the base) as central has them now."""
    model = type(record)
    fresh = model.get_by_id(record.id)
    columns = data_columns(model)
    stamps = models.base.column_stamps(fresh.hlc, fresh.stamps or "", columns)
    fields = {c: (v.isoformat() if isinstance(v, (dt.date, dt.datetime, dt.time)) else v) for c, v in values.items()}
    return {"table": model._meta.table_name, "record_id": record.id, "hlc": stamp,
            "payload": {"fields": fields, "base": {c: stamps[c] for c in fields}}}


def deleted(record, stamp: str) -> dict:
    """A delete that had seen every column as central has it now."""
    model = type(record)
    fresh = model.get_by_id(record.id)
    columns = data_columns(model)
    stamps = models.base.column_stamps(fresh.hlc, fresh.stamps or "", columns)
    return {"table": model._meta.table_name, "record_id": record.id, "hlc": stamp,
            "payload": {"fields": {"deleted_at": (T0 + dt.timedelta(hours=1)).isoformat()},
                        "base": {"deleted_at": stamps["deleted_at"]},
                        "seen": {c: s for c, s in stamps.items() if c != "deleted_at"}}}


def mark(central: Central, meeting_id: str, member_key: str, status: str = "present", record_id: str | None = None,
         node: str = "doi-1") -> dict:
    """A roll-call mark (its natural id unless another is given); `member_key` names a member or is an id."""
    member_id = central.members[member_key].id if member_key in central.members else member_key
    record = Attendance(meeting=meeting_id, member=member_id, status=status,
                        reason="Ốm" if status == "excused" else "", created_at=T0)
    record.id = record_id or natural_id(record)
    record.owner = node
    return created(record, central.stamp(node))


@pytest.fixture
def central_urls(tmp_path):
    """Two empty central databases, one per way: SQLite files, or PostgreSQL databases on a PostgreSQL run."""
    if pgtest.enabled():
        return [pgtest.new_database(), pgtest.new_database()]
    return [f"sqlite:///{tmp_path / f'central-{n}.sqlite3'}" for n in (1, 2)]


@pytest.fixture
def deterministic(monkeypatch):
    """Ids from a seeded generator, stored times and clock stamps from a pinned clock (reset per run)."""
    now = [T0_MS]
    rng = random.Random()

    def start() -> tuple[list[int], random.Random]:
        rng.seed(20260302)
        monkeypatch.setattr(models.base, "uuid7", lambda: uuid.UUID(int=rng.getrandbits(128), version=4))
        now[0] = T0_MS
        return now, rng
    undo = pin_utcnow(lambda: now[0] / 1000)
    monkeypatch.setattr(models.base, "FIELD_NODE", models.base.FIELD_NODE)
    monkeypatch.setattr(clock, "_wall", clock._wall)
    monkeypatch.setattr(clock, "node_id", clock.node_id)
    yield start
    undo()


def at_central(url: str, start: Callable[[], list[int]], rowwise: bool,
               scenario: Callable[[Central], Any]) -> tuple[dict[str, Any], Ways, Any]:
    """Run `scenario` on a fresh central at `url`, one way; return the dump, the ways taken and its result."""
    now, rng = start()
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "SEED_REFERENCE_DATA": False, "DATABASE_URL": url})
    clock._wall = lambda: now[0] / 1000
    with app.app_context(), db.connection_context():
        central = Central(now)
        with way(rowwise, rng) as ways:
            result = scenario(central)
        state = dump(db.obj)
    return state, ways, result


def both_ways(urls: list[str], start, scenario: Callable[[Central], Any], redo: bool | None = False):
    """Run the scenario fast and row by row, assert the same outcome; return the fast run's dump and result."""
    fast, fast_ways, fast_result = at_central(urls[0], start, False, scenario)
    slow, slow_ways, slow_result = at_central(urls[1], start, True, scenario)
    assert_same(fast, slow)
    assert fast_result == slow_result
    check_ways(fast_ways, slow_ways, redo)
    return fast, fast_result


def reasons(answer: dict) -> list[tuple[int, str]]:
    """(index, reason) of the changes a push answer set aside."""
    return [(item["index"], item["reason"]) for item in answer["set_aside"]]


def test_meeting_and_its_roll_call_in_one_batch(central_urls, deterministic):
    """A new meeting and its roll call (parent first) in one batch, then an edit of both in the next."""
    def scenario(c: Central):
        meeting = Meeting(id=rid("new-meeting"), cell=c.cells["doi-1"].id, held_on=TODAY, title="Họp chuyên đề",
                          kind="thematic", created_at=T0)
        meeting.owner = "doi-1"
        first = c.push([created(meeting, c.stamp())] + [mark(c, meeting.id, f"doi-1-m{n}", s)
                                                        for n, s in enumerate(("present", "excused", "present"))])
        second = c.push([edited(meeting, c.stamp(), title="Họp chuyên đề (sửa)", status="in_progress"),
                         edited(Attendance.get_by_id(natural_id(Attendance(meeting=meeting.id,
                                                                           member=c.members["doi-1-m2"].id))),
                                c.stamp(), status="unexcused")])
        return first, second
    state, (first, second) = both_ways(central_urls, deterministic, scenario)
    assert (first["applied"], first["set_aside"], second["applied"]) == (4, [], 2)
    marks = [r for r in state["attendance"].values() if r["meeting_id"] == rid("new-meeting")]
    assert sorted(r["status"] for r in marks) == ["excused", "present", "unexcused"]
    assert [r["origin"] for r in state["change_log"][-6:]] == ["doi-1"] * 6


def test_the_same_record_changed_twice_in_one_batch(central_urls, deterministic):
    """Create, edit, edit again (and an older re-sent edit) of one member in one batch: the newest stamps win."""
    def scenario(c: Central):
        member = Member(id=rid("twice"), cell=c.cells["doi-1"].id, full_name="Lê Văn Hai Lần", created_at=T0)
        member.owner = "doi-1"
        create = created(member, c.stamp())
        first_stamp, second_stamp = c.stamp(), c.stamp()
        retitle = edited(c.meeting, c.stamp(), title="Họp tháng 3 (sửa 1)")
        return c.push([
            create,
            {"table": "member", "record_id": member.id, "hlc": first_stamp,
             "payload": {"fields": {"full_name": "Lê Văn Sửa Một", "birth_year": 1980},
                         "base": {"full_name": create["hlc"], "birth_year": create["hlc"]}}},
            {"table": "member", "record_id": member.id, "hlc": second_stamp,
             "payload": {"fields": {"full_name": "Lê Văn Sửa Hai"}, "base": {"full_name": first_stamp}}},
            {"table": "member", "record_id": member.id, "hlc": first_stamp,  # the first edit again: a no-op
             "payload": {"fields": {"full_name": "Lê Văn Sửa Một", "birth_year": 1980},
                         "base": {"full_name": create["hlc"], "birth_year": create["hlc"]}}},
            retitle,
            {"table": "meeting", "record_id": c.meeting.id, "hlc": c.stamp(),
             "payload": {"fields": {"title": "Họp tháng 3 (sửa 2)"}, "base": {"title": retitle["hlc"]}}},
        ])
    state, answer = both_ways(central_urls, deterministic, scenario)
    assert (answer["applied"], answer["skipped"]) == (5, 1), answer["set_aside"]
    row = state["member"][rid("twice")]
    assert (row["full_name"], row["birth_year"]) == ("Lê Văn Sửa Hai", 1980)
    assert state["meeting"][rid("doi-1-meeting")]["title"] == "Họp tháng 3 (sửa 2)"


def test_changes_set_aside_between_good_ones(central_urls, deterministic):
    """Missing parent, out of scope, policy, bad value, foreign stamp between good changes: the good ones apply."""
    def scenario(c: Central):
        late_meeting = Meeting(id=rid("late-meeting"), cell=c.cells["doi-1"].id, held_on=TODAY, title="Đến sau",
                               created_at=T0)
        late_meeting.owner = "doi-1"
        outsider = Member(id=rid("outsider"), cell=c.cells["doi-2"].id, full_name="Ngoài phạm vi", created_at=T0)
        term = Position(id=rid("term"), member=c.members["doi-1-m1"].id, kind="dang_uy_vien",
                        start_on=dt.date(2025, 1, 1), created_at=T0)
        bad = Meeting(id=rid("bad-meeting"), cell=c.cells["doi-1"].id, held_on=TODAY, kind="khong_co", created_at=T0)
        good = Member(id=rid("good"), cell=c.cells["doi-1"].id, full_name="Hợp lệ", created_at=T0)
        foreign = edited(c.members["doi-1-m2"], c.stamp("doi-2"), full_name="Dấu của nút khác")
        first = c.push([
            mark(c, late_meeting.id, "doi-1-m0"),                                # missing_parent
            edited(c.meeting, c.stamp(), title="Họp tháng 3 — đã sửa"),          # good
            created(outsider, c.stamp()),                                        # out_of_scope
            created(term, c.stamp()),                                            # policy
            edited(c.members["central-m1"], c.stamp(), full_name="Sửa hộ"),      # out_of_scope
            created(bad, c.stamp()),                                             # invalid
            foreign,                                                             # invalid (stamp of doi-2)
            created(good, c.stamp()),                                            # good
            mark(c, c.meeting.id, "doi-1-m3", "excused"),                        # good
            {"table": "khong_co_bang", "record_id": rid("x"), "hlc": c.stamp(), "payload": {"fields": {}}},
        ])
        second = c.push([created(late_meeting, c.stamp())])  # the parent arrives: the waiting mark is retried
        return first, second
    state, (first, second) = both_ways(central_urls, deterministic, scenario)
    assert reasons(first) == [(0, "missing_parent"), (2, "out_of_scope"), (3, "policy"), (4, "out_of_scope"),
                              (5, "invalid"), (6, "invalid"), (9, "unknown_table")]
    assert first["applied"] == 3 and second["retried"] == 1
    assert rid("good") in state["member"] and rid("outsider") not in state["member"]
    assert [(d["reason"], d["resolved_at"] is not None) for d in state["sync_dead_letter"]][:2] == [
        ("missing_parent", True), ("out_of_scope", False)]


def test_delete_of_a_meeting_takes_its_roll_call(central_urls, deterministic):
    """A node deletes its meeting (and the marks it had); central's own mark follows the tombstone."""
    def scenario(c: Central):
        c.push([mark(c, c.meeting.id, f"doi-1-m{n}") for n in range(3)])
        # Central marks the fourth member itself (a child only central has).
        Attendance.create(meeting=c.meeting.id, member=c.members["doi-1-m3"].id, status="excused", reason="Ốm")
        c.tick()
        marks = [Attendance.get_by_id(natural_id(Attendance(meeting=c.meeting.id, member=c.members[f"doi-1-m{n}"].id)))
                 for n in range(3)]
        answer = c.push([deleted(m, c.stamp()) for m in marks] + [deleted(c.meeting, c.stamp())])
        # A member added offline and marked after the delete: the mark is stored under the deleted
        # meeting, deleted with it, and shown as a conflict.
        newcomer = Member(id=rid("newcomer"), cell=c.cells["doi-1"].id, full_name="Mới đến", created_at=T0)
        late = c.push([created(newcomer, c.stamp()), mark(c, c.meeting.id, newcomer.id)])
        return answer, late
    state, (answer, late) = both_ways(central_urls, deterministic, scenario)
    assert answer["applied"] == 4
    marks = [r for r in state["attendance"].values() if r["meeting_id"] == rid("doi-1-meeting")]
    assert len(marks) == 5 and all(r["deleted_at"] is not None for r in marks)
    assert state["meeting"][rid("doi-1-meeting")]["deleted_at"] is not None
    assert late["conflicts"] >= 1
    assert {(r["table"], r["kind"]) for r in state["sync_conflict"]} >= {("meeting", "delete_edit")}


def test_concurrent_edits_make_the_same_conflicts(central_urls, deterministic):
    """Central and the node rename the same member, and the node deletes a meeting central retitled."""
    def scenario(c: Central):
        member, meeting = c.members["doi-1-m1"], c.meeting
        rename = edited(member, c.stamp(), full_name="Tên tại đội")      # base: the name before either edit
        delete = deleted(meeting, c.stamp())                             # saw the title before central's edit
        c.tick(120_000)
        fresh = Member.get_by_id(member.id)
        fresh.full_name = "Tên tại trung tâm"
        fresh.save()
        fresh = Meeting.get_by_id(meeting.id)
        fresh.title = "Tiêu đề tại trung tâm"
        fresh.save()
        c.tick()
        return c.push([rename, edited(c.members["doi-1-m2"], c.stamp(), birth_year=1990), delete])
    state, answer = both_ways(central_urls, deterministic, scenario)
    assert answer["conflicts"] == 2
    kinds = sorted((r["table"], r["column"], r["kind"]) for r in state["sync_conflict"])
    assert kinds == [("meeting", "", "delete_edit"), ("member", "full_name", "field")]
    assert state["member"][rid("doi-1-m1")]["full_name"] == "Tên tại trung tâm"  # the later stamp wins


def test_duplicate_card_numbers_are_the_same_conflicts(central_urls, deterministic):
    """A card number central already has, and two new members with one number in the same batch."""
    def scenario(c: Central):
        taken = c.members["doi-1-m0"].card_number
        one = Member(id=rid("dup-1"), cell=c.cells["doi-1"].id, full_name="Trùng Một", card_number=taken,
                     created_at=T0)
        two = Member(id=rid("dup-2"), cell=c.cells["doi-1"].id, full_name="Trùng Hai", card_number="77777777",
                     created_at=T0)
        three = Member(id=rid("dup-3"), cell=c.cells["doi-1"].id, full_name="Trùng Ba", card_number="77777777",
                       created_at=T0)
        return c.push([created(one, c.stamp()), created(two, c.stamp()), created(three, c.stamp()),
                       edited(c.members["doi-1-m1"], c.stamp(), card_number="77777777")])
    state, answer = both_ways(central_urls, deterministic, scenario)
    assert answer["applied"] == 4 and answer["conflicts"] == 3
    assert sorted(r["record_id"] for r in state["sync_conflict"] if r["kind"] == "duplicate") == sorted(
        [rid("dup-1"), rid("dup-3"), rid("doi-1-m1")])


def test_a_constraint_failing_mid_batch_is_redone_row_by_row(central_urls, deterministic):
    """A mark under another id for a (meeting, member) that has one: the checks pass, the unique index refuses.

    The fast attempt fails at its flush and is rolled back; the batch is redone row by row and ends
    exactly as the row-by-row way: the good changes around it applied, the bad one a 'constraint' dead letter.
    """
    def scenario(c: Central):
        c.push([mark(c, c.meeting.id, "doi-1-m0")])
        return c.push([
            edited(c.meeting, c.stamp(), title="Trước"),
            mark(c, c.meeting.id, "doi-1-m1"),
            mark(c, c.meeting.id, "doi-1-m0", "excused", record_id=rid("dup-of-existing")),  # unique index
            mark(c, c.meeting.id, "doi-1-m2", "present", record_id=rid("first-of-two")),
            mark(c, c.meeting.id, "doi-1-m2", "excused", record_id=rid("second-of-two")),  # both new in this batch
            edited(c.members["doi-1-m3"], c.stamp(), full_name="Sau"),
        ])
    state, answer = both_ways(central_urls, deterministic, scenario, redo=True)
    assert reasons(answer) == [(2, "constraint"), (4, "constraint")]
    assert answer["applied"] == 4
    assert rid("first-of-two") in state["attendance"] and rid("second-of-two") not in state["attendance"]
    assert state["member"][rid("doi-1-m3")]["full_name"] == "Sau"
    assert [d["reason"] for d in state["sync_dead_letter"]] == ["constraint", "constraint"]


def test_a_constraint_the_checks_let_through_on_a_unique_column(central_urls, deterministic, monkeypatch):
    """Cell.code is unique: with the scope and policy checks lifted, a second cell 'CB02' is refused by the index."""
    import sync.merge

    monkeypatch.setattr(sync.merge, "_check_scope", lambda *a, **k: None)
    monkeypatch.setattr(sync.merge, "_policy", None)

    def scenario(c: Central):
        copy = Cell(id=rid("copy-cell"), organisation=rid("org"), code="CB02", name="Bản sao", node_id="doi-1",
                    created_at=T0)
        other = Cell(id=rid("other-cell"), organisation=rid("org"), code="CB09", name="Mới", node_id="doi-1",
                     created_at=T0)
        return c.push([created(other, c.stamp()), created(copy, c.stamp()),
                       edited(c.members["doi-1-m0"], c.stamp(), full_name="Vẫn áp dụng")])
    state, answer = both_ways(central_urls, deterministic, scenario, redo=True)
    assert reasons(answer) == [(1, "constraint")]
    assert rid("other-cell") in state["cell"] and rid("copy-cell") not in state["cell"]


def test_a_replayed_batch_changes_nothing_either_way(central_urls, deterministic):
    """The same batch sent twice gets the stored answer and writes nothing the second time."""
    def scenario(c: Central):
        changes = [mark(c, c.meeting.id, "doi-1-m0"), edited(c.meeting, c.stamp(), title="Một lần")]
        first = c.push(changes)
        before = dump(db.obj)
        again = c.push(changes)
        assert dump(db.obj) == before
        return first, again
    _state, (first, again) = both_ways(central_urls, deterministic, scenario)
    assert first == again


# -- 3. one batch, one transaction -------------------------------------------------------------------

class Crash(Exception):
    """A crash in the middle of writing a batch (power cut, killed worker)."""


def crash_after_first_executemany(monkeypatch) -> list[int]:
    """Make RowCache.flush raise `Crash` right after its first executemany has written rows."""
    original = RowCache.flush
    written: list[int] = []

    class Cursor:
        def __init__(self, real):
            self.real = real

        def executemany(self, sql, rows):
            rows = list(rows)
            self.real.executemany(sql, rows)
            written.append(len(rows))
            raise Crash(f"crash after writing {len(rows)} rows: {sql[:40]}")

        def __getattr__(self, name):
            return getattr(self.real, name)

    def flush(self):
        database = self.database
        real_cursor = database.cursor
        database.cursor = lambda *a, **k: Cursor(real_cursor(*a, **k))
        try:
            return original(self)
        finally:
            del database.cursor
    monkeypatch.setattr(RowCache, "flush", flush)
    return written


def batch_of_a_meeting(c: Central) -> list[dict]:
    """A new meeting, its roll call and an edit of a member: inserts and updates in several tables, logged."""
    meeting = Meeting(id=rid("crash-meeting"), cell=c.cells["doi-1"].id, held_on=TODAY, title="Họp", created_at=T0)
    meeting.owner = "doi-1"
    return ([created(meeting, c.stamp())] + [mark(c, meeting.id, f"doi-1-m{n}") for n in range(4)]
            + [edited(c.members["doi-1-m1"], c.stamp(), full_name="Đổi tên")])


def test_a_crash_in_the_middle_of_the_flush_leaves_nothing_and_the_batch_applies_again(
        central_urls, deterministic, monkeypatch):
    """Rows already written by the flush are rolled back with the batch: no rows, no log, no answer stored."""
    def crashing(c: Central):
        changes = batch_of_a_meeting(c)
        before = dump(db.obj)
        with monkeypatch.context() as m:
            written = crash_after_first_executemany(m)
            with pytest.raises(Crash):
                c.push(changes)
        assert written and written[0] > 0  # the crash came after rows were written
        after = dump(db.obj)
        assert AppliedBatch.select().count() == 0 and DeadLetter.select().count() == 0
        assert ChangeLog.select().where(ChangeLog.origin == "doi-1").count() == 0
        assert Meeting.get_or_none(Meeting.id == rid("crash-meeting")) is None
        assert after == before, "\n".join(differences(after, before))
        return c.push(changes)

    def clean(c: Central):
        return c.push(batch_of_a_meeting(c))
    crashed, crashed_ways, answer = at_central(central_urls[0], deterministic, False, crashing)
    once, once_ways, answer_once = at_central(central_urls[1], deterministic, True, clean)
    assert_same(crashed, once)
    assert answer == answer_once and answer["applied"] == 6
    assert crashed_ways.events == ["fast-failed", "fast"], crashed_ways.events


def _push_in_child(url: str, changes: list[dict], batch_id: str, kill: bool) -> None:
    """In a forked process: open central, and push; with `kill`, die (os._exit) in the middle of the flush."""
    try:
        from models import init_db

        database = init_db(url)
        database.connect()
        batch_module.ROWWISE = False
        if kill:
            original = RowCache.flush

            def flush(self):
                real = self.database.cursor

                class Cursor:
                    def __init__(self, cursor):
                        self.cursor = cursor

                    def executemany(self, sql, rows):
                        self.cursor.executemany(sql, list(rows))
                        os._exit(17)  # killed with rows written and not committed

                    def __getattr__(self, name):
                        return getattr(self.cursor, name)
                self.database.cursor = lambda *a, **k: Cursor(real(*a, **k))
                return original(self)
            RowCache.flush = flush
        digest = content_hash(changes)
        body = {"batch_id": batch_id, "node_id": "doi-1", "schema_version": SCHEMA_VERSION, "from_seq": 1,
                "to_seq": len(changes), "content_hash": digest, "changes": changes}
        apply_push(Node.get_by_id("doi-1"), body, CONFIG)
        database.close()
    except BaseException:  # noqa: BLE001 - the parent reads the exit code
        os._exit(3)
    os._exit(0)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_process_killed_in_the_middle_of_the_flush_leaves_nothing(central_urls, deterministic):
    """A worker killed while its flush has written rows: central has nothing of the batch; it applies again whole."""
    url = central_urls[0]
    before, _ways, changes = at_central(url, deterministic, False, batch_of_a_meeting)
    changes = json.loads(json.dumps(changes))
    batch_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "killed"))
    context = multiprocessing.get_context("fork")
    for kill, code in ((True, 17), (False, 0)):
        child = context.Process(target=_push_in_child, args=(url, changes, batch_id, kill))
        child.start()
        child.join(60)
        assert child.exitcode == code
        if kill:
            with db.connection_context():
                after = dump(db.obj)
            assert after == before, "\n".join(differences(after, before))
    with db.connection_context():
        assert Meeting.get_by_id(rid("crash-meeting")).title == "Họp"
        assert Attendance.select().where(Attendance.meeting == rid("crash-meeting")).count() == 4
        assert AppliedBatch.get_by_id(batch_id).change_count == 6
        assert ChangeLog.select().where(ChangeLog.origin == "doi-1").count() == 6


# -- 4. the pull side at a field node ----------------------------------------------------------------

class Feed:
    """Central's feed as a field node pulls it: whole records with central's stamps, in seq order."""

    def __init__(self):
        self.seq = itertools.count(1)
        self.counter = itertools.count(1)

    def stamp(self) -> str:
        return f"{T0_MS - 3_600_000:015d}:{next(self.counter):06d}:central"

    def row(self, record, **extra_payload: Any) -> dict:
        wire = record.to_wire()
        payload = {"fields": {c: wire[c] for c in data_columns(type(record))}, "owner": "central", **extra_payload}
        return {"seq": next(self.seq), "table": record._meta.table_name, "record_id": record.id,
                "hlc": self.stamp(), "origin": "central", "payload": payload}

    def edit(self, table: str, record_id: str, **fields: Any) -> dict:
        return {"seq": next(self.seq), "table": table, "record_id": record_id, "hlc": self.stamp(),
                "origin": "central", "payload": {"fields": fields, "owner": "central"}}


def pull_pages(constraints: bool = True) -> list[tuple[list[dict], int]]:
    """Three pages of central's feed for doi-1, with what a node must set aside and a record twice in a page.

    `constraints`: page 2 also carries two roll-call marks under another id for a (meeting, member)
    that has one, which only the unique index refuses (the fast attempt must be redone row by row).
    """
    feed = Feed()
    org = Organisation(id=rid("org"), name="Đảng bộ", created_at=T0)
    mine = Cell(id=rid("cell-doi-1"), organisation=org.id, code="CB02", name="Chi bộ Hai", node_id="doi-1",
                created_at=T0)
    theirs = Cell(id=rid("cell-doi-2"), organisation=org.id, code="CB03", name="Chi bộ Ba", node_id="doi-2",
                  created_at=T0)
    members = [Member(id=rid(f"p-m{n}"), cell=mine.id, full_name=f"Đảng viên {n}", created_at=T0) for n in range(4)]
    late = Member(id=rid("p-late"), cell=mine.id, full_name="Đến sau", created_at=T0)
    meeting = Meeting(id=rid("p-meeting"), cell=mine.id, held_on=TODAY, title="Họp", created_at=T0)
    bad = Meeting(id=rid("p-bad"), cell=mine.id, held_on=TODAY, kind="khong_co", created_at=T0)

    def mark_row(member, status="present", record_id=None):
        record = Attendance(meeting=meeting.id, member=member.id, status=status, created_at=T0)
        record.id = record_id or natural_id(record)
        return feed.row(record)
    page1 = [feed.row(org), feed.row(mine), feed.row(theirs)] + [feed.row(m) for m in members] + [
        feed.row(meeting), mark_row(members[0]), mark_row(members[1], "excused"),
        mark_row(late),                                                  # missing_parent until page 2
        feed.row(bad),                                                   # invalid
        feed.edit("meeting", meeting.id, title="Họp (sửa 1)"),           # the same record twice in one page
        feed.edit("meeting", meeting.id, title="Họp (sửa 2)", status="in_progress"),
        feed.edit("member", rid("p-never"), full_name="Chưa có"),        # missing_record
    ]
    moved = members[3].state_payload()[0]
    page2 = [feed.row(late), mark_row(members[2], "excused")]
    if constraints:
        page2 += [mark_row(members[2], record_id=rid("p-dup")),                   # unique index
                  mark_row(members[0], "unexcused", record_id=rid("p-dup-0"))]    # unique index
    page2 += [
             # A member handed over to doi-2 (a left-scope notice, applied in its own savepoint).
             {"seq": next(feed.seq), "table": "member", "record_id": members[3].id, "hlc": feed.stamp(),
              "origin": "central", "payload": {"left": "doi-2", **moved, "fields": {**moved["fields"],
                                                                                    "cell_id": theirs.id}}},
             feed.edit("member", members[1].id, full_name="Tên mới")]
    deleted_at = (T0 + dt.timedelta(hours=2)).isoformat()
    page3 = [feed.edit("attendance", natural_id(Attendance(meeting=meeting.id, member=m.id)), deleted_at=deleted_at)
             for m in members[:2]] + [feed.edit("meeting", meeting.id, deleted_at=deleted_at)]
    return [(page1, 100), (page2, 200), (page3, 300)]


@pytest.fixture
def field_urls(tmp_path):
    """Two field-node databases (always SQLite, as in the field)."""
    return [f"sqlite:///{tmp_path / f'field-{n}.sqlite3'}" for n in (1, 2)]


def at_field(url: str, start, rowwise: bool, scenario: Callable[[], Any]) -> tuple[dict[str, Any], Ways, Any]:
    """Run `scenario` on a fresh field node doi-1, one way; return the dump, the ways and its result."""
    now, rng = start()
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "ROLE": "field", "NODE_ID": "doi-1", "DATABASE_URL": url})
    clock._wall = lambda: now[0] / 1000
    with app.app_context(), db.connection_context():
        with way(rowwise, rng) as ways:
            result = scenario()
        state = dump(db.obj)
    return state, ways, result


def test_pulled_pages_give_the_same_node_both_ways(field_urls, deterministic):
    """The same pages applied fast and row by row: same rows, dead letters (constraint ones too) and cursor."""
    def scenario():
        return [apply_pull_page(json.loads(json.dumps(page)), cursor, "doi-1") for page, cursor in pull_pages()]
    fast, fast_ways, counts = at_field(field_urls[0], deterministic, False, scenario)
    slow, slow_ways, slow_counts = at_field(field_urls[1], deterministic, True, scenario)
    assert_same(fast, slow)
    assert counts == slow_counts
    check_ways(fast_ways, slow_ways, redo=True)
    assert fast["sync_state"][PULL_CURSOR] == "300"
    letters = [(d["table"], d["record_id"], d["reason"], d["resolved_at"] is not None) for d in fast["sync_dead_letter"]]
    assert ("attendance", natural_id(Attendance(meeting=rid("p-meeting"), member=rid("p-late"))), "missing_parent",
            True) in letters
    assert {(t, r, reason) for t, r, reason, done in letters if not done} == {
        ("meeting", rid("p-bad"), "invalid"), ("member", rid("p-never"), "missing_record"),
        ("attendance", rid("p-dup"), "constraint"), ("attendance", rid("p-dup-0"), "constraint")}
    assert fast["member"][rid("p-m3")]["cell_id"] == rid("cell-doi-2")
    assert fast["meeting"][rid("p-meeting")]["title"] == "Họp (sửa 2)"
    assert fast["meeting"][rid("p-meeting")]["deleted_at"] is not None


def test_a_crash_while_a_page_is_written_leaves_the_cursor_and_the_page_applies_again(
        field_urls, deterministic, monkeypatch):
    """The page's rows and its cursor are one transaction: a crash mid-flush leaves neither; the page applies again."""
    pages = pull_pages(constraints=False)

    def crashing():
        apply_pull_page(json.loads(json.dumps(pages[0][0])), pages[0][1], "doi-1")
        before = dump(db.obj)
        with monkeypatch.context() as m:
            written = crash_after_first_executemany(m)
            with pytest.raises(Crash):
                apply_pull_page(json.loads(json.dumps(pages[1][0])), pages[1][1], "doi-1")
        assert written and written[0] > 0
        after = dump(db.obj)
        assert after["sync_state"][PULL_CURSOR] == "100"
        assert after == before, "\n".join(differences(after, before))
        return [apply_pull_page(json.loads(json.dumps(page)), cursor, "doi-1") for page, cursor in pages[1:]]

    def clean():
        apply_pull_page(json.loads(json.dumps(pages[0][0])), pages[0][1], "doi-1")
        return [apply_pull_page(json.loads(json.dumps(page)), cursor, "doi-1") for page, cursor in pages[1:]]
    crashed, crashed_ways, counts = at_field(field_urls[0], deterministic, False, crashing)
    once, _ways, counts_once = at_field(field_urls[1], deterministic, True, clean)
    assert_same(crashed, once)
    assert counts == counts_once
    assert crashed_ways.events[:3] == ["fast", "fast-failed", "fast"], crashed_ways.events
    assert crashed["sync_state"][PULL_CURSOR] == "300"


def test_a_constraint_flushed_by_a_left_scope_notice_is_not_blamed_on_the_notice(field_urls, deterministic):
    """A mark the unique index refuses, then a handover notice in the same page.

    Row by row, the mark is a 'constraint' dead letter and the notice applies (the member moves to
    doi-2's cell). The fast way must end the same: the buffered mark is flushed by the notice's own
    statements, and its failure belongs to the mark, not to the notice.
    """
    feed = Feed()
    org = Organisation(id=rid("org"), name="Đảng bộ", created_at=T0)
    mine = Cell(id=rid("cell-doi-1"), organisation=org.id, code="CB02", name="Hai", node_id="doi-1", created_at=T0)
    theirs = Cell(id=rid("cell-doi-2"), organisation=org.id, code="CB03", name="Ba", node_id="doi-2", created_at=T0)
    member = Member(id=rid("l-m"), cell=mine.id, full_name="Chuyển đi", created_at=T0)
    meeting = Meeting(id=rid("l-meeting"), cell=mine.id, held_on=TODAY, title="Họp", created_at=T0)
    first = Attendance(meeting=meeting.id, member=member.id, status="present", created_at=T0)
    first.id = natural_id(first)
    dup = Attendance(id=rid("l-dup"), meeting=meeting.id, member=member.id, status="excused", created_at=T0)
    page1 = [feed.row(org), feed.row(mine), feed.row(theirs), feed.row(member), feed.row(meeting), feed.row(first)]
    state = member.state_payload()[0]
    page2 = [feed.row(dup), {"seq": 99, "table": "member", "record_id": member.id, "hlc": feed.stamp(),
                             "origin": "central",
                             "payload": {"left": "doi-2", **state, "fields": {**state["fields"], "cell_id": theirs.id}}}]
    pages = [(page1, 10), (page2, 20)]

    def scenario():
        return [apply_pull_page(json.loads(json.dumps(page)), cursor, "doi-1") for page, cursor in pages]
    fast, fast_ways, counts = at_field(field_urls[0], deterministic, False, scenario)
    slow, slow_ways, slow_counts = at_field(field_urls[1], deterministic, True, scenario)
    assert [(d["record_id"], d["reason"]) for d in slow["sync_dead_letter"]] == [(rid("l-dup"), "constraint")]
    assert slow["member"][rid("l-m")]["cell_id"] == rid("cell-doi-2")
    assert_same(fast, slow)
    assert counts == slow_counts
    check_ways(fast_ways, slow_ways, redo=True)
