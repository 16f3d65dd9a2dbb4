"""``--sink=iceberg`` in streaming from Kafka: a job killed with SIGKILL and restarted ends
with no duplicated rows and the latest pane of every window equal to the batch answer
(a backfill of the same topic); and sessions streamed from Kafka in order equal the
sessions of a backfill and of the plain reference. DuckDB reads the tables.

The pageviews job runs as a subprocess on the local streaming runner, is killed (no
cleanup, like a lost machine) and restarted with the same command, ``--start_at=committed``.
The local runner keeps window state in memory only, so it commits a record's offset only
once every window that counted it is written to the table (docs/recovery.md): the restart
re-reads the window that was open at the kill and nothing that was already written. Event
times double as Kafka log times, and a "pusher" event per partition far ahead in event
time moves the watermark.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from sqlalchemy.exc import OperationalError

from beam_pipelines import pageviews, sessions
from beam_pipelines.testing.jobs import Job
from beam_pipelines.testing.kafka import committed_count
from beam_pipelines.testing.sessions import (
    ReferenceSession,
    reference_events,
    reference_sessions,
    session_lines,
)
from transforms.sinks.iceberg import latest_panes, load_table, read_table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_700_000_100  # window-aligned: T0 % 300 == 0
WINDOW = 300
PARTITIONS = 2
GROUP = "lake"
POLL = 10
# docs/sessions.md: the latest pane of every session, without sessions merged into others.
CURRENT_SESSIONS = """
WITH latest AS (
  SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (PARTITION BY user_id, session_start
                                 ORDER BY pane_index DESC) AS rn
    FROM sessions)
  WHERE rn = 1)
SELECT user_id, epoch_us(session_start), epoch_us(session_end), events, distinct_pages,
       first_page, last_page, duration_seconds
FROM latest AS s
WHERE NOT EXISTS (
  SELECT 1 FROM latest AS bigger
  WHERE bigger.user_id = s.user_id
    AND bigger.session_start <= s.session_start AND bigger.session_end >= s.session_end
    AND (bigger.session_start < s.session_start OR bigger.session_end > s.session_end))
"""


def produce(servers: str, topic: str, timed: list[tuple[int, bytes]]) -> None:
    """(log time in seconds, payload) spread over the partitions in order."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    for i, (second, payload) in enumerate(timed):
        producer.send(topic, payload, partition=i % PARTITIONS, timestamp_ms=int(second * 1000))
    producer.flush()
    producer.close()


def page_events(first_second: int, count: int, pusher: int) -> list[tuple[int, bytes]]:
    """``count`` events from ``first_second`` on, then a pusher event in every partition."""
    pages = ("/a", "/b", "/c")
    timed = [(first_second + i, {"user_id": i, "action": "view", "page": pages[i % 3],
                                 "timestamp": first_second + i}) for i in range(count)]
    timed += [(pusher, {"user_id": 99, "action": "view", "page": "/pusher", "timestamp": pusher})
              for _ in range(PARTITIONS)]
    return [(second, json.dumps(event).encode()) for second, event in timed]


def lake_flags(lake: Path, table: str) -> list[str]:
    return ["--sink=iceberg", f"--output={table}", f"--iceberg_warehouse={lake}"]


def lake_of(lake: Path) -> dict:
    return {"catalog": f"sqlite:///{lake / 'catalog.db'}", "warehouse": str(lake)}


def rows_of(lake: Path, table: str) -> list[dict]:
    """The table's rows; none while the table does not exist yet or SQLite is locked by
    the job's commit (polled again)."""
    try:
        return read_table(table, **lake_of(lake)).to_pylist()
    except (OperationalError, sqlite3.OperationalError):
        return []
    except Exception as exc:  # NoSuchTableError before the job's first commit
        if type(exc).__name__ in ("NoSuchTableError", "NoSuchNamespaceError"):
            return []
        raise


def counts(rows: list[dict]) -> dict[tuple[int, str], int]:
    """{(window start, page): count} of the latest pane of every window."""
    if not rows:
        return {}
    import pyarrow as pa

    latest = latest_panes(pa.Table.from_pylist(rows), ["window_start", "page"])
    return {(int(r["window_start"].timestamp()), r["page"]): r["count"] for r in latest.to_pylist()}


def start_job(servers: str, topic: str, lake: Path, log: Path) -> Job:
    return Job.start([sys.executable, "-m", "beam_pipelines.pageviews", "--source=kafka",
                      f"--bootstrap_servers={servers}", f"--topic={topic}", f"--consumer_group={GROUP}",
                      "--start_at=committed", f"--window_size={WINDOW}", "--idle_timeout=600",
                      # Small polls, as a live stream has them (a backlog comes in polls of
                      # 2000, and a poll holding a record of the open window is held whole).
                      f"--kafka_config=max_poll_records={POLL}",
                      *lake_flags(lake, "web.page_views")], log=log, cwd=ROOT)


def test_a_streaming_job_killed_and_restarted_leaves_one_row_per_pane_and_the_batch_answer(
        kafka_broker, kafka_topic, tmp_path):
    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(PARTITIONS, "lake")
    lake = tmp_path / "lake"

    # Run 1 writes window A, then dies with the pusher's window (T0 + 900) open.
    produce(servers, topic, page_events(T0, 90, pusher=T0 + 1000))
    job = start_job(servers, topic, lake, tmp_path / "run1.log")
    try:
        want_a = {(T0, "/a"): 30, (T0, "/b"): 30, (T0, "/c"): 30}
        job.wait_for(lambda: counts(rows_of(lake, "web.page_views")) == want_a,
                     "window A in the table")
        # Offsets move as windows are written: up to the polls the pushers' window holds.
        sent = 90 + PARTITIONS
        job.wait_for(lambda: committed_count(servers, topic, GROUP) >= sent - PARTITIONS * (POLL + 2),
                     "window A's offsets committed")
    finally:
        job.kill()
    # The pushers were read, but their window lived only in the dead job's memory: their
    # offsets were not committed, so the restart reads them again (and skips what it reads
    # again of window A, already in the table).
    assert committed_count(servers, topic, GROUP) < sent

    # While it is down window B arrives; the same command restarts from the committed offsets.
    produce(servers, topic, page_events(T0 + 1300, 60, pusher=T0 + 3000))
    job = start_job(servers, topic, lake, tmp_path / "run2.log")
    try:
        closed = {(T0 + 900, "/pusher"): 2, (T0 + 1200, "/a"): 20, (T0 + 1200, "/b"): 20,
                  (T0 + 1200, "/c"): 20}
        job.wait_for(lambda: counts(rows_of(lake, "web.page_views")) == {**want_a, **closed},
                     "every closed window")
    finally:
        job.kill()

    # The batch answer: a backfill of the same topic (bounded read), into its own table.
    assert pageviews.main(["--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
                           "--start_at=earliest", "--stop_at=end", f"--window_size={WINDOW}",
                           *lake_flags(lake, "web.page_views_backfill")]) == 0
    db = duckdb.connect()
    db.register("stream", load_table("web.page_views", **lake_of(lake)).scan().to_arrow())
    db.register("backfill", load_table("web.page_views_backfill", **lake_of(lake)).scan().to_arrow())
    duplicates = db.sql("SELECT window_start, page, pane_index, count(*) FROM stream "
                        "GROUP BY ALL HAVING count(*) > 1").fetchall()
    assert duplicates == []
    latest = db.sql("""
        SELECT epoch(window_start)::BIGINT, page, count FROM (
          SELECT *, row_number() OVER (PARTITION BY window_start, page
                                       ORDER BY pane_index DESC NULLS LAST) AS rn
          FROM stream)
        WHERE rn = 1""").fetchall()
    batch = db.sql("SELECT epoch(window_start)::BIGINT, page, count FROM backfill "
                   f"WHERE window_start < to_timestamp({T0 + 3000})").fetchall()
    assert sorted(latest) == sorted(batch) == sorted((*k, v) for k, v in {**want_a, **closed}.items())


def test_sessions_streamed_from_kafka_in_order_equal_the_backfill_and_the_reference(
        kafka_broker, kafka_topic, tmp_path):
    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(PARTITIONS, "sessions")
    lake = tmp_path / "lake"
    gap = 60
    timed = session_lines(300, seed=21, gap=gap, late=0.0)  # in order, some lines dirty
    produce(servers, topic, [(micros / 1e6, line) for micros, line in timed])
    kafka = ["--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
             "--start_at=earliest", "--stop_at=end", f"--session_gap={gap}"]

    # A stream (bounded by --stop_at=end, so it ends: the watermark reaches the end of
    # time and every session fires) appends panes; a backfill replaces.
    assert sessions.main([*kafka, "--streaming", f"--dead_letter={tmp_path / 'rejected'}",
                          *lake_flags(lake, "web.sessions")]) == 0
    assert sessions.main([*kafka, *lake_flags(lake, "web.sessions_backfill")]) == 0

    db = duckdb.connect()
    db.register("sessions", load_table("web.sessions", **lake_of(lake)).scan().to_arrow())
    backfill = load_table("web.sessions_backfill", **lake_of(lake)).scan().to_arrow()
    db.register("backfill", backfill)
    streamed = sorted(ReferenceSession(*row) for row in db.sql(CURRENT_SESSIONS).fetchall())
    batch = sorted(ReferenceSession(*row) for row in db.sql(
        "SELECT user_id, epoch_us(session_start), epoch_us(session_end), events, "
        "distinct_pages, first_page, last_page, duration_seconds FROM backfill").fetchall())
    expected = reference_sessions(reference_events([line for _, line in timed]), gap)
    assert streamed == batch == expected
    assert len(expected) > 20
    panes = Counter(db.sql("SELECT pane_timing, is_final FROM sessions").fetchall())
    assert set(panes) == {("ON_TIME", True)}  # in order: one final pane per session
    assert backfill.column("pane_index").null_count == backfill.num_rows
    rejected = list((tmp_path / "rejected").rglob("*.jsonl"))
    assert sum(len(p.read_text().splitlines()) for p in rejected) == \
        len(timed) - len(reference_events([line for _, line in timed])) > 0
