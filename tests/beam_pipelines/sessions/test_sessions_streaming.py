"""The sessions pipeline streaming, driven by TestStream through the skeleton: EARLY panes
as sessions grow, a late event within --allowed_lateness merging two closed sessions (a
LATE pane), an event beyond it dead-lettered with reason ``late``, and the current
sessions one query away (docs/sessions.md) equal to the plain reference."""

from __future__ import annotations

import json
import time

import duckdb
import pytest
from apache_beam.testing import test_stream  # not by name: pytest would collect TestStream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines import options as opts
from beam_pipelines.sessions import SESSIONS, SessionsOptions
from beam_pipelines.testing.files import read_jsonl, read_jsonl_dir
from beam_pipelines.testing.sessions import reference_sessions
from beam_pipelines.wiring.source_spec import SourceSpec
from transforms.records import RawRecord

pytestmark = pytest.mark.unit

T0 = 1_704_067_200

CURRENT_SESSIONS = """
WITH latest AS (
  SELECT * EXCLUDE (rn) FROM (
    SELECT *, row_number() OVER (PARTITION BY user_id, session_start
                                 ORDER BY pane_index DESC) AS rn
    FROM panes)
  WHERE rn = 1)
SELECT user_id, session_start, session_end, events FROM latest AS s
WHERE NOT EXISTS (
  SELECT 1 FROM latest AS bigger
  WHERE bigger.user_id = s.user_id
    AND bigger.session_start <= s.session_start AND bigger.session_end >= s.session_end
    AND (bigger.session_start < s.session_start OR bigger.session_end > s.session_end))
ORDER BY user_id, session_start
"""


def raw(user, page, offset: int) -> TimestampedValue:
    event = {"user_id": user, "action": "page_view", "page": page, "timestamp": T0 + offset}
    return TimestampedValue(RawRecord(json.dumps(event).encode(), {"source": "test"}), T0 + offset)


def merging_stream() -> test_stream.TestStream:
    """User 7's two sessions close, then a late event bridges them; one event comes later
    than the allowed lateness (60 s) and is a dead letter."""
    now = int(time.time())
    return (
        test_stream.TestStream()
        .advance_processing_time(now)
        .advance_watermark_to(T0)
        .add_elements([raw(7, "/a", 0), raw("v", "/a", 3)])
        .advance_processing_time(120)  # EARLY panes
        .add_elements([raw("7", "/b", 20), raw(7, "/c", 70)])  # 7 and "7": one user
        .advance_processing_time(120)  # EARLY: user 7 has [0, 20] and [70]
        .advance_watermark_to(T0 + 105)  # both close (ON_TIME), neither expired (50 + 60 > 105)
        .add_elements([raw(7, "/d", 48)])  # late, within the lateness: bridges them
        .advance_watermark_to(T0 + 400)  # every session expires: closing panes
        .add_elements([raw(7, "/e", 5)])  # beyond the allowed lateness: a dead letter
        .advance_watermark_to_infinity()
    )


# The sessions of merging_stream() without the dead letter, as the reference makes them.
ACCEPTED = [("7", (T0 + s) * 10**6, p) for s, p in ((0, "/a"), (20, "/b"), (70, "/c"), (48, "/d"))]
ACCEPTED.append(("v", (T0 + 3) * 10**6, "/a"))
STREAM_FLAGS = ["--session_gap=30", "--allowed_lateness=60", "--early_firing=60"]


def run_stream(flags: list[str]) -> None:
    options = opts.parse([*STREAM_FLAGS, *flags],
                         [opts.IOOptions, opts.WindowOptions, SessionsOptions], prog="test")
    SESSIONS.launch(options, source=SourceSpec(merging_stream(), bounded=False)) \
        .result.wait_until_finish()


def test_panes_grow_merge_and_too_late_events_are_dead_letters(tmp_path):
    run_stream(["--sink=jsonl", f"--output={tmp_path / 'out'}",
                f"--dead_letter={tmp_path / 'rejected'}"])

    panes = read_jsonl_dir(str(tmp_path / "out"), "sessions")
    timings = {(p["user_id"], p["session_start"][11:19], p["pane_timing"], p["is_final"])
               for p in panes}
    assert {("7", "00:00:00", "EARLY", False), ("7", "00:01:10", "EARLY", False),
            ("7", "00:00:00", "ON_TIME", False), ("7", "00:01:10", "ON_TIME", False),
            ("7", "00:00:00", "LATE", False), ("7", "00:00:00", "LATE", True)} <= timings
    # The superseded row of the session that merged away is in the output, as appended,
    # and the query of docs/sessions.md leaves it out.
    db = duckdb.connect()
    db.execute("CREATE TABLE panes AS SELECT * FROM read_json_auto(?)",
               [str(tmp_path / "out" / "sessions*.jsonl")])
    current = [(u, str(s)[11:19], str(e)[11:19], n) for u, s, e, n in db.sql(CURRENT_SESSIONS).fetchall()]
    expected = reference_sessions(ACCEPTED, 30)
    assert current == [(s.user_id, time.strftime("%H:%M:%S", time.gmtime(s.start / 1e6)),
                        time.strftime("%H:%M:%S", time.gmtime(s.end / 1e6)), s.events)
                       for s in expected]
    assert current == [("7", "00:00:00", "00:01:10", 4), ("v", "00:00:03", "00:00:03", 1)]

    letters = read_jsonl(str(tmp_path / "rejected" / "**" / "*.jsonl"))
    assert [(d["pipeline"], d["reason_code"], json.loads(d["payload"])["page"]) for d in letters] \
        == [("sessions", "late", "/e")]
