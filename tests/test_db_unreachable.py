"""A PostgreSQL host that stops answering fails a connection within seconds instead of hanging it.

The "host" is a socket that completes the TCP handshake (the kernel's backlog) but never says a word,
as a powered-off server behind a NAT or a firewall that drops packets looks to the client."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from peewee import OperationalError

from models import PG_CONNECTION, make_database


@pytest.fixture
def silent_host():
    """A listening socket nobody ever accepts or answers on; yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_a_silent_database_host_fails_the_connection_within_the_timeout(silent_host):
    """connect_timeout=2 in the URL: the connection attempt gives up after ~2 s with a driver error."""
    database = make_database(f"postgresql://chibo@127.0.0.1:{silent_host}/chibo?connect_timeout=2")
    outcome: list = []

    def connect() -> None:
        started = time.monotonic()
        try:
            database.connect()
        except OperationalError as exc:
            outcome.append((time.monotonic() - started, exc))

    attempt = threading.Thread(target=connect, daemon=True)  # a hang must fail the test, not CI
    attempt.start()
    attempt.join(8)
    assert outcome, "the connection attempt still hangs after 8 s"
    waited, _error = outcome[0]
    assert 1.5 <= waited < 8, waited


def test_the_default_bounds_connecting_and_watches_a_running_query():
    """Without anything in the URL a connection waits at most 10 s and TCP keepalives are on."""
    params = make_database("postgresql://chibo@127.0.0.1:5432/chibo").connect_params
    assert params["connect_timeout"] == PG_CONNECTION["connect_timeout"] == 10
    assert params["keepalives"] == 1 and params["keepalives_idle"] * 1 + params["keepalives_interval"] * 3 <= 90
