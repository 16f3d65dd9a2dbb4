"""The PostgreSQL sink against a real server: upserts, re-runs, late panes."""

import subprocess
import sys

import psycopg
import pytest

from beam_pipelines import pageviews
from beam_pipelines.testing import SyntheticEvents

pytestmark = pytest.mark.integration


def rows(dsn, table="page_views"):
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"SELECT to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), page, count "
            f"FROM {table} ORDER BY 1, 2"
        ).fetchall()


def test_backfill_to_postgres_creates_the_table_and_reruns_replace(tmp_path, postgres_dsn):
    generator = SyntheticEvents(seed=11, rate=1.0, malformed=0.02)
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(generator.payloads(1500)) + b"\n")
    argv = ["--source=file", f"--input={tmp_path}/events.jsonl", "--sink=postgres",
            f"--output={postgres_dsn}"]

    pageviews.run(argv)
    first = rows(postgres_dsn)
    assert sum(count for _, _, count in first) == sum(1 for _ in generator.events(1500))
    assert len({(w, p) for w, p, _ in first}) == len(first)

    pageviews.run(argv)  # the same backfill again: same rows, not doubled
    assert rows(postgres_dsn) == first


def test_a_later_pane_replaces_the_count(postgres_dsn):
    import apache_beam as beam

    from transforms.records import PageViewCount
    from transforms.sinks.postgres import WriteToPostgres

    def write(records):
        with beam.Pipeline() as pipeline:
            pipeline | beam.Create(records) | WriteToPostgres(
                postgres_dsn, "views", pageviews.POSTGRES_COLUMNS, pageviews.POSTGRES_KEY
            )

    start, end = "2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z"
    write([PageViewCount(start, end, "/a", 3, "ON_TIME", 0, False)])
    write([PageViewCount(start, end, "/a", 4, "LATE", 1, False)])
    assert rows(postgres_dsn, "views") == [(start, "/a", 4)]


def test_unreachable_database_is_a_clear_error():
    done = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.pageviews", "--sink=postgres",
         "--output=postgresql://nobody:secret@127.0.0.1:1/db", "--synthetic_events=10"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: cannot connect to PostgreSQL at postgresql://nobody:***@127.0.0.1:1/db")
    assert "secret" not in done.stderr
