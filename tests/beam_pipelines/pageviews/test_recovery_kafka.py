"""Kill-and-restart of a streaming pageviews job over Kafka into PostgreSQL; consumer lag.

The job runs as a subprocess on the local streaming runner, is killed with SIGKILL (no
cleanup, like a lost machine) and restarted with a plain ``--start_at=committed``, three
times. The runner keeps window state in memory only, so it commits a record's offset only
once every window that counted it has written its last pane (transforms/delivery): the
restart re-reads exactly what the dead job had not finished, and skips what it re-reads
of windows already written. The final table must equal the counts of every event exactly
once; nothing about times is computed by the test or the operator.

Event times double as Kafka log times; events arrive a little out of order inside their
partition (so a poll holds records of a written window and of an open one), and a
"pusher" event per partition far ahead in event time moves the watermark so windows close
without waiting for idle timeouts. The pushers' window stays open at every kill.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from beam_pipelines import metrics
from beam_pipelines import options as opts
from beam_pipelines.options.metrics import MetricsOptions
from beam_pipelines.testing.jobs import Job
from beam_pipelines.testing.kafka import committed_count

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_700_000_100  # window-aligned: T0 % 60 == 0
WINDOW = 60
LATENESS = 30
PARTITIONS = 2
POLL = 10
GROUP = "pageviews_recovery"


def events(first_second: int, count: int, pages=("/a", "/b", "/c")) -> list[dict]:
    """``count`` events a second apart, every seventh one 8 s late (out of order within
    the allowed lateness)."""
    return [{"user_id": i, "action": "view", "page": pages[i % len(pages)],
             "timestamp": first_second + i - (8 if i % 7 == 6 else 0)} for i in range(count)]


def produce(servers: str, topic: str, batch: list[dict], pusher_second: int) -> list[dict]:
    """The batch spread over the partitions, then one pusher event in every partition."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    sent = []
    for i, event in enumerate(batch):
        producer.send(topic, json.dumps(event).encode(), partition=i % PARTITIONS,
                      timestamp_ms=event["timestamp"] * 1000)
        sent.append(event)
    for p in range(PARTITIONS):
        pusher = {"user_id": 99, "action": "view", "page": "/pusher", "timestamp": pusher_second}
        producer.send(topic, json.dumps(pusher).encode(), partition=p,
                      timestamp_ms=pusher_second * 1000)
        sent.append(pusher)
    producer.flush()
    producer.close()
    return sent


def expected_counts(sent: list[dict], before: int) -> dict[tuple[int, str], int]:
    """Counts per (window start, page) of the windows starting before ``before``."""
    counts: dict[tuple[int, str], int] = {}
    for event in sent:
        key = (event["timestamp"] // WINDOW * WINDOW, event["page"])
        if key[0] < before:
            counts[key] = counts.get(key, 0) + 1
    return counts


def table(dsn: str) -> dict[tuple[int, str], int]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('page_views')").fetchone()[0]
        if not exists:
            return {}
        rows = conn.execute("SELECT extract(epoch FROM window_start)::bigint, page, count "
                            "FROM page_views").fetchall()
    return {(start, page): count for start, page, count in rows}


def start_job(servers: str, topic: str, dsn: str, log: Path) -> Job:
    return Job.start([
        sys.executable, "-m", "beam_pipelines.pageviews", "--source=kafka",
        f"--bootstrap_servers={servers}", f"--topic={topic}", f"--consumer_group={GROUP}",
        "--start_at=committed", f"--window_size={WINDOW}", f"--allowed_lateness={LATENESS}",
        "--idle_timeout=600",
        # Small polls, as a live stream has them (a backlog comes in polls of 2000).
        f"--kafka_config=max_poll_records={POLL}",
        "--sink=postgres", f"--output={dsn}", "--output_table=page_views"], log=log, cwd=ROOT)


def test_kill_and_committed_restart_counts_every_event_once_three_times(
        kafka_broker, kafka_topic, postgres_dsn, tmp_path):
    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(PARTITIONS, "recovery")
    sent: list[dict] = []
    for kill_round in range(3):
        # Events of two windows (and the previous round's open pusher window, re-read by
        # this run), then pushers that close them and open a window of their own.
        first = T0 + 400 * kill_round
        sent += produce(servers, topic, events(first, 100), pusher_second=first + 300)
        job = start_job(servers, topic, postgres_dsn, tmp_path / f"run{kill_round}.log")
        try:
            want = expected_counts(sent, before=(first + 300) // WINDOW * WINDOW)
            job.wait_for(lambda want=want: table(postgres_dsn) == want,
                         f"every closed window of round {kill_round}, counted once")
            # Offsets move as windows are written: up to the polls the pushers' window holds.
            at_least = len(sent) - PARTITIONS * (POLL + 2)
            job.wait_for(lambda at_least=at_least: committed_count(servers, topic, GROUP) >= at_least,
                         "offsets of the written windows committed")
        finally:
            job.kill()
        # The pushers were read, but their window lived only in the dead job's memory:
        # their offsets were not committed, so the restart reads them again.
        assert committed_count(servers, topic, GROUP) < len(sent)

    sent += produce(servers, topic, [], pusher_second=T0 + 2000)
    job = start_job(servers, topic, postgres_dsn, tmp_path / "final.log")
    try:
        want = expected_counts(sent, before=(T0 + 2000) // WINDOW * WINDOW)
        job.wait_for(lambda: table(postgres_dsn) == want, "every window, counted once")
        job.wait_for(lambda: committed_count(servers, topic, GROUP) >= len(sent) - PARTITIONS * (POLL + 2),
                     "offsets of the written windows committed")
    finally:
        job.kill()
    got = table(postgres_dsn)
    assert got == want
    assert sum(got.values()) == len(sent) - PARTITIONS  # all but the last, still open, window
    assert committed_count(servers, topic, GROUP) < len(sent)


def test_kafka_consumer_lag_is_exported_per_partition(kafka_broker, kafka_topic):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(2, "lag")
    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    for i in range(10):
        producer.send(topic, b"{}", partition=i % 2)
    producer.flush()
    producer.close()
    group = "lag_group"
    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False,
                             session_timeout_ms=6000)
    consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2, "", -1)})
    consumer.close()

    options = opts.parse([f"--bootstrap_servers={servers}", "--source=kafka", f"--topic={topic}",
                          f"--consumer_group={group}", "--metrics_port=0"],
                         [opts.IOOptions, MetricsOptions], prog="test")
    probe = metrics.lag_probe_for(options)
    assert probe is not None
    exporter = metrics.Exporter(None, pipeline="pageviews", lag_probe=probe)
    try:
        exporter.poll()
        lags = {s.labels["partition"]: s.value for s in exporter.families().series
                if s.name == "source_lag_records"}
    finally:
        exporter.close()
    # partition 0: 5 records, 2 committed; partition 1: 5 records, none committed.
    assert lags == {f"{topic}-0": 3, f"{topic}-1": 5}


def test_dead_letters_on_kafka_are_inspected_and_replayed_into_the_input_topic(
        kafka_broker, kafka_topic, tmp_path):
    import io

    from kafka import KafkaConsumer, TopicPartition

    from beam_pipelines import dead_letters as cli
    from beam_pipelines import pageviews

    servers = kafka_broker.bootstrap_servers
    rejected, replayed = kafka_topic(2, "rejected"), kafka_topic(1, "input")
    lines = [json.dumps(e) for e in events(T0, 6)]
    lines += [json.dumps({"user_id": 1, "page": "/x", "timestamp": T0})] * 2 + ["{nope"]
    (tmp_path / "events.jsonl").write_text("\n".join(lines) + "\n")
    pageviews.run([f"--input={tmp_path / 'events.jsonl'}", "--source=file", "--sink=jsonl",
                   f"--output={tmp_path / 'out'}", f"--dead_letter=kafka://{rejected}",
                   f"--bootstrap_servers={servers}"])

    out = io.StringIO()
    cli.run(["inspect", f"kafka://{rejected}", f"--bootstrap_servers={servers}", "--json"], out)
    assert json.loads(out.getvalue()) == {"invalid_json": 1, "missing_field": 2}

    (tmp_path / "fix.py").write_text(
        "def fix(payload, letter):\n"
        "    return {**payload, 'action': 'view'} if isinstance(payload, dict) else None\n")
    out = io.StringIO()
    cli.run(["replay", f"kafka://{rejected}", "--output", f"kafka://{replayed}",
             "--fix", str(tmp_path / "fix.py"), f"--bootstrap_servers={servers}"], out)
    assert f"replayed 2 record(s) to kafka://{replayed}; 1 left out by the fix" in out.getvalue()
    assert f"next: --source=kafka --topic={replayed}" in out.getvalue()

    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    try:
        tp = TopicPartition(replayed, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        values: list[dict] = []
        deadline = time.monotonic() + 30
        while len(values) < 2 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values += [json.loads(r.value) for r in records]
    finally:
        consumer.close()
    assert values == [{"user_id": 1, "page": "/x", "timestamp": T0, "action": "view"}] * 2
