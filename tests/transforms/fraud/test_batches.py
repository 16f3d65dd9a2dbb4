"""The batched path: the msgspec parser of a poll against the per-record contract (a
property test over random and hostile messages), and the one-process decide step
(``single_process=True``) against the reference, fed poll-sized RawBatches."""

from __future__ import annotations

import json
import math
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_stream  # not by name: pytest would collect TestStream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines.testing.collect import collect
from transforms.fraud import DecideTransactions, load_rules, parse_transaction, rules_from_document
from transforms.fraud.batches import parse_transaction_payloads
from transforms.fraud.generate import INVALID_KINDS, SyntheticTransactions, invalid_payload
from transforms.fraud.transforms import DEAD_LETTERS, _ParseToBatches
from transforms.parse import is_blank, parse_or_reject
from transforms.records import RawBatch, RawRecord
from transforms.sinks.dead_letter_sink import each_dead_letter
from transforms.validation import InvalidRecord

from .reference import parse_line, reference_decisions
from .support import T0, event_time_order, expected, table, tx_line
from .test_transforms import EXAMPLE_RULES, MULTI_KEY

pytestmark = pytest.mark.unit

# ---- the parser: the same transactions, values and rejects as the per-record contract ----

_FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30), st.text(max_size=6),
    st.sampled_from(["EUR", "DE", "eur", "EURO", "", "tx", "2024-01-01T00:00:00Z",
                     "2024-01-01T00:00:00", "2024-02-30T00:00:00+01:00", "1704067200"]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=2),
)
_NUMBER_TEXT = st.sampled_from([
    "0", "-0", "0.0", "1", "42.5", "1e2", "1E-2", "-12.75", "90", "90.0000001", "-180", "180.5",
    "1704067200", "1704067200.999999999", "946684799.9999999", "4102444800", "4102444799.5",
    "1e400", "1" * 320, "0.1000000000000000055511151231257827", "2000.0000000000000000001",
    "true", "null", '"12"', "[1]",
])


@st.composite
def messages(draw) -> bytes:
    """A transaction-like JSON object with some fields missing, retyped or hostile, or a
    message that is not one at all."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.sampled_from([
            b"", b"   ", b"{", b"[]", b"null", b'"x"', b"\xef\xbb\xbf{}", b"{\"tx_id\": \"\\ud800\"}",
            b'{"tx_id": 1e999}', b"{}" + b" " * 2000, b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}",
            b'{"a": ' + b"9" * 5000 + b"}", b"\xff\xfe", b'{"x": NaN}', b"{} {}",
        ]))
    fields = {"tx_id": '"tx-1"', "card_id": '"c-1"', "amount": "12.5", "currency": '"EUR"',
              "merchant": '"m"', "country": '"DE"', "lat": "52.5", "lon": "13.4",
              "timestamp": "1704067200"}
    for name in list(fields):
        roll = draw(st.integers(0, 12))
        if roll == 0:
            del fields[name]
        elif roll == 1:
            fields[name] = json.dumps(draw(_FIELD_VALUES))
        elif roll == 2 and name in ("amount", "lat", "lon", "timestamp"):
            fields[name] = draw(_NUMBER_TEXT)
    if draw(st.booleans()):
        fields["extra"] = json.dumps({"nested": [1, {"deep": "\u00e9"}]})
    if draw(st.integers(0, 5)) == 0:  # a duplicated key: the last one counts
        fields = {**fields, "amount": "1"}
        text = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + ', "amount": 3}'
    else:
        text = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
    data = text.encode("utf-8")
    if draw(st.integers(0, 20)) == 0:
        data = data.replace(b'"m"', b'"m\xff"')  # invalid UTF-8 inside a value
    return data


def _per_record(payload: bytes):
    return None if is_blank(payload) else parse_or_reject(parse_transaction, payload)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(messages(), max_size=12))
def test_the_batch_parser_accepts_exactly_what_the_contract_accepts_with_equal_values(payloads):
    parsed = parse_transaction_payloads(payloads)
    fast = {index: (tx, second) for index, tx, second in parsed.valid}
    assert sorted([*fast, *(i for i, _ in parsed.handed_over)]) == list(range(len(payloads)))
    for index, payload in enumerate(payloads):
        want = _per_record(payload)
        if index in fast:
            assert not isinstance(want, InvalidRecord) and want is not None, payload
            assert fast[index] == want
            assert [type(v) for v in fast[index][0]] == [type(v) for v in want[0]]


def _parse_dofn(element, resume=None) -> tuple[list, list]:
    """(TransactionBatches, dead letters) of the batched parse step for one element."""
    batches, letters = [], []
    for output in _ParseToBatches("fraud", "parse", resume).process(element):
        if isinstance(output, beam.pvalue.TaggedOutput):
            assert output.tag == DEAD_LETTERS
            letters.extend(each_dead_letter(output.value))
        else:
            batches.append(output.value)
    return batches, letters


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(messages(), min_size=1, max_size=12))
def test_a_poll_gives_the_same_transactions_and_dead_letters_as_its_records(payloads):
    origin = {"source": "kafka", "topic": "tx", "partition": 3}
    offsets = list(range(500, 500 + len(payloads)))
    batch = RawBatch(payloads, origin, "offset", offsets)
    from_batch, batch_letters = _parse_dofn(batch)
    one_by_one = [_parse_dofn(RawRecord(p, batch.origin_of(i))) for i, p in enumerate(payloads)]
    record_txs = [tx for batches, _ in one_by_one for b in batches for tx in b.transactions]
    record_letters = [letter for _, letters in one_by_one for letter in letters]
    assert [tx for b in from_batch for tx in b.transactions] == record_txs
    assert [(x.reason, x.reason_code, x.payload, x.payload_encoding, x.origin, x.step)
            for x in batch_letters] == [
        (x.reason, x.reason_code, x.payload, x.payload_encoding, x.origin, x.step)
        for x in record_letters]
    if from_batch:
        (only,) = from_batch
        assert only.positions == [b.origin["offset"] for bs, _ in one_by_one for b in bs]
        assert only.seconds == [s for bs, _ in one_by_one for b in bs for s in b.seconds]


def test_every_invalid_kind_is_handed_over_and_every_valid_form_parsed_in_one_pass():
    lines = list(SyntheticTransactions(seed=3, dirty=0.1).payloads(3000))
    lines += [invalid_payload(json.loads(lines[0]), kind) for kind in INVALID_KINDS
              if kind not in ("invalid_utf8", "truncated_json", "nan_literal")]
    parsed = parse_transaction_payloads(lines)
    valid = {index for index, _, _ in parsed.valid}
    for index, line in enumerate(lines):
        assert (index in valid) == (parse_line(line) is not None)  # the reference agrees


def test_replayed_records_rebuild_state_but_are_neither_counted_nor_dead_lettered():
    payloads = [tx_line("a", t=T0), b"{", tx_line("b", t=T0 + 1), b"", b"[", tx_line("c", t=T0 + 2)]
    batch = RawBatch(payloads, {"source": "kafka", "topic": "tx", "partition": 0}, "offset",
                     list(range(10, 16)))
    batches, letters = _parse_dofn(batch, resume={("tx", 0): 13})
    (only,) = batches
    assert [t.tx_id for t in only.transactions] == ["a", "b", "c"]
    assert only.replayed == 2 and only.positions == [10, 12, 15]
    assert [x.origin["offset"] for x in letters] == [14]  # offset 11 was dead-lettered before
    single = _parse_dofn(RawRecord(payloads[0], {"source": "kafka", "topic": "tx", "partition": 0,
                                                 "offset": 10}), resume={("tx", 0): 13})[0]
    assert single[0].replayed == 1
    other_partition = _parse_dofn(batch._replace(origin={"source": "kafka", "topic": "tx",
                                                         "partition": 1}), {("tx", 0): 13})[0]
    assert other_partition[0].replayed == 0


# ---- one process: poll-sized batches, one stateful step --------------------------------

def _polls(records: list[RawRecord], size: int, seed: int = 0) -> list[RawBatch]:
    """Records as RawBatches of 1..size lines each (a file's lines, numbered by line)."""
    rnd = random.Random(seed)
    polls, start = [], 0
    while start < len(records):
        take = rnd.randint(1, size)
        part = records[start:start + take]
        polls.append(RawBatch([r.payload for r in part], {"source": "file", "file": "input.jsonl"},
                              "line", [r.origin["line"] for r in part]))
        start += take
    return polls


def run_single_process(elements: list, rules, *, state_ttl=30 * 86400, resume=None,
                       per_element: int = 1):
    """(decisions, dead letters) of DecideTransactions(single_process=True) fed by a
    TestStream whose watermark follows the earliest event time of what was added."""
    stream = test_stream.TestStream()
    watermark = -math.inf
    for start in range(0, len(elements), per_element):
        part = elements[start:start + per_element]
        payloads = [p for e in part for p in (e.payloads if isinstance(e, RawBatch) else [e.payload])]
        times = [tx["t"] for p in payloads if (tx := parse_line(p)) is not None]
        if times and math.floor(min(times)) > watermark:
            watermark = math.floor(min(times))
            stream = stream.advance_watermark_to(watermark)
        stream = stream.add_elements(part)
    stream = stream.advance_watermark_to_infinity()
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
    result = pipeline | stream | DecideTransactions(rules, streaming=True, single_process=True,
                                                      state_ttl=state_ttl, resume=resume)
    decisions, dead = collect(result.decisions), collect(result.dead_letters)
    pipeline.run().wait_until_finish()
    return decisions.items, [letter for item in dead.items for letter in each_dead_letter(item)]


@pytest.fixture(scope="module")
def sample() -> list[bytes]:
    return list(SyntheticTransactions(seed=23, cards=120, rate=1.0, dirty=0.06, burst=0.03,
                                      spike=0.03, far_away=0.02, blocked=0.02, tie=0.03,
                                      out_of_order=0.05).payloads(1200))


def test_polls_in_event_time_order_equal_the_reference(sample):
    reference = reference_decisions(sample, EXAMPLE_RULES)
    decisions, dead = run_single_process(_polls(event_time_order_records(sample), 40),
                                         load_rules(EXAMPLE_RULES), per_element=2)
    assert table(decisions) == expected(reference)
    assert sorted(d.origin["line"] for d in dead) == reference.invalid


def test_rules_on_several_key_fields_need_no_merge_in_one_process(sample):
    reference = reference_decisions(sample, [dict(r) for r in MULTI_KEY])
    decisions, _ = run_single_process(_polls(event_time_order_records(sample), 25, seed=4),
                                      rules_from_document(MULTI_KEY))
    assert table(decisions) == expected(reference)


def test_the_sweep_forgets_keys_like_the_per_key_timer():
    # As test_transforms' expiry test: a late transaction after the watermark passed the
    # key's latest + TTL is decided without the history.
    rules = rules_from_document([{"name": "spike", "kind": "amount_spike", "action": "review",
                                  "factor": 2, "history": 5, "min_history": 2}])
    first = [RawRecord(tx_line("h1", amount=100, t=T0), {"line": 1}),
             RawRecord(tx_line("h2", amount=100, t=T0 + 1), {"line": 2})]
    late = RawRecord(tx_line("late", amount=1000, t=T0 + 50), {"line": 3})

    def decide(watermark_after_history: int) -> list[str]:
        stream = (test_stream.TestStream().advance_watermark_to(T0).add_elements(first)
                  .advance_watermark_to(watermark_after_history).add_elements([late])
                  .advance_watermark_to_infinity())
        pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
        result = pipeline | stream | DecideTransactions(rules, streaming=True, state_ttl=100,
                                                          single_process=True)
        got = collect(result.decisions)
        pipeline.run().wait_until_finish()
        return {d.tx_id: d.rules for d in got.items}["late"]

    assert decide(T0 + 60) == ["spike"]
    assert decide(T0 + 102) == []


def test_a_replayed_prefix_gives_the_decisions_of_an_uninterrupted_run(sample):
    """What a restart does: the records before the resume offsets rebuild the state, and
    the decisions from there on equal those of a run that never stopped."""
    records = [RawRecord(line, {"source": "kafka", "topic": "tx", "partition": 0, "offset": i})
               for i, line in enumerate(event_time_order_lines(sample))]
    rules = load_rules(EXAMPLE_RULES)
    whole, _ = run_single_process(_kafka_polls(records, 30), rules)
    resume = len(records) // 2
    resumed, dead = run_single_process(_kafka_polls(records, 30), rules, resume={("tx", 0): resume})
    decided_after = {d.tx_id for d in whole} - {
        json.loads(r.payload)["tx_id"] for r in records[:resume] if parse_line(r.payload)}
    assert table(resumed) == {k: v for k, v in table(whole).items() if k in decided_after}
    assert all(letter.origin["offset"] >= resume for letter in dead)


def event_time_order_records(lines: list[bytes]) -> list[RawRecord]:
    return event_time_order(lines)


def event_time_order_lines(lines: list[bytes]) -> list[bytes]:
    return [r.payload for r in event_time_order(lines)]


def _kafka_polls(records: list[RawRecord], size: int) -> list[RawBatch]:
    return [RawBatch([r.payload for r in records[i:i + size]], {"source": "kafka", "topic": "tx",
                                                                "partition": 0},
                     "offset", [r.origin["offset"] for r in records[i:i + size]])
            for i in range(0, len(records), size)]

