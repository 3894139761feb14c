"""Chi Bộ Mẫu: the application factory.

One codebase, two roles: `central` (the default, a complete standalone installation) and `field`
(a node in a field office that syncs with central). Configuration comes from the defaults below,
then `CHIBO_*` environment variables, then the `config` mapping given to `create_app` (tests).
`python app.py` serves the app with waitress.
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

from flask import Flask, g

from blueprints import register_blueprints
from blueprints.cli import register_cli
from blueprints.web import init_web
from models import ALL_MODELS, clock, db, init_db
from models.base import configure_writer
from models.identity import IdentityMismatch, ensure_identity, reset_database
from models.migrations import db_up
from models.seeds import seed_reference_data

APP_VERSION = "0.1.0"

DEFAULTS = {
    "ROLE": "central",
    "NODE_ID": "central",
    "CENTRAL_URL": "",
    "SYNC_TOKEN": "",
    "DATABASE_URL": "",
    "DEMO": False,
    "HOST": "127.0.0.1",
    "PORT": 5000,
    # Changes per push batch: 1,000 rather than 500 made 10,000 marks reach central 25 % sooner (fewer
    # commits and requests; bench/sync.py); 2,000 rather than 1,000 another 14 % (`--compare-batch 2000`,
    # same run: a commit's cost is the index pages it dirties, shared by more rows). A batch then holds
    # central's write lock ~0.13 s (at the measured ~16,000 changes/s) and is ~90 KB gzip-compressed.
    "SYNC_BATCH_SIZE": 2000,
    "SYNC_MAX_REQUEST_BYTES": 8 * 1024 * 1024,
    # A device clock further ahead of central's than this is refused at hello (stamps never are).
    "SYNC_MAX_CLOCK_AHEAD_MS": 5 * 60 * 1000,
    # Shift this process's wall clock (drills and tests of wrong device clocks); 0 in normal use.
    "CLOCK_OFFSET_MS": 0,
    "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
    # A meeting lasts about two hours: the session ends after 4 hours without a request.
    "PERMANENT_SESSION_LIFETIME": 4 * 3600,
    "SESSION_REFRESH_EACH_REQUEST": True,
    # Beside the idle limit: a session ends 12 hours after login however busy it was.
    "SESSION_ABSOLUTE_HOURS": 12,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    # The CSRF token must not expire in the middle of a meeting; the session bounds it instead.
    "WTF_CSRF_TIME_LIMIT": None,
    "WTF_CSRF_HEADERS": ["X-CSRFToken"],
    "BABEL_DEFAULT_LOCALE": "vi",
    "BABEL_DEFAULT_TIMEZONE": "Asia/Ho_Chi_Minh",
    "APP_VERSION": APP_VERSION,
    # Central seeds the national rule sets and sheets at start (idempotent); tests turn it off.
    "SEED_REFERENCE_DATA": True,
    # A field node served by `python app.py` syncs on its own every this many seconds (0 = never);
    # after failures it waits twice as long each time, up to SYNC_MAX_BACKOFF seconds.
    "SYNC_INTERVAL": 300,
    "SYNC_MAX_BACKOFF": 3600,
    # `python app.py --reset-database`: recreate a database made for another role or node, if it
    # holds nothing but reference data.
    "RESET_DATABASE": False,
    # Keep database connections between requests (`python app.py` turns it on: a served node).
    "DB_POOL": False,
    # How many reverse proxies stand in front (their X-Forwarded-For/Proto/Host are then trusted).
    "TRUSTED_PROXIES": 0,
}


def create_app(config: dict | None = None) -> Flask:
    """Build the app: configuration, database, extensions, blueprints and CLI."""
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("CHIBO")
    if config:
        app.config.from_mapping(config)
    _private_dir(Path(app.instance_path))
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(Path(app.instance_path) / "secret_key")
    if not app.config["DATABASE_URL"]:
        app.config["DATABASE_URL"] = f"sqlite:///{Path(app.instance_path) / 'chibo.sqlite3'}"
    if app.config["ROLE"] not in ("central", "field"):
        raise ValueError("CHIBO_ROLE phải là 'central' hoặc 'field'")
    if app.config["ROLE"] == "field" and app.config["NODE_ID"] == "central":
        raise ValueError("Nút field cần CHIBO_NODE_ID riêng (ví dụ doi-1)")

    if app.config["DATABASE_URL"].startswith("sqlite:///"):
        _private_file(Path(app.config["DATABASE_URL"][len("sqlite:///"):]))
    clock.configure(str(app.config["NODE_ID"]), max_ahead_ms=app.config.get("SYNC_MAX_CLOCK_AHEAD_MS"))
    # Drills and tests of wrong device clocks: this process may see the wall clock shifted.
    offset = int(app.config.get("CLOCK_OFFSET_MS") or 0) / 1000
    clock._wall = (lambda: time.time() + offset) if offset else time.time
    configure_writer(app.config["ROLE"], str(app.config["NODE_ID"]))
    init_db(app.config["DATABASE_URL"], pooled=bool(app.config.get("DB_POOL")))
    with db.connection_context():
        db_up(ALL_MODELS)
        # The role is settled before anything is written: a database keeps the node it was made for.
        _ensure_identity(app)
        # Reference data has one origin, central; a field node receives it on its first sync.
        if app.config["ROLE"] == "central" and app.config["SEED_REFERENCE_DATA"]:
            seed_reference_data()

    @app.before_request
    def _connect():
        db.connect(reuse_if_open=True)
        g.role = app.config["ROLE"]

    @app.teardown_request
    def _close(_exc):
        if not db.is_closed():
            db.close()

    init_web(app)
    register_blueprints(app)
    register_cli(app)
    return app


def _ensure_identity(app: Flask) -> None:
    """Record or check the database's role and node id; recreate it when a reset was asked for."""
    role, node_id = app.config["ROLE"], str(app.config["NODE_ID"])
    where = _database_label(app.config["DATABASE_URL"])
    try:
        ensure_identity(role, node_id, where)
    except IdentityMismatch:
        if not app.config["RESET_DATABASE"]:
            raise
        reset_database(ALL_MODELS)
        db_up(ALL_MODELS)
        ensure_identity(role, node_id, where)


def _database_label(url: str) -> str:
    """The database as people name it: the SQLite file, or the URL without its password."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):]
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def _private_dir(path: Path) -> None:
    """Make the instance folder readable by this account only (it holds the data and the key)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.name == "posix" and path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def _private_file(path: Path) -> None:
    """Create an empty SQLite file 0600 before SQLite does (it would follow the umask, often 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass


def _instance_secret(path: Path) -> str:
    """Read the instance's secret key, making and keeping one the first time (0600 from the start)."""
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def main(argv: list[str] | None = None) -> None:
    """Serve with waitress on CHIBO_HOST:CHIBO_PORT; `--demo` first loads demo data into an empty database."""
    import argparse

    from waitress import serve

    parser = argparse.ArgumentParser(description="Chạy Chi Bộ Mẫu.")
    parser.add_argument("--demo", action="store_true",
                        help="nạp dữ liệu mẫu nếu cơ sở dữ liệu còn trống, in tài khoản mẫu rồi chạy")
    parser.add_argument("--reset-database", action="store_true",
                        help="tạo lại cơ sở dữ liệu đã tạo cho vai trò hoặc nút khác (chỉ khi chưa có dữ liệu "
                             "ngoài dữ liệu tham chiếu) rồi thoát")
    args = parser.parse_args(argv)
    from models.identity import DatabaseNotEmpty

    try:
        app = create_app({"DEMO": True, "DB_POOL": True} if args.demo else {"RESET_DATABASE": True}
                         if args.reset_database else {"DB_POOL": True})
    except (IdentityMismatch, DatabaseNotEmpty) as exc:
        raise SystemExit(f"Không khởi động được: {exc}") from None
    if args.reset_database:
        print(f"Cơ sở dữ liệu sẵn sàng cho nút {app.config['NODE_ID']} (vai trò {app.config['ROLE']}). "
              "Hãy chạy lại `python app.py`.")
        return
    if args.demo:
        _load_demo_if_empty(app)
    from sync.scheduler import start_timer

    timer = start_timer(app)
    host, port = app.config["HOST"], int(app.config["PORT"])
    print(f"Chi Bộ Mẫu ({app.config['ROLE']}, nút {app.config['NODE_ID']}) đang chạy: http://{host}:{port}/")
    if timer:
        print(f"Tự đồng bộ với trung tâm mỗi {timer.interval:g} giây.")
    # A push batch (~0.5 MB for 1,000 changes) and a pull page (~1 MB) stay in memory instead of being
    # spooled to a temporary file past waitress's 0.5 MB / 1 MB defaults, and are read in 64 KB reads.
    buffer = int(app.config["SYNC_MAX_REQUEST_BYTES"]) + 65536
    serve(app, host=host, port=port, threads=8, inbuf_overflow=buffer, outbuf_overflow=buffer, recv_bytes=65536)


def _load_demo_if_empty(app: Flask) -> None:
    """Load the demo data and print its accounts once; say so when data is already there."""
    from models.demo import has_data, load_demo

    with app.app_context(), db.connection_context():
        if has_data():
            print("Cơ sở dữ liệu đã có dữ liệu: không nạp lại dữ liệu mẫu (tài khoản đã in ở lần chạy đầu).")
            return
        print("Đang nạp dữ liệu mẫu (2019 đến nay), khoảng 20 giây…")
        accounts = load_demo()
    print("Tài khoản mẫu (mật khẩu chỉ in một lần, hãy ghi lại):")
    for account in accounts:
        print(f"  {account.username:<18} {account.password:<14} {account.description}")


if __name__ == "__main__":
    main()
