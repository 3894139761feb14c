"""Browser tests: a live server on a free port and the system Chromium in a tablet viewport.

Playwright's own browser download does not work here, so the launch uses the system Chromium
(`CHROMIUM_PATH`, default /usr/bin/chromium). The server runs create_app on a temporary SQLite file
in a background thread; tests prepare data through the models on the same database.
"""
from __future__ import annotations

import os
import threading

import pytest
from werkzeug.serving import make_server

from app import create_app
from models import db
from models.rules import seed_rule_sets

TABLET = {"width": 800, "height": 1280}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Launch the system Chromium headless, without the background traffic it tries by default."""
    return {
        **browser_type_launch_args,
        "executable_path": os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A portrait 10-inch tablet, Vietnamese locale and time zone."""
    return {**browser_context_args, "viewport": TABLET, "locale": "vi-VN",
            "timezone_id": "Asia/Ho_Chi_Minh", "has_touch": True}


@pytest.fixture
def app(tmp_path):
    """A central app on its own SQLite file (overrides the unit-test `app`, so `org` works here)."""
    app = create_app({"SECRET_KEY": "browser-test", "DATABASE_URL": f"sqlite:///{tmp_path / 'live.sqlite3'}"})
    with app.app_context(), db.connection_context():
        seed_rule_sets()
    return app


@pytest.fixture
def live_server(app):
    """Serve `app` on a free local port in a thread; yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
