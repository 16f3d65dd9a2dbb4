"""Kill-and-restart of a streaming pageviews job into PostgreSQL, reading a Pub/Sub
subscription and an Event Hubs consumer group (the emulators), three kills each.

The same story as ``test_recovery_kafka.py``: the job is SIGKILLed with a window open
(the pushers') and restarted as it was started, and the table ends with every event
counted exactly once. Pub/Sub: the runner acknowledges a message only once every window
that counted it has been written, so what the dead job held is redelivered (the test lets
the dead job's ack deadlines pass at once, as the service would after a while). Event
Hubs: the checkpoint (in Azurite, the blob layout EventProcessorClient apps share) moves
the same way, and carries what the restart needs to skip what it re-reads of written
windows.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from beam_pipelines.testing.emulators.eventhubs import send_events
from beam_pipelines.testing.jobs import Job
from beam_pipelines.testing.polling import wait_for
from tests.beam_pipelines.pageviews.test_recovery_kafka import (
    ROOT,
    WINDOW,
    events,
    expected_counts,
    table,
)

pytestmark = pytest.mark.integration

LATENESS = 30
PUSHER = {"user_id": 99, "action": "view", "page": "/pusher"}


def start(flags: list[str], dsn: str, log: Path) -> Job:
    return Job.start([sys.executable, "-m", "beam_pipelines.pageviews", *flags,
                      f"--window_size={WINDOW}", f"--allowed_lateness={LATENESS}",
                      "--sink=postgres", f"--output={dsn}", "--output_table=page_views"],
                     log=log, cwd=ROOT)


def kill_and_restart_three_times(send, flags, dsn, tmp_path: Path, first_second: int,
                                 after_kill=lambda: None, before_kill=lambda sent: None) -> None:
    """Three rounds of events (two windows) and a pusher each: start, wait for the closed
    windows, kill with the pushers' window open; then a final pusher and a last run that
    must leave every event counted once. ``send(events, pusher)`` returns what it sent."""
    sent: list[dict] = []
    for kill_round in range(3):
        first = first_second + 400 * kill_round
        sent += send(events(first, 60), dict(PUSHER, timestamp=first + 300))
        job = start(flags, dsn, tmp_path / f"run{kill_round}.log")
        try:
            want = expected_counts(sent, before=(first + 300) // WINDOW * WINDOW)
            job.wait_for(lambda want=want: table(dsn) == want,
                         f"every closed window of round {kill_round}, counted once")
            before_kill(sent)
        finally:
            job.kill()
        after_kill()
    final = first_second + 2000
    pushers = send([], dict(PUSHER, timestamp=final))
    sent += pushers
    job = start(flags, dsn, tmp_path / "final.log")
    try:
        want = expected_counts(sent, before=final // WINDOW * WINDOW)
        job.wait_for(lambda: table(dsn) == want, "every window, counted once")
    finally:
        job.kill()
    assert table(dsn) == want
    assert sum(want.values()) == len(sent) - len(pushers)  # all but the last pushers' window


def test_pubsub_kill_and_restart_counts_every_event_once(pubsub_env, postgres_dsn, tmp_path):
    from tests.transforms.io.pubsub.test_connector import publish

    emulator, subscription = pubsub_env.emulator, pubsub_env.subscription

    def send(batch: list[dict], pusher: dict) -> list[dict]:
        publish(pubsub_env.topic, [(json.dumps(e).encode(), {"ts": str(e["timestamp"] * 1000)})
                                   for e in [*batch, pusher]])
        return [*batch, pusher]

    def only_the_pusher_unacknowledged(sent: list[dict]) -> None:
        # Every message of a written window is acknowledged; the open window's is not.
        wait_for(lambda: emulator.backlog(subscription) == (0, 1),
                 what="every message but the pusher acknowledged")

    def deadlines_pass() -> None:
        # The dead job's last pull ends (else it takes what becomes deliverable), then its
        # ack deadlines pass: its unacknowledged messages are delivered again.
        wait_for(lambda: emulator.pulling(subscription) == 0, what="the dead job's pulls to end")
        emulator.expire(subscription)

    kill_and_restart_three_times(
        send, ["--source=pubsub", f"--subscription={subscription}", "--timestamp_attribute=ts",
               f"--pubsub_emulator_host={pubsub_env.host}", "--pubsub_ack_deadline=10"],
        postgres_dsn, tmp_path, first_second=1_700_000_100,
        before_kill=only_the_pusher_unacknowledged,
        after_kill=deadlines_pass)


def test_eventhubs_kill_and_restart_counts_every_event_once(eventhubs_emulator, eventhub, azurite,
                                                            postgres_dsn, tmp_path):
    hub = eventhub(partitions=2, prefix="recovery")
    connection = eventhubs_emulator.connection_string

    def send(batch: list[dict], pusher: dict) -> list[dict]:
        # Round robin over the two partitions: an even batch, then a pusher last in each.
        sent = [*batch, pusher, pusher]
        send_events(connection, hub, [json.dumps(e).encode() for e in sent], partitions=2)
        return sent

    # Event times ahead of the clock: an idle partition's watermark follows the clock,
    # which must not close the pushers' window while the test runs.
    first = (int(time.time()) // WINDOW + 30) * WINDOW
    kill_and_restart_three_times(
        send, ["--source=eventhubs", f"--eventhubs_connection_string={connection}",
               f"--eventhub={hub}", "--eventhubs_consumer_group=recovery",
               f"--eventhubs_checkpoint_store={azurite}", "--eventhubs_checkpoint_container=recovery",
               "--eventhubs_event_time_field=timestamp"],
        postgres_dsn, tmp_path, first_second=first)

