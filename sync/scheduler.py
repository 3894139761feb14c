"""One sync at a time per node, and the field node's own sync timer with backoff.

Design: the lock lives with the data, as a `SyncState` row (`sync_lock`) written inside a
transaction that takes the database's write lock first (SQLite `BEGIN IMMEDIATE`; a transaction
advisory lock on PostgreSQL), so the web server's timer, its "Đồng bộ ngay" button and a
`flask sync` run from another process never sync at the same time. The row names its holder (host,
process id, a random token) and an expiry; a lock whose holder process is gone (same host) or whose
expiry passed is taken over, so a sync killed with -9 never blocks the node for good.
`run_sync_exclusive()` wraps the client's `run_sync()` in that lock and is what `sync.run_sync` names.

`SyncTimer` is a daemon thread started by `python app.py` on a field node when `CHIBO_SYNC_INTERVAL`
(seconds, 0 = off) is set: it syncs every interval; after a failure it waits twice as long each
time, up to `CHIBO_SYNC_MAX_BACKOFF` seconds, and returns to the interval after a success. A sync
already running elsewhere is not a failure: the timer simply tries again at the next interval.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import socket
import threading
from contextlib import contextmanager
from typing import Any, Callable, Mapping

from peewee import SqliteDatabase

from models import SyncState, db
from models.base import utcnow

from . import client
from .protocol import SyncError

LOCK_KEY = "sync_lock"
TIMER_KEY = "sync_timer"
# A sync holds the lock at most this long before another may take it over (a hung run, a
# process on another machine sharing a network drive); a real sync of thousands of changes takes
# seconds.
LOCK_SECONDS = 30 * 60
DEFAULT_MAX_BACKOFF = 3600

log = logging.getLogger("chibo.sync")


class SyncBusy(SyncError):
    """Another sync is running on this node right now."""


def _holder() -> dict[str, Any]:
    """Who takes the lock: this host and process, plus a token unique to this attempt."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": secrets.token_hex(8)}


def _process_alive(pid: int) -> bool:
    """Whether a process of this host still runs (POSIX only; elsewhere assume it does)."""
    if os.name != "posix":
        return True  # os.kill(pid, 0) would send Ctrl-C on Windows; the expiry covers it there.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(lock: dict[str, Any], now: dt.datetime) -> bool:
    """A lock nobody holds any more: expired, or its process on this host is gone."""
    try:
        if dt.datetime.fromisoformat(lock["expires"]) <= now:
            return True
        if lock["host"] == socket.gethostname() and not _process_alive(int(lock["pid"])):
            return True
    except (KeyError, TypeError, ValueError):
        return True  # unreadable: better to sync than to be blocked by garbage
    return False


@contextmanager
def _write_locked():
    """A transaction that holds the database's write lock while the lock row is read and written."""
    if isinstance(db.obj, SqliteDatabase):
        with db.atomic(lock_type="IMMEDIATE"):
            yield
    else:
        with db.atomic():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (0x5C1DE0,))
            yield


def acquire(seconds: int = LOCK_SECONDS) -> dict[str, Any] | None:
    """Take the node's sync lock; return the holder record, or None when another sync holds it."""
    now = utcnow()
    me = {**_holder(), "since": now.isoformat(timespec="seconds"),
          "expires": (now + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")}
    with _write_locked():
        raw = SyncState.get_value(LOCK_KEY)
        if raw:
            try:
                current = json.loads(raw)
            except ValueError:
                current = {}
            if not _stale(current, now):
                return None
        SyncState.set_value(LOCK_KEY, json.dumps(me))
    return me


def release(me: dict[str, Any]) -> None:
    """Give the lock back if we still hold it (it may have been taken over after expiring)."""
    with _write_locked():
        raw = SyncState.get_value(LOCK_KEY)
        try:
            current = json.loads(raw) if raw else {}
        except ValueError:
            current = {}
        if current.get("token") == me["token"]:
            SyncState.delete().where(SyncState.key == LOCK_KEY).execute()


def holder() -> dict[str, Any] | None:
    """The live lock record, if a sync is running now."""
    raw = SyncState.get_value(LOCK_KEY)
    if not raw:
        return None
    try:
        current = json.loads(raw)
    except ValueError:
        return None
    return None if _stale(current, utcnow()) else current


def run_sync_exclusive(config: Mapping[str, Any], progress: Callable[[str], None] | None = None):
    """`client.run_sync` under the node's sync lock; raise SyncBusy when another sync is running."""
    me = acquire()
    if me is None:
        running = holder() or {}
        since = running.get("since", "")
        raise SyncBusy("Một lần đồng bộ khác đang chạy trên nút này"
                       + (f" (bắt đầu lúc {_local_time(since)})" if since else "")
                       + ". Hãy đợi nó xong rồi thử lại; dữ liệu chờ gửi vẫn được giữ.")
    try:
        return client.run_sync(config, progress=progress)
    finally:
        release(me)


def _local_time(iso: str) -> str:
    """A stored UTC time as HH:MM dd/mm/yyyy in Vietnam's time."""
    try:
        moment = dt.datetime.fromisoformat(iso) + dt.timedelta(hours=7)
    except ValueError:
        return iso
    return moment.strftime("%H:%M %d/%m/%Y")


def next_delay(interval: float, failures: int, cap: float) -> float:
    """Seconds to wait before the next run: the interval, doubled per consecutive failure, capped."""
    if failures <= 0:
        return interval
    return min(interval * (2 ** failures), max(cap, interval))


class SyncTimer:
    """A daemon thread that syncs the field node every interval, backing off after failures."""

    def __init__(self, app, interval: float, cap: float = DEFAULT_MAX_BACKOFF, first_delay: float | None = None,
                 sync: Callable[[Mapping[str, Any]], Any] | None = None):
        """Prepare (not start) the timer for `app`; `sync` defaults to `sync.run_sync`."""
        self.app = app
        self.interval = float(interval)
        self.cap = float(cap)
        self.first_delay = min(self.interval, 15.0) if first_delay is None else float(first_delay)
        self._sync = sync
        self.failures = 0
        self.last_error = ""
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chibo-sync-timer", daemon=True)

    def start(self) -> "SyncTimer":
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop and wait for it (bounded)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> float:
        """One timed sync in an app context with its own connection; return the delay until the next."""
        from . import run_sync

        sync = self._sync or run_sync
        with self.app.app_context(), db.connection_context():
            try:
                report = sync(self.app.config)
            except SyncBusy:
                log.info("Bỏ qua lần đồng bộ hẹn giờ: một lần đồng bộ khác đang chạy.")
                return self.interval
            except Exception as exc:  # noqa: BLE001 - a timer must survive anything and back off
                self._failed(str(exc) or type(exc).__name__)
            else:
                if getattr(report, "ok", True):
                    self.failures, self.last_error = 0, ""
                else:
                    self._failed(" ".join(getattr(report, "errors", [])) or "đồng bộ chưa xong")
            self.runs += 1
            delay = next_delay(self.interval, self.failures, self.cap)
            self._record(delay)
        return delay

    def _failed(self, message: str) -> None:
        """Count a failure and log it."""
        self.failures += 1
        self.last_error = message
        log.warning("Đồng bộ hẹn giờ thất bại (lần %d liên tiếp): %s", self.failures, message)

    def _record(self, delay: float) -> None:
        """Keep the timer's state with the data, for the status screen and for people debugging."""
        try:
            with _write_locked():
                SyncState.set_value(TIMER_KEY, json.dumps({
                    "next_at": (utcnow() + dt.timedelta(seconds=delay)).isoformat(timespec="seconds"),
                    "failures": self.failures, "last_error": self.last_error[:500]}, ensure_ascii=False))
        except Exception:  # noqa: BLE001 - the status row is a courtesy; never stop the timer for it
            log.exception("Không ghi được trạng thái đồng bộ hẹn giờ")

    def _loop(self) -> None:
        """Wait, sync, repeat until stopped."""
        delay = self.first_delay
        while not self._stop.wait(delay):
            try:
                delay = self.run_once()
            except Exception:  # noqa: BLE001 - e.g. the database is unreachable: back off, keep going
                self._failed("lỗi không lường trước")
                log.exception("Đồng bộ hẹn giờ gặp lỗi")
                delay = next_delay(self.interval, self.failures, self.cap)


def start_timer(app) -> SyncTimer | None:
    """Start the sync timer for a field node whose CHIBO_SYNC_INTERVAL is above 0; else None."""
    interval = float(app.config.get("SYNC_INTERVAL") or 0)
    if app.config.get("ROLE") != "field" or interval <= 0:
        return None
    cap = float(app.config.get("SYNC_MAX_BACKOFF") or DEFAULT_MAX_BACKOFF)
    return SyncTimer(app, interval, cap).start()
