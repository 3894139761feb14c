"""In-process simulation of central and three field nodes, for the randomized convergence test.

Design: every node is its own SQLite file, opened once per history. Acting as a node means binding
the shared `models.db` proxy to that node's database, setting the writer guard
(`models.base.configure_writer`) and the clock's node id, and reading a wall clock the simulation
controls (per node offset, so clocks can jump). The transport replaces HTTP only: the field node runs
the real `sync.client.run_sync` (with `transport=`), and each call runs central's own handler
functions (`sync.server.hello` / `apply_push` / `serve_pull`) on central's database, with the bodies
round-tripped through JSON as on the wire. A transport can fail a call before it reaches central
(the link dropped) or after central handled it (the answer was lost), which interrupts a sync after
k batches or pages exactly as a broken link would.
Every local write is recorded in a model of what was written (`Write`: table, record, column, value,
its stamp and the stamp it replaced), taken from the outbox rows the write appended; the checks in
tests/test_sync_convergence.py judge the quiesced databases against that model.
Histories start from template files (central with an organisation, three field nodes after their
first sync) copied per history, so a history costs its operations and syncs only.
`Sim(..., fixed_time=True)` also makes `models.base.utcnow()` (created/deleted/logged times) read the
simulated wall clock, so two runs of one seed can be compared value for value (tests/test_sync_batch.py);
the convergence test leaves it off.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import random
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import models.base
from models import ALL_MODELS, SYNCED_MODELS, Cell, ChangeLog, Member, Node, Organisation, ValidationError, clock, db
from models import make_database
from models.base import column_stamps, data_columns
from models.meetings import ATTENDANCE_STATUSES, MEETING_KINDS, MEETING_STATUSES, Attendance, Meeting, set_attendance
from models.members import change_status
from models.migrations import db_up
from models.nodes import hash_token
from sync.client import run_sync
from sync.digest import scope_digest, scope_ids
from sync.protocol import Refusal, SyncError, setting
from sync.server import apply_push, hello, serve_pull

NODES = ("doi-1", "doi-2", "doi-3")
CENTRAL = "central"
T0_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC: every history starts at the same simulated time
CENTRAL_CONFIG = {"ROLE": "central", "NODE_ID": CENTRAL, "APP_VERSION": "sim"}
QUIET_ROUNDS = int(os.environ.get("CHIBO_CONVERGENCE_QUIET", "1"))
# Tables whose rows the operations write (snapshotted before a delete to know what the deleter saw).
CASCADE_TABLES = ("member", "meeting", "attendance", "member_status_change", "position")


@dataclass
class Write:
    """One column value a local write saved: where, with which stamp, replacing which stamp."""

    table: str
    record_id: str
    column: str
    value: Any
    stamp: str
    base: str | None  # None for a creation
    actor: str
    step: int
    known: dict[str, str] | None = None  # for a delete: every column's stamp the deleter had


@dataclass
class Step:
    """One line of a history, for the failure report."""

    number: int
    text: str


class SimTransport:
    """Stands in for `CentralClient`: runs central's handlers in process, and can break the link."""

    def __init__(self, sim: "Sim", node_id: str, fail: Callable[[str], str | None]):
        """`fail(path)` answers None, 'drop' (never reaches central) or 'lose' (answer lost)."""
        self.sim, self.node_id, self.fail = sim, node_id, fail
        self.calls: list[str] = []

    def call(self, method: str, path: str, json: Any = None, params: dict | None = None) -> tuple[int, dict]:
        """One request: JSON in, central's handler on central's database, JSON out."""
        fault = self.fail(path)
        self.calls.append(f"{path}{'!' + fault if fault else ''}")
        if fault == "drop":
            raise SyncError("sim: mất kết nối trước khi tới trung tâm")
        body = _wire(json)
        with self.sim.acting(CENTRAL):
            node = Node.get_by_id(self.node_id)
            try:
                if path == "/hello":
                    status, answer = 200, hello(node, body, CENTRAL_CONFIG)
                elif path == "/push":
                    status, answer = 200, apply_push(node, body, CENTRAL_CONFIG)[0]
                elif path == "/pull":
                    cursor, limit = int(params["cursor"]), int(params["limit"])
                    limit = min(limit, setting(CENTRAL_CONFIG, "SYNC_PULL_MAX_LIMIT"))
                    status, answer = 200, serve_pull(node, cursor, limit, CENTRAL_CONFIG)
                elif path == "/digest":
                    table = (params or {}).get("table")
                    if table is None:
                        status, answer = 200, {"tables": scope_digest(self.node_id)}
                    elif table in SYNCED_MODELS:
                        status, answer = 200, {"table": table, "ids": scope_ids(table, self.node_id)}
                    else:
                        raise Refusal(400, "bad_request", "Bảng không tồn tại.")
                else:  # pragma: no cover - the client calls nothing else
                    raise AssertionError(path)
            except Refusal as refusal:
                status, answer = refusal.status, refusal.body()
        if fault == "lose":
            raise SyncError("sim: mất câu trả lời của trung tâm")
        return status, _wire(answer)

    def close(self) -> None:
        """Nothing to release."""


def pin_utcnow(seconds: Callable[[], float]) -> Callable[[], None]:
    """Make `models.base.utcnow()` return the time `seconds()` (epoch seconds) gives; return the undo.

    Every module imports `utcnow` by name and the models use it as a field default, so the function
    object itself is rewired (its code now asks `_pinned_utcnow_source` in models.base) rather than
    the names that refer to it.
    """
    function = models.base.utcnow
    original = function.__code__

    def pinned():
        return dt.datetime.fromtimestamp(_pinned_utcnow_source(), dt.timezone.utc).replace(tzinfo=None)  # noqa: F821

    models.base._pinned_utcnow_source = seconds
    function.__code__ = pinned.__code__

    def undo() -> None:
        function.__code__ = original
        models.base.__dict__.pop("_pinned_utcnow_source", None)
    return undo


def _wire(value: Any) -> Any:
    """What the other side reads after JSON on the wire."""
    return json.loads(json.dumps(value, ensure_ascii=False)) if value is not None else None


class Sim:
    """Central and the field nodes of one history, with the model of what users wrote."""

    def __init__(self, directory: Path, seed: int, fixed_time: bool = False):
        """Open copies of the template databases; nothing is bound until `acting()`.

        `fixed_time`: stored times (`utcnow()`) follow the simulated wall clock of the acting machine
        instead of the real one, so a history is reproducible to the microsecond.
        """
        self.seed = seed
        self.rng = random.Random(seed)
        self.dir = directory
        self.now_ms = T0_MS + 3_600_000
        self.offset = {name: 0 for name in (CENTRAL,) + NODES}
        self.dbs = {}
        template = template_dir()
        for name in (CENTRAL,) + NODES:
            target = directory / f"{name}.sqlite3"
            shutil.copyfile(template / f"{name}.sqlite3", target)
            self.dbs[name] = make_database(f"sqlite:///{target}")
            self.dbs[name].connect()
        self.active: str | None = None
        self.writes: list[Write] = []
        self.steps: list[Step] = []
        self.counter = 0
        self.cells: dict[str, str] = json.loads((template / "cells.json").read_text())
        self._saved = (db.obj, models.base.FIELD_NODE, clock.node_id, clock._wall, models.base.uuid7)
        clock._wall = lambda: self.wall_ms(self.active or CENTRAL) / 1000.0
        models.base.uuid7 = self._uuid7
        self._unpin = pin_utcnow(lambda: self.wall_ms(self.active or CENTRAL) / 1000.0) if fixed_time else None

    # -- the environment -------------------------------------------------------------------------
    def close(self) -> None:
        """Close every database and put the globals back."""
        for database in self.dbs.values():
            database.close()
        obj, writer, node, wall, maker = self._saved
        if obj is not None:
            db.initialize(obj)
        models.base.FIELD_NODE, clock.node_id, clock._wall, models.base.uuid7 = writer, node, wall, maker
        if self._unpin is not None:
            self._unpin()
            self._unpin = None

    def wall_ms(self, name: str) -> int:
        """The wall clock of one machine: simulated time plus its offset."""
        return self.now_ms + self.offset[name]

    def _uuid7(self) -> uuid.UUID:
        """A uuid7-shaped id from the history's own random generator (reproducible histories)."""
        bits = (self.now_ms << 80) | self.rng.getrandbits(80)
        bits = (bits & ~(0xF << 76)) | (0x7 << 76)
        bits = (bits & ~(0x3 << 62)) | (0x2 << 62)
        return uuid.UUID(int=bits)

    def bind(self, name: str) -> None:
        """Make `name` the machine the models read and write."""
        db.initialize(self.dbs[name])
        models.base.FIELD_NODE = None if name == CENTRAL else name
        clock.node_id = name
        self.active = name

    @contextlib.contextmanager
    def acting(self, name: str):
        """Act as one machine inside the block, then go back to the previous one."""
        previous = self.active
        self.bind(name)
        try:
            yield
        finally:
            if previous is not None:
                self.bind(previous)
            else:
                self.active = None

    def log(self, text: str) -> None:
        """Add a line to the history's transcript."""
        self.steps.append(Step(len(self.steps) + 1, text))

    def unique(self, prefix: str) -> str:
        """A value never written before in this history (so a value names its write)."""
        self.counter += 1
        return f"{prefix} {self.counter}"

    # -- writes, recorded in the model -------------------------------------------------------------
    def write(self, actor: str, text: str, action: Callable[[], Any], deleting: bool = False) -> bool:
        """Run one user action as `actor`; record every column it saved. False when refused locally."""
        with self.acting(actor):
            before = ChangeLog.select(ChangeLog.seq).order_by(ChangeLog.seq.desc()).scalar() or 0
            known = self._stamp_snapshot() if deleting else {}
            try:
                action()
            except ValidationError as exc:
                self.log(f"{actor}: {text} — refused here ({exc})")
                return False
            rows = list(ChangeLog.select().where((ChangeLog.seq > before) & (ChangeLog.origin == actor))
                        .order_by(ChangeLog.seq))
        for row in rows:
            payload = json.loads(row.payload)
            base = payload.get("base")
            for column, value in payload["fields"].items():
                self.writes.append(Write(row.table, row.record_id, column, value, row.hlc,
                                         None if base is None else base.get(column), actor, len(self.steps) + 1,
                                         known.get((row.table, row.record_id)) if column == "deleted_at" else None))
        self.log(f"{actor}: {text}")
        return True

    def _stamp_snapshot(self) -> dict[tuple[str, str], dict[str, str]]:
        """Every column stamp of the rows a delete may touch, as the deleter has them now."""
        out = {}
        for table in CASCADE_TABLES:
            model = SYNCED_MODELS[table]
            columns = data_columns(model)
            for rid, hlc, stamps in model.select(model.id, model.hlc, model.stamps).tuples():
                out[(table, rid)] = column_stamps(hlc, stamps or "", columns)
        return out

    # -- sync ------------------------------------------------------------------------------------
    def sync(self, node_id: str, fault_rate: float = 0.0, batch: int = 500, page: int = 500) -> str:
        """Run the real client on `node_id` against central; return how it ended."""
        rng = self.rng

        def fail(path: str) -> str | None:
            if fault_rate and rng.random() < fault_rate:
                return rng.choice(("drop", "lose"))
            return None

        transport = SimTransport(self, node_id, fail)
        config = {"ROLE": "field", "NODE_ID": node_id, "CENTRAL_URL": "sim://central", "SYNC_TOKEN": "sim",
                  "APP_VERSION": "sim", "SYNC_BATCH_SIZE": batch, "SYNC_PULL_LIMIT": page}
        with self.acting(node_id):
            try:
                report = run_sync(config, transport=transport)
                outcome = (f"ok pushed={report.pushed} pulled={report.pulled} applied={report.applied}"
                           f" aside={report.set_aside}" + (f" errors={report.errors}" if report.errors else ""))
                moved = report.pushed + report.pulled
            except SyncError as exc:
                outcome, moved = f"stopped: {str(exc)[:80]}", -1
        self.log(f"sync {node_id} (batch {batch}, page {page}): {' '.join(transport.calls)} -> {outcome}")
        return outcome if moved != 0 else "idle"

    def quiesce(self, max_rounds: int = 8, quiet_rounds: int = QUIET_ROUNDS) -> None:
        """Fix fast clocks, then sync every node in turn until `quiet_rounds` whole rounds in a row move nothing.

        One quiet round already proves a fixed point (every node synced, central did not change);
        CHIBO_CONVERGENCE_QUIET=2 asks for a second one.
        """
        for name in NODES:
            if self.offset[name] > 0:
                self.offset[name] = 0
                self.log(f"clock of {name} fixed")
        quiet = 0
        for _ in range(max_rounds):
            self.now_ms += 1000
            results = [self.sync(name) for name in NODES]
            quiet = quiet + 1 if all(r == "idle" for r in results) else 0
            if quiet == quiet_rounds:
                return
        raise AssertionError(f"no quiet state after {max_rounds} rounds of syncs")


_TEMPLATE: Path | None = None


def template_dir() -> Path:
    """Build (once per process) central and three field nodes after their first sync; return the folder."""
    global _TEMPLATE
    if _TEMPLATE is not None:
        return _TEMPLATE
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="chibo-sim-template-", dir=base))
    saved = (db.obj, models.base.FIELD_NODE, clock.node_id, clock._wall)
    now = [T0_MS]
    clock._wall = lambda: now[0] / 1000.0
    databases = {}
    try:
        for name in (CENTRAL,) + NODES:
            databases[name] = make_database(f"sqlite:///{folder / (name + '.sqlite3')}")
            databases[name].connect()
            db.initialize(databases[name])
            db_up(ALL_MODELS)
        db.initialize(databases[CENTRAL])
        models.base.FIELD_NODE, clock.node_id = None, CENTRAL
        cells = {}
        org = Organisation.create(name="Đảng bộ Mô phỏng")
        for index, holder in enumerate((CENTRAL,) + NODES):
            cell = Cell.create(organisation=org.id, code=f"CB{index}", name=f"Chi bộ số {index}", node_id=holder)
            cells[holder] = cell.id
            for n in range(3):
                now[0] += 7
                Member.create(cell=cell.id, full_name=f"Đảng viên {index}.{n}", birth_year=1960 + n)
            Meeting.create(cell=cell.id, held_on=dt.date(2025, 12, 5), title=f"Họp tháng 12 chi bộ {index}")
            if holder != CENTRAL:
                Node.create(id=holder, name=f"Nút {holder}", token_hash=hash_token(f"token-{holder}"))
        (folder / "cells.json").write_text(json.dumps(cells))
        for name in NODES:
            now[0] += 1000
            sim = _TemplateSync(databases, now)
            sim.first_sync(name)
    finally:
        for database in databases.values():
            database.close()
        obj, writer, node, wall = saved
        if obj is not None:
            db.initialize(obj)
        models.base.FIELD_NODE, clock.node_id, clock._wall = writer, node, wall
    _TEMPLATE = folder
    return folder


class _TemplateSync(Sim):
    """Just enough of `Sim` to run the first sync of each node while the templates are made."""

    def __init__(self, databases: dict, now: list[int]):
        """Use the open template databases and the template's clock."""
        self.dbs = databases
        self.rng = random.Random(0)
        self.active = None
        self.steps = []
        self.offset = {name: 0 for name in databases}
        self._now = now

    @property
    def now_ms(self) -> int:
        """The template builder's simulated time."""
        return self._now[0]

    def first_sync(self, node_id: str) -> None:
        """Pull the node's whole scope once; fail loudly if it did not finish."""
        outcome = self.sync(node_id)
        assert outcome.startswith("ok") and "errors" not in outcome, outcome


# -- the random operations --------------------------------------------------------------------------

STATUS_CHOICES = ("full", "probationary", "temp_here", "exempted")


def _pick(rng: random.Random, query):
    """A random row of a query (its id only), or None."""
    rows = list(query)
    return rng.choice(rows) if rows else None


# Known defects of the core (see tests/test_sync_convergence.py, the xfail tests): while one is open,
# the random histories tolerate it, so every other regression still fails the test.
# CHIBO_CONVERGENCE_ALL=1 makes the checks strict again.
ALL_SITUATIONS = os.environ.get("CHIBO_CONVERGENCE_ALL", "") not in ("", "0")
# Central adds roll-call marks or status changes in a field node's cell (the same mark on both sides
# is a unique-key clash; a child added while the node deletes its parent must follow the tombstone).
CENTRAL_CHILDREN_IN_NODE_CELLS = True
# Central deletes a field node's meeting or member (a mark the node adds meanwhile must not diverge).
CENTRAL_DELETES_IN_NODE_CELLS = True


def random_operation(sim: Sim, actor: str) -> None:
    """One user action at `actor`, within what that machine may write (central: any cell)."""
    rng = sim.rng
    holder = rng.choice((CENTRAL,) + NODES) if actor == CENTRAL else actor
    cell_id = sim.cells[holder]
    kinds = ["create_member"] * 3 + ["edit_member"] * 5 + ["delete_member"] + ["status"] + ["create_meeting"] * 2 \
        + ["edit_meeting"] * 3 + ["delete_meeting"] + ["mark"] * 5
    if actor == CENTRAL:
        kinds += ["rename_cell"]
    if holder != actor and not CENTRAL_CHILDREN_IN_NODE_CELLS:
        kinds = [k for k in kinds if k not in ("mark", "status")]
    if holder != actor and not CENTRAL_DELETES_IN_NODE_CELLS:
        kinds = [k for k in kinds if not k.startswith("delete")]
    kind = rng.choice(kinds)
    with sim.acting(actor):
        member = _pick(rng, Member.live().select(Member.id).where(Member.cell == cell_id).order_by(Member.id))
        meeting = _pick(rng, Meeting.live().select(Meeting.id).where(Meeting.cell == cell_id).order_by(Meeting.id))
    if kind == "create_member":
        values = {"full_name": sim.unique("Nguyễn Văn"), "birth_year": rng.randint(1950, 2000),
                  "card_number": f"{rng.randint(1, 40):08d}" if rng.random() < 0.3 else None}
        sim.write(actor, f"create member {values}", lambda: Member.create(cell=cell_id, **values))
    elif kind == "edit_member" and member is not None:
        # Names and birth years most often, so that two sides often change the same column.
        columns = list(dict.fromkeys(rng.choices(["full_name", "birth_year", "status_note", "card_number", "gender"],
                                                 weights=(5, 3, 2, 1, 1), k=rng.randint(1, 3))))
        values = {}
        for column in columns:
            values[column] = {"full_name": lambda: sim.unique("Trần Thị"), "birth_year": lambda: rng.randint(1950, 2000),
                              "status_note": lambda: sim.unique("Ghi chú"),
                              "card_number": lambda: rng.choice((None, f"{rng.randint(1, 40):08d}")),
                              "gender": lambda: rng.choice(("nam", "nu"))}[column]()

        def edit():
            fresh = Member.get_by_id(member.id)
            for column, value in values.items():
                setattr(fresh, column, value)
            fresh.save()
        sim.write(actor, f"edit member {member.id[-6:]} {values}", edit)
    elif kind == "delete_member" and member is not None:
        sim.write(actor, f"delete member {member.id[-6:]}", lambda: Member.get_by_id(member.id).soft_delete(),
                  deleting=True)
    elif kind == "status" and member is not None:
        status = rng.choice(STATUS_CHOICES)
        sim.write(actor, f"status of {member.id[-6:]} -> {status}",
                  lambda: change_status(Member.get_by_id(member.id), status, dt.date(2025, rng.randint(1, 12), 1),
                                        decision=sim.unique("QĐ"), reason=sim.unique("Lý do")))
    elif kind == "create_meeting":
        values = {"held_on": dt.date(2025, rng.randint(1, 12), rng.randint(1, 28)), "title": sim.unique("Họp"),
                  "kind": rng.choice(list(MEETING_KINDS))}
        sim.write(actor, f"create meeting {values['title']}", lambda: Meeting.create(cell=cell_id, **values))
    elif kind == "edit_meeting" and meeting is not None:
        values = rng.choice(({"title": sim.unique("Họp")}, {"status": rng.choice(list(MEETING_STATUSES))},
                             {"kind": rng.choice(list(MEETING_KINDS))},
                             {"title": sim.unique("Họp"), "status": rng.choice(list(MEETING_STATUSES))}))

        def edit():
            fresh = Meeting.get_by_id(meeting.id)
            for column, value in values.items():
                setattr(fresh, column, value)
            fresh.save()
        sim.write(actor, f"edit meeting {meeting.id[-6:]} {values}", edit)
    elif kind == "delete_meeting" and meeting is not None:
        sim.write(actor, f"delete meeting {meeting.id[-6:]}", lambda: Meeting.get_by_id(meeting.id).soft_delete(),
                  deleting=True)
    elif kind == "mark" and meeting is not None and member is not None:
        status = rng.choice(list(ATTENDANCE_STATUSES))
        reason = sim.unique("Vắng vì") if status == "excused" else ""
        with sim.acting(actor):
            row = Attendance.get_or_none((Attendance.meeting == meeting.id) & (Attendance.member == member.id))
        if row is not None and row.deleted_at is not None:
            return  # reviving a deleted mark is left out of the model (see the test's docstring)
        sim.write(actor, f"mark {member.id[-6:]} at {meeting.id[-6:]}: {status}",
                  lambda: set_attendance(Meeting.get_by_id(meeting.id), member.id, status, reason))
    elif kind == "rename_cell":
        name = sim.unique("Chi bộ")

        def rename():
            cell = Cell.get_by_id(cell_id)
            cell.name = name
            cell.save()
        sim.write(actor, f"rename cell {cell_id[-6:]} to {name}", rename)


def clock_jump(sim: Sim, node_id: str) -> None:
    """Move a node's wall clock: minutes to a year, either way, or back to the right time."""
    rng = sim.rng
    minute, day = 60_000, 86_400_000
    offset = rng.choice((0, 0, rng.randint(1, 59) * minute, -rng.randint(1, 59) * minute,
                         rng.randint(1, 30) * day, -rng.randint(1, 30) * day, 365 * day, -365 * day,
                         rng.randint(1, 4) * minute))
    sim.offset[node_id] = offset
    sim.log(f"clock of {node_id} set {offset / 60000:+.0f} min from true time")


def random_history(sim: Sim, operations: int) -> None:
    """Operations, syncs (some interrupted) and clock jumps in a random order."""
    rng = sim.rng
    for _ in range(operations):
        sim.now_ms += rng.randint(1, 90_000)
        roll = rng.random()
        if roll < 0.68:
            random_operation(sim, rng.choice((CENTRAL, CENTRAL) + NODES))
        elif roll < 0.94:
            faults = rng.choice((0.0, 0.0, 0.2, 0.4))
            sim.sync(rng.choice(NODES), fault_rate=faults, batch=rng.randint(1, 4), page=rng.randint(1, 6))
        else:
            clock_jump(sim, rng.choice(NODES))
