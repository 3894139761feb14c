"""The shortcuts that make sync fast give exactly what the plain code gives (issue 10, speed work).

- `from_wire` converts with a converter chosen once per field: it accepts, refuses and returns
  exactly what `_from_json` does, for every column of every synced model.
- A pushed batch's body is assembled around the changes encoded once for the content hash: it is
  byte for byte `canonical_json` of the wire dict (what the hash and the size limit are defined on).
"""
from __future__ import annotations

import datetime as dt

import pytest

from models.base import SYNCED_MODELS, _from_json, model_spec, sparse_stamps
from sync.outbox import Batch
from sync.protocol import canonical_json, content_hash

VALUES = [None, "", "a", "x" * 36, "x" * 37, "x" * 300, "x" * 70000, "\x00", "a\x00b", "\ud800", "é", "ệ" * 40, 0, 1,
          -1, 2 ** 63, -(2 ** 63), 2 ** 63 - 1, True, False, 1.5, float("nan"), float("inf"), "2024-01-01",
          "2024-01-01T10:00:00", "2024-01-01 10:00:00.123456", "10:00", "25:00", "bad", [], {}, 3.0,
          dt.datetime(2024, 1, 1)]


def _outcome(convert, value):
    try:
        return ("ok", repr(convert(value)))
    except (TypeError, ValueError, OverflowError):
        return ("refused",)


@pytest.mark.parametrize("table", sorted(SYNCED_MODELS))
def test_field_converters_are_from_json(table):
    """Every column's precomputed converter agrees with `_from_json` on awkward values."""
    for column, field, _name, convert, _optional in model_spec(SYNCED_MODELS[table]).wire:
        for value in VALUES:
            assert _outcome(convert, value) == _outcome(lambda v: _from_json(field, v), value), (column, value)


def test_batch_body_is_canonical_json_of_the_wire():
    """The body assembled from the encoded changes is canonical_json(to_wire() + extra)."""
    changes = [{"table": "attendance", "record_id": f"r{i}", "hlc": "000000000000001:000000:doi-1",
                "payload": {"fields": {"status": "present", "reason": "ốm\u2028\"", "n": [1, 2.5, None, True]},
                            "by": "u", "new": True}} for i in range(3)]
    batch = Batch(batch_id="b", node_id='doi-1', from_seq=1, to_seq=3, changes=changes,
                  content_hash=content_hash(changes), schema_version=5, encoded_changes=canonical_json(changes))
    assert batch.canonical_body() == canonical_json(batch.to_wire())
    wire = batch.to_wire()
    wire.update(db_id="d-1", generation=2)
    assert batch.canonical_body(db_id="d-1", generation=2) == canonical_json(wire)
    assert Batch(**{**batch.__dict__, "encoded_changes": b""}).canonical_body() == canonical_json(batch.to_wire())


def test_sparse_stamps_shortcut():
    """All columns at the row's stamp: '' (said without sorting); otherwise the listed forms."""
    assert sparse_stamps({"a": "2", "b": "2"}, "2") == ""
    assert sparse_stamps({"a": "1", "b": "2"}, "2") == '{"a":"1"}'


def test_the_reused_payload_encoder_writes_what_json_dumps_writes():
    """The change log's payload text is json.dumps(..., ensure_ascii=False, compact) for any JSON value."""
    import json
    import random

    from models.rowcache import _ENCODE_PAYLOAD

    rng = random.Random(3)

    def value(depth=0):
        roll = rng.random()
        if depth < 2 and roll < 0.15:
            return {f"k{i}é": value(depth + 1) for i in range(rng.randint(0, 4))}
        if depth < 2 and roll < 0.25:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return rng.choice([None, True, False, 0, -5, 2 ** 70, 1.5, 1e-300, "", "Nguyễn Văn A", "a\"b\\c\n\u2028",
                           "\x00x", "😀", float("nan")])
    for _ in range(5000):
        payload = {"fields": {f"c{i}": value() for i in range(rng.randint(0, 8))}, "owner": "doi-1"}
        assert _ENCODE_PAYLOAD(payload) == json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    with pytest.raises(TypeError):
        _ENCODE_PAYLOAD({"fields": {"x": object()}})
