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
import time
import uuid
from typing import Any, Mapping

from peewee import DoesNotExist, ForeignKeyField, IntegrityError

from models import SYNCED_MODELS, ChangeLog, Node, ValidationError, clock
from models.base import apply_wire, utcnow
from models.clock import decode
from models.migrations import SCHEMA_VERSION
from models.policy import PolicyViolation, changed_columns, check_remote_change
from models.sync_state import AppliedBatch

from .protocol import PROTOCOL_VERSION, Refusal, content_hash, setting
from .scope import rehome_cells, write_transaction

BATCH_FIELDS = {"batch_id": str, "node_id": str, "schema_version": int, "from_seq": int,
                "to_seq": int, "content_hash": str, "changes": list}
CHANGE_FIELDS = {"table": str, "record_id": str, "hlc": str, "payload": dict}


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
    """Record what the node says about itself and answer central's versions and clock."""
    if not isinstance(body, dict):
        raise Refusal(400, "bad_request", "Nội dung yêu cầu phải là một đối tượng JSON.")
    missing = [k for k in ("node_id", "app_version", "schema_version", "hlc") if k not in body]
    if missing:
        raise Refusal(400, "bad_request", f"Thiếu trường: {', '.join(missing)}.", fields=missing)
    if body["node_id"] != node.id:
        raise Refusal(403, "wrong_node", f"Mã đồng bộ này thuộc nút {node.id}, không phải {body['node_id']}.")
    try:
        skew = clock.skew_ms(str(body["hlc"]))
    except ValueError:
        raise Refusal(400, "bad_request", f"Dấu thời gian hlc không hợp lệ: {body['hlc']!r}.") from None
    if isinstance(body.get("wall_ms"), int):
        # Wall time is the better measure of the device clock; the HLC may run ahead of it.
        skew = body["wall_ms"] - int(time.time() * 1000)
    node.last_seen_at = utcnow()
    node.app_version = str(body["app_version"])[:40]
    node.schema_version = body["schema_version"] if isinstance(body["schema_version"], int) else 0
    node.clock_skew_ms = int(skew)
    node.save()
    check_schema(body["schema_version"])
    try:
        clock.observe(str(body["hlc"]))
    except ValueError as exc:
        # A clock far in the future would drag every later stamp with it: refuse until it is fixed.
        raise Refusal(409, "clock_drift", f"Đồng hồ của nút {node.id} sai quá nhiều ({exc}). Hãy chỉnh ngày "
                                          "giờ trên máy tại nút rồi đồng bộ lại; dữ liệu chờ gửi vẫn được giữ.",
                      clock_skew_ms=int(skew)) from None
    warnings = []
    if abs(skew) > setting(config, "SYNC_MAX_CLOCK_SKEW_MS"):
        warnings.append(f"Đồng hồ của nút lệch {abs(skew) // 1000} giây so với trung tâm; "
                        "hãy chỉnh lại giờ trên máy tại nút.")
    return {
        "protocol": PROTOCOL_VERSION,
        "node_id": str(config.get("NODE_ID", "central")),
        "app_version": str(config.get("APP_VERSION", "")),
        "schema_version": SCHEMA_VERSION,
        "hlc": clock.now(),
        "clock_skew_ms": int(skew),
        "max_request_bytes": setting(config, "SYNC_MAX_REQUEST_BYTES"),
        "max_batch_changes": setting(config, "SYNC_MAX_BATCH_CHANGES"),
        "warnings": warnings,
    }


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


def validate_batch(node: Node, body: Any, config: Mapping[str, Any]) -> list[tuple[type, dict, dict]]:
    """First pass, no database: shape, limits, hash, tables and payloads. Return (model, values, change)."""
    _check_shape(body, BATCH_FIELDS, "Lô thay đổi")
    try:
        uuid.UUID(body["batch_id"])
    except ValueError:
        raise Refusal(400, "bad_request", "batch_id phải là một UUID.", field="batch_id") from None
    if body["node_id"] != node.id:
        raise Refusal(403, "wrong_node", f"Mã đồng bộ này thuộc nút {node.id}, không phải {body['node_id']}.")
    check_schema(body["schema_version"])
    changes = body["changes"]
    if not changes:
        raise Refusal(400, "bad_request", "Lô thay đổi không có thay đổi nào.")
    if len(changes) > setting(config, "SYNC_MAX_BATCH_CHANGES"):
        raise Refusal(413, "too_large", f"Lô có {len(changes)} thay đổi, vượt giới hạn "
                                         f"{setting(config, 'SYNC_MAX_BATCH_CHANGES')} của trung tâm.")
    if not 0 < body["from_seq"] <= body["to_seq"]:
        raise Refusal(400, "bad_request", "Khoảng số thứ tự from_seq..to_seq không hợp lệ.")
    for index, change in enumerate(changes):
        _check_shape(change, CHANGE_FIELDS, f"Thay đổi thứ {index}")
    if content_hash(changes) != body["content_hash"]:
        raise Refusal(400, "hash_mismatch", "Mã băm nội dung (content_hash) không khớp với danh sách thay "
                                            "đổi; dữ liệu có thể bị hỏng trên đường truyền.")
    checked = []
    for index, change in enumerate(changes):
        ref = _record_ref(index, change)
        model = SYNCED_MODELS.get(change["table"])
        if model is None:
            raise Refusal(422, "unknown_table", f"Bảng không tồn tại: {change['table']!r}.", record=ref)
        try:
            values = model.from_wire(change["payload"])
        except ValidationError as exc:
            raise Refusal(422, "invalid_record", f"Bản ghi {change['table']}/{change['record_id']} không "
                                                 f"hợp lệ: {exc}", record=ref, errors=exc.errors) from None
        if values.get("id") != change["record_id"]:
            raise Refusal(422, "invalid_record", "Mã bản ghi trong payload khác record_id.", record=ref)
        if values.get("hlc") != change["hlc"]:
            raise Refusal(422, "invalid_record", "Dấu thời gian trong payload khác hlc.", record=ref)
        try:
            stamp = decode(change["hlc"])
        except ValueError as exc:
            raise Refusal(422, "invalid_record", str(exc), record=ref) from None
        if stamp.node != node.id:
            # A node pushes only what it wrote, and it stamps with its own id.
            raise Refusal(422, "invalid_record", f"Dấu thời gian {change['hlc']} không do nút {node.id} tạo.",
                          record=ref)
        checked.append((model, values, change))
    return checked


def _check_parents(model: type, values: dict[str, Any], ref: dict[str, Any]) -> None:
    """Refuse (422) a change pointing to a record central does not have (yet)."""
    for field in model._meta.sorted_fields:
        if not isinstance(field, ForeignKeyField):
            continue
        target = values.get(field.name)
        if target is None:
            continue
        parent = field.rel_model
        if not parent.select().where(parent._meta.primary_key == target).exists():
            raise Refusal(422, "missing_parent",
                          f"Bản ghi {ref['table']}/{ref['record_id']} trỏ tới {parent._meta.table_name}/"
                          f"{target} mà trung tâm chưa có. Hãy gửi bản ghi cha trước (trong cùng lô hoặc lô "
                          "trước).", record=ref, field=field.column_name, parent_table=parent._meta.table_name,
                          parent_id=target)


def _check_scope(node: Node, model: type, values: dict[str, Any], ref: dict[str, Any]) -> None:
    """Refuse (403) a change to a record outside the node's scope, before or after the change."""
    current = model.get_or_none(model.id == values["id"])
    scopes = []
    try:
        if current is not None:
            scopes.append(current.sync_scope())
        scopes.append(model(**values).sync_scope())
    except (ValidationError, DoesNotExist) as exc:
        raise Refusal(422, "missing_parent", f"Không xác định được phạm vi của bản ghi: {exc}", record=ref) from None
    if any(scope != node.id for scope in scopes):
        raise Refusal(403, "out_of_scope",
                      f"Nút {node.id} không được ghi bản ghi {ref['table']}/{ref['record_id']}: bản ghi "
                      f"thuộc phạm vi {', '.join(sorted(set(s for s in scopes if s != node.id)))}. "
                      "Không thay đổi nào trong lô được áp dụng.", record=ref)


def apply_push(node: Node, body: Any, config: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Apply one pushed batch in one transaction; return (answer, replayed). Raise Refusal."""
    checked = validate_batch(node, body, config)
    stored = AppliedBatch.get_or_none(AppliedBatch.batch_id == body["batch_id"])
    if stored is not None:
        return _replay(stored, node, body), True
    applied = skipped = 0
    try:
        with write_transaction():
            # Checked again under the write lock: a concurrent push of the same batch may have won.
            stored = AppliedBatch.get_or_none(AppliedBatch.batch_id == body["batch_id"])
            if stored is not None:
                return _replay(stored, node, body), True
            for index, (model, values, change) in enumerate(checked):
                ref = _record_ref(index, change)
                _check_parents(model, values, ref)
                _check_scope(node, model, values, ref)
                current, merged = model.get_or_none(model.id == values["id"]), model(**values)
                if current is None or current.hlc < values["hlc"]:  # a stale change is skipped below anyway
                    try:
                        check_remote_change(node.id, model, current, merged, changed_columns(model, current, merged))
                    except PolicyViolation as exc:
                        raise Refusal(403, "policy", str(exc), record=ref) from None
                try:
                    done = apply_wire(model, change["payload"], origin=node.id)
                except ValidationError as exc:
                    raise Refusal(422, "invalid_record", f"Bản ghi {ref['table']}/{ref['record_id']} vi phạm "
                                                         f"quy tắc: {exc}", record=ref, errors=exc.errors) from None
                except IntegrityError as exc:
                    raise Refusal(422, "conflict", f"Bản ghi {ref['table']}/{ref['record_id']} trùng khóa duy "
                                                   f"nhất hoặc sai ràng buộc: {exc}", record=ref) from None
                applied += int(done)
                skipped += int(not done)
            answer = {
                "status": "applied",
                "batch_id": body["batch_id"],
                "from_seq": body["from_seq"],
                "to_seq": body["to_seq"],
                "ack_seq": body["to_seq"],
                "received": len(checked),
                "applied": applied,
                "skipped": skipped,
            }
            AppliedBatch.create(batch_id=body["batch_id"], node_id=node.id, content_hash=body["content_hash"],
                                from_seq=body["from_seq"], to_seq=body["to_seq"], change_count=len(checked),
                                response_json=json.dumps(answer, ensure_ascii=False))
            Node.update(last_push_at=utcnow(), last_seen_at=utcnow()).where(Node.id == node.id).execute()
    except IntegrityError:
        # Another worker applied the same batch id at the same moment: answer as it did.
        stored = AppliedBatch.get_or_none(AppliedBatch.batch_id == body["batch_id"])
        if stored is None:
            raise
        return _replay(stored, node, body), True
    return answer, False


def _replay(stored: AppliedBatch, node: Node, body: dict[str, Any]) -> dict[str, Any]:
    """The stored answer of a batch already applied, or 409 when the id is reused for other content."""
    if stored.node_id != node.id or stored.content_hash != body["content_hash"]:
        raise Refusal(409, "batch_conflict",
                      f"Lô {body['batch_id']} đã được áp dụng trước đây với nội dung khác. Không thay đổi nào "
                      "được áp dụng; nút cần tạo lô mới với mã lô mới.", batch_id=body["batch_id"])
    return json.loads(stored.response_json)


def serve_pull(node: Node, cursor: int, limit: int, config: Mapping[str, Any]) -> dict[str, Any]:
    """One page of central's change feed for the node: its scope and '*', never its own changes."""
    rehome_cells(origin=str(config.get("NODE_ID", "central")))
    rows = list(ChangeLog.select()
                .where((ChangeLog.seq > cursor) & (ChangeLog.scope.in_(["*", node.id]))
                       & (ChangeLog.origin != node.id))
                .order_by(ChangeLog.seq)
                .limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    Node.update(last_pull_at=utcnow(), last_seen_at=utcnow()).where(Node.id == node.id).execute()
    return {
        "cursor": cursor,
        "next_cursor": rows[-1].seq if rows else cursor,
        "more": more,
        "changes": [{"seq": r.seq, "table": r.table, "record_id": r.record_id, "hlc": r.hlc,
                     "origin": r.origin, "payload": json.loads(r.payload)} for r in rows],
    }
