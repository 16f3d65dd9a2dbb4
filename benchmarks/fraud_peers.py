"""The fraud benchmark's peers, each a process of its own (``python -m benchmarks.fraud_peers``):

* ``floor``: a plain kafka-python consume-decide-produce loop, the least a Python team
  would write: poll, decide each transaction against the card's state in a dict, send
  the decision keyed by ``tx_id``, flush, commit (at-least-once). The floor of what
  Python on this machine costs per transaction.
* ``quix``: a Quix Streams application (``pip install quixstreams``): the same rules in a
  stateful ``apply`` (per-card state in Quix's RocksDB store, its changelog topic on the
  broker), decisions to the output topic keyed by ``tx_id``.

Both decide with :class:`benchmarks.fraud_rules.PeerRules` (written apart from our engine).

    python -m benchmarks.fraud_peers floor --bootstrap_servers HOST:PORT --input tx \\
        --output decisions --rules docs/examples/fraud/rules.json --group g --start latest
"""

from __future__ import annotations

import argparse
import json
import tempfile
from typing import Any, Optional, Sequence

from benchmarks.fraud_rules import PeerRules, parse

__all__ = ["floor", "main", "quix"]


def floor(servers: str, source: str, output: str, rules_path: str, group: str, start: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    rules = PeerRules(rules_path)
    consumer = KafkaConsumer(source, bootstrap_servers=servers, group_id=group,
                             enable_auto_commit=False, auto_offset_reset=start,
                             max_poll_records=2000, fetch_max_wait_ms=10,
                             receive_message_max_bytes=1 << 30, session_timeout_ms=10000)
    producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
    states: dict[str, Any] = {}
    while True:
        polled = consumer.poll(timeout_ms=100)
        for records in polled.values():
            for record in records:
                tx = parse(record.value)
                if tx is None:
                    continue  # a real job would dead-letter it
                decision, states[tx["card_id"]] = rules.decide(tx, states.get(tx["card_id"]))
                producer.send(output, json.dumps(decision).encode(), key=tx["tx_id"].encode())
        if polled:
            producer.flush()  # decisions written before their offsets are committed
            consumer.commit()


def quix(servers: str, source: str, output: str, rules_path: str, group: str, start: str) -> None:
    from quixstreams import Application

    rules = PeerRules(rules_path)
    app = Application(broker_address=servers, consumer_group=group, auto_offset_reset=start,
                      state_dir=tempfile.mkdtemp(prefix="quix-state-"), loglevel="WARNING")
    transactions = app.topic(source, value_deserializer="bytes")
    decisions = app.topic(output, value_serializer="json", key_serializer="str")

    def decide(value: bytes, state) -> Optional[dict]:
        tx = parse(value)
        if tx is None:
            return None
        decision, card = rules.decide(tx, state.get("card"))
        state.set("card", card)
        return decision

    frame = app.dataframe(transactions)
    frame = frame.apply(decide, stateful=True)
    frame = frame.filter(lambda decision: decision is not None)
    frame.to_topic(decisions, key=lambda decision: decision["tx_id"])
    app.run()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fraud_peers")
    parser.add_argument("engine", choices=("floor", "quix"))
    parser.add_argument("--bootstrap_servers", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--start", choices=("earliest", "latest"), default="latest")
    args = parser.parse_args(argv)
    run = floor if args.engine == "floor" else quix
    run(args.bootstrap_servers, args.input, args.output, args.rules, args.group, args.start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
