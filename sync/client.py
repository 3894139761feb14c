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
import time
from http.cookiejar import DefaultCookiePolicy
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import requests
from peewee import DatabaseError, DoesNotExist

from models import SYNCED_MODELS, SyncState, ValidationError, clock, db
from models.base import apply_wire, utcnow
from models.migrations import SCHEMA_VERSION

from .outbox import LAST_ERROR, LAST_ERROR_AT, LAST_SUCCESS, PULL_CURSOR, acknowledge, next_batch
from .protocol import API_PREFIX, SyncError, setting
from .scope import write_transaction

Progress = Callable[[str], None]


@dataclass
class SyncReport:
    """What one sync run did."""

    pushed: int = 0
    batches: int = 0
    pulled: int = 0
    applied: int = 0
    pages: int = 0
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


def run_sync(config: Mapping[str, Any], progress: Progress | None = None) -> SyncReport:
    """Handshake, push every pending batch, pull every page; return what was done."""
    say = progress or (lambda _line: None)
    started = time.monotonic()
    report = SyncReport()
    url, token, node_id = _require(config)
    client = CentralClient(url, token, setting(config, "SYNC_CONNECT_TIMEOUT"), setting(config, "SYNC_READ_TIMEOUT"))
    try:
        limits = handshake(client, config, node_id, report)
        say("Đã kết nối trung tâm.")
        push_all(client, node_id, config, limits, report, say)
        pull_all(client, config, report, say)
    except SyncError as exc:
        _remember_failure(str(exc))
        raise
    finally:
        client.close()
        report.seconds = time.monotonic() - started
    if report.errors:
        _remember_failure(report.errors[0])
    else:
        with db.atomic():
            SyncState.set_value(LAST_SUCCESS, utcnow().isoformat(timespec="seconds"))
    return report


def handshake(client: CentralClient, config: Mapping[str, Any], node_id: str, report: SyncReport) -> dict:
    """POST hello: versions and clocks; refuse to go on when central cannot read our data."""
    status, body = client.call("POST", "/hello", json={
        "node_id": node_id,
        "app_version": str(config.get("APP_VERSION", "")),
        "schema_version": SCHEMA_VERSION,
        "hlc": clock.now(),
        "wall_ms": int(time.time() * 1000),
    })
    if status != 200:
        raise SyncError(_refusal_message(status, body, "kết nối"), status, body.get("error", ""))
    if isinstance(body.get("hlc"), str):
        try:
            clock.observe(body["hlc"])
        except ValueError:
            pass
    report.warnings.extend(w for w in body.get("warnings", []) if isinstance(w, str))
    return body


def push_all(client: CentralClient, node_id: str, config: Mapping[str, Any], limits: dict,
             report: SyncReport, say: Progress) -> None:
    """Push batches until the outbox is empty or central refuses one (then stop pushing)."""
    size = setting(config, "SYNC_BATCH_SIZE")
    if limits.get("max_batch_changes"):
        size = min(size, int(limits["max_batch_changes"]))
    max_bytes = int(limits.get("max_request_bytes") or 0) or None
    prefix = None
    while True:
        batch = next_batch(node_id, SCHEMA_VERSION, prefix or size, max_bytes)
        prefix = None
        if batch is None:
            return
        status, body = client.call("POST", "/push", json=batch.to_wire())
        if status == 401 or status >= 500:
            raise SyncError(_refusal_message(status, body, "lô thay đổi"), status, body.get("error", ""))
        if status != 200:
            refused = body.get("record") if isinstance(body.get("record"), dict) else {}
            index = refused.get("index")
            if status in (403, 422) and isinstance(index, int) and 0 < index < len(batch.changes):
                # Central named the change it refuses: deliver everything queued before it, then stop there.
                prefix = index
                continue
            # The batch stays queued; pulling can still go on (a later issue sets bad records aside).
            report.errors.append(_refusal_message(status, body, f"lô {batch.from_seq}–{batch.to_seq}"))
            say(report.errors[-1])
            return
        acknowledge(int(body.get("ack_seq", batch.to_seq)))
        report.pushed += len(batch.changes)
        report.batches += 1
        say(f"Đã gửi lô {report.batches}: {len(batch.changes)} thay đổi (số {batch.from_seq}–{batch.to_seq}).")


def pull_all(client: CentralClient, config: Mapping[str, Any], report: SyncReport, say: Progress) -> None:
    """Pull pages from the stored cursor until central says there is no more."""
    limit = setting(config, "SYNC_PULL_LIMIT")
    while True:
        cursor = int(SyncState.get_value(PULL_CURSOR, "0") or 0)
        status, body = client.call("GET", "/pull", params={"cursor": cursor, "limit": limit})
        if status != 200:
            raise SyncError(_refusal_message(status, body, "gửi dữ liệu về"), status, body.get("error", ""))
        changes = body.get("changes")
        next_cursor = body.get("next_cursor")
        if not isinstance(changes, list) or not isinstance(next_cursor, int):
            raise SyncError("Trung tâm trả lời không đúng định dạng (thiếu changes hoặc next_cursor).")
        if changes:
            report.applied += apply_pull_page(changes, next_cursor, str(config.get("NODE_ID")))
            report.pulled += len(changes)
            report.pages += 1
            say(f"Đã nhận trang {report.pages}: {len(changes)} thay đổi (đến số {next_cursor}).")
        if not body.get("more") or not changes:
            return


def apply_pull_page(changes: list[dict[str, Any]], next_cursor: int, node_id: str) -> int:
    """Apply one page (last writer wins) and store the new cursor, all in one transaction."""
    applied = 0
    with write_transaction():
        for change in changes:
            if not isinstance(change, dict):
                raise SyncError("Trung tâm gửi một thay đổi không đúng định dạng.")
            model = SYNCED_MODELS.get(change.get("table"))
            if model is None:
                raise SyncError(f"Trung tâm gửi dữ liệu bảng {change.get('table')!r} mà phiên bản này chưa "
                                "biết; hãy cập nhật phần mềm tại nút.")
            payload = change.get("payload")
            if not isinstance(payload, dict) or payload.get("id") != change.get("record_id"):
                raise SyncError(f"Thay đổi số {change.get('seq')} từ trung tâm không hợp lệ (mã bản ghi).")
            origin = change.get("origin") or "central"
            # A change that came back from central must never re-enter this node's outbox.
            if origin == node_id:
                origin = "central"
            try:
                applied += int(apply_wire(model, payload, origin=origin))
            except (ValidationError, ValueError) as exc:
                raise SyncError(f"Không áp dụng được thay đổi {change.get('table')}/{change.get('record_id')} "
                                f"từ trung tâm: {exc}") from None
            except (DatabaseError, DoesNotExist) as exc:
                raise SyncError(f"Không áp dụng được thay đổi {change.get('table')}/{change.get('record_id')} "
                                f"từ trung tâm ({type(exc).__name__}: {exc}). Con trỏ không đổi.") from None
        SyncState.set_value(PULL_CURSOR, str(next_cursor))
    return applied


def _remember_failure(message: str) -> None:
    """Keep the last error for the status page (best effort: never hides the original error)."""
    try:
        with db.atomic():
            SyncState.set_value(LAST_ERROR, message)
            SyncState.set_value(LAST_ERROR_AT, utcnow().isoformat(timespec="seconds"))
    except Exception:  # noqa: BLE001 - the sync error matters more than bookkeeping
        pass


def last_success() -> dt.datetime | None:
    """When the last sync run finished without error, or None."""
    value = SyncState.get_value(LAST_SUCCESS)
    return dt.datetime.fromisoformat(value) if value else None
