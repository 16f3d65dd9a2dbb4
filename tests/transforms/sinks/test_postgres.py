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
                postgres_dsn, "views", pageviews.RESULTS.postgres_columns, pageviews.RESULTS.postgres_key
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
    assert "retried" not in line  # the check at launch does not retry, and does not say it did
    assert "secret" not in done.stderr


def _write(dsn, records, **kwargs):
    import apache_beam as beam

    from beam_pipelines.testing.collect import collect
    from transforms.sinks.postgres import WriteToPostgres

    pipeline = beam.Pipeline()
    refused = pipeline | beam.Create(records) | WriteToPostgres(
        dsn, "views", pageviews.RESULTS.postgres_columns, pageviews.RESULTS.postgres_key, pipeline="pageviews",
        **kwargs,
    )
    got = collect(refused)
    pipeline.run().wait_until_finish()
    return got.items


def test_a_refused_row_is_dead_lettered_and_the_rest_written(postgres_dsn):
    from transforms.records import PageViewCount

    start, end = "2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z"
    refused = _write(postgres_dsn, [
        PageViewCount(start, end, "/ok", 3),
        PageViewCount(start, end, "/huge", 10**30),  # does not fit a bigint
    ])
    assert rows(postgres_dsn, "views") == [(start, "/ok", 3)]
    [letter] = refused
    assert letter.reason_code == "sink_rejected" and letter.step == "sink"
    assert '"/huge"' in letter.payload and "out of range" in letter.reason


def test_never_decrease_keeps_the_larger_streaming_count(postgres_dsn):
    from transforms.records import PageViewCount

    start, end = "2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z"
    _write(postgres_dsn, [PageViewCount(start, end, "/a", 4, "LATE", 2, False)], never_decrease="count")
    _write(postgres_dsn, [PageViewCount(start, end, "/a", 3, "ON_TIME", 1, False)], never_decrease="count")
    assert rows(postgres_dsn, "views") == [(start, "/a", 4)]
