"""The DaskRunner against real servers: a bounded Kafka backfill over messy events gives
exactly the DirectRunner's counts and dead letters (both batch engines) and commits the
consumer group's offsets; a bounded Pub/Sub read (which cannot be re-read) runs once and
gives the reference query's alerts; a scheduler lost mid-run ends the run in one line.

The Kafka runs use the local cluster the DaskRunner starts (``--dask_local_workers=2``,
once per process, shared with the portability test).
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import iot_alerts, pageviews
from beam_pipelines.testing.iot import SyntheticReadings, edge_case_lines, reference_alerts
from beam_pipelines.testing.kafka import committed_offsets
from runners.dask_cluster import DaskClusterError

pytestmark = pytest.mark.integration

PARTITIONS = 4
EVENTS = 4_000
DASK = ["--runner=DaskRunner", "--dask_local_workers=2"]


def messy_events(count: int, seed: int) -> list[bytes]:
    """User events as they arrive in real topics: string and integer user ids, epoch and
    ISO-8601 times (UTC and with offsets), out-of-order events, and broken lines."""
    rnd = random.Random(seed)
    pages = ["/", "/cart", "/checkout", "/search", "/p/1", "/p/2", "/p/ü"]
    start = 1_735_689_600 + rnd.randrange(86_400)
    lines = []
    for i in range(count):
        moment = start + i * 2 - (rnd.randrange(900) if rnd.random() < 0.05 else 0)
        stamp = rnd.choice([
            moment, moment + 0.5,
            f"{_iso(moment)}Z", f"{_iso(moment + 3600)}+01:00", f"{_iso(moment - 18_000)}-05:00",
        ])
        event = {"user_id": rnd.choice([f"user_{rnd.randrange(500)}", rnd.randrange(500)]),
                 "action": rnd.choice(["page_view", "page_view", "click", "scroll"]),
                 "page": rnd.choice(pages), "timestamp": stamp}
        kind = rnd.random()
        if kind < 0.015:
            line = json.dumps(event)[: rnd.randrange(5, 40)].encode()  # truncated
        elif kind < 0.025:
            event.pop(rnd.choice(["page", "user_id", "timestamp"]))
            line = json.dumps(event).encode()
        elif kind < 0.035:
            event["timestamp"] = rnd.choice(["yesterday", "2025-13-45T00:00:00Z", None, [1]])
            line = json.dumps(event).encode()
        elif kind < 0.04:
            line = rnd.choice([b"\xff\xfe not utf-8", b"[1, 2]", b"null", b'"text"', b"{}"])
        else:
            line = json.dumps(event, ensure_ascii=rnd.random() < 0.5).encode()
        lines.append(line)
    return lines


def _iso(seconds: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.fixture(scope="module")
def messy_topic(kafka_broker):
    """A 4-partition topic holding messy events (a seed of its own each run; it is in
    every assertion message)."""
    from kafka import KafkaProducer

    seed = random.SystemRandom().randrange(1 << 30)
    topic = kafka_broker.create_topic(f"dask_backfill_{seed}", PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    for i, line in enumerate(messy_events(EVENTS, seed)):
        producer.send(topic, line, partition=i % PARTITIONS)
    producer.flush()
    producer.close()
    return topic, seed


def _backfill(tmp_path: Path, name: str, servers: str, topic: str, *flags: str):
    out, dead = tmp_path / name / "out", tmp_path / name / "dead"
    pageviews.run([
        "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
        "--start_at=earliest", "--stop_at=end", "--window_size=600",
        "--sink=jsonl", f"--output={out}", f"--dead_letter={dead}", *flags,
    ])
    rows = [json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in f.read_text().splitlines()]
    counts = {(r["window_start"], r["page"]): r["count"] for r in rows}
    assert len(counts) == len(rows), f"{name}: one row per window and page"
    letters = sorted(
        (d["origin"]["partition"], d["origin"]["offset"], d["reason_code"])
        for f in sorted(dead.glob("*.jsonl")) for d in map(json.loads, f.read_text().splitlines())
    )
    leftovers = list(out.glob("beam-temp-*")) + list(dead.glob("beam-temp-*"))
    assert not leftovers, f"{name}: temporary files left behind: {leftovers}"
    return counts, letters


def test_bounded_kafka_backfill_on_dask_equals_the_direct_runner(kafka_broker, messy_topic, tmp_path):
    topic, seed = messy_topic
    servers = kafka_broker.bootstrap_servers
    expected, expected_dead = _backfill(tmp_path, "direct", servers, topic,
                                        "--runner=DirectRunner", "--batch_engine=records")
    valid = EVENTS - len(expected_dead)
    assert sum(expected.values()) == valid, f"seed {seed}"
    assert len({reason for *_, reason in expected_dead}) >= 4, f"seed {seed}: messy enough"

    for engine in ("arrow", "records"):
        group = f"dask-{engine}-{seed}"
        counts, dead = _backfill(tmp_path, f"dask-{engine}", servers, topic, *DASK,
                                 f"--batch_engine={engine}", f"--consumer_group={group}")
        assert counts == expected, f"seed {seed}, --batch_engine={engine}: counts differ"
        assert dead == expected_dead, f"seed {seed}, --batch_engine={engine}: dead letters differ"
        # Bundles are finalized on Dask: the read committed where each partition stopped.
        assert committed_offsets(servers, topic, group) == _end_offsets(servers, topic), f"seed {seed}"


def _end_offsets(servers: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def test_bounded_pubsub_read_runs_once_on_dask(pubsub_env, tmp_path):
    """A Pub/Sub read cannot be repeated: had any step upstream of the two sinks run twice
    on Dask, the runs would have split the messages (and waited for the rest)."""
    from google.cloud import pubsub_v1

    lines = [line for line in list(SyntheticReadings(seed=21, malformed=0.05).payloads(400))
             + edge_case_lines() if line.strip()]
    publisher = pubsub_v1.PublisherClient()
    for future in [publisher.publish(pubsub_env.topic, line) for line in lines]:
        future.result()
    out, dead = tmp_path / "out", tmp_path / "dead"
    iot_alerts.run([
        "--source=pubsub", f"--subscription={pubsub_env.subscription}",
        f"--pubsub_emulator_host={pubsub_env.host}", f"--pubsub_max_messages={len(lines)}",
        "--pubsub_max_seconds=120", "--sink=jsonl", f"--output={out}", f"--dead_letter={dead}",
        *DASK,
    ])
    alerts = [json.loads(line) for f in out.glob("iot_alerts-*.jsonl") for line in f.read_text().splitlines()]
    for alert in alerts:
        for pane_field in ("pane_timing", "pane_index", "is_final"):
            alert.pop(pane_field, None)
    expected = reference_alerts(lines)
    assert sorted(alerts, key=lambda a: (a["WindowStart"], a["DeviceId"])) == expected.alerts
    assert expected.alerts
    letters = [line for f in dead.glob("dead_letters-*.jsonl") for line in f.read_text().splitlines()]
    assert len(letters) == len(expected.invalid_lines)
    assert pubsub_env.emulator.backlog(pubsub_env.subscription) == (0, 0)  # all acknowledged


# ---- the cluster failing mid-run ---------------------------------------------------------

_GATES: dict[str, tuple[threading.Event, threading.Event]] = {}


class _Hold(beam.DoFn):
    """Signals that it runs, then holds its task until released (in-process workers)."""

    def __init__(self, gate: str) -> None:
        self._gate = gate

    def process(self, element):
        running, release = _GATES[self._gate]
        running.set()
        release.wait(60)
        yield element


def test_a_scheduler_lost_mid_run_ends_the_run_in_one_line(tmp_path):
    import dask
    from distributed import LocalCluster

    running, release = threading.Event(), threading.Event()
    _GATES["lost"] = (running, release)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address=":0", local_directory=str(tmp_path))
    closing = threading.Thread(target=lambda: cluster.sync(cluster.scheduler.close))
    try:
        pipeline = beam.Pipeline(options=PipelineOptions([
            "--runner=runners.dask.DaskRunner",
            f"--dask_client_address={cluster.scheduler_address}"]))
        _ = pipeline | beam.Create([1, 2]) | beam.ParDo(_Hold("lost"))
        result = pipeline.run()
        assert running.wait(60), "the step never started"
        closing.start()  # the scheduler goes away while the step runs
        with pytest.raises(DaskClusterError) as failure:
            result.wait_until_finish()
        message = str(failure.value)
        assert message.startswith("DaskRunner: lost the connection to the Dask scheduler at ")
        assert "\n" not in message
        assert result.state == "FAILED"
        assert result.client.status == "closed"  # no client left retrying for 30 s
    finally:
        release.set()
        if closing.is_alive():
            closing.join()
        # The cluster's own goodbye to its closed scheduler would retry for 30 s.
        with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
            cluster.close()
