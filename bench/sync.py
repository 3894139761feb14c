"""Benchmark: sync at speed (issue 10). Prints `key=value` lines; medians of interleaved runs.

What it measures, with real parts (SQLite files, a real central server process, real HTTP):
- apply_sqlite_changes_per_s / apply_postgres_changes_per_s: central applying pushed batches of 500
  (`sync.server.apply_push`, one transaction per batch, exactly what the HTTP view calls), on a copy
  of central's SQLite file and on a PostgreSQL copy of it (127.0.0.1:5432, database chibo_bench_sync).
  The changes are the field node's real outbox: meetings with their roll calls written through the ORM.
  apply_sqlite_batch_2000_changes_per_s / apply_postgres_batch_2000_…: the same changes in batches of the
  size a node really sends (SYNC_BATCH_SIZE, or --push-batch), alternating with the 500s.
- e2e_10k_records_s: 10,000 new roll-call marks written at field node doi-1, pushed to central over
  loopback HTTP by `run_sync` in a warm field process (both sides committed when it returns).
- pouchdb_10k_s and e2e_ratio_vs_pouchdb: ../shared/peers/pouchdb (10,000 docs, PouchDB replication to
  an express-pouchdb server, in memory), run interleaved with ours when Node.js is present.
- sqlite_write_floor_changes_per_s: SQLite alone writing the rows the SQLite apply wrote (same batches,
  indexes and pragmas, plain executemany): the ceiling of the apply rate with a merge that cost nothing.
- first_pull_changes_per_s: a fresh field node's first sync (everything of its two cells, with history); one per
  rep, the others on spare fresh databases of the same node (thrown away), all before any push;
  first_pull_one_page_at_a_time_changes_per_s the same without asking for pages ahead (alternating).
- noop_sync_ms_small / noop_sync_ms_200k: a sync with nothing to do, before and after central's feed
  holds 200,000 more of the node's own changes.
- with --link-mbit M: e2e_10k_slow_link_gzip_s / e2e_10k_slow_link_plain_s, the same push of `records`
  new marks through a relay carrying M Mbit/s each way (--link-rtt-ms round trip, 60 by default), with
  the pushes gzip-compressed and plain, alternating; slow_link_ratio_gzip_vs_plain is their ratio.
  With --compare-plain the same pair straight to central (loopback_ratio_gzip_vs_plain: what
  compressing costs where the link is free). Both run after the main repetitions.
- with --compare-batch N: e2e_10k_batch_default_s / e2e_10k_batch_N_s, the same push straight to central in
  batches of the node's default size and of N changes, alternating; batch_N_ratio_vs_default is their ratio.
Usage: python bench/sync.py [--reps 3] [--records 10000] [--history 200] [--no-postgres] [--no-pouchdb]
       [--link-mbit 4 [--link-rtt-ms 60]] [--compare-plain] [--plain] [--compare-batch 2000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
POUCHDB = ROOT.parent / "shared" / "peers" / "pouchdb"
PG_ADMIN = os.environ.get("CHIBO_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = "chibo_bench_sync"

# Central writes history for the node's cells (what a fresh node pulls first): meetings with roll calls.
CENTRAL_HISTORY = """
import sys, datetime as dt
from app import create_app
from models import Cell, Meeting, db
from models.audit import audit_suppressed
from models.meetings import set_attendance
from models.members import roll_for_cell
app = create_app()
with app.app_context(), db.connection_context():
    for code in ("CB02", "CB03"):
        cell = Cell.get(Cell.code == code)
        roll = [m for m in roll_for_cell(cell.id) if m.counts_for_attendance]
        for i in range(int(sys.argv[1])):
            meeting = Meeting.create(cell=cell.id, held_on=dt.date(2000, 1, 1) + dt.timedelta(days=i),
                                     kind="extraordinary", title=f"Lịch sử {i}")
            for member in roll:
                set_attendance(meeting, member.id, "present")
"""

# A warm field process: wait for commands on stdin ("write N <tag>", "sync"), answer one JSON line each.
FIELD_DRIVER = r"""
import sys, json, time, datetime as dt
from app import create_app
from models import Cell, Meeting, ValidationError, db
from models.meetings import set_attendance
from models.members import roll_for_cell
from sync.client import run_sync
app = create_app()
DIRECT, COMPRESS, BATCH = app.config["CENTRAL_URL"], app.config.get("SYNC_COMPRESS", 1), app.config["SYNC_BATCH_SIZE"]
def write(records, offset):
    cell = Cell.get(Cell.code == "CB02")
    roll = [m for m in roll_for_cell(cell.id) if m.counts_for_attendance]
    made, i = 0, 0
    while made < records:
        try:
            meeting = Meeting.create(cell=cell.id, held_on=dt.date(2002, 1, 1) + dt.timedelta(days=offset + i),
                                     kind="extraordinary", title=f"Đo tải {offset + i}")
        except ValidationError:  # the cell met that day already (the demo's own meetings): the next day
            i += 1
            continue
        i += 1
        for member in roll[:records - made]:
            set_attendance(meeting, member.id, "present")
            made += 1
    return {"records": made, "meetings": i}
for line in sys.stdin:
    words = line.split()
    with app.app_context(), db.connection_context():
        if words[0] == "write":
            out = write(int(words[1]), int(words[2]))
        else:
            profiler = None
            if words[0] == "psync":  # the same sync under cProfile (stats on stderr)
                import cProfile
                profiler = cProfile.Profile()
                profiler.enable()
            if words[0] == "sync_via":  # another central address (the slow link), compression on/off, batch size
                app.config.update(CENTRAL_URL=DIRECT if words[1] == "direct" else words[1], SYNC_COMPRESS=int(words[2]),
                                  SYNC_BATCH_SIZE=int(words[3]) if len(words) > 3 else BATCH)
            else:
                app.config.update(CENTRAL_URL=DIRECT, SYNC_COMPRESS=COMPRESS, SYNC_BATCH_SIZE=BATCH)
            started = time.perf_counter()
            report = run_sync(app.config)
            if profiler is not None:
                import pstats
                profiler.disable()
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
            out = {"seconds": time.perf_counter() - started, "pushed": report.pushed, "pulled": report.pulled,
                   "errors": report.errors}
    print(json.dumps(out), flush=True)
"""


class SlowLink:
    """A TCP relay to central that carries `mbit` megabits per second each way, with `rtt_ms` round trip.

    A field office's link (ADSL, 3G/4G, a radio link) rather than loopback: what compression of the
    pushes is for. Each direction paces its bytes and delivers each chunk half the round trip late."""

    def __init__(self, target_port: int, mbit: float, rtt_ms: float):
        """Listen on a free local port; relay every connection to central."""
        import queue
        import threading

        self.rate = mbit * 1_000_000 / 8  # bytes per second
        self.delay = rtt_ms / 2000
        self.bytes = {"up": 0, "down": 0}
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        self.listener = listener
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"

        def pipe(source: socket.socket, sink: socket.socket, direction: str) -> None:
            chunks: queue.Queue = queue.Queue()

            def read() -> None:
                while True:
                    try:
                        data = source.recv(16384)
                    except OSError:
                        data = b""
                    chunks.put((time.monotonic(), data))
                    if not data:
                        return

            threading.Thread(target=read, daemon=True).start()
            free_at = 0.0
            while True:
                arrived, data = chunks.get()
                if not data:
                    try:
                        sink.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                free_at = max(free_at, arrived + self.delay) + len(data) / self.rate
                pause = free_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                self.bytes[direction] += len(data)
                try:
                    sink.sendall(data)
                except OSError:
                    return

        def accept() -> None:
            while True:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return
                upstream = socket.create_connection(("127.0.0.1", target_port))
                threading.Thread(target=pipe, args=(client, upstream, "up"), daemon=True).start()
                threading.Thread(target=pipe, args=(upstream, client, "down"), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

    def close(self) -> None:
        """Stop accepting (open connections end with the process)."""
        self.listener.close()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_for(tmp: Path, role: str, node: str, port: int, **extra: str) -> dict[str, str]:
    """A node's environment (nothing inherited from CHIBO_*; no timer sync)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIBO_")}
    env.update({"CHIBO_ROLE": role, "CHIBO_NODE_ID": node, "CHIBO_PORT": str(port), "CHIBO_SECRET_KEY": "bench",
                "CHIBO_DATABASE_URL": f"sqlite:///{tmp / node}.sqlite3", "CHIBO_SYNC_INTERVAL": "0", **extra})
    return env


def gzip_vs_plain(field: Field, args, rep: int, figures: dict[str, list[float]], mbit: float) -> None:
    """The same push of `records` new marks gzip-compressed and plain (order alternates by rep), over a
    relay of `mbit` Mbit/s (--link-rtt-ms round trip), or straight to central when `mbit` is 0."""
    link = SlowLink(int(field.central_port), mbit, args.link_rtt_ms) if mbit else None
    where, name = (f"over {mbit:g} Mbit/s, {args.link_rtt_ms:g} ms", "slow_link") if link else ("loopback", "loopback")
    try:
        for compress in ((1, 0) if rep % 2 == 0 else (0, 1)):
            offset = args.reps + 4 * rep + 2 * (link is None) + compress  # days of their own
            field.ask(f"write {args.records} {offset * (args.records // 20 + 50)}")
            before = dict(link.bytes) if link else {}
            pushed = field.ask(f"sync_via {link.url if link else 'direct'} {compress}")
            sent = f" ({(link.bytes['up'] - before['up']) / 1e6:.2f} MB up)" if link else ""
            figures.setdefault(f"e2e_10k_{name}_{'gzip' if compress else 'plain'}_s", []).append(pushed["seconds"])
            print(f"# rep {rep + 1}: {where}: {pushed['pushed']} changes {'gzip' if compress else 'plain'} in "
                  f"{pushed['seconds']:.2f} s{sent}", flush=True)
    finally:
        if link:
            link.close()


def batch_sizes(field: Field, args, rep: int, figures: dict[str, list[float]]) -> None:
    """The same push of `records` new marks straight to central in batches of the node's default size and
    of --compare-batch changes, alternating by rep."""
    for size in (("default", args.compare_batch) if rep % 2 == 0 else (args.compare_batch, "default")):
        offset = -(2 * rep + (size == "default") + 1)  # days of their own, before 2002 (roll calls only in the past)
        field.ask(f"write {args.records} {offset * (args.records // 20 + 50)}")
        pushed = field.ask("sync_via direct 1" + ("" if size == "default" else f" {size}"))
        figures.setdefault(f"e2e_10k_batch_{size}_s", []).append(pushed["seconds"])
        print(f"# rep {rep + 1}: batches of {size}: {pushed['pushed']} changes in {pushed['seconds']:.2f} s",
              flush=True)


def run(env: dict[str, str], *args: str) -> str:
    """A CLI command, or a script when args start with -c; its output."""
    command = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "flask", "--app", "app", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout


class Field:
    """A warm field-node process driven over stdin/stdout."""

    def __init__(self, env: dict[str, str]):
        """Start it (imports and app set-up happen once, as in a running node)."""
        self.central_port = env["CHIBO_CENTRAL_URL"].rsplit(":", 1)[-1]
        self.proc = subprocess.Popen([sys.executable, "-c", FIELD_DRIVER], cwd=ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, command: str) -> dict:
        """Send one command, return its JSON answer."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"field driver died on {command!r}")
        answer = json.loads(line)
        if answer.get("errors"):
            raise RuntimeError(f"sync errors: {answer['errors']}")
        return answer

    def close(self) -> None:
        """Stop it."""
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    """Central as `python app.py`, waited for."""
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/login", timeout=1)
            return server
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("central did not start")


def snapshot(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (the backup API, as `flask backup` does)."""
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)


def outbox_batches(field_db: Path, size: int = 500) -> list[dict]:
    """The field node's pushed changes, cut into batches exactly as the client sends them."""
    from sync.protocol import content_hash
    import uuid

    with sqlite3.connect(field_db) as conn:
        rows = conn.execute("SELECT seq, \"table\", record_id, hlc, payload FROM change_log "
                            "WHERE origin = 'doi-1' ORDER BY seq").fetchall()
    batches = []
    for start in range(0, len(rows), size):
        part = rows[start:start + size]
        changes = [{"table": t, "record_id": r, "hlc": h, "payload": json.loads(p)} for _, t, r, h, p in part]
        batches.append({"batch_id": str(uuid.uuid4()), "node_id": "doi-1", "schema_version": None,
                        "from_seq": part[0][0], "to_seq": part[-1][0], "content_hash": content_hash(changes),
                        "changes": changes})
    return batches


def apply_rate(url: str, batches: list[dict]) -> tuple[float, int]:
    """Apply the batches at a central database through `apply_push`; (changes per second, changes)."""
    from models import Node, db, init_db
    from models.migrations import SCHEMA_VERSION
    from sync.protocol import canonical_json
    from sync.server import apply_push

    database = init_db(url)
    total = sum(len(b["changes"]) for b in batches)
    for batch in batches:
        batch["schema_version"] = SCHEMA_VERSION
    # The bytes central receives: a field node sends canonical JSON (Batch.canonical_body).
    sent = [canonical_json(batch) for batch in batches]
    with db.connection_context():
        node = Node.get_by_id("doi-1")
        started = time.perf_counter()
        for batch, raw in zip(batches, sent):
            answer, _ = apply_push(node, batch, {}, raw)
            if answer["set_aside"]:
                raise RuntimeError(f"set aside: {answer['set_aside'][:2]}")
        seconds = time.perf_counter() - started
    database.close()
    return total / seconds, total


def sqlite_write_floor(applied: Path, before: Path, work: Path, size: int = 500) -> float:
    """SQLite alone: the rows a push wrote (records and change log), written again into central's copy in
    transactions of `size` changes with plain executemany and the app's pragmas; changes per second.

    What the apply rate would be if the merge, checks and bookkeeping cost nothing (issue 10's profile)."""
    from models import ALL_MODELS, SQLITE_PRAGMAS

    shutil.copy(before, work)
    with sqlite3.connect(applied) as source:
        log = source.execute("SELECT \"table\", record_id, hlc, origin, scope, payload, created_at FROM change_log "
                             "WHERE origin = 'doi-1' ORDER BY seq").fetchall()
        rows: dict[str, dict[str, tuple]] = {}
        order = [m._meta.table_name for m in ALL_MODELS]  # parents first, as the flush writes them
        for table in sorted({t for t, *_ in log}, key=order.index):
            ids = {r for t, r, *_ in log if t == table}
            columns = [c[1] for c in source.execute(f'PRAGMA table_info("{table}")')]
            found = source.execute(f'SELECT * FROM "{table}"').fetchall()
            rows[table] = {row[columns.index("id")]: row for row in found if row[columns.index("id")] in ids}
    conn = sqlite3.connect(work, isolation_level=None)
    for key, value in SQLITE_PRAGMAS.items():
        conn.execute(f"PRAGMA {key} = {value}")
    started = time.perf_counter()
    for start in range(0, len(log), size):
        part = log[start:start + size]
        conn.execute("BEGIN IMMEDIATE")
        for table in rows:
            batch = [rows[table].pop(r) for t, r, *_ in part if t == table and r in rows[table]]
            if batch:
                conn.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(batch[0]))})', batch)
        conn.executemany('INSERT INTO change_log ("table", record_id, hlc, origin, scope, payload, created_at) '
                         'VALUES (?, ?, ?, ?, ?, ?, ?)', part)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return len(log) / seconds


def copy_to_postgres(sqlite_path: Path) -> str | None:
    """Central's SQLite data in a fresh PostgreSQL database; its URL, or None when PostgreSQL is absent."""
    try:
        import psycopg
    except ImportError:
        return None
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB}")
            conn.execute(f"CREATE DATABASE {PG_DB}")
    except psycopg.OperationalError:
        return None
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{PG_DB}"
    from models import ALL_MODELS, make_database

    source, target = make_database(f"sqlite:///{sqlite_path}"), make_database(url)
    with target.bind_ctx(ALL_MODELS):
        migrate_into(target)
    for model in ALL_MODELS:
        with source.bind_ctx([model]):
            rows = list(model.select().dicts())
        with target.bind_ctx([model]), target.atomic():
            model.delete().execute()
            for start in range(0, len(rows), 1000):
                model.insert_many(rows[start:start + 1000]).execute()
    with target.connection_context():
        target.execute_sql("SELECT setval(pg_get_serial_sequence('change_log', 'seq'), "
                           "(SELECT COALESCE(MAX(seq), 1) FROM change_log))")
    target.close()
    source.close()
    return url


def migrate_into(database) -> None:
    """Create the schema on `database` the way the app does on start."""
    from models import ALL_MODELS, db
    from models.migrations import db_up

    db.initialize(database)
    with database.connection_context():
        db_up(ALL_MODELS)


def drop_postgres() -> None:
    """Remove the benchmark's PostgreSQL database."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")


def pouchdb_seconds(records: int) -> float | None:
    """PouchDB's initial replication of `records` docs (its own script), or None without Node.js."""
    if shutil.which("node") is None or not POUCHDB.exists():
        return None
    out = subprocess.run(["bash", str(POUCHDB / "run.sh"), str(records)], capture_output=True, text=True,
                         timeout=900)
    for line in out.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("phase") == "initial":
            return float(row["seconds"])
    print(f"# pouchdb failed: {out.stderr[-500:]}", file=sys.stderr)
    return None


def grow_feed(central_db: Path, count: int) -> None:
    """Put `count` more of doi-1's own changes in central's feed (as if pushed over the years)."""
    with sqlite3.connect(central_db, timeout=30) as conn:
        conn.executemany(
            "INSERT INTO change_log (\"table\", record_id, hlc, origin, scope, payload, created_at) "
            "VALUES ('attendance', ?, ?, 'doi-1', 'doi-1', '{\"fields\":{}}', '2020-01-01 00:00:00')",
            ((f"00000000-0000-0000-0000-{i:012d}", "0000000000001:0000:doi-1") for i in range(count)))


def main() -> None:
    """Set up central and a field node, run the measurements interleaved, print key=value lines."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--history", type=int, default=200, help="meetings per cell written at central first")
    parser.add_argument("--push-batch", type=int, help="the field node's SYNC_BATCH_SIZE (default: the app's)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-pouchdb", action="store_true")
    parser.add_argument("--link-mbit", type=float, default=0,
                        help="also push over a relay of this many Mbit/s, gzip and plain (0: not measured)")
    parser.add_argument("--plain", action="store_true", help="the loopback pushes uncompressed (CHIBO_SYNC_COMPRESS=0)")
    parser.add_argument("--compare-plain", action="store_true",
                        help="also push gzip and plain straight to central, alternating (the cost of compressing)")
    parser.add_argument("--compare-batch", type=int, default=0,
                        help="also push straight to central in batches of this size and the default, alternating")
    parser.add_argument("--link-rtt-ms", type=float, default=60, help="the slow link's round trip")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (for --apply-only)")
    parser.add_argument("--apply-only", metavar="DIR", help="only the apply figures, on a kept work directory")
    parser.add_argument("--profile", action="store_true", help="with --apply-only: cProfile one SQLite run")
    args = parser.parse_args()
    if args.apply_only:
        apply_only(Path(args.apply_only), args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="chibo-bench-sync-"))
    port = free_port()
    central = env_for(tmp, "central", "central", port)
    run(central, "demo")
    run(central, "-c", CENTRAL_HISTORY, str(args.history))
    started = time.perf_counter()
    registered = run(central, "nodes", "register", "doi-1", "--cells", "CB02,CB03").strip().splitlines()
    print(f"# nodes register (a new process; hands over the cells' records: {registered[-3].strip()}) "
          f"{time.perf_counter() - started:.2f} s", flush=True)
    token = registered[-1]
    server = start_server(central, port)
    figures: dict[str, list[float]] = {}
    field = None
    try:
        field_env = env_for(tmp, "field", "doi-1", free_port(), CHIBO_CENTRAL_URL=f"http://127.0.0.1:{port}",
                            CHIBO_SYNC_TOKEN=token)
        if args.push_batch:
            field_env["CHIBO_SYNC_BATCH_SIZE"] = str(args.push_batch)
        if args.plain:
            field_env["CHIBO_SYNC_COMPRESS"] = "0"
        # More first pulls, before any push: the same node id on fresh databases (thrown away), pages asked
        # for ahead and, alternating, one at a time (SYNC_PULL_AHEAD=0).
        for n, ahead in enumerate([a for _ in range(args.reps) for a in (1, 0)][1:]):
            spare = Field({**field_env, "CHIBO_DATABASE_URL": f"sqlite:///{tmp / f'first-pull-{n}.sqlite3'}",
                           "CHIBO_SYNC_PULL_AHEAD": str(ahead)})
            try:
                first = spare.ask("sync")
            finally:
                spare.close()
            print(f"# first pull on a spare fresh node, {'pages asked ahead' if ahead else 'one page at a time'}: "
                  f"{first['pulled']} changes in {first['seconds']:.2f} s", flush=True)
            key = "first_pull_changes_per_s" if ahead else "first_pull_one_page_at_a_time_changes_per_s"
            figures.setdefault(key, []).append(first["pulled"] / first["seconds"])
        field = Field(field_env)
        first = field.ask("psync" if os.environ.get("CHIBO_PROFILE_PULL") else "sync")
        print(f"# first pull: {first['pulled']} changes in {first['seconds']:.2f} s", flush=True)
        figures.setdefault("first_pull_changes_per_s", []).append(first["pulled"] / first["seconds"])
        noop = [field.ask("sync")["seconds"] * 1000 for _ in range(5)]
        figures["noop_sync_ms_small"] = noop
        before_push = tmp / "central-before-push.sqlite3"
        snapshot(tmp / "central.sqlite3", before_push)
        for rep in range(args.reps):
            wrote = field.ask(f"write {args.records} {rep * (args.records // 20 + 50)}")  # days apart: no two meetings on a day
            if rep == 0:
                snapshot(tmp / "doi-1.sqlite3", tmp / "field-outbox.sqlite3")
            pushed = field.ask("psync" if os.environ.get("CHIBO_PROFILE_PUSH") and rep == 0 else "sync")
            print(f"# rep {rep + 1}: {wrote['records']} records → {pushed['pushed']} changes pushed in "
                  f"{pushed['seconds']:.2f} s", flush=True)
            figures.setdefault("e2e_10k_records_s", []).append(pushed["seconds"])
            if not args.no_pouchdb:
                seconds = pouchdb_seconds(args.records)
                if seconds is not None:
                    print(f"# rep {rep + 1}: pouchdb {args.records} docs in {seconds:.2f} s", flush=True)
                    figures.setdefault("pouchdb_10k_s", []).append(seconds)
        for rep in range(args.reps):  # after the main runs: central grows here
            if args.compare_plain:
                gzip_vs_plain(field, args, rep, figures, 0)
            if args.link_mbit:
                gzip_vs_plain(field, args, rep, figures, args.link_mbit)
            if args.compare_batch:
                batch_sizes(field, args, rep, figures)
        grow_feed(tmp / "central.sqlite3", 200_000)
        field.ask("sync")  # the first sync after the growth may pass the new rows once
        figures["noop_sync_ms_200k"] = [field.ask("sync")["seconds"] * 1000 for _ in range(5)]
    finally:
        if field is not None:
            field.close()
        server.terminate()
        server.wait(timeout=10)
    batches = outbox_batches(tmp / "field-outbox.sqlite3")
    # The batches a node really sends (SYNC_BATCH_SIZE), beside the 500, alternating in the same run.
    from sync.protocol import SYNC_DEFAULTS

    node_size = args.push_batch or SYNC_DEFAULTS["SYNC_BATCH_SIZE"]
    node_batches = outbox_batches(tmp / "field-outbox.sqlite3", node_size)
    pg_url = None if args.no_postgres else copy_to_postgres(before_push)
    for rep in range(args.reps):
        work = tmp / f"apply-{rep}.sqlite3"
        shutil.copy(before_push, work)
        rate, total = apply_rate(f"sqlite:///{work}", [dict(b) for b in batches])
        figures.setdefault("apply_sqlite_changes_per_s", []).append(rate)
        print(f"# rep {rep + 1}: SQLite applied {total} changes at {rate:.0f}/s", flush=True)
        if node_size != 500:
            spare = tmp / f"apply-node-size-{rep}.sqlite3"
            shutil.copy(before_push, spare)
            rate, total = apply_rate(f"sqlite:///{spare}", [dict(b) for b in node_batches])
            figures.setdefault(f"apply_sqlite_batch_{node_size}_changes_per_s", []).append(rate)
            print(f"# rep {rep + 1}: SQLite applied {total} changes in batches of {node_size} at {rate:.0f}/s",
                  flush=True)
        floor = sqlite_write_floor(work, before_push, tmp / f"floor-{rep}.sqlite3")
        figures.setdefault("sqlite_write_floor_changes_per_s", []).append(floor)
        print(f"# rep {rep + 1}: SQLite alone wrote the same rows at {floor:.0f}/s", flush=True)
        if pg_url:
            if rep:
                pg_url = copy_to_postgres(before_push)
            rate, total = apply_rate(pg_url, [dict(b) for b in batches])
            figures.setdefault("apply_postgres_changes_per_s", []).append(rate)
            print(f"# rep {rep + 1}: PostgreSQL applied {total} changes at {rate:.0f}/s", flush=True)
            if node_size != 500:
                pg_url = copy_to_postgres(before_push)
                rate, total = apply_rate(pg_url, [dict(b) for b in node_batches])
                figures.setdefault(f"apply_postgres_batch_{node_size}_changes_per_s", []).append(rate)
                print(f"# rep {rep + 1}: PostgreSQL applied {total} changes in batches of {node_size} at {rate:.0f}/s",
                      flush=True)
    if pg_url:
        drop_postgres()
    print(f"changes_per_10k_records={sum(len(b['changes']) for b in batches) * 10000 // args.records}")
    for key, values in figures.items():
        print(f"{key}={statistics.median(values):.3f}" if "per_s" not in key else
              f"{key}={statistics.median(values):.0f}")
    ratios = [("first_pull_ratio_ahead_vs_one_at_a_time", "first_pull_changes_per_s",
               "first_pull_one_page_at_a_time_changes_per_s"),
              ("e2e_ratio_vs_pouchdb", "e2e_10k_records_s", "pouchdb_10k_s"),
              (f"batch_{args.compare_batch}_ratio_vs_default", f"e2e_10k_batch_{args.compare_batch}_s",
               "e2e_10k_batch_default_s")]
    ratios += [(f"{name}_ratio_gzip_vs_plain", f"e2e_10k_{name}_gzip_s", f"e2e_10k_{name}_plain_s")
               for name in ("loopback", "slow_link")]
    for key, top, bottom in ratios:  # medians of two figures of the same run
        if figures.get(top) and figures.get(bottom):
            print(f"{key}={statistics.median(figures[top]) / statistics.median(figures[bottom]):.2f}")
    if args.keep:
        print(f"# kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def apply_only(tmp: Path, args) -> None:
    """The apply figures alone, on the snapshots a --keep run left (quick to repeat while tuning)."""
    batches = outbox_batches(tmp / "field-outbox.sqlite3")
    for rep in range(args.reps):
        work = tmp / f"apply-{rep}.sqlite3"
        shutil.copy(tmp / "central-before-push.sqlite3", work)
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
        rate, total = apply_rate(f"sqlite:///{work}", [dict(b) for b in batches])
        if args.profile:
            profiler.disable()
            pstats.Stats(profiler).sort_stats(os.environ.get("CHIBO_PROFILE_SORT", "cumulative")).print_stats(45)
        print(f"apply_sqlite_changes_per_s={rate:.0f}  ({total} changes)")
        floor = sqlite_write_floor(work, tmp / "central-before-push.sqlite3", tmp / "floor.sqlite3")
        print(f"sqlite_write_floor_changes_per_s={floor:.0f}")
        if not args.no_postgres:
            url = copy_to_postgres(tmp / "central-before-push.sqlite3")
            if url:
                rate, total = apply_rate(url, [dict(b) for b in batches])
                print(f"apply_postgres_changes_per_s={rate:.0f}")
                drop_postgres()


if __name__ == "__main__":
    main()
