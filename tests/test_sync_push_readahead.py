"""The field node reads the next batch ahead while one is on the wire (issue 10); nothing is lost or doubled.

Real parts: central as `python app.py`, the field node's `flask --app app sync` as its own process, and
between them an HTTP relay in this test that loses central's answer to the second push (the link drops
after central committed the batch). The node must not acknowledge the batch it read ahead, the next
sync sends the lost batch again (central replays its stored answer) and then the rest, and both sides
end with the same records, each once.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests.test_sync_integration import nodes, query, run, sync  # noqa: F401 (fixture)

WRITE_ROLL_CALLS = """
import sys, datetime as dt
from app import create_app
from models import Meeting, Member, db
from models.meetings import set_attendance
app = create_app()
with app.app_context(), db.connection_context():
    members = list(Member.select().where(Member.cell == sys.argv[1]))
    for day in range(int(sys.argv[2])):
        meeting = Meeting.create(cell=sys.argv[1], held_on=dt.date(2025, 1, 1) + dt.timedelta(days=day),
                                 kind="extraordinary", title=f"Họp đọc trước {day}")
        for member in members:
            set_attendance(meeting, member.id, "present")
"""


class Relay:
    """An HTTP relay to central that, for the push numbered `lose`, forwards it and drops central's answer.

    It notes each push's Content-Encoding; with `old_central` it removes `request_encodings` from the
    handshake's answer, as central of the previous release answered (it took no compressed pushes)."""

    def __init__(self, target: str, lose: int = 0, old_central: bool = False, lose_pull: int = 0):
        """Listen on a free local port; forward everything to `target` (`lose_pull`: drop that pull's answer)."""
        self.pushes = 0
        self.pulls = 0
        self.lost: list[int] = []
        self.encodings: list[str] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(self.command, target + self.path, data=body, headers=headers, timeout=60)
                content = answer.content
                if self.path.endswith("/push"):
                    relay.pushes += 1
                    relay.encodings.append(self.headers.get("Content-Encoding", ""))
                    if relay.pushes == lose:  # central has applied it; the node never hears so
                        relay.lost.append(relay.pushes)
                        self.close_connection = True
                        self.connection.close()
                        return
                if "/pull" in self.path:
                    relay.pulls += 1
                    if relay.pulls == lose_pull:  # the link drops while the page is on its way
                        relay.lost.append(-relay.pulls)
                        self.close_connection = True
                        self.connection.close()
                        return
                if self.path.endswith("/hello") and old_central and answer.status_code == 200:
                    hello = answer.json()
                    hello.pop("request_encodings", None)
                    content = json.dumps(hello).encode()
                self.send_response(answer.status_code)
                for key in ("Content-Type", "X-Chibo-Replay"):
                    if key in answer.headers:
                        self.send_header(key, answer.headers[key])
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _forward

            def log_message(self, *args):  # quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()


def test_a_lost_answer_while_the_next_batch_was_read_ahead_loses_and_doubles_nothing(nodes):  # noqa: F811
    central_env, field_env, _field_server, ids = nodes
    assert sync(field_env).returncode == 0  # the node gets its cell and members
    run(field_env, "-c", WRITE_ROLL_CALLS, ids["cb02"], "12")  # 12 meetings × 4 marks = 60 records
    pending = query(field_env, "SELECT COUNT(*) FROM change_log WHERE origin = 'doi-1'")[0][0]
    assert pending >= 60
    relay = Relay(f"http://127.0.0.1:{central_env['CHIBO_PORT']}", lose=2)
    try:
        # Batches of 10: the node has read batch 3 ahead when batch 2's answer is lost.
        cut = run({**field_env, "CHIBO_CENTRAL_URL": relay.url, "CHIBO_SYNC_BATCH_SIZE": "10"}, "sync",
                  check=False)
    finally:
        relay.close()
    assert relay.lost == [2] and relay.pushes == 2, (relay.pushes, cut.stdout, cut.stderr)
    assert relay.encodings == ["gzip", "gzip"]  # central says it takes gzip: the node compresses its pushes
    assert cut.returncode != 0
    # Central committed batches 1 and 2; the node acknowledged only batch 1 (what it heard).
    acked = int(query(field_env, "SELECT value FROM sync_state WHERE key = 'pushed_seq'")[0][0])
    first_ten = query(field_env, "SELECT seq FROM change_log WHERE origin = 'doi-1' ORDER BY seq LIMIT 10")
    assert acked == first_ten[-1][0]
    assert query(central_env, "SELECT COUNT(*) FROM sync_applied_batch WHERE node_id = 'doi-1'")[0][0] == 2
    central_marks = query(central_env, "SELECT COUNT(*) FROM attendance")[0][0]

    # The link is back: the lost batch goes again (a replay at central), then the rest.
    again = sync({**field_env, "CHIBO_SYNC_BATCH_SIZE": "10"})
    assert again.returncode == 0, again.stdout + again.stderr
    field_rows = query(field_env, "SELECT id, hlc FROM attendance ORDER BY id")
    assert query(central_env, "SELECT id, hlc FROM attendance ORDER BY id") == field_rows
    assert len(field_rows) >= 48 and central_marks < len(field_rows)
    assert query(field_env, "SELECT id, hlc FROM meeting ORDER BY id") == query(
        central_env, "SELECT id, hlc FROM meeting ORDER BY id")
    # Each change of the node is once in central's feed: the replayed batch was not applied twice.
    doubled = query(central_env, "SELECT record_id, hlc, COUNT(*) FROM change_log WHERE origin = 'doi-1' "
                                 "GROUP BY record_id, hlc HAVING COUNT(*) > 1")
    assert doubled == []
    last = query(field_env, "SELECT MAX(seq) FROM change_log WHERE origin = 'doi-1'")[0][0]
    assert int(query(field_env, "SELECT value FROM sync_state WHERE key = 'pushed_seq'")[0][0]) == last


def test_a_central_of_the_previous_release_gets_plain_pushes(nodes):  # noqa: F811
    """A central whose handshake does not offer gzip (the previous release) gets uncompressed pushes."""
    central_env, field_env, _field_server, ids = nodes
    assert sync(field_env).returncode == 0
    run(field_env, "-c", WRITE_ROLL_CALLS, ids["cb02"], "3")
    relay = Relay(f"http://127.0.0.1:{central_env['CHIBO_PORT']}", old_central=True)
    try:
        done = run({**field_env, "CHIBO_CENTRAL_URL": relay.url, "CHIBO_SYNC_BATCH_SIZE": "10"}, "sync",
                   check=False)
    finally:
        relay.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert relay.pushes >= 2 and set(relay.encodings) == {""}, relay.encodings
    assert query(central_env, "SELECT id, hlc FROM attendance ORDER BY id") == query(
        field_env, "SELECT id, hlc FROM attendance ORDER BY id")
