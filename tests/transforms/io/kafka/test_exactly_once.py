"""Exactly-once to Kafka: a Kafka -> Kafka job killed with SIGKILL three times while it
runs, restarted each time from the committed offsets.

Each killed run stops at its round's last record once it has written it (the job's
``HOLD``), with that poll's reads still in flight. With ``exactly_once`` the sink writes in
transactions that also commit the consumed offsets: a ``read_committed`` consumer of the
output sees every input exactly once. The same job at least once (the default) loses
nothing either, but its kills land between a write and the commit of its offsets, so each
restart writes the held poll's records again: the duplicates it shows, counted in the
test's output, are why the option exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from beam_pipelines.testing.jobs import Job

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[4]
ROUND = 300  # input records per round


def produce(servers: str, topic: str, first: int, count: int) -> list[bytes]:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    values = [json.dumps({"i": i}).encode() for i in range(first, first + count)]
    for i, value in enumerate(values):
        producer.send(topic, value, partition=i % 2)
    producer.flush()
    producer.close()
    return values


def read_all(servers: str, topic: str, isolation_level: str) -> list[bytes]:
    """Every record of ``topic`` a consumer with ``isolation_level`` sees now (up to the
    end offsets it is shown: the last stable offsets for read_committed)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers, isolation_level=isolation_level,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=200).values():
                values += [r.value for r in records]
        return values
    finally:
        consumer.close()


def kill_three_times(servers: str, source: str, target: str, group: str, delivery: str,
                     tmp_path: Path) -> list[bytes]:
    """Three rounds of input, each run killed once the output has grown; then a last run
    that catches up. Returns the inputs sent."""
    isolation = "read_committed" if delivery == "exactly_once" else "read_uncommitted"
    sent: list[bytes] = []
    for kill_round in range(4):
        hold: list[str] = []
        if kill_round < 3:
            sent += produce(servers, source, len(sent), ROUND)
            hold = [sent[-1].decode()]
        job = Job.start([sys.executable, "-m", "tests.transforms.io.kafka.passthrough_job",
                         servers, source, target, group, delivery, *hold],
                        log=tmp_path / f"{delivery}{kill_round}.log", cwd=ROOT)
        try:
            if kill_round < 3:  # killed holding its last record, written, offsets in flight
                job.wait_for(lambda last=sent[-1]: last in read_all(servers, target,
                                                                    "read_uncommitted"),
                             f"round {kill_round} written up to its last record")
            else:
                job.wait_for(lambda want=set(sent): set(read_all(servers, target, isolation)) >= want,
                             "every input written")
        finally:
            job.kill()
    return sent


def test_exactly_once_survives_kills_without_duplicates(kafka_broker, kafka_topic, tmp_path):
    servers = kafka_broker.bootstrap_servers
    source, target = kafka_topic(2, "eos_in"), kafka_topic(1, "eos_out")
    sent = kill_three_times(servers, source, target, "eos", "exactly_once", tmp_path)
    committed = read_all(servers, target, "read_committed")
    assert sorted(committed) == sorted(sent)  # every input once: no loss, no duplicate
    aborted = len(read_all(servers, target, "read_uncommitted")) - len(committed)
    print(f"exactly_once: {len(sent)} inputs, each once; {aborted} records of aborted "
          "transactions a read_uncommitted consumer would also see")


def test_at_least_once_survives_kills_and_duplicates(kafka_broker, kafka_topic, tmp_path,
                                                        record_property):
    servers = kafka_broker.bootstrap_servers
    source, target = kafka_topic(2, "alo_in"), kafka_topic(1, "alo_out")
    sent = kill_three_times(servers, source, target, "alo", "at_least_once", tmp_path)
    written = read_all(servers, target, "read_uncommitted")
    assert set(written) == set(sent)  # nothing lost
    duplicates = len(written) - len(set(written))
    record_property("duplicates", duplicates)
    print(f"at_least_once: {len(sent)} inputs, {duplicates} written twice after the kills")
    assert duplicates >= 3  # every kill: at least the held record, written again
