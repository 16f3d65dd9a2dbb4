"""Poison records from the brokers' sources: Kafka (bounded and streaming), Pub/Sub and
Event Hubs. The hostile corpus of ``tests/beam_pipelines/pageviews/test_poison_records.py`` gives one
count or one dead letter per message on both engines, never a crashed job; a poison
timestamp in a live Kafka stream is dead-lettered, and a ``--start_at=committed``
restart skips nothing. Should a step still raise, the offsets of its batch are not
committed (the local streaming runner commits a read only once everything derived from it
is written, see transforms/delivery), so a committed restart reads it again.
"""

from __future__ import annotations

import glob
import json
import time

import pytest

from beam_pipelines import pageviews
from beam_pipelines.metrics import counter_total
from beam_pipelines.produce import send
from beam_pipelines.testing.kafka import committed_count
from tests.beam_pipelines.pageviews.test_poison_records import CORPUS, reference
from transforms.io.kafka import client_config

pytestmark = pytest.mark.integration


def _messages(now: int) -> list[bytes]:
    """The corpus as messages (a message cannot be blank), its valid times moved near
    ``now`` so a live run counts them as on time."""
    return [line.replace(b"1733000000", str(now).encode()).replace(b"1733000007", str(now + 7).encode())
            for line in CORPUS if line.strip()]


def _expected(messages: list[bytes]) -> tuple[int, int]:
    decided = [reference(m) for m in messages]
    return sum(1 for d in decided if d not in (None, "blank")), sum(1 for d in decided if d is None)


def _final_counts(directory) -> dict[tuple[str, str], int]:
    final: dict[tuple[str, str], int] = {}
    for path in glob.glob(f"{directory}/**/*.jsonl", recursive=True):
        with open(path, encoding="utf-8") as handle:
            for row in map(json.loads, filter(str.strip, handle)):
                key = (row["window_start"], row["page"])
                final[key] = max(final.get(key, 0), row["count"])
    return final


def _letters(directory) -> list[dict]:
    letters = []
    for path in glob.glob(f"{directory}/**/*.jsonl", recursive=True):
        with open(path, encoding="utf-8") as handle:
            letters += [json.loads(line) for line in handle if line.strip()]
    return letters


@pytest.mark.parametrize("engine", ["arrow", "records"])
def test_hostile_messages_from_kafka_bounded_and_streaming(kafka_broker, kafka_topic, tmp_path, engine):
    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(3, "hostile")
    messages = _messages(int(time.time()) - 30)
    send(client_config(servers), topic, messages, progress=False)
    valid, rejected = _expected(messages)
    assert valid > 50 and rejected > 200

    common = ["--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
              "--start_at=earliest", "--window_size=10", "--sink=jsonl", f"--batch_engine={engine}"]
    bounded = pageviews.run([*common, "--stop_at=end", f"--output={tmp_path}/b_out",
                             f"--dead_letter={tmp_path}/b_dead"])
    live = pageviews.run([*common, "--streaming", "--max_read_time=4", "--idle_timeout=1",
                          "--allowed_lateness=3600", f"--output={tmp_path}/s_out",
                          f"--dead_letter={tmp_path}/s_dead"])
    for result, run in ((bounded, "b"), (live, "s")):
        letters = _letters(tmp_path / f"{run}_dead")
        late = sum(1 for d in letters if d["reason_code"] == "late")
        assert sum(_final_counts(tmp_path / f"{run}_out").values()) + late == valid, run
        assert len(letters) - late == rejected, run
        assert not [d for d in letters if d["reason_code"] == "parse_failed"]
        assert counter_total(result, "pageviews", "events_dead_lettered") == rejected


def test_a_poison_timestamp_in_a_live_stream_is_a_dead_letter_and_a_committed_restart_skips_nothing(
        kafka_broker, kafka_topic, tmp_path):
    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(1, "poison")
    group = "poison_group"
    now = int(time.time()) - 30

    def good(i: int) -> bytes:
        return json.dumps({"user_id": i, "action": "view", "page": f"/p{i % 3}",
                           "timestamp": now + i % 5}).encode()

    poison = (b'{"user_id": 1, "action": "view", "page": "/p0", "timestamp": 1' + b"0" * 400 + b"}")
    first = [good(i) for i in range(1000)] + [poison] + [good(i) for i in range(1000, 2001)]
    send(client_config(servers), topic, first, progress=False)

    def live(run: str, *flags: str):
        return pageviews.run([
            "--streaming", "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
            f"--consumer_group={group}", "--start_at=committed", "--max_read_time=4",
            "--idle_timeout=1", "--window_size=10", "--allowed_lateness=3600", "--sink=jsonl",
            f"--output={tmp_path}/{run}_out", f"--dead_letter={tmp_path}/{run}_dead", *flags])

    live("one")
    assert sum(_final_counts(tmp_path / "one_out").values()) == 2001
    [letter] = _letters(tmp_path / "one_dead")
    assert letter["reason_code"] == "out_of_range" and letter["origin"]["offset"] == 1000
    assert committed_count(servers, topic, group) == len(first)

    # The restart from the committed offsets reads what came after, and only that.
    second = [good(i) for i in range(500)] + [poison] + [good(i) for i in range(500, 999)]
    send(client_config(servers), topic, second, progress=False)
    live("two")
    assert sum(_final_counts(tmp_path / "two_out").values()) == 999
    assert [d["origin"]["offset"] for d in _letters(tmp_path / "two_dead")] == [len(first) + 500]
    assert committed_count(servers, topic, group) == len(first) + len(second)


def test_a_step_that_raises_leaves_the_offsets_of_its_batch_uncommitted(kafka_broker, kafka_topic,
                                                                       tmp_path, monkeypatch):
    """Fail closed: no parse step raises for any record any more, but should one (a bug),
    the job stops and the offsets of that record's batch are not committed, so the next
    committed restart reads it again."""
    import transforms.parse as parse

    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(1, "crash")
    group = "crash_group"
    now = int(time.time()) - 30

    def good(i: int) -> bytes:
        return json.dumps({"user_id": i, "action": "view", "page": f"/p{i % 3}",
                           "timestamp": now + i % 5}).encode()

    def live(run: str):
        return pageviews.run([
            "--streaming", "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
            f"--consumer_group={group}", "--start_at=committed", "--max_read_time=4",
            "--idle_timeout=1", "--window_size=10", "--allowed_lateness=3600", "--sink=jsonl",
            f"--output={tmp_path}/{run}_out", f"--dead_letter={tmp_path}/{run}_dead"])

    messages = [good(i) for i in range(300)] + [b'{"crash": "here"}'] + [good(i) for i in range(300)]
    send(client_config(servers), topic, messages, progress=False)
    decide = parse._HandedOver.decide

    def crashing(self, parsed, origin_of):
        if any(b"crash" in payload for _, payload in parsed.handed_over):
            raise RuntimeError("a step that raises")
        return decide(self, parsed, origin_of)

    monkeypatch.setattr(parse._HandedOver, "decide", crashing)
    with pytest.raises(Exception, match="a step that raises"):
        live("crashed")
    assert committed_count(servers, topic, group) <= 300
    monkeypatch.setattr(parse._HandedOver, "decide", decide)
    restarted_at = committed_count(servers, topic, group)
    live("restarted")
    assert [d["origin"]["offset"] for d in _letters(tmp_path / "restarted_dead")] == [300]
    assert sum(_final_counts(tmp_path / "restarted_out").values()) == len(messages) - restarted_at - 1


def test_hostile_messages_from_pubsub(pubsub_env, tmp_path):
    from tests.transforms.io.pubsub.test_connector import publish

    messages = _messages(1_733_000_000)
    publish(pubsub_env.topic, [(m, {}) for m in messages])
    valid, rejected = _expected(messages)
    result = pageviews.run([
        "--source=pubsub", f"--subscription={pubsub_env.subscription}",
        f"--pubsub_max_messages={len(messages)}", f"--pubsub_emulator_host={pubsub_env.host}",
        "--window_size=60", "--sink=jsonl", f"--output={tmp_path}/out", f"--dead_letter={tmp_path}/dead"])
    assert sum(_final_counts(tmp_path / "out").values()) == valid
    assert len(_letters(tmp_path / "dead")) == rejected
    assert counter_total(result, "pageviews", "events_dead_lettered") == rejected


def test_hostile_messages_from_eventhubs(eventhubs_emulator, eventhub, tmp_path):
    from beam_pipelines.testing.emulators.eventhubs import send_events

    messages = _messages(1_733_000_000)
    hub = eventhub(partitions=2, prefix="hostile")
    send_events(eventhubs_emulator.connection_string, hub, messages, partitions=2)
    valid, rejected = _expected(messages)
    pageviews.run([
        "--source=eventhubs", f"--eventhubs_connection_string={eventhubs_emulator.connection_string}",
        f"--eventhub={hub}", "--eventhubs_stop_at=end", "--window_size=60", "--sink=jsonl",
        f"--output={tmp_path}/out", f"--dead_letter={tmp_path}/dead"])
    assert sum(_final_counts(tmp_path / "out").values()) == valid
    assert len(_letters(tmp_path / "dead")) == rejected
