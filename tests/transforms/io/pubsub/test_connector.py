"""ReadFromPubSub / WriteToPubSub and --source/--sink=pubsub against the emulator."""

from __future__ import annotations

import json
import threading
import time

import apache_beam as beam
import pytest
from google.cloud import pubsub_v1

from beam_pipelines import pageviews
from beam_pipelines.testing import SyntheticEvents
from beam_pipelines.testing.collect import collect
from beam_pipelines.testing.files import read_jsonl_dir, window_counts
from beam_pipelines.testing.polling import wait_for
from beam_pipelines.wiring.pubsub import dead_letter_writer
from transforms.base.errors import ConfigError, SinkError, SourceError
from transforms.io.pubsub import PubSubMessage, ReadFromPubSub, WriteToPubSub
from transforms.records import DeadLetter

pytestmark = pytest.mark.integration

def publish(topic, messages):
    publisher = pubsub_v1.PublisherClient()
    futures = [publisher.publish(topic, data, **attributes) for data, attributes in messages]
    return [f.result(timeout=10) for f in futures]


def read(subscription, **kwargs):
    """(RawRecord, timestamp) pairs of a bounded read (the DirectRunner runs in this process)."""
    with beam.Pipeline() as pipeline:
        got = collect((pipeline | ReadFromPubSub(subscription, **kwargs)).records, timestamps=True)
    return got.items


def pull_all(subscription, expected, timeout=20.0):
    subscriber = pubsub_v1.SubscriberClient()
    got = []

    def more():
        response = subscriber.pull(request={"subscription": subscription, "max_messages": 100,
                                            "return_immediately": True})
        got.extend(response.received_messages)
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription,
                                   ack_ids=[m.ack_id for m in response.received_messages])
        return len(got) >= expected

    wait_for(more, timeout=timeout, what=f"{expected} messages on {subscription}")
    return [m.message for m in got]


def test_bounded_read_exactly_once_with_attributes(pubsub_env):
    base = 1_700_000_000_000
    messages = [(f"m{i}".encode(), {"ts": str(base + i * 1000), "uid": f"u{i}"}) for i in range(30)]
    messages += [(b"dup", {"ts": str(base), "uid": f"u{i}"}) for i in range(3)]  # same ids again
    messages += [(b"rfc", {"ts": "2024-01-01T00:00:05Z", "uid": "r"})]
    messages += [(b"bad-time", {"ts": "yesterday", "uid": "b"})]
    ids = publish(pubsub_env.topic, messages)
    before = time.time()

    out = read(pubsub_env.subscription, timestamp_attribute="ts", id_attribute="uid",
               max_messages=len(messages), batch_size=7)

    payloads = sorted(r.payload for r, _ in out)
    assert payloads == sorted([f"m{i}".encode() for i in range(30)] + [b"rfc", b"bad-time"])
    by_payload = {r.payload: (r, ts) for r, ts in out}
    for i in range(30):
        record, ts = by_payload[f"m{i}".encode()]
        assert ts == (base + i * 1000) / 1000
        assert record.origin["source"] == "pubsub"
        assert record.origin["subscription"] == pubsub_env.subscription
        assert record.origin["message_id"] == ids[i]
        assert record.origin["attributes"] == {"ts": str(base + i * 1000), "uid": f"u{i}"}
        assert record.origin["publish_time"].endswith("Z")
    assert by_payload[b"rfc"][1] == 1704067205.0
    bad, bad_ts = by_payload[b"bad-time"]
    assert "timestamp_error" in bad.origin and abs(bad_ts - before) < 60  # the publish time
    # Everything read was acknowledged once the bundles were committed: nothing is left.
    assert pubsub_env.emulator.backlog(pubsub_env.subscription) == (0, 0)


def test_unacked_messages_are_redelivered_when_the_pipeline_fails(pubsub_env):
    publish(pubsub_env.topic, [(f"m{i}".encode(), {}) for i in range(10)])

    def explode(record):
        if record.payload == b"m5":
            raise RuntimeError("boom before the bundle is committed")
        return record

    with pytest.raises(Exception, match="boom"):
        with beam.Pipeline() as pipeline:
            ((pipeline | ReadFromPubSub(pubsub_env.subscription, max_messages=10)).records
             | beam.Map(explode))
    # Not acknowledged: handed back (or expired) and delivered again to a new reader.
    wait_for(lambda: pubsub_env.emulator.backlog(pubsub_env.subscription) == (10, 0),
             what="the 10 messages to be pending again")
    again = read(pubsub_env.subscription, max_messages=10)
    assert sorted(r.payload for r, _ in again) == sorted(f"m{i}".encode() for i in range(10))
    assert pubsub_env.emulator.backlog(pubsub_env.subscription) == (0, 0)


def test_bounded_by_time_and_topic_through_temporary_subscription(pubsub_env):
    # A temporary subscription only sees messages published after it exists, so
    # publish from another thread once the pipeline has created it.
    subscriber = pubsub_v1.SubscriberClient()

    def publish_when_subscribed():
        project = f"projects/{pubsub_env.project}"

        def temporary():
            return [s for s in subscriber.list_subscriptions(project=project)
                    if "-beam-" in s.name]

        wait_for(temporary, what="the temporary subscription")
        publish(pubsub_env.topic, [(b"late-1", {}), (b"late-2", {})])

    thread = threading.Thread(target=publish_when_subscribed)
    thread.start()
    out = read(None, topic=pubsub_env.topic, max_messages=2, max_seconds=15.0)
    thread.join(timeout=30)
    assert sorted(r.payload for r, _ in out) == [b"late-1", b"late-2"]
    assert out[0][0].origin["subscription"].startswith(
        f"projects/{pubsub_env.project}/subscriptions/events-beam-")
    # Two readers share a backlog: every message once.
    parallel = f"projects/{pubsub_env.project}/subscriptions/parallel"
    pubsub_env.emulator.create_subscription(parallel, pubsub_env.topic)
    publish(pubsub_env.topic, [(f"p{i}".encode(), {}) for i in range(40)])
    shared = read(parallel, max_messages=40, readers=2, batch_size=5)
    assert sorted(r.payload for r, _ in shared) == sorted(f"p{i}".encode() for i in range(40))
    assert pubsub_env.emulator.backlog(parallel) == (0, 0)
    # Time-bounded: an empty subscription ends the read after max_seconds.
    empty = f"projects/{pubsub_env.project}/subscriptions/empty"
    pubsub_env.emulator.create_subscription(empty, pubsub_env.topic)
    assert read(empty, max_seconds=1.0) == []  # returns: max_seconds ended the read


def test_write_round_trip_with_attributes_and_ordering(pubsub_env):
    subscriber = pubsub_v1.SubscriberClient()
    ordered = f"projects/{pubsub_env.project}/subscriptions/ordered"
    subscriber.create_subscription(request={"name": ordered, "topic": pubsub_env.topic,
                                            "enable_message_ordering": True})
    elements = [PubSubMessage(f"k{i % 2}-{i}".encode(), {"i": str(i)}, f"k{i % 2}")
                for i in range(20)]
    elements += [b"raw-bytes", "text", PubSubMessage("str-data", {"n": 1})]
    dead_topic = f"projects/{pubsub_env.project}/topics/dead"
    dead_sub = f"projects/{pubsub_env.project}/subscriptions/dead"
    pubsub_env.emulator.create_topic(dead_topic)
    pubsub_env.emulator.create_subscription(dead_sub, dead_topic)
    letter = DeadLetter.of("pageviews", "parse", "invalid JSON", b"{oops", {"source": "x"},
                           "invalid_json")
    with beam.Pipeline() as pipeline:
        (pipeline | beam.Create(elements) | WriteToPubSub(pubsub_env.topic, ordering=True,
                                                          max_batch_messages=5))
        (pipeline | "Letters" >> beam.Create([letter])
         | dead_letter_writer(f"pubsub://{dead_topic}"))
    [dead] = pull_all(dead_sub, 1)
    assert json.loads(dead.data)["payload"] == "{oops"
    assert dict(dead.attributes) == {"pipeline": "pageviews", "step": "parse",
                                     "reason_code": "invalid_json"}
    with pytest.raises(ConfigError, match="--dead_letter: expected pubsub://projects/P/topics/T"):
        dead_letter_writer("pubsub://nope")
    got = pull_all(pubsub_env.subscription, len(elements))
    assert sorted(m.data for m in got) == sorted(
        [e.data if isinstance(e, PubSubMessage) else e for e in elements[:20]]
        + [b"raw-bytes", b"text", b"str-data"]
    )
    by_data = {m.data: m for m in got}
    assert dict(by_data[b"k1-3"].attributes) == {"i": "3"} and by_data[b"k1-3"].ordering_key == "k1"
    assert dict(by_data[b"str-data"].attributes) == {"n": "1"}
    ordered_got = pull_all(ordered, len(elements))
    for key in ("k0", "k1"):  # Create keeps the order within a bundle here; the key keeps it
        same_key = [m.data for m in ordered_got if m.ordering_key == key]
        assert len(same_key) == 10

    with pytest.raises(ConfigError, match="projects/P/topics/T"):
        WriteToPubSub("not-a-topic")
    with pytest.raises(SinkError, match="does not exist"):
        with beam.Pipeline() as pipeline:
            pipeline | beam.Create([b"x"]) | WriteToPubSub(
                f"projects/{pubsub_env.project}/topics/missing")


def test_read_validation(pubsub_env):
    with pytest.raises(ConfigError, match="--subscription: expected projects/P/subscriptions/S"):
        ReadFromPubSub("subscriptions/x")
    with pytest.raises(ConfigError, match="--pubsub_topic"):
        ReadFromPubSub(topic="projects/p/topics/")
    with pytest.raises(ConfigError, match="not both"):
        ReadFromPubSub(pubsub_env.subscription, topic=pubsub_env.topic)
    with pytest.raises(ConfigError, match="--pubsub_max_messages"):
        ReadFromPubSub(pubsub_env.subscription, max_messages=0)
    with pytest.raises(SourceError, match="does not exist"):
        with beam.Pipeline() as pipeline:
            pipeline | ReadFromPubSub(f"projects/{pubsub_env.project}/subscriptions/missing",
                                      max_messages=1)


def test_pageviews_from_pubsub_counts_like_the_same_file(pubsub_env, tmp_path, capsys):
    lines = list(SyntheticEvents(seed=7, rate=2.0, malformed=0.05).payloads(400))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    blank = sum(1 for line in lines if not line.strip())
    publish(pubsub_env.topic, [(line, {}) for line in lines if line.strip()])
    results_topic = f"projects/{pubsub_env.project}/topics/results"
    results_sub = f"projects/{pubsub_env.project}/subscriptions/results"
    pubsub_env.emulator.create_topic(results_topic)
    pubsub_env.emulator.create_subscription(results_sub, results_topic)

    assert pageviews.main([
        "--source=file", f"--input={events}", "--sink=jsonl", f"--output={tmp_path / 'file'}",
    ]) == 0
    from_file = capsys.readouterr().err
    assert pageviews.main([
        "--source=pubsub", f"--subscription={pubsub_env.subscription}",
        f"--pubsub_max_messages={len(lines) - blank}", f"--pubsub_emulator_host={pubsub_env.host}",
        "--sink=pubsub", f"--output={results_topic}", "--pubsub_attribute_fields=page",
        "--pubsub_ordering_key=page",
    ]) == 0
    from_pubsub = capsys.readouterr().err
    expected = window_counts(read_jsonl_dir(str(tmp_path / "file")))
    rows = [json.loads(m.data) for m in pull_all(results_sub, len(expected))]
    assert window_counts(rows) == expected
    assert from_pubsub.strip().splitlines()[-1] == from_file.strip().splitlines()[-1]
    assert pubsub_env.emulator.backlog(pubsub_env.subscription) == (0, 0)


def test_command_line_errors_are_one_line(pubsub_env, capsys, monkeypatch):
    cases = [
        (["--source=pubsub", "--subscription=topics/x"],
         "error: --subscription: expected projects/P/subscriptions/S, got 'topics/x'"),
        (["--source=pubsub"], "error: --subscription: expected projects/P/subscriptions/S"),
        (["--source=pubsub", "--pubsub_max_messages=0", f"--subscription={pubsub_env.subscription}"],
         "error: --pubsub_max_messages: expected a whole number > 0, got '0'"),
        (["--source=pubsub", f"--subscription=projects/{pubsub_env.project}/subscriptions/nope"],
         f"error: Pub/Sub: subscription projects/{pubsub_env.project}/subscriptions/nope does "
         "not exist"),
        (["--sink=pubsub", "--output=out/"], "error: --output: expected projects/P/topics/T"),
    ]
    for argv, message in cases:
        assert pageviews.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(message), (argv, err)
        assert "\n" not in err

    from beam_pipelines.testing.servers import free_port

    closed = f"127.0.0.1:{free_port()}"
    assert pageviews.main(["--source=pubsub", f"--subscription={pubsub_env.subscription}",
                           f"--pubsub_emulator_host={closed}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: Pub/Sub: cannot reach subscription {pubsub_env.subscription} "
                          f"at the emulator {closed} (is it running?)"), err  # no retries

    # Neither an emulator nor credentials: one line saying what to set (not a traceback).
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", "/nonexistent")
    monkeypatch.setenv("GCE_METADATA_HOST", closed)  # never ask a metadata server
    assert pageviews.main(["--source=pubsub", f"--subscription={pubsub_env.subscription}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Pub/Sub:") and "\n" not in err, err


def test_leases_extend_deadlines_until_acked_or_released(pubsub_env, monkeypatch):
    from transforms.io.pubsub import leases as connector

    monkeypatch.setattr(connector, "_LEASE_TICK", 0.05)
    monkeypatch.setattr(connector, "_FIRST_DEADLINE", 1.0)
    monkeypatch.setattr(connector, "_LEASE_MARGIN", 0.5)
    publish(pubsub_env.topic, [(b"a", {}), (b"b", {})])
    subscriber = pubsub_v1.SubscriberClient()
    received = subscriber.pull(request={"subscription": pubsub_env.subscription,
                                        "max_messages": 10}).received_messages
    ack_ids = [m.ack_id for m in received]
    # Deadlines of 1 s: without the lease thread both would be redelivered within 1 s.
    subscriber.modify_ack_deadline(subscription=pubsub_env.subscription, ack_ids=ack_ids,
                                   ack_deadline_seconds=1)
    leases = connector.Leases(subscriber, pubsub_env.subscription, extension=1)
    leases.add(ack_ids)
    until = time.monotonic() + 3.0
    while time.monotonic() < until:  # an assertion over time, not a synchronisation
        assert pubsub_env.emulator.backlog(pubsub_env.subscription) == (0, 2)
        time.sleep(0.1)
    leases.ack(ack_ids[:1])
    leases.release()  # teardown: the unacknowledged one is handed back at once
    assert pubsub_env.emulator.backlog(pubsub_env.subscription) == (1, 0)


def test_dead_letter_flag_publishes_rejected_lines_to_a_topic(pubsub_env, tmp_path):
    dead_topic = f"projects/{pubsub_env.project}/topics/rejected"
    dead_sub = f"projects/{pubsub_env.project}/subscriptions/rejected"
    pubsub_env.emulator.create_topic(dead_topic)
    pubsub_env.emulator.create_subscription(dead_sub, dead_topic)
    good = b'{"user_id": 1, "action": "v", "page": "/a", "timestamp": 1733000000}'
    (tmp_path / "in.jsonl").write_bytes(b"\n".join([good, b"{broken", good, b"[]"]) + b"\n")
    pageviews.run(["--source=file", f"--input={tmp_path}/in.jsonl", "--sink=jsonl",
                   f"--output={tmp_path}/out", f"--dead_letter=pubsub://{dead_topic}"])
    letters = sorted((json.loads(m.data) for m in pull_all(dead_sub, 2)),
                     key=lambda d: d["origin"]["line"])
    assert [(d["origin"]["line"], d["reason_code"]) for d in letters] == [
        (2, "invalid_json"), (4, "not_an_object")]
