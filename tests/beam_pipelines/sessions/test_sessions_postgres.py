"""Sessions into PostgreSQL: rows upserted on (user_id, session_start). A backfill run
twice leaves the reference's sessions once; a stream whose sessions merge leaves the
absorbed session's row behind, and the view of docs/sessions.md shows the current ones."""

from __future__ import annotations

import pytest

from beam_pipelines import sessions
from beam_pipelines.testing.sessions import (
    ReferenceSession,
    reference_events,
    reference_sessions,
    session_lines,
)
from tests.beam_pipelines.sessions.test_sessions_streaming import ACCEPTED, run_stream

pytestmark = pytest.mark.integration

# docs/sessions.md: the current sessions of a table that streaming panes were upserted into.
CURRENT_SESSIONS_VIEW = """
CREATE VIEW current_sessions AS
SELECT * FROM sessions AS s
WHERE NOT EXISTS (
  SELECT 1 FROM sessions AS bigger
  WHERE bigger.user_id = s.user_id
    AND bigger.session_start <= s.session_start AND bigger.session_end >= s.session_end
    AND (bigger.session_start < s.session_start OR bigger.session_end > s.session_end))
"""
COLUMNS = ("user_id, (extract(epoch FROM session_start) * 1000000)::bigint, "
           "(extract(epoch FROM session_end) * 1000000)::bigint, events, distinct_pages, "
           "first_page, last_page, duration_seconds")


def query(dsn: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchall() if cursor.description else []


def test_a_backfill_into_postgres_twice_leaves_each_session_once(postgres_dsn, tmp_path):
    lines = [line for _, line in session_lines(300, seed=5, gap=60)]
    (tmp_path / "e.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    flags = ["--source=file", f"--input={tmp_path / 'e.jsonl'}", "--session_gap=60",
             "--sink=postgres", f"--output={postgres_dsn}"]
    assert sessions.main(flags) == 0
    assert sessions.main(flags) == 0
    got = sorted(ReferenceSession(*row) for row in query(postgres_dsn, f"SELECT {COLUMNS} FROM sessions"))
    assert got == reference_sessions(reference_events(lines), 60)
    key = query(postgres_dsn, """
        SELECT a.attname FROM pg_index i JOIN pg_attribute a
          ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = 'sessions'::regclass AND i.indisprimary ORDER BY a.attnum""")
    assert [name for (name,) in key] == ["user_id", "session_start"]


def test_merged_sessions_leave_the_absorbed_row_and_the_view_shows_the_current(postgres_dsn):
    run_stream(["--sink=postgres", f"--output={postgres_dsn}"])
    rows = query(postgres_dsn, "SELECT user_id, events, pane_timing, is_final FROM sessions "
                               "ORDER BY user_id, session_start")
    # 7's session from 00:01:10 merged into the one from 00:00:00; its last upserted pane
    # (ON_TIME, not final) stays: the merged-session caveat.
    assert rows == [("7", 4, "LATE", True), ("7", 1, "ON_TIME", False), ("v", 1, "LATE", True)]
    query(postgres_dsn, CURRENT_SESSIONS_VIEW)
    current = sorted(ReferenceSession(*row) for row in query(
        postgres_dsn, f"SELECT {COLUMNS} FROM current_sessions"))
    assert current == reference_sessions(ACCEPTED, 30)
