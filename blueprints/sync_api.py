"""The sync HTTP API at central (`/sync/v1/hello`, `/push`, `/pull`) and the field node's `sync` command.

Design: the only blueprint exempt from CSRF, because it never uses cookies: every call carries a
node's Bearer token, checked against the hashed tokens in `Node`. The views only authenticate, cap
and decode the body, and hand plain values to sync/server.py, whose `Refusal` becomes a JSON error
with a stable code and a Vietnamese message. `flask --app app sync` (top level, `cli_group=None`)
runs `sync.run_sync` on a field node and prints a line per batch and a summary.

The status screens (`/sync` on a field node, `/sync/nodes` at central, admins only) live in a second
blueprint, `sync_status`, which is NOT exempt from CSRF (its button is a form); it is registered
together with the API so the app needs one registration line.
"""
from __future__ import annotations

import json
import zlib
from typing import Any

import click
from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from models import SYNCED_MODELS, Node, ValidationError, db
from models.nodes import hash_token
from sync import SyncError, run_sync
from sync.protocol import API_PREFIX, Refusal, setting
from sync.server import apply_push, hello, serve_pull_json
from sync.digest import scope_digest, scope_ids
from sync.conflicts import (KIND_LABELS, REASON_LABELS, ResolveError, describe_change, dismiss_dead_letter,
                            resolve_conflict, retry_dead_letter)
from sync.status import ago_in_words, field_status, node_overview, open_conflicts, open_dead_letters, skew_in_words

from .access import role_required
from .web import csrf, htmx

bp = Blueprint("sync_api", __name__, url_prefix=API_PREFIX, cli_group=None)
csrf.exempt(bp)
status_bp = Blueprint("sync_status", __name__)


def _refuse(refusal: Refusal):
    """A refusal as a JSON response."""
    response = jsonify(refusal.body())
    response.status_code = refusal.status
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="chibo-sync"'
    return response


def _authenticated_node() -> Node:
    """The node whose Bearer token came with the request; Refusal(401) otherwise. Cookies are ignored."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Refusal(401, "unauthorized", "Thiếu mã đồng bộ: gửi tiêu đề Authorization: Bearer <mã>.")
    node = Node.authenticate(token)
    if node is not None:
        return node
    known = Node.get_or_none(Node.token_hash == hash_token(token))
    if known is not None and known.revoked_at is not None:
        raise Refusal(401, "revoked", f"Mã đồng bộ của nút {known.id} đã bị thu hồi; hãy đăng ký lại nút tại "
                                      "trung tâm để nhận mã mới.")
    raise Refusal(401, "unauthorized", "Mã đồng bộ không đúng hoặc nút chưa được đăng ký tại trung tâm.")


def _json_body(keep_raw: bool = False) -> Any:
    """The request body decoded as JSON, refused when too large (413) or not JSON (400).

    `keep_raw`: return (body, its bytes after decompression) instead."""
    limit = setting(current_app.config, "SYNC_MAX_REQUEST_BYTES")
    length = request.content_length
    if length is not None and length > limit:
        raise Refusal(413, "too_large", f"Yêu cầu {length} byte vượt giới hạn {limit} byte của trung tâm; "
                                        "hãy gửi lô nhỏ hơn.")
    # Without a Content-Length (chunked), read one byte past the limit to know it was exceeded.
    raw = request.stream.read(limit + 1) if length is None else request.get_data(cache=False)
    if len(raw) > limit:
        raise Refusal(413, "too_large", f"Yêu cầu vượt giới hạn {limit} byte của trung tâm; hãy gửi lô nhỏ hơn.")
    raw = _decoded(raw, request.headers.get("Content-Encoding", ""), limit)
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # Never echo the parser's own words (Python internals) back to the caller.
        raise Refusal(400, "bad_json", "Nội dung yêu cầu không phải JSON hợp lệ (UTF-8).") from None
    # Later steps walk the body recursively: refuse deep nesting here, with an iterative walk. Only
    # containers go on the stack (a push holds ~20 plain values per change: 4x faster than all of them).
    stack = [(body, 1)] if isinstance(body, (dict, list)) else []
    while stack:
        value, depth = stack.pop()
        if depth > 32:
            raise Refusal(400, "bad_json", "Nội dung yêu cầu lồng nhau quá sâu (tối đa 32 cấp).")
        for child in (value.values() if isinstance(value, dict) else value):
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return (body, raw) if keep_raw else body


def _decoded(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body as sent before compression: gzip is undone (at most `limit` bytes out), other codings refused.

    A field node compresses its pushes (slow links: a batch is ~9x smaller); the limit applies to what
    the body expands to as well, so a small compressed body cannot make central hold gigabytes."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding != "gzip":
        raise Refusal(415, "unsupported_encoding", f"Trung tâm không nhận nội dung mã hóa kiểu "
                                                   f"“{encoding[:40]}”; chỉ nhận gzip hoặc không nén.")
    parts, size, rest = [], 0, raw
    try:
        while True:  # gzip allows several members one after another
            inflater = zlib.decompressobj(wbits=31)  # 31: the gzip wrapper, checked with its CRC
            parts.append(inflater.decompress(rest, limit + 1 - size))
            size += len(parts[-1])
            if size > limit:
                raise Refusal(413, "too_large", f"Yêu cầu khi giải nén vượt giới hạn {limit} byte của trung tâm; "
                                                "hãy gửi lô nhỏ hơn.")
            if not inflater.eof:
                raise zlib.error("truncated")
            rest = inflater.unused_data
            if not rest:
                return b"".join(parts)
    except zlib.error:
        raise Refusal(400, "bad_gzip", "Nội dung nén gzip bị hỏng hoặc không trọn vẹn; dữ liệu có thể bị hỏng "
                                       "trên đường truyền.") from None


def _central_only() -> None:
    """Only central serves the sync API; a field node answers 404 like any unknown address."""
    if current_app.config["ROLE"] != "central":
        raise Refusal(404, "not_central", "Nút này không phải trung tâm; hãy đồng bộ với trung tâm.")


@bp.route("/hello", methods=("POST",))
def hello_view():
    """Handshake: the node's versions and clock in, central's out."""
    try:
        _central_only()
        node = _authenticated_node()
        body = _json_body()
        answer = hello(node, body, current_app.config)
    except Refusal as refusal:
        return _refuse(refusal)
    return jsonify(answer)


@bp.route("/push", methods=("POST",))
def push_view():
    """Apply one batch of the node's changes (all or nothing, idempotent by batch id)."""
    try:
        _central_only()
        node = _authenticated_node()
        body, raw = _json_body(keep_raw=True)
        answer, replayed = apply_push(node, body, current_app.config, raw)
    except Refusal as refusal:
        return _refuse(refusal)
    response = jsonify(answer)
    if replayed:
        response.headers["X-Chibo-Replay"] = "1"
    return response


@bp.route("/pull", methods=("GET",))
def pull_view():
    """One page of central's changes for the node, after `cursor`."""
    try:
        _central_only()
        node = _authenticated_node()
        config = current_app.config
        try:
            cursor = int(request.args.get("cursor", "0"))
            limit = int(request.args.get("limit", setting(config, "SYNC_PULL_LIMIT")))
        except ValueError:
            raise Refusal(400, "bad_request", "cursor và limit phải là số nguyên.") from None
        if not 0 <= cursor < 2 ** 63 or limit < 1:
            # Beyond 64 bits the database cannot even compare it (it was a 500).
            raise Refusal(400, "bad_request", "cursor phải từ 0 đến 2^63 − 1 và limit phải ≥ 1.")
        full = request.args.get("full", "0") == "1"  # a node rebuilding its scope: its own records too
        body = serve_pull_json(node, cursor, min(limit, setting(config, "SYNC_PULL_MAX_LIMIT")), config, full)
    except Refusal as refusal:
        return _refuse(refusal)
    return current_app.response_class(body, mimetype="application/json")


@bp.route("/digest", methods=("GET",))
def digest_view():
    """Checksums of the node's scope per table, or one table's ids and stamps (`?table=`)."""
    try:
        _central_only()
        node = _authenticated_node()
        table = request.args.get("table")
        if table is None:
            answer = {"tables": scope_digest(node.id)}
        elif table in SYNCED_MODELS:
            answer = {"table": table, "ids": scope_ids(table, node.id)}
        else:
            raise Refusal(400, "bad_request", "Bảng không tồn tại.")
    except Refusal as refusal:
        return _refuse(refusal)
    return jsonify(answer)


@bp.cli.command("sync")
@click.option("--verify", is_flag=True, help="Đối chiếu tổng kiểm tra từng bảng với trung tâm sau khi đồng bộ.")
def sync_command(verify):
    """Sync this field node with central now: push what is pending, pull what is new."""
    config = current_app.config
    if config["ROLE"] != "field":
        raise click.ClickException("Lệnh sync chỉ chạy trên nút field (CHIBO_ROLE=field).")
    click.echo(f"Đồng bộ nút {config['NODE_ID']} với {config.get('CENTRAL_URL') or '(chưa cấu hình)'}…")
    with db.connection_context():
        try:
            report = run_sync(config, progress=click.echo, verify=verify)
        except SyncError as exc:
            raise _sync_failed(f"Đồng bộ thất bại: {exc}") from None
    for warning in report.warnings:
        click.echo(f"Cảnh báo: {warning}")
    click.echo(report.summary())
    if not report.ok:
        raise _sync_failed("Đồng bộ chưa xong: " + " ".join(report.errors))
    click.echo("Đồng bộ thành công.")


def _sync_failed(message: str) -> click.ClickException:
    """The sync command's error, with the unfinished-rebuild warning when the node's data is partial."""
    note = field_status(str(current_app.config["NODE_ID"])).rebuild_note
    return click.ClickException(message + (f"\n{note}" if note else ""))


# In a field office the secretary is the one at the node, so they may see its state and sync it.
@status_bp.route("/sync")
@role_required("admin", "secretary")
def sync_status():
    """Field node: last success, pending changes and a button to sync now. Central: the node list."""
    if current_app.config["ROLE"] == "central":
        if current_user.role != "admin":
            abort(403)
        return redirect(url_for("sync_status.sync_nodes"))
    return render_template("sync/status.html", **_field_context())


@status_bp.route("/sync/run", methods=("POST",))
@role_required("admin", "secretary")
def sync_run():
    """Run a sync now (field node) and answer the refreshed status panel."""
    if current_app.config["ROLE"] != "field":
        abort(404)
    report, error = None, ""
    try:
        report = run_sync(current_app.config)
    except SyncError as exc:
        error = str(exc)
    if not htmx:
        return redirect(url_for("sync_status.sync_status"), 303)
    return render_template("sync/_status.html", report=report, error=error, **_field_context())


def _field_context() -> dict[str, Any]:
    """What the field status panel shows."""
    status = field_status(str(current_app.config["NODE_ID"]))
    return {"status": status, "last_success_words": ago_in_words(status.last_success),
            "central_url": current_app.config.get("CENTRAL_URL") or ""}


@status_bp.route("/sync/nodes")
@role_required("admin")
def sync_nodes():
    """Central: every registered node with last contact, clock skew and versions."""
    if current_app.config["ROLE"] != "central":
        abort(404)
    return render_template("sync/nodes.html", rows=node_overview(), ago=ago_in_words, skew=skew_in_words,
                           conflicts=open_conflicts().count(), dead_letters=open_dead_letters().count())


def _central_admin() -> None:
    """The conflict and dead-letter screens exist at central only."""
    if current_app.config["ROLE"] != "central":
        abort(404)


@status_bp.route("/sync/conflicts")
@role_required("admin")
def conflict_list():
    """Central: 'Xung đột' — values two places changed at once, for a person to decide."""
    _central_admin()
    return render_template("sync/conflicts.html", conflicts=list(open_conflicts()), kinds=KIND_LABELS,
                           loads=json.loads)


@status_bp.route("/sync/conflicts/<int:conflict_id>", methods=("POST",))
@role_required("admin")
def conflict_resolve(conflict_id: int):
    """Keep one side of a conflict; the choice syncs everywhere as a new change."""
    _central_admin()
    try:
        note = resolve_conflict(conflict_id, request.form.get("choice", ""), current_user.full_name or current_user.username)
        flash(f"Đã xử lý xung đột: {note}.", "success")
    except ResolveError as exc:
        flash(str(exc), "error")
    except ValidationError as exc:
        flash(f"Chưa xử lý được: {'; '.join(exc.errors.values())}", "error")
    return redirect(url_for("sync_status.conflict_list"), 303)


@status_bp.route("/sync/dead-letters")
@role_required("admin")
def dead_letter_list():
    """Central: changes set aside (dead letters) with their reasons, to retry after a fix or dismiss."""
    _central_admin()
    return render_template("sync/dead_letters.html", letters=list(open_dead_letters()), reasons=REASON_LABELS,
                           describe=describe_change)


@status_bp.route("/sync/dead-letters/<int:letter_id>/retry", methods=("POST",))
@role_required("admin")
def dead_letter_retry(letter_id: int):
    """Apply a set-aside change again now."""
    _central_admin()
    try:
        flash(retry_dead_letter(letter_id), "info")
    except ResolveError as exc:
        flash(str(exc), "error")
    return redirect(url_for("sync_status.dead_letter_list"), 303)


@status_bp.route("/sync/dead-letters/<int:letter_id>/dismiss", methods=("POST",))
@role_required("admin")
def dead_letter_dismiss(letter_id: int):
    """Close a set-aside change without applying it, with a reason."""
    _central_admin()
    try:
        dismiss_dead_letter(letter_id, current_user.full_name or current_user.username, request.form.get("why", ""))
        flash("Đã bỏ qua thay đổi (lý do được lưu).", "info")
    except ResolveError as exc:
        flash(str(exc), "error")
    return redirect(url_for("sync_status.dead_letter_list"), 303)
