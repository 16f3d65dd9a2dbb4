"""recommendations against real servers: a model swap during a live Kafka stream, the
PostgreSQL upsert of each user's latest recommendations, and training from a bounded range
of a topic.

The swap is driven by observable state only: the first clicks' records are read back
(version 1), the trainer publishes version 2, then single "probe" clicks are sent and
read back until one carries version 2, then more clicks; every click must come back
exactly once, keyed by its user, with the version that was serving.
"""

from __future__ import annotations

import collections
import json
import shutil

import pytest

from beam_pipelines import train_recommender
from beam_pipelines.recommendations import RECOMMENDATIONS
from beam_pipelines.testing.polling import wait_for
from transforms.recommend import PlantedEvents, store
from transforms.records import utc_iso

pytestmark = pytest.mark.integration

T0 = 1_800_000_000


class Clicks:
    """Sends clicks to a topic and reads the recommendations topic back."""

    def __init__(self, servers: str, clicks_topic: str, recs_topic: str, pages: list[str]) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        self.topic = clicks_topic
        self.pages = pages
        self.producer = KafkaProducer(bootstrap_servers=servers, acks="all")
        self.consumer = KafkaConsumer(recs_topic, bootstrap_servers=servers,
                                      auto_offset_reset="earliest", consumer_timeout_ms=100,
                                      session_timeout_ms=6000)
        self.sent: list[tuple[str, str]] = []  # (user_id, event time) of each click
        self.received: list[tuple[bytes, dict]] = []  # (message key, record)

    def send(self, count: int) -> None:
        for _ in range(count):
            n = len(self.sent)
            user, seconds = f"u{n % 7}", T0 + 10 * n
            event = {"user_id": user, "action": "page_view", "page": self.pages[n % len(self.pages)],
                     "timestamp": seconds}
            self.producer.send(self.topic, json.dumps(event).encode())
            self.sent.append((user, utc_iso(seconds)))
        self.producer.flush()

    def read(self) -> int:
        self.received += [(m.key, json.loads(m.value)) for m in self.consumer]
        return len(self.received)

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()


def metric(result, kind: str, name: str):
    found = result.metrics().query()[kind]
    values = [m.committed for m in found if m.key.metric.name == name]
    return values[0] if values else None


def test_a_new_version_is_picked_up_during_a_live_run_and_no_click_is_lost(
        trained, kafka_broker, kafka_topic, tmp_path):
    servers = kafka_broker.bootstrap_servers
    clicks_topic, recs_topic = kafka_topic(2, "clicks"), kafka_topic(1, "recs")
    models = tmp_path / "models"
    shutil.copytree(f"{trained.models}/v1", models / "v1")
    store.publish(str(models), 1)
    run = RECOMMENDATIONS.launch([
        "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={clicks_topic}",
        "--start_at=earliest", f"--model={models}", "--model_poll_interval=0.2",
        "--sink=kafka", f"--output={recs_topic}"])
    pages = [page for pair in trained.generator.pairs[:10] for page in pair]
    clicks = Clicks(servers, clicks_topic, recs_topic, pages)
    try:
        clicks.send(20)
        wait_for(lambda: clicks.read() >= 20, timeout=60, what="the first 20 recommendations")
        before = len(clicks.received)
        assert {r["model_version"] for _, r in clicks.received} == {1}

        # The trainer publishes v2 while the stream runs.
        assert train_recommender.main(["--source=file", f"--input={trained.events}",
                                       f"--output={models}", "--holdout=0"]) == 0
        assert store.latest_version(str(models)) == 2

        def probe_sees_v2() -> bool:
            clicks.send(1)
            wait_for(lambda: clicks.read() >= len(clicks.sent), timeout=30, what="a probe's record")
            return clicks.received[-1][1]["model_version"] == 2

        wait_for(probe_sees_v2, timeout=60, interval=0.0, what="a record from version 2")
        swapped_at = len(clicks.received)
        clicks.send(20)
        wait_for(lambda: clicks.read() >= len(clicks.sent), timeout=60, what="the last 20")

        versions = [r["model_version"] for _, r in clicks.received]
        assert versions[:before] == [1] * before
        assert versions[swapped_at - 1:] == [2] * (len(versions) - swapped_at + 1)
        assert versions == sorted(versions)  # never back to v1 once v2 served
        # Every click: exactly one record, keyed by its user.
        got = collections.Counter((r["user_id"], r["event_timestamp"]) for _, r in clicks.received)
        assert got == collections.Counter(clicks.sent)
        assert all(key == r["user_id"].encode() for key, r in clicks.received)
        assert all(len(r["recommendations"]) == 5 for _, r in clicks.received)
        assert metric(run.result, "counters", "model_swaps") == 1
        assert metric(run.result, "gauges", "model_version").value == 2
    finally:
        run.result.cancel()
        clicks.close()


def test_postgres_keeps_each_users_latest_recommendations(trained, postgres_dsn, tmp_path):
    import psycopg

    events = [e for e in trained.generator.events() if e["user_id"] in ("user_1", "user_2")]
    (tmp_path / "clicks.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert RECOMMENDATIONS.main(["--source=file", f"--input={tmp_path / 'clicks.jsonl'}",
                                 f"--model={trained.models}", "--sink=postgres",
                                 f"--output={postgres_dsn}"]) == 0
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute("SELECT user_id, extract(epoch FROM event_timestamp), "
                            "recommendations, model_version FROM recommendations "
                            "ORDER BY user_id").fetchall()
    latest = {u: max(e["timestamp"] for e in events if e["user_id"] == u)
              for u in ("user_1", "user_2")}
    assert [(u, float(t)) for u, t, _, _ in rows] == pytest.approx(sorted(latest.items()))
    for _, _, recommendations, version in rows:
        assert version == 1 and len(recommendations) == 5
        assert set(recommendations[0]) == {"page", "score"}


def test_training_from_a_bounded_topic_range_learns_from_that_range_only(kafka_broker, kafka_topic,
                                                                         tmp_path):
    """``--source=kafka --start_at=TIME --stop_at=end``: the model's data is exactly the
    events logged from TIME on (event times double as log times)."""
    from kafka import KafkaProducer

    servers, topic = kafka_broker.bootstrap_servers, kafka_topic(2, "history")
    events = PlantedEvents(seed=5, users=60).events()  # in event-time order
    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    for i, event in enumerate(events):
        producer.send(topic, json.dumps(event).encode(), partition=i % 2,
                      timestamp_ms=round(event["timestamp"] * 1000))
    producer.flush()
    producer.close()
    start = int(events[len(events) // 2]["timestamp"])
    kept = [e for e in events if e["timestamp"] >= start]
    models = tmp_path / "models"
    assert train_recommender.main([
        "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
        f"--start_at={utc_iso(start)}", "--stop_at=end", f"--output={models}"]) == 0
    data = json.loads((models / "v1" / "metadata.json").read_text())["data"]
    assert 0 < data["events"] == len(kept) < len(events)
    assert data["users"] == len({e["user_id"] for e in kept})
    assert (data["first_event"], data["last_event"]) == (
        utc_iso(kept[0]["timestamp"]), utc_iso(kept[-1]["timestamp"]))
