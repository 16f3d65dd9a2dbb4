"""Streaming session panes appended to an Iceberg table: the current sessions are one query
away (docs/sessions.md), and equal the batch sessions of the same events."""

from __future__ import annotations

import time

import apache_beam as beam
import duckdb
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream  # not by name: pytest would collect TestStream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.testing.collect import collect
from transforms.records import UserEvent
from transforms.session_windows import SessionConfig
from transforms.sessions import Sessionize, session_schema
from transforms.sinks.iceberg import WriteToIceberg, read_table

pytestmark = pytest.mark.unit

T0 = 1_704_067_200

# The query of docs/sessions.md: the latest pane of every session, without the sessions
# that merged into a bigger one (their span lies inside the bigger one's).
CURRENT_SESSIONS = """
WITH latest AS (
  SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (PARTITION BY user_id, session_start
                                 ORDER BY pane_index DESC) AS rn
    FROM sessions)
  WHERE rn = 1)
SELECT user_id, session_start, session_end, events, distinct_pages, first_page, last_page,
       duration_seconds
FROM latest AS s
WHERE NOT EXISTS (
  SELECT 1 FROM latest AS bigger
  WHERE bigger.user_id = s.user_id
    AND bigger.session_start <= s.session_start AND bigger.session_end >= s.session_end
    AND (bigger.session_start < s.session_start OR bigger.session_end > s.session_end))
ORDER BY user_id, session_start
"""


def ev(user, page, offset):
    return TimestampedValue(UserEvent(user, "page_view", page, float(T0 + offset)), T0 + offset)


def test_streaming_sessions_in_iceberg_give_the_batch_sessions_in_one_query(tmp_path):
    lake = {"catalog": f"sqlite:///{tmp_path}/catalog.db", "warehouse": str(tmp_path / "wh")}
    now = int(time.time())
    batches = [
        [ev("u", "/a", 0), ev("v", "/a", 3)],
        [ev("u", "/b", 20), ev("u", "/c", 70)],  # u: [0, 50) and [70, 100)
        [ev("u", "/d", 48)],  # bridges them: u's sessions merge into [0, 100)
        [ev("v", "/b", 400)],
    ]
    stream = test_stream.TestStream().advance_processing_time(now).advance_watermark_to(T0)
    for batch in batches:
        stream = stream.add_elements(batch).advance_processing_time(120)  # EARLY panes
    stream = stream.advance_watermark_to_infinity()

    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    panes = (pipeline | stream | Sessionize(SessionConfig(gap=30, early_firing=60), streaming=True)).sessions
    letters = panes | WriteToIceberg(
        "web.sessions", session_schema(), mode="append", pipeline="sessions", **lake
    )
    got_letters = collect(letters)
    pipeline.run().wait_until_finish()
    assert got_letters.items == []

    sessions = read_table("web.sessions", **lake)
    assert "EARLY" in sessions.column("pane_timing").to_pylist()
    # u's early pane of the session starting at 70 was superseded by the merge: it is in
    # the table, as appended, and the query leaves it out.
    starts = {(r["user_id"], r["session_start"].timestamp() - T0) for r in sessions.to_pylist()}
    assert ("u", 70) in starts
    current = duckdb.sql(CURRENT_SESSIONS).fetchall()

    batch = beam.Pipeline()
    out = (
        batch
        | beam.Create([e for chunk in batches for e in chunk])
        | Sessionize(SessionConfig(gap=30), streaming=False)
    )
    final = collect(out.sessions)
    batch.run().wait_until_finish()
    expected = sorted(
        (s.user_id, s.session_start, s.session_end, s.events, s.distinct_pages, s.first_page,
         s.last_page, s.duration_seconds)
        for s in final.items
    )
    assert [
        (u, start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ"), *rest)
        for u, start, end, *rest in current
    ] == expected
    assert [row[0] for row in current] == ["u", "v", "v"]
