"""The sample transactions: deterministic, every contract form, the dirty fraction, and
something for each kind of rule to find."""

from __future__ import annotations

import collections
import json

import pytest

from transforms.fraud import parse_transaction
from transforms.fraud.generate import (
    BLOCKED_MERCHANTS,
    INVALID_KINDS,
    SyntheticTransactions,
    write_transactions,
)
from transforms.validation import InvalidRecord, decode_json_object

from .reference import parse_line

pytestmark = pytest.mark.unit


def test_same_seed_same_lines_and_prefixes_are_stable():
    a = list(SyntheticTransactions(seed=3, dirty=0.1).payloads(500))
    assert a == list(SyntheticTransactions(seed=3, dirty=0.1).payloads(500))
    assert a[:200] == list(SyntheticTransactions(seed=3, dirty=0.1).payloads(200))
    assert a != list(SyntheticTransactions(seed=4, dirty=0.1).payloads(500))


def test_every_form_and_pattern_is_there():
    records = list(SyntheticTransactions(seed=5).records(5000))
    objs = [obj for obj, _ in records]
    assert all(obj is not None for obj in objs)
    forms = collections.Counter(
        "int" if isinstance(o["timestamp"], int) else "float" if isinstance(o["timestamp"], float)
        else "zulu" if o["timestamp"].endswith("Z") else "offset" for o in objs)
    assert set(forms) == {"int", "float", "zulu", "offset"}
    assert any(isinstance(o["amount"], int) for o in objs)
    assert any(isinstance(o["amount"], float) for o in objs)
    assert any(set(o) - {"tx_id", "card_id", "amount", "currency", "merchant", "country", "lat",
                         "lon", "timestamp"} for o in objs)
    assert {o["merchant"] for o in objs} >= set(BLOCKED_MERCHANTS)
    assert len({o["tx_id"] for o in objs}) == len(objs)
    assert len({o["card_id"] for o in objs}) > 900
    # Out of event-time order in the file, and equal timestamps for one card.
    times = [parse_line(p)["t"] for _, p in records]
    assert any(later < earlier for earlier, later in zip(times, times[1:], strict=False))
    per_card = collections.Counter((o["card_id"], t) for o, t in zip(objs, times, strict=True))
    assert max(per_card.values()) >= 2


def test_dirty_fraction_breaks_that_many_lines_in_many_ways():
    records = list(SyntheticTransactions(seed=9, dirty=0.2).records(4000))
    invalid = [payload for obj, payload in records if obj is None]
    assert 0.17 < len(invalid) / len(records) < 0.23
    codes = collections.Counter()
    for payload in invalid:
        with pytest.raises(InvalidRecord) as caught:
            parse_transaction(decode_json_object(payload))
        codes[caught.value.code] += 1
    assert set(codes) >= {"invalid_json", "not_an_object", "invalid_utf8", "missing_field",
                          "empty_field", "wrong_type", "out_of_range", "invalid_format",
                          "invalid_time", "null_field"}
    assert len(INVALID_KINDS) >= 20
    for obj, payload in records:
        if obj is not None:
            assert json.loads(payload) == obj
            parse_transaction(decode_json_object(payload))


def test_write_transactions(tmp_path):
    path = tmp_path / "tx.jsonl"
    valid = write_transactions(str(path), 300, seed=2, dirty=0.1)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 300
    assert valid == sum(parse_line(line) is not None for line in lines)
    with pytest.raises(ValueError, match="dirty must be a fraction in"):
        SyntheticTransactions(dirty=1.5)
