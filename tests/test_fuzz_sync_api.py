"""Fuzz of the sync API's envelope (issue 8): malformed requests get a clear 4xx, never a 500 nor a
partial write. Shapes and junk payloads only: the change format itself is the sync engine's."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import SYNCED_MODELS, Cell, ChangeLog, Member, Organisation, db

NODE = "doi-1"
ENDPOINTS = ("/sync/v1/hello", "/sync/v1/push")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
envelope_keys = st.sampled_from(["batch_id", "node_id", "schema_version", "from_seq", "to_seq", "content_hash",
                                 "changes", "app_version", "clock", "generation", "database_id"])
envelopes = st.dictionaries(envelope_keys, json_values, max_size=8)
change_like = st.fixed_dictionaries({
    "table": st.sampled_from(sorted(SYNCED_MODELS) + ["khong_co", ""]),
    "record_id": st.text(max_size=40),
    "hlc": st.text(max_size=70),
    "payload": json_values,
})
bodies = st.one_of(
    envelopes.map(lambda e: json.dumps(e).encode()),
    st.builds(lambda e, ch: json.dumps({**e, "changes": ch}).encode(), envelopes, st.lists(change_like, max_size=3)),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(min_value=50, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=50, max_value=3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


@pytest.fixture
def central(app, runner):
    """Central with a cell handed to doi-1 and doi-1's token."""
    with app.app_context(), db.connection_context():
        o = Organisation.create(name="Đảng bộ Fuzz")
        Cell.create(organisation=o.id, code="CB02", name="Chi bộ Hai")
    result = runner.invoke(args=["nodes", "register", NODE, "--cells", "CB02"])
    assert result.exit_code == 0, result.output
    return app, result.output.strip().splitlines()[-1]


def _counts(app) -> dict[str, int]:
    with app.app_context(), db.connection_context():
        out = {name: model.select().count() for name, model in SYNCED_MODELS.items()}
        out["change_log"] = ChangeLog.select().count()
        return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
def test_malformed_bodies_get_a_4xx_and_write_nothing(central, endpoint, body):
    """Any junk body gets a JSON 4xx with a message and changes no row."""
    app, token = central
    client = app.test_client()
    before = _counts(app)
    response = client.post(endpoint, data=body, headers={"Authorization": f"Bearer {token}"},
                           content_type="application/json")
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        payload = response.get_json()
        assert payload and payload.get("message")
        assert "Traceback" not in payload["message"] and "Expecting" not in payload["message"]
        assert _counts(app) == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cursor=st.one_of(st.integers(min_value=-(2 ** 70), max_value=2 ** 70).map(str),
                        st.text(max_size=30), st.just("9" * 40), st.just("²")),
       limit=st.one_of(st.none(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70).map(str), st.text(max_size=8)))
def test_pull_with_any_cursor_never_fails(central, cursor, limit):
    """pull?cursor= of any text (beyond 64 bits included) is a page or a 400, never a 500."""
    app, token = central
    params = {"cursor": cursor} if limit is None else {"cursor": cursor, "limit": limit}
    response = app.test_client().get("/sync/v1/pull", query_string=params,
                                     headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:300]


def test_cursor_beyond_64_bits_is_a_clear_400(central):
    """The case the review found: a 2**64 cursor was a 500."""
    app, token = central
    response = app.test_client().get(f"/sync/v1/pull?cursor={2 ** 64}", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400 and "cursor" in response.get_json()["message"]


def test_deeply_nested_json_is_a_clear_400(central):
    """100,000 nested lists were a RecursionError (500); now a 400 with a Vietnamese message."""
    app, token = central
    body = b"[" * 100_000 + b"]" * 100_000
    response = app.test_client().post("/sync/v1/push", data=body, content_type="application/json",
                                      headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400 and "JSON" in response.get_json()["message"]


def test_nesting_past_32_levels_is_refused_before_anything_walks_it(central):
    """33 nested objects (well within the parser's reach) are refused; 32 pass on to the envelope's checks."""
    app, token = central

    def nested(levels: int) -> bytes:
        return b'{"a":' * (levels - 1) + b'[1, "x", null]' + b"}" * (levels - 1)  # `levels` containers

    headers = {"Authorization": f"Bearer {token}"}
    deep = app.test_client().post("/sync/v1/push", data=nested(33), content_type="application/json", headers=headers)
    assert deep.status_code == 400 and "lồng nhau quá sâu" in deep.get_json()["message"]
    fits = app.test_client().post("/sync/v1/push", data=nested(32), content_type="application/json", headers=headers)
    assert fits.status_code == 400 and "lồng nhau" not in fits.get_json()["message"]


def test_bad_json_message_does_not_echo_python(central):
    """The bad_json message is ours, not the parser's ("Expecting value: line 1 column 1")."""
    app, token = central
    response = app.test_client().post("/sync/v1/push", data=b"{nope", content_type="application/json",
                                      headers={"Authorization": f"Bearer {token}"})
    message = response.get_json()["message"]
    assert response.status_code == 400 and "Expecting" not in message and "line 1" not in message
