"""The acceptance of issue 22 through Kafka: the same unseen transactions, produced to a
topic keyed by card (each card's transactions in event-time order), decided by a
streaming run (Kafka in, Kafka out) give exactly the reference's decisions, each message
keyed by its tx_id; block and review decisions also reach topics of their own."""

from __future__ import annotations

import json

import pytest

from beam_pipelines import fraud
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.polling import wait_for
from tests.transforms.fraud.support import tx_line

from .kafka_support import TopicReader, ordered_lines, produce
from .support import (
    EXAMPLE_RULES,
    decision_table,
    expected_table,
    fresh_seed,
    reference,
    transactions,
)

pytestmark = pytest.mark.integration


def test_a_kafka_stream_gets_the_reference_decisions_keyed_by_tx_id(kafka_broker, kafka_topic,
                                                                     tmp_path):
    seed = fresh_seed()
    lines = transactions(seed, 1500)
    want = reference(lines)
    servers = kafka_broker.bootstrap_servers
    source, output = kafka_topic(2, "tx"), kafka_topic(1, "decisions")
    blocked, review = kafka_topic(1, "blocked"), kafka_topic(1, "review")
    produce(servers, source, ordered_lines(lines))
    dead = tmp_path / "rejected"

    run = fraud.FRAUD.launch([
        f"--rules={EXAMPLE_RULES}", "--source=kafka", f"--bootstrap_servers={servers}",
        f"--topic={source}", "--start_at=earliest", "--sink=kafka", f"--output={output}",
        f"--route_decisions=block={blocked},review={review}", f"--dead_letter={dead}"])
    decisions, routed_block, routed_review = (TopicReader(servers, t) for t in (output, blocked, review))
    try:
        assert run.streaming and fraud.single_process(run.options, run.streaming)
        wait_for(lambda: len(decisions.poll()) >= len(want.decisions), timeout=120,
                 what=f"{len(want.decisions)} decisions (seed {seed})", interval=0.2)
        wait_for(lambda: len(read_jsonl(str(dead / "*.jsonl"))) >= len(want.invalid),
                 timeout=60, what="the dead letters", interval=0.2)
        expected_routes = {verdict: sum(d["decision"] == verdict for d in want.decisions)
                           for verdict in ("block", "review")}
        wait_for(lambda: len(routed_block.poll()) >= expected_routes["block"]
                 and len(routed_review.poll()) >= expected_routes["review"],
                 timeout=60, what="the routed decisions", interval=0.2)
    finally:
        run.result.cancel()
        for reader in (decisions, routed_block, routed_review):
            reader.close()

    messages = decisions.messages
    assert len(messages) == len(want.decisions), f"seed {seed}: one message per transaction"
    assert all(key == value["tx_id"].encode() for key, value in messages)
    assert decision_table(value for _, value in messages) == expected_table(want), f"seed {seed}"
    letters = read_jsonl(str(dead / "*.jsonl"))
    assert len(letters) == len(want.invalid)
    assert {letter["origin"]["topic"] for letter in letters} == {source}
    for reader, verdict in ((routed_block, "block"), (routed_review, "review")):
        assert sorted(value["tx_id"] for _, value in reader.messages) == sorted(
            d["tx_id"] for d in want.decisions if d["decision"] == verdict)
        assert all(key == value["tx_id"].encode() for key, value in reader.messages)


def _send(servers: str, topic: str, messages: list[tuple[object, object]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    for key, value in messages:
        producer.send(topic, value, key=key)
    producer.flush()
    producer.close()


def test_a_blocklist_follows_a_kafka_topic_while_the_stream_runs(kafka_broker, kafka_topic,
                                                                  tmp_path, capsys):
    servers = kafka_broker.bootstrap_servers
    listed, source, output = kafka_topic(1, "blocked"), kafka_topic(1, "tx"), kafka_topic(1, "out")
    # Keys are values; a tombstone unblocks; a message without a key blocks its value.
    _send(servers, listed, [(b"evil", b"1"), (b"gone", b"1"), (b"gone", None),
                            (None, b" shady \n")])
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps([{"name": "listed", "kind": "blocklist", "action": "block",
                                  "field": "merchant", "list": f"kafka://{listed}"}]))
    missing = tmp_path / "missing.json"
    missing.write_text(rules.read_text().replace(listed, "no_such_topic"))
    assert fraud.main([f"--rules={missing}", f"--bootstrap_servers={servers}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: --rules: rule 'listed': field 'list': cannot open kafka://no_such_topic: topic "
        "'no_such_topic' does not exist"), err

    run = fraud.FRAUD.launch([
        f"--rules={rules}", "--source=kafka", f"--bootstrap_servers={servers}",
        f"--topic={source}", "--start_at=earliest", "--sink=kafka", f"--output={output}"])
    decisions = TopicReader(servers, output)
    sent = iter(range(10**6))

    def decided(merchant: str) -> str:
        """Send a transaction at ``merchant`` and wait for its decision."""
        tx_id = f"tx-{next(sent)}"
        _send(servers, source, [(b"card", tx_line(tx_id, merchant=merchant))])
        found = wait_for(lambda: [v["decision"] for _, v in decisions.poll() if v["tx_id"] == tx_id],
                         timeout=60, what=f"the decision of {tx_id}", interval=0.1)
        return found[0]

    try:
        assert [decided(m) for m in ("evil", "shady", "gone", "fine")] == [
            "block", "block", "allow", "allow"]
        _send(servers, listed, [(b"fine", b"1"), (b"evil", None)])
        # Applied while the stream runs: a later transaction at "fine" is blocked.
        wait_for(lambda: decided("fine") == "block", timeout=60, what="'fine' blocked",
                 interval=0.2)
        assert decided("evil") == "allow"
    finally:
        run.result.cancel()
        decisions.close()
