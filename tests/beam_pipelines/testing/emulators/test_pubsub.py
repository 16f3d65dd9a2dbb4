"""The Pub/Sub emulator, driven by the official google-cloud-pubsub client only."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from beam_pipelines.testing.polling import wait_for

pytestmark = pytest.mark.integration




def pull(subscriber, subscription, n=100):
    response = subscriber.pull(
        request={"subscription": subscription, "max_messages": n, "return_immediately": True}
    )
    return list(response.received_messages)


def test_admin_publish_pull_ack(pubsub_env):
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    project = f"projects/{pubsub_env.project}"
    assert [t.name for t in publisher.list_topics(project=project)] == [pubsub_env.topic]
    assert list(publisher.list_topic_subscriptions(topic=pubsub_env.topic)) == [
        pubsub_env.subscription
    ]
    assert subscriber.get_subscription(subscription=pubsub_env.subscription).ack_deadline_seconds == 10
    with pytest.raises(gexc.AlreadyExists):
        publisher.create_topic(name=pubsub_env.topic)
    with pytest.raises(gexc.NotFound):
        subscriber.create_subscription(name=f"{project}/subscriptions/orphan",
                                       topic=f"{project}/topics/missing")
    with pytest.raises(gexc.InvalidArgument):
        publisher.create_topic(name="topics/no-project")
    with pytest.raises(gexc.InvalidArgument):
        subscriber.create_subscription(name=f"{project}/subscriptions/short-deadline",
                                       topic=pubsub_env.topic, ack_deadline_seconds=5)

    futures = [publisher.publish(pubsub_env.topic, f"m{i}".encode(), index=str(i))
               for i in range(5)]
    ids = [f.result(timeout=10) for f in futures]
    assert len(set(ids)) == 5

    received = pull(subscriber, pubsub_env.subscription, n=3)
    assert [m.message.data for m in received] == [b"m0", b"m1", b"m2"]
    assert [m.message.attributes["index"] for m in received] == ["0", "1", "2"]
    assert all(m.message.publish_time for m in received)
    subscriber.acknowledge(subscription=pubsub_env.subscription,
                           ack_ids=[m.ack_id for m in received])
    rest = pull(subscriber, pubsub_env.subscription)
    assert [m.message.data for m in rest] == [b"m3", b"m4"]
    subscriber.acknowledge(subscription=pubsub_env.subscription, ack_ids=[m.ack_id for m in rest])
    assert pull(subscriber, pubsub_env.subscription) == []
    assert pubsub_env.emulator.backlog(pubsub_env.subscription) == (0, 0)

    subscriber.delete_subscription(subscription=pubsub_env.subscription)
    with pytest.raises(gexc.NotFound):
        subscriber.get_subscription(subscription=pubsub_env.subscription)
    publisher.delete_topic(topic=pubsub_env.topic)
    with pytest.raises(gexc.NotFound):
        publisher.publish(pubsub_env.topic, b"x").result(timeout=10)


def test_redelivery_after_deadline_and_modack(pubsub_env):
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    publisher.publish(pubsub_env.topic, b"a").result(timeout=10)
    publisher.publish(pubsub_env.topic, b"b").result(timeout=10)
    first = pull(subscriber, pubsub_env.subscription)
    assert [m.message.data for m in first] == [b"a", b"b"]
    a, b = first
    # Within the deadline nothing is delivered again.
    assert pull(subscriber, pubsub_env.subscription) == []
    # "a" gets 1 second more, "b" is handed back at once (nack).
    subscriber.modify_ack_deadline(subscription=pubsub_env.subscription, ack_ids=[a.ack_id],
                                   ack_deadline_seconds=1)
    subscriber.modify_ack_deadline(subscription=pubsub_env.subscription, ack_ids=[b.ack_id],
                                   ack_deadline_seconds=0)
    again_b = pull(subscriber, pubsub_env.subscription)
    assert [m.message.data for m in again_b] == [b"b"]
    assert again_b[0].ack_id != b.ack_id and again_b[0].message.message_id == b.message.message_id
    # "a"'s lease now ends within the second it was given (state, not a stopwatch).
    state = pubsub_env.emulator.servicer.state
    with state.lock:
        lease = state.subscriptions[pubsub_env.subscription].outstanding[a.ack_id]
        assert lease.deadline - time.monotonic() <= 1.0
    again_a = wait_for(lambda: pull(subscriber, pubsub_env.subscription), what="redelivery of a")
    assert [m.message.data for m in again_a] == [b"a"]
    # Acknowledging an expired ack id does nothing; the new one settles the message.
    subscriber.acknowledge(subscription=pubsub_env.subscription, ack_ids=[a.ack_id])
    assert pubsub_env.emulator.backlog(pubsub_env.subscription) == (0, 2)
    subscriber.acknowledge(subscription=pubsub_env.subscription,
                           ack_ids=[again_a[0].ack_id, again_b[0].ack_id])
    assert pubsub_env.emulator.backlog(pubsub_env.subscription) == (0, 0)
    with pytest.raises(gexc.InvalidArgument):
        subscriber.modify_ack_deadline(subscription=pubsub_env.subscription,
                                       ack_ids=[a.ack_id], ack_deadline_seconds=601)


def test_streaming_pull_with_nack_and_ordering_keys(pubsub_env):
    publisher = pubsub_v1.PublisherClient(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    subscriber = pubsub_v1.SubscriberClient()
    ordered = f"projects/{pubsub_env.project}/subscriptions/ordered"
    subscriber.create_subscription(request={"name": ordered, "topic": pubsub_env.topic,
                                            "enable_message_ordering": True})
    expected = {key: [f"{key}{i}".encode() for i in range(10)] for key in ("k1", "k2")}
    for i in range(10):
        for key in expected:
            publisher.publish(pubsub_env.topic, expected[key][i], ordering_key=key)
    publisher.publish(pubsub_env.topic, b"nack-me-once").result(timeout=10)

    seen: dict[str, list[bytes]] = {"k1": [], "k2": []}
    plain: list[bytes] = []
    lock = threading.Lock()

    def callback(message):
        with lock:
            if message.ordering_key:
                seen[message.ordering_key].append(message.data)
            else:
                plain.append(message.data)
                if len(plain) == 1:
                    message.nack()  # redelivered at once, through the stream
                    return
        message.ack()

    for subscription in (pubsub_env.subscription, ordered):
        future = subscriber.subscribe(subscription, callback)
        try:
            wait_for(lambda: sum(map(len, seen.values())) == 20 and len(plain) == 2,  # noqa: B023
                     what="all messages through StreamingPull")
        finally:
            future.cancel()
            future.result(timeout=10)
        assert seen == expected  # per key, in publish order
        assert plain == [b"nack-me-once", b"nack-me-once"]
        wait_for(lambda s=subscription: pubsub_env.emulator.backlog(s) == (0, 0),
                 what="every message acknowledged")
        for received in seen.values():
            received.clear()
        plain.clear()


def test_command_line_emulator(monkeypatch):
    from beam_pipelines.testing.servers import free_port

    port = free_port()
    topic, sub = "projects/cli/topics/topic-1", "projects/cli/subscriptions/sub-1"
    process = subprocess.Popen(
        [sys.executable, "-m", "beam_pipelines.testing.emulators.pubsub", "--port", str(port),
         "--topic", topic, "--subscription", f"{sub}={topic}"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line
        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{port}")
        pubsub_v1.PublisherClient().publish(topic, b"hello").result(timeout=10)
        received = pull(pubsub_v1.SubscriberClient(), sub)
        assert [m.message.data for m in received] == [b"hello"]
    finally:
        process.terminate()
        process.wait(timeout=10)
