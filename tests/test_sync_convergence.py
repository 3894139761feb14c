"""Randomized convergence (issue 7, "Proof"): central and three field nodes, random histories, then quiesce.

Each history (seeded, reproducible) runs random creates, edits and deletes of members, meetings and
roll-call marks (central may also edit the nodes' records, which makes true conflicts), status
changes, cell renames at central, clock jumps on the nodes (minutes to a year, either way), syncs in
random order with random batch and page sizes, and interrupted syncs (the link drops before a call
reaches central, or central's answer is lost after it applied a batch or served a page). Then every
fast clock is fixed and every node syncs until a whole round moves nothing, twice. Checked:
- convergence: each node's rows of every synced table equal central's rows in the node's scope (its
  cells plus '*'), values, tombstones and per-column stamps alike;
- nothing lost, against the model of what was written (tests/sync_sim.py): for every column of every
  record, the final value is the one with the highest stamp among all writes, and every other
  write that no later write replaced knowingly (a "head") is either the final value or the losing
  side of an open conflict at central; a record someone deleted is deleted everywhere, and a delete
  that had not seen an edit of the record is shown as a delete-versus-edit conflict;
- no dead letters, and no live mark, status change or position under a deleted parent.
Left out: moves of a cell to another node (being built in another branch) and reviving a deleted
roll-call mark (the model treats a tombstone as final). The scripted histories at the end reproduce
the four defects it found in the core (all fixed since).

Environment: CHIBO_CONVERGENCE_HISTORIES (default 1000, in chunks of 50), CHIBO_CONVERGENCE_WORKERS
(processes; default one per CPU), CHIBO_CONVERGENCE_QUIET (quiet rounds that end a quiesce, default 1).
`python3 -m tests.test_sync_convergence SEED…` replays histories and prints the transcript of a failure.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from collections import defaultdict
from pathlib import Path

import pytest

from typing import Any, Callable

from models import SYNCED_MODELS, Member, SyncedModel, ValidationError
from models.meetings import Meeting, set_attendance
from models.base import _to_json, column_stamps, data_columns
from models.sync_state import Conflict, DeadLetter
from tests.sync_sim import CENTRAL, NODES, Sim, random_history, template_dir

# The simulation keeps every node, central included, on SQLite files: one pass is enough.
pytestmark = pytest.mark.sqlite_only

HISTORIES = int(os.environ.get("CHIBO_CONVERGENCE_HISTORIES", "1000"))
CHUNK = 50
FIRST_SEED = 1


def snapshot(sim: Sim, name: str, scopes: bool = False) -> dict[str, dict[str, tuple]]:
    """Every synced table of one machine as stored: id -> (scope, data columns, per-column stamps, owner).

    Raw rows (one SELECT per table), so values compare exactly as each database stores them. The scope
    (only asked of central) follows the rules of docs/sync-protocol.md §3, written out here so the
    test does not take the models' word for it; other tables ask the model.
    """
    out = {}
    with sim.acting(name):
        cursor = sim.dbs[name].cursor()
        rows_of = {}
        for table, model in SYNCED_MODELS.items():
            cursor.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            rows_of[table] = [dict(zip(names, values)) for values in cursor.fetchall()]
        holder = {r["id"]: r["node_id"] for r in rows_of["cell"]}
        cell_of = {t: {r["id"]: r["cell_id"] for r in rows_of[t]} for t in ("member", "meeting")}
        for table, model in SYNCED_MODELS.items():
            columns = data_columns(model)
            # Stored values in their wire form (what the model of writes holds).
            fields = {f.column_name: f for f in model._meta.sorted_fields}
            rows = {}
            for row in rows_of[table]:
                scope = _scope(model, table, row, holder, cell_of) if scopes else ""
                values = {c: row[c] if row[c] is None else _to_json(fields[c].python_value(row[c])) for c in columns}
                rows[row["id"]] = (scope, values, column_stamps(row["hlc"], row["stamps"], columns), row["owner"])
            out[table] = rows
    return out


def _scope(model, table: str, row: dict, holder: dict, cell_of: dict) -> str:
    """Which node receives a row: its cell's holder, '*' for what every node receives."""
    if table == "audit_entry":
        return row["scope"] or "*"
    if table in ("member", "meeting"):
        return holder.get(row["cell_id"], "?")
    if table == "attendance":
        return holder.get(cell_of["meeting"].get(row["meeting_id"]), "?")
    if table in ("member_status_change", "position"):
        return holder.get(cell_of["member"].get(row["member_id"]), "?")
    if table == "app_user":
        return holder.get(row["cell_id"], "?") if row["cell_id"] else "*"
    if model.sync_scope is SyncedModel.sync_scope:
        return "*"
    try:
        return model.get_by_id(row["id"]).sync_scope()
    except (ValidationError, model.DoesNotExist):
        return "?"


def check_convergence(sim: Sim, central: dict) -> list[str]:
    """Each node holds exactly central's rows of its scope, with the same values and stamps."""
    problems = []
    for name in NODES:
        node = snapshot(sim, name)
        for table, rows in central.items():
            wanted = {rid: row for rid, row in rows.items() if row[0] in ("*", name)}
            have = node[table]
            for rid in sorted(set(wanted) | set(have)):
                if rid not in have:
                    problems.append(f"{name} lacks {table}/{rid}")
                elif rid not in wanted:
                    problems.append(f"{name} has {table}/{rid} that central has "
                                    + ("not at all" if rid not in rows else f"in scope {rows[rid][0]}"))
                else:
                    mine, theirs = have[rid], wanted[rid]
                    for c in theirs[1]:
                        if mine[1][c] != theirs[1][c] or mine[2][c] != theirs[2][c]:
                            problems.append(f"{name} {table}/{rid}.{c} = {mine[1][c]!r} @{mine[2][c]} but central has "
                                            f"{theirs[1][c]!r} @{theirs[2][c]}")
    return problems


def check_model(sim: Sim, central: dict) -> list[str]:
    """Nothing a user saved is lost: each head write is the final value or an open conflict's loser."""
    problems = []
    with sim.acting(CENTRAL):
        conflicts = list(Conflict.select().where(Conflict.resolved_at.is_null()).dicts())
    losers = defaultdict(set)
    delete_edit = set()
    for c in conflicts:
        if c["kind"] == "delete_edit":
            delete_edit.add((c["table"], c["record_id"]))
        else:
            losers[(c["table"], c["record_id"], c["column"])].add(c["loser_json"])
            losers[(c["table"], c["record_id"], c["column"])].add(c["winner_json"])
    groups = defaultdict(list)
    for w in sim.writes:
        groups[(w.table, w.record_id, w.column)].append(w)
    for (table, rid, column), writes in groups.items():
        row = central[table].get(rid)
        if row is None:
            problems.append(f"central lacks {table}/{rid} (written by {writes[0].actor} at step {writes[0].step})")
            continue
        final, final_stamp = row[1][column], row[2][column]
        if column == "deleted_at":
            deleted = [w for w in writes if w.value is not None]
            if deleted and final is None:
                problems.append(f"{table}/{rid} was deleted by {deleted[0].actor} at step {deleted[0].step} "
                                "but is live at central")
            continue
        newest = max(writes, key=lambda w: w.stamp)
        if (final, final_stamp) != (newest.value, newest.stamp):
            problems.append(f"{table}/{rid}.{column} = {final!r} @{final_stamp} at central; the newest write is "
                            f"{newest.value!r} @{newest.stamp} by {newest.actor} at step {newest.step}")
        bases = {w.base for w in writes if w.base}
        # A value someone replaced knowingly (the same value written twice counts once).
        replaced = {json.dumps(w.value) for w in writes if w.stamp in bases}
        for w in writes:
            if w.stamp in bases or w.value == final or json.dumps(w.value) in replaced:
                continue
            shown = losers.get((table, rid, column), set())
            if json.dumps(w.value, ensure_ascii=False) not in shown:
                problems.append(f"lost: {table}/{rid}.{column} = {w.value!r} saved by {w.actor} at step {w.step} "
                                f"(@{w.stamp}, base {w.base}); final {final!r}; no open conflict shows it")
    problems += check_delete_edit(sim, groups, delete_edit, losers)
    return problems


def check_delete_edit(sim: Sim, groups: dict, shown: set, losers: dict) -> list[str]:
    """A delete that had not seen an edit of its record is a delete-versus-edit conflict at central.

    An edit counts as seen by the deleter when the deleter's value of that column descends from it,
    holds the same value, or the deleter made it itself; an edit shown as the losing side of a field
    conflict is accounted for already.
    """
    problems = []
    for (table, rid, column), writes in groups.items():
        if column != "deleted_at" or (table, rid) in shown:
            continue
        deletes = [w for w in writes if w.value is not None and w.known is not None]
        for delete in deletes:
            for (t, r, c), edits in groups.items():
                if (t, r) != (table, rid) or c == "deleted_at":
                    continue
                ancestry = _ancestors(edits, delete.known.get(c))
                seen_values = {json.dumps(w.value) for w in edits if w.stamp in ancestry}
                for edit in edits:
                    if (edit.base is None or edit.stamp in ancestry or json.dumps(edit.value) in seen_values
                            or (edit.actor == delete.actor and edit.step < delete.step)
                            or json.dumps(edit.value, ensure_ascii=False) in losers.get((t, r, c), set())):
                        continue
                    if any(other.known and edit.stamp in _ancestors(edits, other.known.get(c)) for other in deletes):
                        continue  # another delete saw this edit (its writer deleted the record after it)
                    problems.append(f"{table}/{rid}: delete by {delete.actor} at step {delete.step} had not seen "
                                    f"the edit of {c} to {edit.value!r} by {edit.actor} at step {edit.step}; "
                                    "no delete-versus-edit conflict is shown")
    return problems


def _ancestors(writes: list, stamp: str | None) -> set[str]:
    """The stamps a column value descends from (itself included), following each write's base."""
    by_stamp = {w.stamp: w for w in writes}
    out = set()
    while stamp and stamp not in out:
        out.add(stamp)
        write = by_stamp.get(stamp)
        stamp = write.base if write else None
    return out


def check_dead_letters_and_orphans(sim: Sim, central: dict) -> list[str]:
    """No change set aside anywhere; no live child under a deleted parent at central."""
    problems = []
    for name in (CENTRAL,) + NODES:
        with sim.acting(name):
            for letter in DeadLetter.select().where(DeadLetter.resolved_at.is_null()):
                problems.append(f"dead letter at {name}: {letter.table}/{letter.record_id} {letter.reason}: "
                                f"{letter.message[:160]}")
    parents = {"attendance": ("meeting_id", "member_id"), "member_status_change": ("member_id",),
               "position": ("member_id",)}
    owners = {"meeting_id": "meeting", "member_id": "member"}
    with sim.acting(CENTRAL):
        # A child central could not delete (a rule forbids it, e.g. a signed meeting's roll call) is
        # kept and shown to a person as a delete-versus-edit conflict: that is not a silent state.
        flagged = {c.record_id for c in Conflict.select().where(Conflict.resolved_at.is_null()
                                                                & (Conflict.kind == "delete_edit"))}
    for table, columns in parents.items():
        for rid, row in central[table].items():
            if row[1]["deleted_at"] is not None or rid in flagged:
                continue
            for column in columns:
                parent = central[owners[column]].get(row[1][column])
                if parent is not None and parent[1]["deleted_at"] is not None:
                    problems.append(f"live {table}/{rid} under deleted {owners[column]}/{row[1][column]}")
    return problems


def verify(sim: Sim) -> list[str]:
    """Quiesce, then every check; the problems found (empty when all is well)."""
    sim.quiesce()
    central = snapshot(sim, CENTRAL, scopes=True)
    problems = check_convergence(sim, central) + check_model(sim, central) + check_dead_letters_and_orphans(sim, central)
    return list(dict.fromkeys(problems))


def run_history(seed: int, directory: Path, operations: int | None = None) -> tuple[Sim, list[str]]:
    """Play one seeded history, quiesce, and return the problems found (empty when all is well)."""
    sim = Sim(directory, seed)
    try:
        random_history(sim, operations or sim.rng.randint(8, 24))
        problems = verify(sim)
    finally:
        sim.close()
    return sim, problems


def report(seed: int, sim: Sim, problems: list[str]) -> str:
    """The failure message: the seed, how to replay it, what went wrong and the transcript."""
    lines = [f"history seed {seed} failed (replay: python3 -m tests.test_sync_convergence {seed})"]
    lines += [f"  ! {p}" for p in problems[:25]]
    lines += [f"  {s.number:3d}. {s.text}" for s in sim.steps]
    return "\n".join(lines)


def _chunks():
    """Seed ranges of CHUNK histories each, covering HISTORIES histories."""
    starts = range(FIRST_SEED, FIRST_SEED + HISTORIES, CHUNK)
    return [(start, min(start + CHUNK, FIRST_SEED + HISTORIES)) for start in starts]


def play(seed: int) -> str | None:
    """Run one history in a scratch folder; the failure report, or None when it passed."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix=f"chibo-sim-{seed}-", dir=base) as directory:
        sim, problems = run_history(seed, Path(directory))
    return report(seed, sim, problems) if problems else None


@pytest.fixture(scope="module")
def workers():
    """Histories are independent: play them on every CPU (forked after the templates exist)."""
    template_dir()
    count = int(os.environ.get("CHIBO_CONVERGENCE_WORKERS", "0")) or os.cpu_count() or 1
    if count == 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    with ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool


@pytest.mark.parametrize("first,stop", _chunks(), ids=lambda v: str(v))
def test_random_histories_converge_and_lose_nothing(first, stop, workers):
    """Every history of the chunk ends with identical nodes and every saved value accounted for."""
    seeds = range(first, stop)
    results = workers.map(play, seeds) if workers is not None else map(play, seeds)
    failures = [r for r in results if r is not None]
    assert not failures, f"{len(failures)} of {len(seeds)} histories failed; the first:\n{failures[0]}"


# -- the smallest histories of the defects the random histories found ---------------------------------
# Each runs the same harness with scripted steps. The first three failed on the core this branch
# started from and pass on main; the xfail one is still open (strict: a fix turns it red, so the
# marker and the tolerance in check_delete_edit get removed).


def _first(sim: Sim, actor: str, model, cell_holder: str):
    """The first live record of `model` in the cell held by `cell_holder`, as `actor` has it."""
    with sim.acting(actor):
        return model.live().where(model.cell == sim.cells[cell_holder]).order_by(model.id).first()


def _mark(meeting_id: str, member_id: str, status: str, reason: str = "") -> Callable[[], Any]:
    """A roll-call tap, as the roll-call screen makes it."""
    return lambda: set_attendance(Meeting.get_by_id(meeting_id), member_id, status, reason)


def test_same_member_marked_at_central_and_at_the_node_is_a_conflict_not_dead_letters(tmp_path):
    """Central and doi-1 both mark one member at doi-1's meeting while apart; afterwards they agree."""
    sim = Sim(tmp_path, 0)
    try:
        meeting, member = _first(sim, "doi-1", Meeting, "doi-1"), _first(sim, "doi-1", Member, "doi-1")
        assert sim.write(CENTRAL, "central marks present", _mark(meeting.id, member.id, "present"))
        assert sim.write("doi-1", "doi-1 marks excused", _mark(meeting.id, member.id, "excused", "Ốm"))
        problems = verify(sim)
    finally:
        sim.close()
    assert not problems, "\n".join(problems)


def test_meeting_deleted_at_the_node_while_central_marks_it(tmp_path):
    """doi-1 deletes its meeting while central marks a member in it; afterwards both sides agree."""
    sim = Sim(tmp_path, 0)
    try:
        meeting, member = _first(sim, "doi-1", Meeting, "doi-1"), _first(sim, "doi-1", Member, "doi-1")
        assert sim.write(CENTRAL, "central marks present", _mark(meeting.id, member.id, "present"))
        assert sim.write("doi-1", "doi-1 deletes the meeting", lambda: Meeting.get_by_id(meeting.id).soft_delete(),
                         deleting=True)
        problems = verify(sim)
    finally:
        sim.close()
    assert not problems, "\n".join(problems)


def test_meeting_deleted_at_central_while_the_node_marks_it(tmp_path):
    """Central deletes doi-1's meeting while doi-1 marks a member in it; afterwards both sides agree."""
    sim = Sim(tmp_path, 0)
    try:
        meeting, member = _first(sim, "doi-1", Meeting, "doi-1"), _first(sim, "doi-1", Member, "doi-1")
        assert sim.write(CENTRAL, "central deletes the meeting", lambda: Meeting.get_by_id(meeting.id).soft_delete(),
                         deleting=True)
        assert sim.write("doi-1", "doi-1 marks present", _mark(meeting.id, member.id, "present"))
        problems = verify(sim)
    finally:
        sim.close()
    assert not problems, "\n".join(problems)


def test_delete_after_own_later_edit_still_shows_the_unseen_central_edit(tmp_path):
    """Central retitles doi-1's meeting; doi-1, not having pulled, changes its status, then deletes it."""
    sim = Sim(tmp_path, 0)
    try:
        meeting = _first(sim, "doi-1", Meeting, "doi-1")

        def edit(**values) -> Callable[[], Any]:
            def run():
                fresh = Meeting.get_by_id(meeting.id)
                for column, value in values.items():
                    setattr(fresh, column, value)
                fresh.save()
            return run
        assert sim.write(CENTRAL, "central retitles", edit(title="Tiêu đề mới tại trung tâm"))
        sim.now_ms += 1000
        assert sim.write("doi-1", "doi-1 changes the status", edit(status="in_progress"))
        assert sim.write("doi-1", "doi-1 deletes the meeting", lambda: Meeting.get_by_id(meeting.id).soft_delete(),
                         deleting=True)
        sim.quiesce()
        with sim.acting(CENTRAL):
            shown = Conflict.select().where((Conflict.record_id == meeting.id) & (Conflict.kind == "delete_edit")).count()
    finally:
        sim.close()
    assert shown == 1


def test_concurrent_renames_keep_both_names(tmp_path):
    """Central and doi-1 rename one member while apart: one name wins everywhere, the other is a conflict."""
    sim = Sim(tmp_path, 0)
    try:
        member = _first(sim, "doi-1", Member, "doi-1")

        def rename(name: str) -> Callable[[], Any]:
            def run():
                fresh = Member.get_by_id(member.id)
                fresh.full_name = name
                fresh.save()
            return run
        assert sim.write(CENTRAL, "central renames", rename("Tên tại trung tâm"))
        sim.now_ms += 1000
        assert sim.write("doi-1", "doi-1 renames", rename("Tên tại đội"))
        problems = verify(sim)
        with sim.acting(CENTRAL):
            conflict = Conflict.get((Conflict.record_id == member.id) & (Conflict.column == "full_name"))
            final = Member.get_by_id(member.id).full_name
    finally:
        sim.close()
    assert not problems, "\n".join(problems)
    assert final == "Tên tại đội"  # the later stamp wins provisionally
    assert json.loads(conflict.loser_json) == "Tên tại trung tâm" and conflict.resolved_at is None


def main() -> None:
    """Replay histories from the command line: python3 -m tests.test_sync_convergence SEED [SEED…]."""
    import sys

    for arg in sys.argv[1:] or ["1"]:
        with tempfile.TemporaryDirectory(prefix="chibo-sim-") as directory:
            sim, problems = run_history(int(arg), Path(directory))
        print(report(int(arg), sim, problems) if problems else f"history seed {arg}: ok ({len(sim.steps)} steps)")


if __name__ == "__main__":
    main()
