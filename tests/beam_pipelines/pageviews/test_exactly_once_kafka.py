"""Kafka -> pageviews -> Kafka, exactly once: killed with SIGKILL three times while it runs
(a window open each time), restarted with ``--start_at=committed``; a ``read_committed``
consumer of the output sees one final pane per (window, page), each with the exact count.

No allowed lateness and no early panes, so every window has exactly one pane to write: a
duplicate would be a window written again after a restart, a loss a window missing.
"""

from __future__ import annotations

import json
import sys

import pytest

from beam_pipelines.testing.jobs import Job
from tests.beam_pipelines.pageviews.test_recovery_kafka import (
    PARTITIONS,
    POLL,
    ROOT,
    T0,
    WINDOW,
    events,
    expected_counts,
    produce,
)
from tests.transforms.io.kafka.test_exactly_once import read_all
from transforms.base.times import epoch_seconds, parse_iso

pytestmark = pytest.mark.integration

GROUP = "pageviews_eos"


def panes(servers: str, topic: str) -> list[tuple[int, str, int]]:
    """(window start, page, count) of every pane a read_committed consumer sees."""
    rows = [json.loads(v) for v in read_all(servers, topic, "read_committed")]
    return [(int(epoch_seconds(parse_iso(r["window_start"]))), r["page"], r["count"])
            for r in rows]


def test_windowed_results_to_kafka_exactly_once_across_kills(kafka_broker, kafka_topic, tmp_path):
    servers = kafka_broker.bootstrap_servers
    source, target = kafka_topic(PARTITIONS, "pv_eos_in"), kafka_topic(1, "pv_eos_out")
    flags = [sys.executable, "-m", "beam_pipelines.pageviews", "--source=kafka",
             f"--bootstrap_servers={servers}", f"--topic={source}", f"--consumer_group={GROUP}",
             "--start_at=committed", f"--window_size={WINDOW}", "--idle_timeout=600",
             # in-order events: with no allowed lateness an out-of-order one would be late
             f"--kafka_config=max_poll_records={POLL}", "--sink=kafka", f"--output={target}",
             "--delivery=exactly_once"]
    sent: list[dict] = []
    for kill_round in range(4):
        first = T0 + 400 * kill_round
        pusher = first + 300 if kill_round < 3 else T0 + 2000
        batch = [e for e in events(first, 100) if e["timestamp"] >= first] if kill_round < 3 else []
        sent += produce(servers, source, batch, pusher_second=pusher)
        want = expected_counts(sent, before=pusher // WINDOW * WINDOW)
        job = Job.start(flags, log=tmp_path / f"run{kill_round}.log", cwd=ROOT)
        try:
            job.wait_for(lambda want=want: {(s, p): c for s, p, c in panes(servers, target)} == want,
                         f"the closed windows of round {kill_round} written")
        finally:
            job.kill()
        written = panes(servers, target)
        assert len(written) == len(want), "a window written twice"
    assert sorted(panes(servers, target)) == sorted((s, p, c) for (s, p), c in want.items())
