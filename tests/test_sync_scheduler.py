"""A field node syncs on its own on a timer with backoff, and only one sync runs at a time per node.

The lock lives with the data (a SyncState row written under the write lock), so a `flask sync` from
another process is refused with a clear message while the timer's (or anyone's) sync holds it, and
a lock left by a killed process is taken over. The timer doubles its wait after each failure up to
a cap and returns to the interval after a success; over real HTTP it brings central's data to a node
nobody synced by hand.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from app import create_app
from models import SyncState, db
from sync import SyncBusy, run_sync
from sync.scheduler import LOCK_KEY, TIMER_KEY, SyncTimer, acquire, holder, next_delay, release, start_timer
from tests.test_sync_integration import (
    PASSWORD,
    ROOT,
    SETUP_CENTRAL,
    Server,
    free_port,
    node_env,
    query,
    run,
)


def test_the_wait_doubles_after_each_failure_up_to_the_cap():
    """300 s normally; 600, 1200, 2400 after failures; never more than the cap."""
    assert [next_delay(300, n, 3600) for n in range(6)] == [300, 600, 1200, 2400, 3600, 3600]
    assert next_delay(5000, 3, 3600) == 5000  # a cap below the interval never shortens it


def test_the_timer_backs_off_while_central_fails_and_recovers_after_a_success(app):
    """Two failures stretch the wait and are recorded; the first success resets it."""
    outcomes = iter([RuntimeError("Không kết nối được tới trung tâm"), RuntimeError("vẫn lỗi"), None])

    def fake_sync(_config):
        """Fail, fail, then succeed."""
        outcome = next(outcomes)
        if outcome:
            raise outcome
        return None

    timer = SyncTimer(app, interval=10, cap=35, sync=fake_sync)
    assert timer.run_once() == 20
    assert timer.run_once() == 35
    with app.app_context(), db.connection_context():
        state = json.loads(SyncState.get_value(TIMER_KEY))
    assert state["failures"] == 2 and state["last_error"] == "vẫn lỗi"
    assert timer.run_once() == 10
    with app.app_context(), db.connection_context():
        assert json.loads(SyncState.get_value(TIMER_KEY))["failures"] == 0


def test_a_sync_running_elsewhere_is_not_a_failure_for_the_timer(app):
    """While another sync holds the lock the timer skips its turn at the normal interval."""
    with app.app_context(), db.connection_context():
        me = acquire()
    calls = []
    timer = SyncTimer(app, interval=10, cap=100, sync=lambda config: calls.append(1) or run_sync(config))
    assert timer.run_once() == 10 and timer.failures == 0 and calls == [1]
    with app.app_context(), db.connection_context():
        release(me)
        assert holder() is None


def test_only_field_nodes_with_an_interval_get_a_timer(app, tmp_path):
    """Central never starts one; a field node with CHIBO_SYNC_INTERVAL=0 does not either."""
    assert start_timer(app) is None
    field = create_app({"TESTING": True, "SECRET_KEY": "t", "ROLE": "field", "NODE_ID": "doi-1",
                        "SYNC_INTERVAL": 0, "DATABASE_URL": f"sqlite:///{tmp_path / 'field.sqlite3'}"})
    assert start_timer(field) is None


@pytest.fixture
def field_app(tmp_path):
    """A field node's app on its own SQLite file, pointing at a central nobody listens on."""
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "ROLE": "field", "NODE_ID": "doi-1",
                      "CENTRAL_URL": f"http://127.0.0.1:{free_port()}", "SYNC_TOKEN": "x",
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'field.sqlite3'}"})
    yield app
    if not db.is_closed():
        db.close()


def cli_sync(app) -> subprocess.CompletedProcess:
    """`flask --app app sync` in another process, on the same database as `app`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIBO_") or k == "CHIBO_TEST_FAST_HASH"}
    env.update({"CHIBO_ROLE": "field", "CHIBO_NODE_ID": "doi-1", "CHIBO_SECRET_KEY": "t",
                "CHIBO_DATABASE_URL": app.config["DATABASE_URL"], "CHIBO_CENTRAL_URL": app.config["CENTRAL_URL"],
                "CHIBO_SYNC_TOKEN": "x", "CHIBO_SYNC_INTERVAL": "0"})
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "sync"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_cli_sync_waits_its_turn_while_another_process_syncs(field_app):
    """Lock held here: the CLI in another process is refused clearly and touches nothing; freed, it runs."""
    with field_app.app_context(), db.connection_context():
        me = acquire()
        with pytest.raises(SyncBusy):
            run_sync(field_app.config)
    busy = cli_sync(field_app)
    assert busy.returncode != 0
    assert "Một lần đồng bộ khác đang chạy trên nút này" in busy.stderr
    assert "Không kết nối được" not in busy.stderr
    with field_app.app_context(), db.connection_context():
        release(me)
        assert SyncState.get_value(LOCK_KEY) is None
    free = cli_sync(field_app)
    assert free.returncode != 0 and "Không kết nối được tới trung tâm" in free.stderr
    with field_app.app_context(), db.connection_context():
        assert SyncState.get_value(LOCK_KEY) is None  # released after the failed run too


def test_a_lock_left_by_a_killed_sync_is_taken_over(field_app):
    """A holder process that no longer exists (kill -9 mid-sync) does not block the node."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with field_app.app_context(), db.connection_context():
        SyncState.set_value(LOCK_KEY, json.dumps({
            "host": socket.gethostname(), "pid": dead.pid, "token": "old",
            "since": "2026-01-01T00:00:00", "expires": "2999-01-01T00:00:00"}))
        assert holder() is None
        me = acquire()
        assert me is not None and holder()["token"] == me["token"]
        release(me)


@pytest.mark.sqlite_only  # the timer lives on the field node, on SQLite in both passes
def test_a_field_node_syncs_on_its_own_timer(tmp_path):
    """Nobody runs `flask sync`: the node's server pulls central's organisation by itself."""
    central_env = node_env(tmp_path, "central", "central", free_port())
    run(central_env, "-c", SETUP_CENTRAL, PASSWORD)
    token = run(central_env, "nodes", "register", "doi-1", "--cells", "CB02").stdout.strip().splitlines()[-1]
    servers = [Server(central_env, tmp_path / "central.log")]
    try:
        field_env = node_env(tmp_path, "field", "doi-1", free_port(), CHIBO_CENTRAL_URL=servers[0].url,
                             CHIBO_SYNC_TOKEN=token, CHIBO_SYNC_INTERVAL="1")
        servers.append(Server(field_env, tmp_path / "field.log"))
        success = "SELECT value FROM sync_state WHERE key='last_sync_success_at'"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not query(field_env, success):
            time.sleep(0.5)
        assert query(field_env, success), (tmp_path / "field.log").read_text()
        assert query(field_env, "SELECT name FROM organisation") == [("Đảng bộ Kiểm thử Đồng bộ",)]
        assert query(field_env, "SELECT COUNT(*) FROM member")[0][0] == 4
    finally:
        for server in servers:
            server.stop()
