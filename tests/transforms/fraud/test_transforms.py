"""DecideTransactions in batch and in streaming (TestStream) against the reference: on
generated data with every contract form and invalid lines, with rules keyed by one field
and by several, stateless only, and with the state-expiry timer; the pipeline's shape."""

from __future__ import annotations

import os

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_stream  # not by name: pytest would collect TestStream

from beam_pipelines.testing.collect import collect
from transforms.fraud import DecideTransactions, load_rules, rules_from_document
from transforms.fraud import transforms as fraud_transforms
from transforms.fraud.generate import SyntheticTransactions
from transforms.sinks.dead_letter_sink import each_dead_letter

from .reference import parse_line, reference_decisions
from .support import (
    T0,
    event_time_order,
    expected,
    raw_records,
    run_batch,
    run_stream,
    table,
    tx_line,
)

pytestmark = pytest.mark.unit

EXAMPLE_RULES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "examples", "fraud",
                             "rules.json")


@pytest.fixture(scope="module")
def sample() -> list[bytes]:
    # 150 cards over ~25 minutes: bursts, spikes, far-away use, blocked merchants, ties,
    # lines out of event-time order, and 8% invalid lines of every kind.
    return list(SyntheticTransactions(seed=11, cards=150, rate=1.0, dirty=0.08, burst=0.03,
                                      spike=0.03, far_away=0.02, blocked=0.02, tie=0.03,
                                      out_of_order=0.05).payloads(1500))


@pytest.fixture(scope="module")
def sample_reference(sample):
    return reference_decisions(sample, EXAMPLE_RULES)


def test_sample_exercises_every_rule(sample_reference):
    fired = {name for d in sample_reference.decisions for name in d["rules"]}
    assert fired == {"large_amount", "card_burst", "amount_spike", "impossible_travel",
                     "blocked_merchant"} | (fired & {"very_large_amount"})
    assert {d["decision"] for d in sample_reference.decisions} == {"allow", "review", "block"}
    assert len(sample_reference.invalid) > 80


def test_batch_equals_the_reference(sample, sample_reference):
    decisions, dead = run_batch(sample, load_rules(EXAMPLE_RULES))
    assert table(decisions) == expected(sample_reference)
    assert sorted(d.origin["line"] for d in dead) == sample_reference.invalid


def test_streaming_in_event_time_order_equals_the_reference(sample, sample_reference):
    decisions, dead = run_stream(event_time_order(sample), load_rules(EXAMPLE_RULES), chunk=25)
    assert table(decisions) == expected(sample_reference)
    assert sorted(d.origin["line"] for d in dead) == sample_reference.invalid


def test_streaming_in_event_time_order_per_card_only_equals_the_reference(sample, sample_reference):
    # What a topic keyed by card delivers: each card's transactions in event-time order,
    # the cards interleaved arbitrarily (here: seeded random picks).
    import random

    per_card: dict[str, list] = {}
    for record in event_time_order(sample):
        tx = parse_line(record.payload)
        per_card.setdefault(tx["card_id"] if tx else "invalid", []).append(record)
    queues = list(per_card.values())
    rnd = random.Random(5)
    arrival = []
    while queues:
        queue = rnd.choice(queues)
        arrival.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    assert arrival != event_time_order(sample)
    decisions, dead = run_stream(arrival, load_rules(EXAMPLE_RULES), chunk=50, watermarks=False)
    assert table(decisions) == expected(sample_reference)
    assert len(dead) == len(sample_reference.invalid)


MULTI_KEY = [
    {"name": "card_burst", "kind": "velocity", "action": "block", "window": 60, "max_count": 3},
    {"name": "merchant_rush", "kind": "velocity", "action": "review", "key": "merchant",
     "window": 30, "max_count": 2},
    {"name": "country_rush", "kind": "velocity", "action": "review", "key": "country",
     "window": 5, "max_count": 3},
    {"name": "spike", "kind": "amount_spike", "action": "review", "factor": 4, "history": 10,
     "min_history": 2},
    {"name": "merchant_spike", "kind": "amount_spike", "action": "review", "key": "merchant",
     "factor": 10, "history": 50, "min_history": 5},
    {"name": "travel", "kind": "geo_velocity", "action": "block", "max_kmh": 1000},
    {"name": "big", "kind": "threshold", "action": "review", "field": "amount", "op": ">=", "value": 500},
]


def test_rules_keyed_by_several_fields_batch_and_streaming(sample):
    rules = rules_from_document(MULTI_KEY)
    assert rules.key_fields == ("card_id", "merchant", "country")
    want = expected(reference_decisions(sample, [dict(r) for r in MULTI_KEY]))
    assert {"merchant_rush", "country_rush", "merchant_spike"} <= {
        name for _, names, _, _ in want.values() for name in names}
    decisions, _ = run_batch(sample, rules)
    assert table(decisions) == want
    decisions, _ = run_stream(event_time_order(sample), rules, chunk=50)
    assert table(decisions) == want


def test_two_inputs_sharing_a_tx_id_are_two_decisions_with_several_keys():
    rules = rules_from_document(MULTI_KEY[:2])
    lines = [tx_line("dup", t=T0, merchant="m"), tx_line("dup", t=T0 + 1, merchant="m"),
             tx_line("x", t=T0 + 2, merchant="m")]
    for decisions, _ in (run_batch(lines, rules), run_stream(raw_records(lines), rules)):
        assert sorted((d.tx_id, d.timestamp, d.rules) for d in decisions) == [
            ("dup", "2024-01-01T00:00:00Z", []), ("dup", "2024-01-01T00:00:01Z", []),
            ("x", "2024-01-01T00:00:02Z", ["merchant_rush"])]


def test_stateless_rules_only(sample):
    document = [{"name": "big", "kind": "threshold", "action": "block", "field": "amount",
                 "op": ">", "value": 100},
                {"name": "gbp", "kind": "threshold", "action": "review", "field": "currency",
                 "op": "==", "value": "GBP"}]
    want = expected(reference_decisions(sample, document))
    rules = rules_from_document(document)
    assert table(run_batch(sample, rules)[0]) == want
    assert table(run_stream(raw_records(sample), rules, chunk=50, watermarks=False)[0]) == want


def _stateful_dofns(rules, streaming: bool, single_process: bool = False) -> list[str]:
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=streaming))
    _ = pipeline | beam.Create(raw_records([tx_line("a")])) | DecideTransactions(
        rules, streaming=streaming, single_process=single_process)
    found: list[str] = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.ParDo):
                found.append(type(node.transform.fn).__name__)
            elif isinstance(node.transform, beam.GroupByKey):
                found.append("GroupByKey")

    pipeline.visit(Visitor())
    return [name for name in found if name.startswith(("Decide", "Merge", "GroupByKey"))]


def test_one_key_field_is_one_stateful_stage_and_no_merge():
    one_key = load_rules(EXAMPLE_RULES)
    assert _stateful_dofns(one_key, streaming=True) == ["DecideInArrivalOrder"]
    assert _stateful_dofns(one_key, streaming=False) == ["GroupByKey", "DecideInEventTimeOrder"]
    several = rules_from_document(MULTI_KEY)
    assert _stateful_dofns(several, streaming=True) == ["DecideInArrivalOrder"] * 3 + [
        "MergeAsPartsArrive"]
    assert _stateful_dofns(several, streaming=False) == [
        "GroupByKey", "DecideInEventTimeOrder"] * 3 + ["GroupByKey", "MergeGroup"]
    assert _stateful_dofns(rules_from_document([MULTI_KEY[-1]]), streaming=True) == []
    # In one process: one stateful step for every key field, whatever the rules.
    for rules in (one_key, several, rules_from_document([MULTI_KEY[-1]])):
        assert _stateful_dofns(rules, streaming=True, single_process=True) == ["DecideBatches"]


def test_state_expiry_timer_clears_a_key_once_the_watermark_passes_latest_plus_ttl():
    rules = rules_from_document([{"name": "spike", "kind": "amount_spike", "action": "review",
                                  "factor": 2, "history": 5, "min_history": 2}])
    first = raw_records([tx_line("h1", amount=100, t=T0), tx_line("h2", amount=100, t=T0 + 1)])
    # Late: behind the watermark, at an event time where the history is still within the TTL.
    late = raw_records([tx_line("late", amount=1000, t=T0 + 50)])[0]._replace(
        origin={"source": "file", "file": "input.jsonl", "line": 3})

    def decide(watermark_after_history: int) -> list[str]:
        stream = (test_stream.TestStream().advance_watermark_to(T0).add_elements(first)
                  .advance_watermark_to(watermark_after_history).add_elements([late])
                  .advance_watermark_to_infinity())
        pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
        result = pipeline | stream | DecideTransactions(rules, streaming=True, state_ttl=100)
        got = collect(result.decisions)
        pipeline.run().wait_until_finish()
        return {d.tx_id: d.rules for d in got.items}["late"]

    # The engine alone keeps the history for "late" (T0+50 is within 100 s of T0+1)...
    assert decide(T0 + 60) == ["spike"]
    # ...but once the watermark passed T0+1+100 the timer has cleared the key: a transaction
    # that late is decided without it (docs/fraud.md: TTL and late data).
    assert decide(T0 + 102) == []


def test_decisions_are_timestamped_by_event_time_and_counted():
    rules = load_rules(EXAMPLE_RULES)
    pipeline = beam.Pipeline(options=PipelineOptions())
    result = (pipeline | beam.Create(raw_records([tx_line("a", t=T0 + 42.5), b"{"]))
              | DecideTransactions(rules, streaming=False))
    stamped = collect(result.decisions | beam.Map(
        lambda d, ts=beam.DoFn.TimestampParam: (d.tx_id, float(ts))))
    outcome = pipeline.run()
    outcome.wait_until_finish()
    assert stamped.items == [("a", T0 + 42.0)]
    counters = {c.key.metric.name: c.committed for c in outcome.metrics().query()["counters"]
                if c.key.metric.namespace == "fraud"}
    assert counters["decisions.allow"] == 1
    assert counters["events_parsed"] == 1 and counters["events_dead_lettered"] == 1


def test_constructor_checks_its_arguments():
    rules = load_rules(EXAMPLE_RULES)
    with pytest.raises(ValueError, match="^streaming: expected True or False, got 'yes'"):
        DecideTransactions(rules, streaming="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^state_ttl: expected at least the longest velocity window"):
        DecideTransactions(rules, streaming=True, state_ttl=30)
    with pytest.raises(ValueError, match="^single_process: expected False in batch"):
        DecideTransactions(rules, streaming=False, single_process=True)
    with pytest.raises(ValueError, match="^rules: expected a RuleSet"):
        DecideTransactions([{"name": "x"}], streaming=True)  # type: ignore[arg-type]
    assert fraud_transforms.PIPELINE == "fraud"


def test_raw_batches_from_a_topic_are_decided_per_record_with_offsets_as_origins():
    from transforms.records import RawBatch

    rules = load_rules(EXAMPLE_RULES)
    batch = RawBatch([tx_line(f"t{i}", t=T0 + i) for i in range(5)] + [b"{"],
                     {"source": "kafka", "topic": "tx", "partition": 0}, "offset",
                     list(range(100, 106)))
    for streaming, single_process in ((False, False), (True, False), (True, True)):
        pipeline = beam.Pipeline(options=PipelineOptions(streaming=streaming))
        # single_process keeps state as objects: a runner that holds state in memory (the
        # bundle-based one TestStream runs on), not the FnApiRunner Create runs on.
        source = (test_stream.TestStream().add_elements([batch]).advance_watermark_to_infinity()
                  if single_process else beam.Create([batch]))
        result = pipeline | source | DecideTransactions(
            rules, streaming=streaming, single_process=single_process)
        decisions, dead = collect(result.decisions), collect(result.dead_letters)
        pipeline.run().wait_until_finish()
        assert sorted((d.tx_id, d.rules) for d in decisions.items) == [
            ("t0", []), ("t1", []), ("t2", []), ("t3", ["card_burst"]), ("t4", ["card_burst"])]
        assert [d.origin for d in each(dead.items)] == [
            {"source": "kafka", "topic": "tx", "partition": 0, "offset": 105}]


def each(items) -> list:
    return [letter for item in items for letter in each_dead_letter(item)]
