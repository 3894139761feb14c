"""Central's side of the protocol: handshake, applying a pushed batch, serving the pull feed.

Design: the functions here take plain values (the authenticated `Node`, the decoded JSON body, the
config) and return plain dicts or raise `Refusal`; the HTTP layer (blueprints/sync_api.py) only
authenticates, reads the body and turns these into responses. A pushed batch is checked in two
passes: first everything that needs no database (shape, known table, every payload converts, ids and
clock stamps agree), then, inside the one transaction that applies it, what depends on the data
(parents exist, the record is in the node's scope before and after the change, domain rules, unique
keys). Any refusal rolls the whole transaction back, so a batch is applied entirely or not at all.
The answer of an applied batch is stored with it (`AppliedBatch`): a batch sent again gets the same
answer without being applied twice.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Mapping

from peewee import DataError, IntegrityError, fn

from models import ChangeLog, Node, ValidationError, clock, db
from models.base import _short, utcnow, write_transaction
from models.clock import check_stamp
from models.migrations import SCHEMA_VERSION, database_identity
from models.sync_state import AppliedBatch, DeadLetter

from .batch import apply_batch
from .merge import Outcome, SetAside, apply_change, check_change_shape, in_savepoint
from .protocol import PROTOCOL_VERSION, Refusal, content_hash, sent_changes_hash, setting
from .scope import rehome_cells

BATCH_FIELDS = {"batch_id": str, "node_id": str, "schema_version": int, "from_seq": int,
                "to_seq": int, "content_hash": str, "changes": list}


def check_schema(node_schema: Any) -> None:
    """Refuse a node whose schema version differs from central's (the node keeps its queue)."""
    if node_schema == SCHEMA_VERSION:
        return
    if isinstance(node_schema, int) and node_schema < SCHEMA_VERSION:
        raise Refusal(426, "schema_too_old",
                      f"Nút đang dùng lược đồ dữ liệu phiên bản {node_schema}, trung tâm dùng phiên bản "
                      f"{SCHEMA_VERSION}. Hãy cập nhật phần mềm tại nút rồi đồng bộ lại; dữ liệu chờ gửi "
                      "vẫn được giữ nguyên.",
                      central_schema_version=SCHEMA_VERSION)
    raise Refusal(409, "schema_mismatch",
                  f"Nút đang dùng lược đồ dữ liệu phiên bản {node_schema}, trung tâm dùng phiên bản "
                  f"{SCHEMA_VERSION}. Trung tâm cần được cập nhật trước; dữ liệu chờ gửi tại nút vẫn "
                  "được giữ nguyên.",
                  central_schema_version=SCHEMA_VERSION)


def hello(node: Node, body: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """Record what the node says about itself and answer central's versions, clock and identity.

    Refuses (409 clock_drift) a node whose device clock is ahead of central's by more than the
    accepted window, and says so on central's node screen; a clock behind only gets a warning. The
    node's queue is kept either way. Never refuses because of stamps already made.
    """
    if not isinstance(body, dict):
        raise Refusal(400, "bad_request", "Nội dung yêu cầu phải là một đối tượng JSON.")
    missing = [k for k in ("node_id", "app_version", "schema_version", "hlc") if k not in body]
    if missing:
        raise Refusal(400, "bad_request", f"Thiếu trường: {', '.join(missing)}.", fields=missing)
    if body["node_id"] != node.id:
        raise Refusal(403, "wrong_node", f"Mã đồng bộ này thuộc nút {node.id}, không phải {_short(body['node_id'])}.")
    try:
        skew = clock.ahead_ms(str(body["hlc"]))
    except ValueError:
        raise Refusal(400, "bad_request", f"Dấu thời gian hlc không hợp lệ: {_short(body['hlc'])}.") from None
    wall = body.get("wall_ms")
    if isinstance(wall, int) and not isinstance(wall, bool) and abs(wall) < 2 ** 62:
        # Wall time is the measure of the device clock; the HLC may legitimately run ahead of it.
        skew = wall - clock.wall_ms()
    skew = max(-(2 ** 62), min(2 ** 62, int(skew)))
    window = setting(config, "SYNC_MAX_CLOCK_AHEAD_MS")
    with write_transaction():
        Node.update(last_seen_at=utcnow(), app_version=str(body["app_version"])[:40],
                    schema_version=body["schema_version"] if isinstance(body["schema_version"], int)
                    and abs(body["schema_version"]) < 2 ** 31 else 0,
                    clock_skew_ms=skew).where(Node.id == node.id).execute()
    check_schema(body["schema_version"])
    if skew > window:
        raise Refusal(409, "clock_drift",
                      f"Đồng hồ của nút {node.id} đi nhanh hơn trung tâm {skew // 60000} phút (cho phép "
                      f"{window // 60000} phút). Hãy chỉnh ngày giờ trên máy tại nút rồi đồng bộ lại; dữ liệu chờ "
                      "gửi vẫn được giữ.", clock_skew_ms=skew)
    warnings = []
    if abs(skew) > setting(config, "SYNC_MAX_CLOCK_SKEW_MS"):
        direction = "nhanh" if skew > 0 else "chậm"
        warnings.append(f"Đồng hồ của nút {direction} {abs(skew) // 1000} giây so với trung tâm; "
                        "hãy chỉnh lại giờ trên máy tại nút.")
    identity = database_identity()
    return {
        "protocol": PROTOCOL_VERSION,
        "node_id": str(config.get("NODE_ID", "central")),
        "app_version": str(config.get("APP_VERSION", "")),
        "schema_version": SCHEMA_VERSION,
        "hlc": _peek(),
        "wall_ms": clock.wall_ms(),
        "clock_skew_ms": skew,
        "max_request_bytes": setting(config, "SYNC_MAX_REQUEST_BYTES"),
        "max_batch_changes": setting(config, "SYNC_MAX_BATCH_CHANGES"),
        # Push bodies may come gzip-compressed (blueprints/sync_api.py undoes it within the limit above).
        "request_encodings": ["gzip"],
        "db_id": identity[0],
        "generation": identity[1],
        "feed_seq": feed_high(),
        "acked": acked_for(node.id, body.get("db_id"), body.get("generation")),
        "dead_letters": open_dead_letters(node.id),
        "warnings": warnings,
    }


def open_dead_letters(node_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The node's changes central set aside and nobody has resolved yet (newest first), for its status page."""
    rows = (DeadLetter.select().where((DeadLetter.node_id == node_id) & DeadLetter.resolved_at.is_null())
            .order_by(DeadLetter.id.desc()).limit(limit))
    return [{"table": r.table, "record_id": r.record_id, "reason": r.reason, "message": r.message[:300],
             "at": r.created_at.isoformat(timespec="seconds") if r.created_at else ""} for r in rows]


def _peek() -> str:
    """Central's clock without advancing it."""
    return clock.peek()


def feed_high() -> int:
    """The highest sequence number of central's change feed."""
    return ChangeLog.select(fn.MAX(ChangeLog.seq)).scalar() or 0


def acked_for(node_id: str, db_id: Any, generation: Any) -> dict[str, Any]:
    """The last batch central applied from this node's database (id and generation), to detect restores."""
    query = AppliedBatch.select().where(AppliedBatch.node_id == node_id)
    if isinstance(db_id, str) and db_id:
        query = query.where(AppliedBatch.source == f"{db_id}:{generation}")
    last = query.order_by(AppliedBatch.to_seq.desc()).first()
    if last is None:
        return {"to_seq": 0, "hlc": ""}
    return {"to_seq": last.to_seq, "hlc": last.last_hlc or ""}


def _check_shape(body: Any, spec: dict[str, type], where: str) -> None:
    """Refuse (400) a JSON object with a missing field or a field of the wrong type."""
    if not isinstance(body, dict):
        raise Refusal(400, "bad_request", f"{where} phải là một đối tượng JSON.")
    missing = [k for k in spec if k not in body]
    if missing:
        raise Refusal(400, "bad_request", f"{where}: thiếu trường {', '.join(missing)}.", fields=missing)
    for key, kind in spec.items():
        value = body[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Refusal(400, "bad_request", f"{where}: trường {key} sai kiểu dữ liệu.", field=key)


def _record_ref(index: int, change: dict[str, Any]) -> dict[str, Any]:
    """How a refusal names the change it is about."""
    return {"index": index, "table": change.get("table"), "record_id": change.get("record_id")}


def validate_batch(node: Node, body: Any, config: Mapping[str, Any], raw: bytes | None = None) -> list[Any]:
    """Check the batch envelope (shape, limits, hash); return its changes. Refusals are whole-batch 4xx.

    Each change is checked later, one by one: a change that cannot be applied is set aside as a dead
    letter instead of refusing the batch, so it never blocks the changes behind it. `raw`: the body's
    bytes as received (the hash is then checked on the changes' bytes when the body is canonical).
    """
    _check_shape(body, BATCH_FIELDS, "Lô thay đổi")
    try:
        uuid.UUID(body["batch_id"])
    except ValueError:
        raise Refusal(400, "bad_request", "batch_id phải là một UUID.", field="batch_id") from None
    if body["node_id"] != node.id:
        raise Refusal(403, "wrong_node", f"Mã đồng bộ này thuộc nút {node.id}, không phải {_short(body['node_id'])}.")
    check_schema(body["schema_version"])
    changes = body["changes"]
    if not changes:
        raise Refusal(400, "bad_request", "Lô thay đổi không có thay đổi nào.")
    if len(changes) > setting(config, "SYNC_MAX_BATCH_CHANGES"):
        raise Refusal(413, "too_large", f"Lô có {len(changes)} thay đổi, vượt giới hạn "
                                         f"{setting(config, 'SYNC_MAX_BATCH_CHANGES')} của trung tâm.")
    if not 0 < body["from_seq"] <= body["to_seq"] < 2 ** 62:
        raise Refusal(400, "bad_request", "Khoảng số thứ tự from_seq..to_seq không hợp lệ.")
    for key in ("db_id", "generation"):
        if key in body and not isinstance(body[key], (str, int)):
            raise Refusal(400, "bad_request", f"Trường {key} sai kiểu dữ liệu.", field=key)
    if (raw is None or sent_changes_hash(body, raw) != body["content_hash"]) and \
            content_hash(changes) != body["content_hash"]:
        raise Refusal(400, "hash_mismatch", "Mã băm nội dung (content_hash) không khớp với danh sách thay "
                                            "đổi; dữ liệu có thể bị hỏng trên đường truyền.")
    return changes


def apply_push(node: Node, body: Any, config: Mapping[str, Any], raw: bytes | None = None) -> tuple[dict[str, Any], bool]:
    """Apply one pushed batch in one transaction (bad changes set aside); return (answer, replayed).

    `raw`: the body's bytes as received, when there are any (validate_batch)."""
    changes = validate_batch(node, body, config, raw)
    stored = AppliedBatch.get_or_none(AppliedBatch.batch_id == body["batch_id"])
    if stored is not None:
        return _replay(stored, node, body), True
    applied = skipped = conflicts = 0
    aside: list[dict[str, Any]] = []
    try:
        with write_transaction():
            # The clock row first: on PostgreSQL it is the feed's lock, so a concurrent push of the same
            # batch has committed (or not begun) when the idempotency store is checked again below.
            observe_batch(changes)
            stored = AppliedBatch.get_or_none(AppliedBatch.batch_id == body["batch_id"])
            if stored is not None:
                return _replay(stored, node, body), True
            result = apply_batch(changes, lambda _index, change: _apply_pushed(node.id, change))
            for index, change, refused in result.refused:
                aside.append(set_aside(node.id, body["batch_id"], index, change, refused))
            for _index, outcome in result.outcomes:
                applied += int(bool(outcome.applied))
                skipped += int(not outcome.applied)
                conflicts += outcome.conflicts
            retried = retry_dead_letters(node.id, reasons=("missing_parent", "missing_record"))
            last_hlc = changes[-1].get("hlc") if isinstance(changes[-1], dict) else ""
            answer = {
                "status": "applied",
                "batch_id": body["batch_id"],
                "from_seq": body["from_seq"],
                "to_seq": body["to_seq"],
                "ack_seq": body["to_seq"],
                "received": len(changes),
                "applied": applied,
                "skipped": skipped,
                "conflicts": conflicts,
                "set_aside": aside,
                "retried": retried,
            }
            AppliedBatch.create(batch_id=body["batch_id"], node_id=node.id, content_hash=body["content_hash"],
                                from_seq=body["from_seq"], to_seq=body["to_seq"], change_count=len(changes),
                                source=f"{body.get('db_id', '')}:{body.get('generation', '')}"[:80],
                                last_hlc=str(last_hlc or "")[:64],
                                response_json=json.dumps(answer, ensure_ascii=False))
            Node.update(last_push_at=utcnow(), last_seen_at=utcnow()).where(Node.id == node.id).execute()
    except IntegrityError:
        # Another worker applied the same batch id at the same moment: answer as it did.
        stored = AppliedBatch.get_or_none(AppliedBatch.batch_id == body["batch_id"])
        if stored is None:
            raise
        return _replay(stored, node, body), True
    return answer, False


def _apply_pushed(node_id: str, change: Any) -> Outcome:
    """Merge one pushed change at central: scope, stamps and policy checked, conflicts kept, logged."""
    model, record_id, hlc, payload = check_change_shape(change)
    return apply_change(model, record_id, hlc, payload, origin=node_id, pusher=node_id, detect=True, log=True)


def observe_batch(changes: list[Any]) -> None:
    """Let the clock see the newest stamp of a batch once (and lock the feed on PostgreSQL)."""
    stamps = [c.get("hlc") for c in changes if isinstance(c, dict) and isinstance(c.get("hlc"), str)]
    newest = ""
    for stamp in stamps:
        try:
            check_stamp(stamp)
        except ValueError:
            continue
        newest = max(newest, stamp)
    if newest:
        clock.observe(newest)
    else:
        clock.peek()


def set_aside(source: str, batch_id: str, index: int, change: Any, refused: SetAside) -> dict[str, Any]:
    """Record a dead letter for a change (inside the batch transaction); return how the answer names it."""
    record = change if isinstance(change, dict) else {}
    table = record.get("table") if isinstance(record.get("table"), str) else ""
    record_id = record.get("record_id") if isinstance(record.get("record_id"), str) else ""
    DeadLetter.create(node_id=source[:32], batch_id=batch_id[:36], position=index, table=table[:64],
                      record_id=record_id[:36], hlc=str(record.get("hlc") or "")[:64],
                      change_json=json.dumps(change, ensure_ascii=False), reason=refused.reason[:32],
                      message=refused.message)
    return {"index": index, "table": table[:64], "record_id": record_id[:36], "reason": refused.reason,
            "message": refused.message[:300]}


def retry_dead_letters(source: str, reasons: tuple[str, ...] | None = None, ids: list[int] | None = None,
                       limit: int = 500) -> int:
    """Try open dead letters from `source` again, oldest first (inside a write transaction). Return applied."""
    query = DeadLetter.select().where((DeadLetter.node_id == source) & DeadLetter.resolved_at.is_null())
    if reasons:
        query = query.where(DeadLetter.reason.in_(reasons))
    if ids is not None:
        query = query.where(DeadLetter.id.in_(ids))
    done = 0
    for letter in query.order_by(DeadLetter.id).limit(limit):
        if retry_one(letter, central=source != "central"):
            done += 1
    return done


def retry_one(letter: DeadLetter, central: bool = True) -> bool:
    """Apply one dead letter again; mark it resolved when it applies, else keep the new reason."""
    change = json.loads(letter.change_json)
    try:
        model, record_id, hlc, payload = check_change_shape(change)
        with in_savepoint():
            if central:
                apply_change(model, record_id, hlc, payload, origin=letter.node_id, pusher=letter.node_id,
                             detect=True, log=True)
            else:
                apply_change(model, record_id, hlc, payload, origin=str(change.get("origin") or "central"),
                             detect=False, log=False)
    except SetAside as refused:
        DeadLetter.update(reason=refused.reason[:32], message=refused.message,
                          attempts=DeadLetter.attempts + 1).where(DeadLetter.id == letter.id).execute()
        return False
    except ValidationError as exc:
        DeadLetter.update(reason="invalid", message=f"Vi phạm quy tắc: {str(exc)[:300]}",
                          attempts=DeadLetter.attempts + 1).where(DeadLetter.id == letter.id).execute()
        return False
    except (IntegrityError, DataError) as exc:
        DeadLetter.update(reason="constraint", message=f"Vi phạm ràng buộc dữ liệu: {str(exc)[:200]}",
                          attempts=DeadLetter.attempts + 1).where(DeadLetter.id == letter.id).execute()
        return False
    DeadLetter.update(resolved_at=utcnow(), resolution="Đã áp dụng khi thử lại",
                      attempts=DeadLetter.attempts + 1).where(DeadLetter.id == letter.id).execute()
    return True


def _replay(stored: AppliedBatch, node: Node, body: dict[str, Any]) -> dict[str, Any]:
    """The stored answer of a batch already applied, or 409 when the id is reused for other content."""
    if stored.node_id != node.id or stored.content_hash != body["content_hash"]:
        raise Refusal(409, "batch_conflict",
                      f"Lô {body['batch_id']} đã được áp dụng trước đây với nội dung khác. Không thay đổi nào "
                      "được áp dụng; nút cần tạo lô mới với mã lô mới.", batch_id=body["batch_id"])
    return json.loads(stored.response_json)


def serve_pull(node: Node, cursor: int, limit: int, config: Mapping[str, Any], full: bool = False) -> dict[str, Any]:
    """One page of central's change feed for the node: its scope and '*' (see `pull_page`), decoded."""
    head, rows = pull_page(node, cursor, limit, config, full)
    head["changes"] = [{"seq": seq, "table": table, "record_id": record_id, "hlc": hlc, "origin": origin,
                        "payload": json.loads(payload)} for seq, table, record_id, hlc, origin, payload in rows]
    return head


def serve_pull_json(node: Node, cursor: int, limit: int, config: Mapping[str, Any], full: bool = False) -> str:
    """The same page as JSON text, with each stored payload copied as it is (never decoded and re-encoded)."""
    head, rows = pull_page(node, cursor, limit, config, full)
    text = json.dumps
    changes = ",".join(f'{{"seq":{seq},"table":{text(table)},"record_id":{text(record_id)},"hlc":{text(hlc)},'
                       f'"origin":{text(origin)},"payload":{payload}}}'
                       for seq, table, record_id, hlc, origin, payload in rows)
    return text(head, ensure_ascii=False)[:-1] + f',"changes":[{changes}]}}'


def pull_page(node: Node, cursor: int, limit: int, config: Mapping[str, Any],
              full: bool = False) -> tuple[dict[str, Any], list[tuple]]:
    """The page's cursors and its rows (seq, table, record_id, hlc, origin, payload text), one fixed query.

    The node's own changes are left out unless it asks for its full scope (`full`, and always from
    cursor 0): a fresh, replaced or restored node gets its own earlier records back. When no row
    after the cursor is for this node, the cursor still advances to the end of the feed, so a sync
    with nothing to do costs the same however long the feed is.
    """
    rehome_cells(origin=str(config.get("NODE_ID", "central")))
    high = feed_high()
    database = db.obj
    p = database.param
    own = "" if (full or cursor == 0) else f" AND origin <> {p}"
    sql = (f'SELECT seq, "table", record_id, hlc, origin, payload FROM change_log WHERE seq > {p} '
           f"AND scope IN ({p}, {p}){own} ORDER BY seq LIMIT {p}")
    params = [cursor, "*", node.id] + ([node.id] if own else []) + [limit + 1]
    rows = database.execute_sql(sql, params).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    if more:
        next_cursor = rows[-1][0]
    else:
        next_cursor = max([high, cursor] + [r[0] for r in rows[-1:]])
    Node.update(last_pull_at=utcnow(), last_seen_at=utcnow()).where(Node.id == node.id).execute()
    return {"cursor": cursor, "next_cursor": next_cursor, "more": more}, rows
