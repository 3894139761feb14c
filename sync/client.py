"""The field node's sync run: handshake, push the outbox, pull central's feed.

Design: `run_sync()` is the one entry point (the CLI, a status page button or a timer call it). It
talks to central over HTTP with `requests`, bounded by connect/read timeouts, and turns every network
failure into a `SyncError` with a Vietnamese message; nothing is lost on failure because the queue
only advances after central acknowledged a batch (`outbox.acknowledge`) and the pull cursor is stored
in the same transaction as the page of data it describes (`apply_pull_page`). A run that finds
nothing to do writes nothing: no batch is sent, the pulled page is empty, no change is logged.
"""
from __future__ import annotations

import datetime as dt
import gzip
import json
import time
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import DefaultCookiePolicy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import requests
from peewee import fn

from models import ChangeLog, SyncState, clock
from models.base import utcnow, write_transaction
from models.migrations import SCHEMA_VERSION, bump_generation, database_identity

from .batch import apply_batch
from .merge import Outcome, apply_change, apply_left_scope, check_change_shape
from .outbox import (LAST_ERROR, LAST_ERROR_AT, LAST_SUCCESS, PULL_CURSOR, PULL_FULL, PUSHED_SEQ, acknowledge,
                     next_batch, pushed_seq)
from .protocol import API_PREFIX, SyncError, setting
from .server import retry_dead_letters, set_aside

Progress = Callable[[str], None]


@dataclass
class SyncReport:
    """What one sync run did."""

    pushed: int = 0
    batches: int = 0
    pulled: int = 0
    applied: int = 0
    pages: int = 0
    set_aside: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the run finished without an error."""
        return not self.errors

    def summary(self) -> str:
        """One Vietnamese sentence for people."""
        text = (f"Đã gửi {self.pushed} thay đổi trong {self.batches} lô; đã nhận {self.pulled} thay đổi "
                f"({self.applied} được cập nhật) trong {self.seconds:.1f} giây.")
        if self.set_aside:
            text += f" {self.set_aside} thay đổi bị để riêng (xem trang Đồng bộ)."
        if self.errors:
            text += f" Có {len(self.errors)} lỗi."
        return text


class CentralClient:
    """A thin HTTP client for central's sync API (Bearer token, timeouts, Vietnamese errors)."""

    def __init__(self, base_url: str, token: str, connect_timeout: float, read_timeout: float):
        """One session per run, so connections are reused across batches and pages."""
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.session = requests.Session()
        # Never send or keep cookies: the sync API authenticates by token only.
        self.session.cookies.set_policy(_NoCookies())
        self.session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

    def call(self, method: str, path: str, **kwargs) -> tuple[int, dict[str, Any]]:
        """Send one request; return (status, JSON body). Network trouble raises SyncError."""
        url = f"{self.base_url}{API_PREFIX}{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise SyncError(f"Trung tâm không trả lời kịp thời ({url}). Dữ liệu chờ gửi vẫn được giữ; "
                            "hãy thử lại sau.") from None
        except requests.ConnectionError:
            raise SyncError(f"Không kết nối được tới trung tâm ({self.base_url}). Kiểm tra mạng hoặc "
                            "CHIBO_CENTRAL_URL; dữ liệu chờ gửi vẫn được giữ.") from None
        except requests.RequestException as exc:
            raise SyncError(f"Lỗi khi gọi trung tâm: {exc}. Dữ liệu chờ gửi vẫn được giữ.") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return response.status_code, body

    def post_encoded(self, path: str, body: bytes, compress: bool = False) -> tuple[int, dict[str, Any]]:
        """POST a JSON body already encoded (UTF-8 bytes), gzip-compressed if `compress`."""
        headers = {"Content-Type": "application/json"}
        if compress:
            # Level 1: JSON of changes shrinks ~9x already; higher levels cost twice the time for ~10 % less.
            body = gzip.compress(body, compresslevel=1, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return self.call("POST", path, data=body, headers=headers)

    def close(self) -> None:
        """Release the connection pool."""
        self.session.close()


class _NoCookies(DefaultCookiePolicy):
    """A cookie policy that accepts none."""

    def set_ok(self, cookie, request):  # noqa: D401 - stdlib signature
        """Refuse every cookie."""
        return False


def _refusal_message(status: int, body: dict[str, Any], what: str) -> str:
    """A Vietnamese message for a refused request, using central's own message when there is one."""
    message = body.get("message") or ""
    if status == 401:
        return ("Trung tâm từ chối mã đồng bộ (sai, chưa đăng ký hoặc đã bị thu hồi). Hãy xin mã mới "
                f"(flask --app app nodes register) và đặt vào CHIBO_SYNC_TOKEN. {message}").strip()
    if status >= 500:
        return f"Trung tâm gặp lỗi khi {what} (mã {status}). Dữ liệu chờ gửi vẫn được giữ; hãy thử lại sau."
    return f"Trung tâm từ chối {what} (mã {status}): {message or 'không rõ lý do'}"


def _require(config: Mapping[str, Any]) -> tuple[str, str, str]:
    """The central URL, token and node id from the config, or a SyncError naming what is missing."""
    url = str(config.get("CENTRAL_URL") or "").strip()
    token = str(config.get("SYNC_TOKEN") or "").strip()
    node_id = str(config.get("NODE_ID") or "").strip()
    missing = [name for name, value in (("CHIBO_CENTRAL_URL", url), ("CHIBO_SYNC_TOKEN", token),
                                        ("CHIBO_NODE_ID", node_id)) if not value]
    if missing:
        raise SyncError(f"Chưa cấu hình {', '.join(missing)}: nút không biết đồng bộ với trung tâm nào.")
    if node_id == "central":
        raise SyncError("Nút field cần CHIBO_NODE_ID riêng (ví dụ doi-1), không phải 'central'.")
    return url, token, node_id


CENTRAL_DB = "central_db"
VERIFY_PENDING = "verify_pending"
VERIFY_RESULT = "verify_result"
CENTRAL_AT_CENTRAL = "central_dead_letters"
RECONCILE_NOTE = "reconcile_note"


def run_sync(config: Mapping[str, Any], progress: Progress | None = None, verify: bool = False,
             transport: Any = None) -> SyncReport:
    """Handshake, push every pending batch, pull every page (then check the scope agrees); return what was done.

    `transport` replaces the HTTP client (same `call`/`close` methods): the in-process simulation of
    tests/sync_sim.py runs this very code against central's functions.
    """
    say = progress or (lambda _line: None)
    started = time.monotonic()
    report = SyncReport()
    url, token, node_id = _require(config)
    client = transport or CentralClient(url, token, setting(config, "SYNC_CONNECT_TIMEOUT"),
                                        setting(config, "SYNC_READ_TIMEOUT"))
    try:
        limits = handshake(client, config, node_id, report)
        say("Đã kết nối trung tâm.")
        for warning in report.warnings:
            say(f"Cảnh báo: {warning}")
        push_all(client, node_id, config, limits, report, say)
        pull_all(client, config, report, say)
        if verify or SyncState.get_value(VERIFY_PENDING) == "1":
            verify_scope(client, node_id, config, limits, report, say)
    except SyncError as exc:
        _remember_failure(str(exc))
        raise
    finally:
        client.close()
        report.seconds = time.monotonic() - started
    if report.errors:
        _remember_failure(report.errors[0])
    else:
        with write_transaction():
            SyncState.set_value(LAST_SUCCESS, utcnow().isoformat(timespec="seconds"))
    return report


def outbox_high(node_id: str) -> int:
    """The highest sequence number this node logged for its own writes."""
    return ChangeLog.select(fn.MAX(ChangeLog.seq)).where(ChangeLog.origin == node_id).scalar() or 0


def handshake(client: CentralClient, config: Mapping[str, Any], node_id: str, report: SyncReport) -> dict:
    """POST hello: versions, clock and identities; recognise a restore on either side and reconcile."""
    db_id, generation = database_identity()
    status, body = client.call("POST", "/hello", json={
        "node_id": node_id,
        "app_version": str(config.get("APP_VERSION", "")),
        "schema_version": SCHEMA_VERSION,
        "hlc": _peek(),
        "wall_ms": clock.wall_ms(),
        "db_id": db_id,
        "generation": generation,
    })
    if status != 200:
        raise SyncError(_refusal_message(status, body, "kết nối"), status, body.get("error", ""))
    report.warnings.extend(w for w in body.get("warnings", []) if isinstance(w, str))
    note = reconcile_identities(node_id, body)
    if note:
        report.warnings.append(note)
    with write_transaction():
        SyncState.set_value(CENTRAL_AT_CENTRAL, json.dumps(body.get("dead_letters") or [], ensure_ascii=False))
    return body


def _peek() -> str:
    """This node's clock without advancing it."""
    with write_transaction():
        return clock.peek()


def reconcile_identities(node_id: str, answer: dict[str, Any]) -> str:
    """Compare identities and positions with central's; after a restore on either side, start over safely.

    Central restored or replaced (another id or generation, or a feed shorter than our cursor): pull
    everything again from the start (our own records included) and push again what central no longer
    has. This node restored from a backup (central has applied batches from this database that the
    node no longer has): start a new generation and pull its full scope back. Returns a note for
    people, or '' when nothing happened.
    """
    central = f"{answer.get('db_id', '')}:{answer.get('generation', '')}"
    acked = answer.get("acked") if isinstance(answer.get("acked"), dict) else {}
    acked_seq = acked.get("to_seq") if isinstance(acked.get("to_seq"), int) else 0
    acked_hlc = acked.get("hlc") if isinstance(acked.get("hlc"), str) else ""
    feed_seq = answer.get("feed_seq") if isinstance(answer.get("feed_seq"), int) else None
    note = ""
    with write_transaction():
        known = SyncState.get_value(CENTRAL_DB)
        cursor = int(SyncState.get_value(PULL_CURSOR, "0") or 0)
        central_back = (known is not None and known != central) or (feed_seq is not None and cursor > feed_seq)
        mine = ChangeLog.get_or_none((ChangeLog.seq == acked_seq) & (ChangeLog.origin == node_id)) if acked_seq else None
        node_back = acked_seq > 0 and (acked_seq > outbox_high(node_id) or (mine is not None and acked_hlc
                                                                             and mine.hlc != acked_hlc))
        if central_back:
            SyncState.set_value(PULL_CURSOR, "0")
            if pushed_seq() > acked_seq:
                SyncState.set_value(PUSHED_SEQ, str(acked_seq))
            note = ("Trung tâm đã được khôi phục hoặc thay mới: nút nhận lại toàn bộ dữ liệu trong phạm vi và gửi lại "
                    "những thay đổi trung tâm chưa có.")
        elif node_back:
            bump_generation()
            SyncState.set_value(PULL_CURSOR, "0")
            note = ("Cơ sở dữ liệu của nút đã được khôi phục từ bản sao lưu: nút nhận lại toàn bộ dữ liệu của mình "
                    "từ trung tâm.")
        SyncState.set_value(CENTRAL_DB, central)
        if note:
            SyncState.set_value(RECONCILE_NOTE, f"{utcnow().isoformat(timespec='seconds')} {note}")
            SyncState.set_value(VERIFY_PENDING, "1")
    return note


def verify_scope(client: CentralClient, node_id: str, config: Mapping[str, Any], limits: dict,
                 report: SyncReport, say: Progress, rounds: int = 3) -> bool:
    """Compare per-table checksums with central; re-push what central lacks, re-pull what we lack; repeat.

    Keeps the outcome for the status page ('khớp' or the tables that still differ). True when they agree.
    """
    from models import SYNCED_MODELS

    from .digest import scope_digest, scope_ids

    differing: list[str] = []
    for attempt in range(rounds + 1):
        status, body = client.call("GET", "/digest")
        if status != 200 or not isinstance(body.get("tables"), dict):
            raise SyncError(_refusal_message(status, body, "đối chiếu tổng kiểm tra"), status, body.get("error", ""))
        mine = scope_digest(node_id)
        differing = [t for t in mine if mine[t] != body["tables"].get(t)]
        if not differing or attempt == rounds:
            break
        requeued, pull_again = 0, False
        for table in differing:
            status, detail = client.call("GET", "/digest", params={"table": table})
            theirs = detail.get("ids") if status == 200 and isinstance(detail.get("ids"), dict) else {}
            local = scope_ids(table, node_id)
            model = SYNCED_MODELS[table]
            with write_transaction():
                for record_id, stamp in local.items():
                    if theirs.get(record_id) is None or theirs[record_id] < stamp:
                        record = model.get_by_id(record_id)
                        if record.sync_scope() == node_id:
                            requeued += int(bool(ChangeLog.record_state(record, origin=node_id, only_node=node_id)))
                        pull_again = True
                if any(local.get(i) is None or local[i] < h for i, h in theirs.items()):
                    pull_again = True
        say(f"Đối chiếu lần {attempt + 1}: lệch ở {', '.join(differing)}; gửi lại {requeued} bản ghi.")
        if requeued:
            push_all(client, node_id, config, limits, report, say)
        if pull_again:
            with write_transaction():
                SyncState.set_value(PULL_CURSOR, "0")
            pull_all(client, config, report, say)
    agreed = not differing
    with write_transaction():
        SyncState.set_value(VERIFY_RESULT, f"{utcnow().isoformat(timespec='seconds')} " + (
            "Đã đối chiếu: dữ liệu trong phạm vi của nút khớp với trung tâm ở mọi bảng." if agreed else
            f"Đã đối chiếu: còn lệch ở {', '.join(differing)}; sẽ đối chiếu lại ở lần đồng bộ sau."))
        SyncState.set_value(VERIFY_PENDING, "0" if agreed else "1")
    say("Dữ liệu khớp với trung tâm." if agreed else f"Còn lệch ở {', '.join(differing)}.")
    if not agreed:
        report.warnings.append(f"Dữ liệu còn lệch với trung tâm ở {', '.join(differing)}.")
    return agreed


def push_all(client: CentralClient, node_id: str, config: Mapping[str, Any], limits: dict,
             report: SyncReport, say: Progress) -> None:
    """Push batches until the outbox is empty; changes central sets aside are acknowledged and listed.

    Batches go one at a time, each after the previous one was acknowledged (central applies them in
    order). While one is on the wire the next is read from the outbox and encoded (reading ahead: the
    sender waits on the network, not on Python); it is thrown away if the answer is not a plain ack.
    """
    size = setting(config, "SYNC_BATCH_SIZE")
    if limits.get("max_batch_changes"):
        size = min(size, int(limits["max_batch_changes"]))
    max_bytes = int(limits.get("max_request_bytes") or 0) or None
    db_id, generation = database_identity()
    send = getattr(client, "post_encoded", None)  # a transport without it (tests/sync_sim.py) gets the dict
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chibo-push") if send is not None else None
    # Only to a central that says it takes gzip (an older one would read the bytes as broken JSON).
    compress = bool(setting(config, "SYNC_COMPRESS")) and "gzip" in (limits.get("request_encodings") or ())
    try:
        batch = next_batch(node_id, SCHEMA_VERSION, size, max_bytes)
        while batch is not None:
            upcoming = None
            if sender is not None:
                # The body is the batch's canonical JSON, built around the changes encoded once for the hash.
                # Compressed in the sender thread too: zlib lets go of the GIL while it works.
                answer = sender.submit(send, "/push", batch.canonical_body(db_id=db_id, generation=generation),
                                       compress)
                upcoming = next_batch(node_id, SCHEMA_VERSION, size, max_bytes, after_seq=batch.to_seq)
                status, body = answer.result()
            else:
                wire = batch.to_wire()
                wire.update(db_id=db_id, generation=generation)
                status, body = client.call("POST", "/push", json=wire)
            if status == 401 or status >= 500 or status == 426:
                raise SyncError(_refusal_message(status, body, "lô thay đổi"), status, body.get("error", ""))
            if status != 200:
                # The whole batch was refused (its envelope): keep it queued and say so; pulling goes on.
                report.errors.append(_refusal_message(status, body, f"lô {batch.from_seq}–{batch.to_seq}"))
                say(report.errors[-1])
                return
            ack = int(body.get("ack_seq", batch.to_seq))
            acknowledge(ack)
            report.pushed += len(batch.changes)
            report.batches += 1
            aside = body.get("set_aside") if isinstance(body.get("set_aside"), list) else []
            report.set_aside += len(aside)
            say(f"Đã gửi lô {report.batches}: {len(batch.changes)} thay đổi (số {batch.from_seq}–{batch.to_seq})"
                + (f", {len(aside)} thay đổi bị trung tâm để riêng." if aside else "."))
            if upcoming is None or ack != batch.to_seq:
                upcoming = next_batch(node_id, SCHEMA_VERSION, size, max_bytes)  # from what central acknowledged
            batch = upcoming
    finally:
        if sender is not None:
            sender.shutdown(wait=True)


def pull_all(client: CentralClient, config: Mapping[str, Any], report: SyncReport, say: Progress) -> None:
    """Pull pages from the stored cursor until central says there is no more.

    While a page is applied the next one is already asked for (reading ahead: central builds it and the
    link carries it meanwhile). It is asked with the cursor and `full` the page's transaction stores, and
    used only if that is what was stored; when applying fails it is dropped unread.
    """
    limit = setting(config, "SYNC_PULL_LIMIT")
    # A transport without post_encoded (tests/sync_sim.py) answers in this thread's database context.
    fetcher = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="chibo-pull")
               if getattr(client, "post_encoded", None) is not None and setting(config, "SYNC_PULL_AHEAD") else None)

    def ask(cursor: int, full: bool) -> tuple[int, dict[str, Any]]:
        return client.call("GET", "/pull", params={"cursor": cursor, "limit": limit, **({"full": 1} if full else {})})

    ahead = None  # (cursor, full, future) of the page asked for ahead
    try:
        while True:
            cursor = int(SyncState.get_value(PULL_CURSOR, "0") or 0)
            # A pull from cursor 0 rebuilds the node's scope: its own records come back on every page of it.
            full = cursor == 0 or SyncState.get_value(PULL_FULL, "0") == "1"
            if ahead is not None and ahead[:2] == (cursor, full):
                status, body = ahead[2].result()
            else:
                status, body = ask(cursor, full)
            ahead = None
            if status != 200:
                raise SyncError(_refusal_message(status, body, "gửi dữ liệu về"), status, body.get("error", ""))
            changes = body.get("changes")
            next_cursor = body.get("next_cursor")
            if not isinstance(changes, list) or not isinstance(next_cursor, int) or isinstance(next_cursor, bool):
                raise SyncError("Trung tâm trả lời không đúng định dạng (thiếu changes hoặc next_cursor).")
            more = bool(body.get("more")) and bool(changes)
            if more and fetcher is not None:
                ahead = (next_cursor, full, fetcher.submit(ask, next_cursor, full))
            if changes or next_cursor != cursor:
                applied, aside = apply_pull_page(changes, next_cursor, str(config.get("NODE_ID")), full=full and more)
                report.applied += applied
                report.set_aside += aside
                report.pulled += len(changes)
                if changes:
                    report.pages += 1
                    say(f"Đã nhận trang {report.pages}: {len(changes)} thay đổi (đến số {next_cursor}).")
            if not more:
                return
    finally:
        if fetcher is not None:
            fetcher.shutdown(wait=True)


def apply_pull_page(changes: list[Any], next_cursor: int, node_id: str, full: bool = False) -> tuple[int, int]:
    """Merge one page and store the new cursor, in one transaction; set aside what cannot apply here.

    `full`: the page is part of a rebuild (from cursor 0) that has more pages to come; stored with the
    cursor, so an interrupted rebuild goes on asking for the node's own records.

    Returns (changes applied, changes set aside). A change set aside stays in the local dead-letter
    list (shown on the status page) and is retried after every page.
    """
    applied = aside = 0
    with write_transaction():
        newest = max((c.get("hlc") for c in changes if isinstance(c, dict) and isinstance(c.get("hlc"), str)),
                     default="")
        if newest:
            try:
                clock.observe(newest)
            except ValueError:
                pass
        result = apply_batch(changes, _apply_pulled)
        for index, change, refused in result.refused:
            set_aside("central", f"pull:{next_cursor}"[:36], index, change, refused)
        aside = len(result.refused)
        applied = sum(1 for _index, outcome in result.outcomes if outcome is not None and outcome.applied)
        retry_dead_letters("central", reasons=("missing_parent", "missing_record", "parent_deleted"))
        SyncState.set_value(PULL_CURSOR, str(next_cursor))
        SyncState.set_value(PULL_FULL, "1" if full else "0")
    return applied, aside


def _apply_pulled(_index: int, change: Any) -> Outcome | None:
    """Merge one change of central's feed here (a handover notice is applied as such); None for a notice."""
    if apply_left_scope(change):  # handover: the record left this node's scope
        return None
    model, record_id, hlc, payload = check_change_shape(change)
    origin = change.get("origin") if isinstance(change.get("origin"), str) else "central"
    return apply_change(model, record_id, hlc, payload, origin=origin[:32], log=False)


def _remember_failure(message: str) -> None:
    """Keep the last error for the status page (best effort: never hides the original error)."""
    try:
        with write_transaction():
            SyncState.set_value(LAST_ERROR, message)
            SyncState.set_value(LAST_ERROR_AT, utcnow().isoformat(timespec="seconds"))
    except Exception:  # noqa: BLE001 - the sync error matters more than bookkeeping
        pass


def last_success() -> dt.datetime | None:
    """When the last sync run finished without error, or None."""
    value = SyncState.get_value(LAST_SUCCESS)
    return dt.datetime.fromisoformat(value) if value else None
