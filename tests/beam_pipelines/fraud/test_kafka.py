"""The acceptance of issue 22 through Kafka: the same unseen transactions, produced to a
topic keyed by card (each card's transactions in event-time order), decided by a
streaming run (Kafka in, Kafka out) give exactly the reference's decisions, each message
keyed by its tx_id; block and review decisions also reach topics of their own."""

from __future__ import annotations

import pytest

from beam_pipelines import fraud
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.polling import wait_for

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
