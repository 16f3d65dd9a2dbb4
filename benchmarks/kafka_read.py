"""Records per second of a bounded ReadFromKafka, next to a plain kafka-python consumer loop.

    python benchmarks/kafka_read.py                      # 1M messages, a throw-away broker
    python benchmarks/kafka_read.py --count 200000 --partitions 8
    python benchmarks/kafka_read.py --bootstrap_servers localhost:9092 --topic bench  # yours

Without ``--bootstrap_servers`` it starts a local broker (``KafkaBroker``, noida-db) and
fills a topic with ``--count`` synthetic user events first. The baseline is the loop a
script would write: one consumer, all partitions assigned, ``poll()`` until the end
offsets, counting records. The pipeline is ``ReadFromKafka(stop_at="end") | Count``
on the default (batch) DirectRunner, so its number includes Beam's per-element
overhead; it is the number that matters for backfills. Not a test.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import uuid

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from beam_pipelines.produce import send
from beam_pipelines.testing.kafka import KafkaBroker
from transforms.io.kafka import ReadFromKafka, client_config
from transforms.io.synthetic.events import SyntheticEvents

# The test broker answers a fetch with everything it has, not fetch_max_bytes' worth, so
# both readers accept large responses (a real Kafka broker never needs this).
BIG_RESPONSES = {"receive_message_max_bytes": 1 << 30}


def plain_consumer(servers: str, topic: str) -> tuple[int, float]:
    from kafka import KafkaConsumer, TopicPartition

    started = time.perf_counter()
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                             max_poll_records=2000, **BIG_RESPONSES)
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
    end = consumer.end_offsets(tps)
    consumer.assign(tps)
    consumer.seek_to_beginning()
    count = 0
    while any(consumer.position(tp) < end[tp] for tp in tps):
        for records in consumer.poll(timeout_ms=1000).values():
            count += len(records)
    consumer.close()
    return count, time.perf_counter() - started


def beam_read(servers: str, topic: str) -> tuple[int, float]:
    started = time.perf_counter()
    pipeline = beam.Pipeline()
    read = pipeline | ReadFromKafka(servers, topic, start_at="earliest", stop_at="end",
                                    config=BIG_RESPONSES)
    _ = read.records | beam.combiners.Count.Globally()
    result = pipeline.run()
    result.wait_until_finish()
    seconds = time.perf_counter() - started
    found = result.metrics().query(
        MetricsFilter().with_namespace("kafka").with_name("records_read"))["counters"]
    return sum(c.committed or c.attempted or 0 for c in found), seconds


def fill(servers: str, topic: str, count: int) -> None:
    payloads = SyntheticEvents(seed=1, rate=1000.0).payloads(count)
    print(f"producing {count} events to {topic} ...", file=sys.stderr)
    send(client_config(servers), topic, payloads, total=count, progress=sys.stderr.isatty())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000,
                        help="Messages to produce and read (default 1M).")
    parser.add_argument("--partitions", type=int, default=4,
                        help="Partitions of the benchmark topic (default 4).")
    parser.add_argument("--bootstrap_servers", default=None,
                        help="Use this broker (and --topic as it is) instead of a local one.")
    parser.add_argument("--topic", default=None, help="Existing topic to read (with a broker).")
    args = parser.parse_args(argv)
    # `kill` (SIGTERM) stops the throw-away broker too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def run(servers: str, topic: str) -> None:
        rows = []
        for name, fn in (("kafka-python consumer loop", plain_consumer),
                         ("ReadFromKafka (Beam, batch)", beam_read)):
            count, seconds = fn(servers, topic)
            rows.append((name, count, seconds))
        print(f"\n{'reader':<30} {'records':>10} {'seconds':>9} {'records/s':>11}")
        for name, count, seconds in rows:
            print(f"{name:<30} {count:>10} {seconds:>9.2f} {count / seconds:>11,.0f}")
        base = rows[0][1] / rows[0][2]
        print(f"\nReadFromKafka runs at {rows[1][1] / rows[1][2] / base:.0%} of the plain loop.")

    if args.bootstrap_servers:
        if not args.topic:
            parser.error("--topic is required with --bootstrap_servers")
        run(args.bootstrap_servers, args.topic)
        return 0
    with KafkaBroker() as broker:
        topic = broker.create_topic(f"bench_{uuid.uuid4().hex[:8]}", args.partitions)
        fill(broker.bootstrap_servers, topic, args.count)
        run(broker.bootstrap_servers, topic)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
