"""The transactions contract: every accepted form, and one dead letter for every way to
break it, which is never decided and never enters any state."""

from __future__ import annotations

from decimal import Decimal

import pytest

from transforms.fraud import parse_transaction, rules_from_document
from transforms.fraud.generate import INVALID_KINDS, SyntheticTransactions, invalid_payload
from transforms.validation import InvalidRecord, decode_json_object

from .reference import parse_line
from .support import T0, Raw, run_batch, tx_line

pytestmark = pytest.mark.unit


def parse(line: bytes):
    return parse_transaction(decode_json_object(line))


@pytest.mark.parametrize("timestamp, exact", [
    (T0, Decimal(T0)),
    (Raw("1704067200.125"), Decimal("1704067200.125")),
    (Raw("1704067200.1234567"), Decimal("1704067200.1234567")),
    ("2024-01-01T00:00:00Z", Decimal(T0)),
    ("2024-01-01T01:00:00.000001+01:00", Decimal("1704067200.000001")),
    ("2023-12-31T19:00:00.5-05:00", Decimal("1704067200.5")),
])
def test_timestamps_in_every_form_are_exact(timestamp, exact):
    tx, whole = parse(tx_line("t", t=timestamp))
    assert tx.timestamp == exact and isinstance(tx.timestamp, Decimal)
    assert whole == T0


def test_numbers_are_kept_as_written_and_extra_fields_dropped():
    tx, _ = parse(tx_line("t", amount=Raw("19.99"), lat=Raw("-33.8688"), lon=Raw("151.2093"),
                          channel="pos", meta={"x": [1, 2]}))
    assert (tx.amount, tx.lat, tx.lon) == (Decimal("19.99"), Decimal("-33.8688"), Decimal("151.2093"))
    assert tx._fields == ("tx_id", "card_id", "amount", "currency", "merchant", "country", "lat",
                          "lon", "timestamp")
    assert parse(tx_line("t", amount=7, lat=90, lon=-180))[0][2:] == (
        Decimal(7), "EUR", "m-1", "DE", Decimal(90), Decimal(-180), Decimal(T0))


INVALID = [
    (b'{"tx_id": "t"', "invalid_json", "invalid JSON"),
    (b'["t"]', "not_an_object", "expected a JSON object, got array"),
    (b'{"tx_id": "\xff"}', "invalid_utf8", "not valid UTF-8"),
    (b"\xef\xbb\xbf" + tx_line("t"), "invalid_json", "BOM"),
    (tx_line("t", amount=Raw("NaN")), "invalid_json", "NaN is not valid JSON"),
    (tx_line("t").replace(b'"tx_id": "t", ', b""), "missing_field", "missing field 'tx_id'"),
    (tx_line(""), "empty_field", "field 'tx_id' is an empty string"),
    (tx_line("t", card=None), "null_field", "field 'card_id' is null"),
    (tx_line("t", card=4111), "wrong_type", "field 'card_id' must be a non-empty string, got number"),
    (tx_line("t", amount="10"), "wrong_type", "field 'amount' must be a number, got string"),
    (tx_line("t", amount=True), "wrong_type", "field 'amount' must be a number, got boolean"),
    (tx_line("t", amount=0), "out_of_range", "field 'amount' is out of range: 0 is not within (0, inf)"),
    (tx_line("t", amount=Raw("-0.01")), "out_of_range", "field 'amount' is out of range"),
    (tx_line("t", amount=Raw("1e400")), "wrong_type", "field 'amount' must be a finite number"),
    (tx_line("t", amount=Raw("1" + "0" * 400)), "wrong_type", "field 'amount' must be a finite number"),
    (tx_line("t", lat=Raw("-1" + "0" * 400)), "wrong_type", "field 'lat' must be a finite number"),
    (tx_line("t", currency="eur"), "invalid_format", "field 'currency' must be 3 uppercase ASCII letters, got 'eur'"),
    (tx_line("t", currency="EURO"), "invalid_format", "field 'currency' must be 3 uppercase ASCII letters"),
    (tx_line("t", currency="ÉUR"), "invalid_format", "field 'currency' must be 3 uppercase ASCII letters"),
    (tx_line("t", currency=978), "wrong_type", "field 'currency' must be 3 uppercase letters, got number"),
    (tx_line("t", merchant=""), "empty_field", "field 'merchant' is an empty string"),
    (tx_line("t", country="Germany"), "invalid_format", "field 'country' must be 2 uppercase ASCII letters"),
    (tx_line("t", lat=Raw("90.000001")), "out_of_range", "field 'lat' is out of range: 90.000001 is not within [-90, 90]"),
    (tx_line("t", lon=Raw("-180.5")), "out_of_range", "field 'lon' is out of range"),
    (tx_line("t", lat="48.8"), "wrong_type", "field 'lat' must be a number, got string"),
    (tx_line("t", lon=None), "null_field", "field 'lon' is null"),
    (tx_line("t", t="2024-01-01T00:00:00"), "invalid_time", "field 'timestamp' has no timezone offset"),
    (tx_line("t", t="yesterday"), "invalid_time", "is not epoch seconds or an ISO-8601 time"),
    (tx_line("t", t=False), "wrong_type", "field 'timestamp' must be epoch seconds"),
    (tx_line("t", t=946_684_799), "out_of_range", "field 'timestamp' is out of range"),
    (tx_line("t", t="2100-01-01T00:00:00Z"), "out_of_range", "field 'timestamp' is out of range"),
]


@pytest.mark.parametrize("line, code, reason", INVALID, ids=[f"{c}-{i}" for i, (_, c, _) in enumerate(INVALID)])
def test_each_invalid_form_is_rejected_with_a_reason(line, code, reason):
    with pytest.raises(InvalidRecord) as caught:
        parse(line)
    assert caught.value.code == code
    assert reason in str(caught.value)
    assert parse_line(line) is None  # the reference agrees


def test_the_generators_invalid_kinds_are_all_rejected():
    base = next(SyntheticTransactions(seed=1).transactions(1))
    for kind in INVALID_KINDS:
        with pytest.raises(InvalidRecord):
            parse(invalid_payload(base, kind))


def test_invalid_lines_are_one_dead_letter_each_and_never_enter_state():
    rules = rules_from_document([
        {"name": "burst", "kind": "velocity", "action": "block", "window": 60, "max_count": 1},
        {"name": "spike", "kind": "amount_spike", "action": "review", "factor": 2, "history": 5,
         "min_history": 1},
    ])
    lines = [tx_line("first", amount=100, t=T0)]
    lines += [line for line, _, _ in INVALID]  # all for card-1 where they have a card
    lines += [b"", b"   ", tx_line("second", amount=150, t=T0 + 1)]
    decisions, dead = run_batch(lines, rules)
    # "second" sees only "first": count 2 > 1 fires, and 150 < 2 * 100 does not spike. Had
    # card-1's invalid lines (amount 0, -0.01...) entered the history, the mean would have
    # dropped and the spike fired.
    assert sorted((d.tx_id, d.rules) for d in decisions) == [("first", []), ("second", ["burst"])]
    assert sorted(d.origin["line"] for d in dead) == list(range(2, 2 + len(INVALID)))
    by_line = {d.origin["line"]: d for d in dead}
    for number, (line, code, reason) in enumerate(INVALID, start=2):
        letter = by_line[number]
        assert (letter.pipeline, letter.step, letter.reason_code) == ("fraud", "parse", code)
        assert reason in letter.reason
        assert letter.payload_bytes() == line
        assert letter.origin == {"source": "file", "file": "input.jsonl", "line": number}


def test_parse_transactions_is_the_projects_parse_step_for_this_contract():
    import apache_beam as beam

    from beam_pipelines.testing.collect import collect
    from transforms.fraud import ParseTransactions

    from .support import raw_records

    pipeline = beam.Pipeline()
    parsed = pipeline | beam.Create(raw_records([tx_line("t", amount=Raw("1.10")), b"[]"])) | ParseTransactions()
    valid, dead = collect(parsed.valid), collect(parsed.dead_letters)
    pipeline.run().wait_until_finish()
    assert [(tx.tx_id, tx.amount) for tx in valid.items] == [("t", Decimal("1.10"))]
    assert [(d.pipeline, d.reason_code, d.origin["line"]) for d in dead.items] == [
        ("fraud", "not_an_object", 2)]
