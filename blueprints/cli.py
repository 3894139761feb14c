"""Operational CLI: `flask --app app db up | users create | nodes register | assign | release | backup | demo`.

Each command is a thin shell over a plain function in models/ or sync/, so the same work can be
done from tests or another tool.
"""
from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from models import ALL_MODELS, Cell, Node, User, ValidationError, db
from models.base import LOCAL_TZ
from models.migrations import db_up
from models.nodes import hash_token
from models.seeds import seed_reference_data

db_cli = AppGroup("db", help="Cơ sở dữ liệu.")
users_cli = AppGroup("users", help="Tài khoản người dùng.")
nodes_cli = AppGroup("nodes", help="Các nút (đội, điểm) đồng bộ với trung tâm.")


@db_cli.command("up")
def db_up_command():
    """Create or migrate the schema; seed the national rule sets and sheets on central."""
    version = db_up(ALL_MODELS)
    made, sheets = seed_reference_data() if current_app.config["ROLE"] == "central" else (0, 0)
    click.echo(f"Cơ sở dữ liệu ở phiên bản {version}; đã thêm {made} bộ quy tắc, {sheets} mẫu phiếu.")


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "supervisor", "secretary", "member"]), default="admin")
@click.option("--full-name", default="")
@click.option("--cell", "cell_code", default=None, help="Mã chi bộ (bắt buộc với bí thư, đảng viên).")
@click.password_option("--password", prompt="Mật khẩu", confirmation_prompt="Nhập lại mật khẩu")
def users_create(username, role, full_name, cell_code, password):
    """Create a user account (the password is asked for, never defaulted; it is one-time)."""
    cell = Cell.get_or_none(Cell.code == cell_code) if cell_code else None
    if cell_code and cell is None:
        raise click.ClickException(f"Không có chi bộ mã {cell_code}.")
    if User.get_or_none(User.username == username):
        raise click.ClickException(f"Tên đăng nhập {username} đã tồn tại.")
    user = User(username=username, role=role, full_name=full_name or username, cell=cell.id if cell else None)
    try:
        # The operator typed it for someone else: its holder must choose their own at first login.
        user.set_password(password, temporary=True)
        user.save()
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Đã tạo tài khoản {username} ({role}).")


@users_cli.command("reset-password")
@click.argument("username")
@click.password_option("--password", prompt="Mật khẩu mới", confirmation_prompt="Nhập lại mật khẩu mới")
def users_reset_password(username, password):
    """Set a new password for an account and lift its failed-login block."""
    from models.audit import acting_as
    from models.users import clear_failed_logins, end_sessions

    user = User.get_or_none((User.username == username) & User.deleted_at.is_null())
    if user is None:
        raise click.ClickException(f"Không có tài khoản {username}.")
    try:
        with acting_as("", "Dòng lệnh (CLI)"):
            user.set_password(password, temporary=True)
            user.save()
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    end_sessions(user.id)
    clear_failed_logins(username)
    click.echo(f"Đã đặt lại mật khẩu cho {username}.")


@users_cli.command("deactivate")
@click.argument("username")
@click.option("--undo", is_flag=True, help="Mở khóa lại tài khoản.")
def users_deactivate(username, undo):
    """Lock an account (it can no longer log in anywhere), or unlock it with --undo."""
    from models.audit import acting_as

    user = User.get_or_none((User.username == username) & User.deleted_at.is_null())
    if user is None:
        raise click.ClickException(f"Không có tài khoản {username}.")
    user.active = bool(undo)
    with acting_as("", "Dòng lệnh (CLI)"):
        user.save()
    if not undo:
        from models.users import end_sessions

        end_sessions(user.id)
    click.echo(f"Đã {'mở khóa' if undo else 'khóa'} tài khoản {username}.")


@users_cli.command("list")
def users_list():
    """List accounts with role, cell and state."""
    cells = {c.id: c.code for c in Cell.select()}
    for user in User.live().order_by(User.username):
        state = "hoạt động" if user.active else "đã khóa"
        click.echo(f"{user.username}\t{user.role}\t{cells.get(user.cell_id, '-')}\t{state}")


@nodes_cli.command("register")
@click.argument("node_id")
@click.option("--name", default="", help="Tên hiển thị, ví dụ 'Đội QLTT số 1'.")
@click.option("--cells", default="", help="Mã các chi bộ do nút này quản lý, cách nhau bằng dấu phẩy.")
def nodes_register(node_id, name, cells):
    """Register a field node on central and print its sync token once."""
    from models.clock import NODE_ID_PATTERN

    if current_app.config["ROLE"] != "central":
        raise click.ClickException("Chỉ đăng ký nút tại trung tâm.")
    if not NODE_ID_PATTERN.match(node_id) or node_id == "central":
        raise click.ClickException("Mã nút chỉ gồm chữ thường, số, gạch nối (tối đa 32 ký tự), khác 'central'.")
    codes = [c.strip() for c in cells.split(",") if c.strip()]
    found = {c.code: c for c in Cell.live().where(Cell.code.in_(codes))} if codes else {}
    missing = [c for c in codes if c not in found]
    if missing:
        raise click.ClickException(f"Không có chi bộ mã: {', '.join(missing)}.")
    token = Node.issue_token()
    with db.atomic():
        node = Node.get_or_none(Node.id == node_id)
        existed = node is not None
        if node is None:
            Node.create(id=node_id, name=name or node_id, token_hash=hash_token(token))
        else:
            node.token_hash, node.revoked_at = hash_token(token), None
            node.name = name or node.name
            node.save()
        if codes:
            _assign(codes, node_id)
    click.echo(f"Nút {node_id} đã đăng ký; quản lý {len(found)} chi bộ.")
    if codes:  # as `nodes assign` does: the cells' records are handed over now, not on the node's first pull
        from sync.scope import rehome_cells

        logged = rehome_cells(origin=str(current_app.config.get("NODE_ID", "central")))
        click.echo(f"Đã chuẩn bị {logged} bản ghi bàn giao cho lần đồng bộ đầu tiên của nút.")
    if existed:
        click.echo("Nút đã có từ trước: mã đồng bộ cũ hết hiệu lực. (Chỉ chuyển chi bộ mà không đổi mã: "
                   "flask --app app nodes assign.)")
    click.echo("Mã đồng bộ (chỉ hiện một lần, đặt vào CHIBO_SYNC_TOKEN của nút):")
    click.echo(token)


def _assign(codes: list[str], node_id: str) -> list:
    """Hand the cells to the node through sync/scope.py (audited as the CLI); ClickException when refused."""
    from models.audit import acting_as
    from sync.scope import HandoverError, assign_cells

    try:
        with acting_as("", "Dòng lệnh (CLI)"):
            return assign_cells(codes, node_id)
    except HandoverError as exc:
        raise click.ClickException(str(exc)) from None
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None


def _report_handover(moved: list, node_id: str) -> None:
    """Say what moved, prepare the feed for the next pulls, and remind that tokens did not change."""
    from sync.scope import rehome_cells

    where = "trung tâm" if node_id == "central" else f"nút {node_id}"
    for cell, previous in moved:
        before = "trung tâm" if previous == "central" else f"nút {previous}"
        if previous == node_id:
            click.echo(f"Chi bộ {cell.code} ({cell.name}) đã do {where} quản lý; không có gì thay đổi.")
        else:
            click.echo(f"Đã chuyển chi bộ {cell.code} ({cell.name}) từ {before} sang {where}.")
    logged = rehome_cells(origin=str(current_app.config.get("NODE_ID", "central")))
    click.echo(f"Đã chuẩn bị {logged} bản ghi bàn giao cho lần đồng bộ tới. Mã đồng bộ của các nút không thay đổi.")


@nodes_cli.command("assign")
@click.argument("node_id")
@click.option("--cells", required=True, help="Mã các chi bộ giao cho nút, cách nhau bằng dấu phẩy.")
def nodes_assign(node_id, cells):
    """Hand cells to a registered node without touching any token (the node's history follows)."""
    if current_app.config["ROLE"] != "central":
        raise click.ClickException("Chỉ chuyển chi bộ giữa các nút tại trung tâm.")
    if node_id == "central":
        raise click.ClickException("Để trả chi bộ về trung tâm, dùng: flask --app app nodes release --cells ...")
    node = Node.get_or_none(Node.id == node_id)
    if node is not None and node.revoked_at is not None:
        click.echo(f"Lưu ý: mã đồng bộ của nút {node_id} đã bị thu hồi; nút chỉ nhận dữ liệu sau khi được "
                   "đăng ký lại.")
    moved = _assign(cells.split(","), node_id)
    _report_handover(moved, node_id)


@nodes_cli.command("release")
@click.option("--cells", required=True, help="Mã các chi bộ trả về trung tâm quản lý, cách nhau bằng dấu phẩy.")
def nodes_release(cells):
    """Give cells back to central (their node is told they left; no token changes)."""
    if current_app.config["ROLE"] != "central":
        raise click.ClickException("Chỉ trả chi bộ về trung tâm tại trung tâm.")
    moved = _assign(cells.split(","), "central")
    _report_handover(moved, "central")


@nodes_cli.command("revoke")
@click.argument("node_id")
def nodes_revoke(node_id):
    """Revoke a node's token: its next sync is refused until it is registered again."""
    from models.base import utcnow

    node = Node.get_or_none(Node.id == node_id)
    if node is None:
        raise click.ClickException(f"Không có nút {node_id}.")
    node.revoked_at = utcnow()
    node.save()
    click.echo(f"Đã thu hồi mã đồng bộ của nút {node_id}.")


@nodes_cli.command("list")
def nodes_list():
    """List registered nodes with their last contact."""
    for node in Node.select().order_by(Node.id):
        state = "đã thu hồi" if node.revoked_at else "hoạt động"
        seen = node.last_seen_at.strftime("%d/%m/%Y %H:%M") if node.last_seen_at else "chưa kết nối"
        click.echo(f"{node.id}\t{node.name}\t{state}\t{seen}")


@click.command("backup")
@with_appcontext
@click.option("--dir", "directory", default=None, help="Thư mục lưu bản sao (mặc định instance/backups).")
def backup_command(directory):
    """Copy the SQLite database to a timestamped file with the online backup API."""
    path = backup_sqlite(Path(directory) if directory else Path(current_app.instance_path) / "backups")
    click.echo(f"Đã sao lưu vào {path}")


def backup_sqlite(directory: Path) -> Path:
    """Online-backup the SQLite database into `directory`; return the new file's path."""
    import sqlite3

    from peewee import SqliteDatabase

    if not isinstance(db.obj, SqliteDatabase):
        raise click.ClickException("Lệnh backup dành cho SQLite; với PostgreSQL hãy dùng pg_dump.")
    import os

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = dt.datetime.now(LOCAL_TZ).strftime("%Y%m%d-%H%M%S")  # named by Vietnam's clock, as people read it
    target = directory / f"chibo-{current_app.config['NODE_ID']}-{stamp}-{secrets.token_hex(2)}.sqlite3"
    # A backup holds the whole database: readable by this account only, from the moment it exists.
    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    with db.connection_context():
        dest = sqlite3.connect(target)
        try:
            db.connection().backup(dest)
        finally:
            dest.close()
    return target


@click.command("restore")
@with_appcontext
@click.argument("backup_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="Không hỏi lại.")
def restore_command(backup_file, yes):
    """Replace this node's SQLite database with a backup and start a new generation (sync then reconciles)."""
    if not yes:
        click.confirm("Dữ liệu hiện tại sẽ được thay bằng bản sao lưu. Tiếp tục?", abort=True)
    generation = restore_sqlite(Path(backup_file))
    click.echo(f"Đã khôi phục từ {backup_file} (thế hệ dữ liệu {generation}). Lần đồng bộ tới sẽ đối chiếu lại "
               "với các nút/trung tâm để không mất thay đổi nào.")


def restore_sqlite(backup_file: Path) -> int:
    """Copy a backup into the live SQLite database (online API), then bump its generation; return it."""
    import sqlite3

    from peewee import SqliteDatabase

    from models import SyncState
    from models.base import write_transaction
    from models.migrations import bump_generation
    from sync.outbox import PULL_CURSOR

    if not isinstance(db.obj, SqliteDatabase):
        raise click.ClickException("Lệnh restore dành cho SQLite; với PostgreSQL hãy dùng pg_restore.")
    source = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    try:
        with db.connection_context():
            source.backup(db.connection())
    finally:
        source.close()
    with db.connection_context():
        db_up(ALL_MODELS)
        with write_transaction():
            generation = bump_generation()
            if current_app.config["ROLE"] == "field":
                # Pull the node's whole scope again: what it pushed after the backup comes back.
                SyncState.set_value(PULL_CURSOR, "0")
            SyncState.set_value("verify_pending", "1")
    return generation


@click.command("demo")
@with_appcontext
def demo_command():
    """Load the realistic demo data (refused when the database already holds an organisation)."""
    from models.demo import has_data, load_demo

    if current_app.config["ROLE"] != "central":
        raise click.ClickException("Dữ liệu mẫu chỉ nạp tại trung tâm; nút field nhận qua đồng bộ.")
    if has_data():
        raise click.ClickException(
            "Cơ sở dữ liệu đã có dữ liệu; dữ liệu mẫu không được trộn vào. "
            "Hãy dùng một CHIBO_DATABASE_URL mới hoặc xóa tệp instance/chibo.sqlite3.")
    click.echo("Đang nạp dữ liệu mẫu (2019 đến nay)…")
    accounts = load_demo()
    click.echo("Tài khoản mẫu (mật khẩu chỉ in một lần, hãy ghi lại):")
    for account in accounts:
        click.echo(f"  {account.username:<18} {account.password:<14} {account.description}")


def register_cli(app: Flask) -> None:
    """Attach the command groups to the app."""
    app.cli.add_command(db_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(nodes_cli)
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
    app.cli.add_command(demo_command)
