"""The Iceberg sink against a real pyiceberg SQL catalog (SQLite in a temp dir; PostgreSQL
in the integration tier): replace in batch, append once in streaming, concurrent writers,
schema checks, and reading the table back with pyiceberg/pyarrow and DuckDB."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream  # not by name: pytest would collect TestStream

from beam_pipelines.testing.collect import collect
from transforms.base.errors import ConfigError, MissingExtraError, SinkError
from transforms.sinks.iceberg import (
    WriteToIceberg,
    default_partitioning,
    latest_panes,
    load_table,
    parse_partitioning,
    read_table,
)
from transforms.sinks.iceberg import commit as commits
from transforms.sinks.iceberg.catalog import catalog_properties, ensure_table, load_catalog

pytestmark = pytest.mark.unit

SCHEMA = pa.schema(
    [
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("window_end", pa.timestamp("us", tz="UTC")),
        ("page", pa.string()),
        ("count", pa.int64()),
        ("pane_timing", pa.string()),
        ("pane_index", pa.int64()),
        ("is_final", pa.bool_()),
    ]
)
TABLE = "web.page_views"


def row(day: int, minute: int, page: str, count: int, pane=None, timing=None):
    start = f"2024-01-{day:02d}T00:{minute:02d}:00Z"
    end = f"2024-01-{day:02d}T00:{minute + 5:02d}:00Z"
    return {
        "window_start": start, "window_end": end, "page": page, "count": count,
        "pane_timing": timing, "pane_index": pane, "is_final": None if pane is None else False,
    }


@pytest.fixture
def lake(tmp_path):
    """Keyword arguments naming a fresh SQLite catalog and warehouse."""
    return {"catalog": f"sqlite:///{tmp_path}/catalog.db", "warehouse": str(tmp_path / "warehouse")}


def write_batch(rows, lake, table=TABLE):
    pipeline = beam.Pipeline()
    letters = pipeline | beam.Create(rows) | WriteToIceberg(table, SCHEMA, mode="replace", **lake)
    got = collect(letters)
    pipeline.run().wait_until_finish()
    return got.items


def current_rows(lake, table=TABLE):
    rows = read_table(table, **lake).to_pylist()
    return sorted(
        (r["window_start"].isoformat(), r["page"], r["count"], r["pane_index"]) for r in rows
    )


def operations(lake, table=TABLE):
    return [s.summary.operation.value for s in load_table(table, **lake).snapshots()]


# -- batch: replace -----------------------------------------------------------------


def test_a_backfill_written_twice_keeps_one_copy_and_the_history_shows_a_replace(lake):
    rows = [row(1, 0, "/a", 3), row(1, 5, "/b", 1), row(2, 0, "/a", 7)]
    assert write_batch(rows, lake) == []
    first = current_rows(lake)
    assert write_batch(rows, lake) == []
    assert current_rows(lake) == first and len(first) == 3

    table = load_table(TABLE, **lake)
    assert operations(lake) == ["append", "overwrite"]
    summary = table.current_snapshot().summary
    assert summary["replace-partitions"] == "true"
    assert summary[commits.MODE] == "replace"
    assert summary["deleted-records"] == "3" and summary["added-records"] == "3"
    assert [str(f) for f in table.spec().fields] == ["1000: window_start_day: day(1)"]


def test_a_backfill_replaces_only_the_days_it_covers(lake):
    write_batch([row(1, 0, "/a", 3), row(2, 0, "/a", 7)], lake)
    write_batch([row(2, 0, "/a", 8), row(2, 10, "/c", 1), row(3, 0, "/a", 2)], lake)
    assert current_rows(lake) == [
        ("2024-01-01T00:00:00+00:00", "/a", 3, None),  # day 1: not in the re-run, kept
        ("2024-01-02T00:00:00+00:00", "/a", 8, None),  # day 2: replaced
        ("2024-01-02T00:10:00+00:00", "/c", 1, None),
        ("2024-01-03T00:00:00+00:00", "/a", 2, None),  # day 3: new
    ]
    assert operations(lake) == ["append", "overwrite"]


def test_an_empty_backfill_leaves_the_table_alone(lake):
    write_batch([row(1, 0, "/a", 3)], lake)
    write_batch([], lake)
    assert current_rows(lake) == [("2024-01-01T00:00:00+00:00", "/a", 3, None)]
    assert operations(lake) == ["append"]


def test_rows_that_do_not_fit_the_schema_are_dead_lettered_and_the_rest_written(lake):
    bad_time = {**row(1, 5, "/b", 1), "window_start": "not a time"}
    bad_count = {**row(1, 10, "/c", 1), "count": "many"}
    letters = write_batch([row(1, 0, "/a", 3), bad_time, bad_count], lake)
    assert sorted(letter.reason_code for letter in letters) == ["sink_rejected"] * 2
    assert all(TABLE in letter.reason and letter.origin["sink"] == "iceberg" for letter in letters)
    assert {'"not a time"' in letter.payload or '"many"' in letter.payload for letter in letters} == {True}
    assert current_rows(lake) == [("2024-01-01T00:00:00+00:00", "/a", 3, None)]


# -- streaming: append once ---------------------------------------------------------


def test_a_retried_bundle_is_appended_once(lake):
    table = ensure_table(
        load_catalog("default", catalog_properties(lake["catalog"], lake["warehouse"])),
        TABLE, SCHEMA, parse_partitioning(default_partitioning(SCHEMA), SCHEMA),
    )
    bundle = _arrow([row(1, 0, "/a", 1, 0, "EARLY"), row(1, 0, "/b", 2, 0, "EARLY")])
    commit_id = commits.content_id("pageviews", TABLE, bundle)
    first = commits.append_once(table, TABLE, bundle, commit_id=commit_id, pipeline="pageviews")
    # The runner retries the bundle (the same rows, maybe in another order).
    retried = bundle.take(pa.array([1, 0]))
    assert commits.content_id("pageviews", TABLE, retried) == commit_id
    again = commits.append_once(table, TABLE, retried, commit_id=commit_id, pipeline="pageviews")
    assert not first.skipped and again.skipped and again.snapshot_id is None
    assert len(current_rows(lake)) == 2
    snapshot = load_table(TABLE, **lake).current_snapshot()
    assert snapshot.summary[commits.COMMIT_ID] == commit_id
    assert snapshot.summary[commits.PIPELINE] == "pageviews"
    # Another pipeline's identical rows are its own commit.
    assert commits.content_id("other", TABLE, bundle) != commit_id


def _arrow(rows):
    from transforms.sinks.iceberg.write import rows_to_arrow

    table, refused = rows_to_arrow(rows, SCHEMA)
    assert refused == []
    return table


def stream_panes(lake, batches):
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    stream = test_stream.TestStream()
    for batch in batches:
        stream = stream.add_elements(batch)
    letters = (
        pipeline | stream | WriteToIceberg(TABLE, SCHEMA, mode="append", pipeline="pageviews", **lake)
    )
    got = collect(letters)
    pipeline.run().wait_until_finish()
    return got.items


def test_streaming_appends_panes_and_the_latest_pane_per_window_is_one_query_away(lake):
    import duckdb

    batches = [
        [row(1, 0, "/a", 1, 0, "EARLY"), row(1, 0, "/b", 1, 0, "EARLY")],
        [row(1, 0, "/a", 4, 1, "EARLY")],
        [row(1, 0, "/a", 5, 2, "ON_TIME"), row(1, 0, "/b", 2, 1, "ON_TIME")],
    ]
    assert stream_panes(lake, batches) == []
    assert len(current_rows(lake)) == 5
    assert set(operations(lake)) == {"append"}

    # A restarted job replays the same bundles: nothing is appended twice.
    stream_panes(lake, batches)
    assert len(current_rows(lake)) == 5

    rows = read_table(TABLE, **lake)
    latest = latest_panes(rows, ["window_start", "page"])
    assert [(r["page"], r["count"], r["pane_timing"]) for r in latest.to_pylist()] == [
        ("/a", 5, "ON_TIME"), ("/b", 2, "ON_TIME"),
    ]
    # The same question in SQL, as docs/iceberg.md writes it.
    found = duckdb.sql(
        "SELECT page, count FROM (SELECT *, row_number() OVER (PARTITION BY window_start, page "
        "ORDER BY pane_index DESC NULLS LAST) AS rn FROM rows) WHERE rn = 1 ORDER BY page"
    ).fetchall()
    assert found == [("/a", 5), ("/b", 2)]


def test_latest_panes_keeps_one_row_even_when_a_pane_was_written_twice():
    rows = _arrow([row(1, 0, "/a", 1, 0), row(1, 0, "/a", 3, 1), row(1, 0, "/a", 3, 1)])
    assert latest_panes(rows, ["window_start", "page"]).column("count").to_pylist() == [3]
    assert latest_panes(rows.slice(0, 0), ["page"]).num_rows == 0


# -- concurrency ---------------------------------------------------------------------


def _commit_in_between(monkeypatch, commit) -> None:
    """Run ``commit`` (another writer) right after the next history check: between this
    writer's refresh and its commit, the window in which a concurrent commit lands."""
    check = commits.find_commit
    pending = [commit]

    def check_then_race(table, commit_id):
        found = check(table, commit_id)
        if pending:
            pending.pop()()
        return found

    monkeypatch.setattr(commits, "find_commit", check_then_race)


def _lake_table(lake, partition_by=("day(window_start)",)):
    catalog = load_catalog("default", catalog_properties(lake["catalog"], lake["warehouse"]))
    return catalog, ensure_table(catalog, TABLE, SCHEMA, parse_partitioning(list(partition_by), SCHEMA))


def test_a_writer_that_lost_the_race_refreshes_and_retries(lake, monkeypatch):
    catalog, mine = _lake_table(lake)
    other = catalog.load_table(TABLE)
    _commit_in_between(monkeypatch, lambda: commits.append_once(
        other, TABLE, _arrow([row(1, 0, "/a", 1, 0)]), commit_id="a", pipeline="p"))
    landed = commits.append_once(mine, TABLE, _arrow([row(1, 0, "/b", 1, 0)]), commit_id="b",
                                 pipeline="p")
    assert landed.attempts == 2 and not landed.skipped
    assert [page for _, page, _, _ in current_rows(lake)] == ["/a", "/b"]


def test_a_replace_that_lost_the_race_replaces_what_the_other_writer_added_too(lake, monkeypatch):
    catalog, mine = _lake_table(lake)
    other = catalog.load_table(TABLE)
    commits.append_once(other, TABLE, _arrow([row(1, 0, "/a", 1, 0)]), commit_id="a", pipeline="p")
    _commit_in_between(monkeypatch, lambda: commits.append_once(
        other, TABLE, _arrow([row(1, 5, "/c", 1, 0)]), commit_id="c", pipeline="p"))
    replaced = commits.replace_partitions(mine, TABLE, _arrow([row(1, 0, "/z", 9)]), pipeline="p")
    # As if the replace had run after the other writer: day 1 holds only the replacement.
    assert replaced.attempts == 2
    assert current_rows(lake) == [("2024-01-01T00:00:00+00:00", "/z", 9, None)]


def test_a_bundle_committed_by_another_worker_meanwhile_is_not_appended_twice(lake, monkeypatch):
    """A runner retries a bundle while its first attempt is still alive: both try to
    commit the same rows; whichever commits second finds the first in the history."""
    catalog, first = _lake_table(lake)
    second = catalog.load_table(TABLE)
    bundle = _arrow([row(1, 0, "/a", 1, 0, "EARLY"), row(1, 0, "/b", 1, 0, "EARLY")])
    commit_id = commits.content_id("pageviews", TABLE, bundle)
    _commit_in_between(monkeypatch, lambda: commits.append_once(
        second, TABLE, bundle, commit_id=commit_id, pipeline="pageviews"))
    result = commits.append_once(first, TABLE, bundle, commit_id=commit_id, pipeline="pageviews")
    assert result.skipped and result.attempts == 2
    assert len(current_rows(lake)) == 2
    assert operations(lake) == ["append"]


def test_concurrent_writers_both_land(lake):
    catalog_props = catalog_properties(lake["catalog"], lake["warehouse"])
    ensure_table(load_catalog("default", catalog_props), TABLE, SCHEMA,
                 parse_partitioning(["day(window_start)"], SCHEMA))
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(page: str) -> None:
        try:
            table = load_catalog("default", catalog_props).load_table(TABLE)
            start.wait()
            for pane in range(5):
                rows = _arrow([row(1, 0, page, pane + 1, pane)])
                commits.append_once(table, TABLE, rows, commit_id=f"{page}-{pane}", pipeline="p",
                                    max_attempts=50)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(page,)) for page in ("/a", "/b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted((page, count) for _, page, count, _ in current_rows(lake)) == [
        (page, n) for page in ("/a", "/b") for n in range(1, 6)
    ]


def test_a_commit_that_keeps_losing_fails_in_one_line_and_leaves_no_files(lake, monkeypatch):
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.table import Transaction

    catalog = load_catalog("default", catalog_properties(lake["catalog"], lake["warehouse"]))
    table = ensure_table(catalog, TABLE, SCHEMA, [])

    def always_conflict(self):
        raise CommitFailedException("Table has been updated by another process: web.page_views")

    monkeypatch.setattr(commits, "_FIRST_DELAY", 0.0)
    monkeypatch.setattr(Transaction, "commit_transaction", always_conflict)
    with pytest.raises(SinkError) as failed:
        commits.append_once(table, TABLE, _arrow([row(1, 0, "/a", 1)]), commit_id="x",
                            pipeline="p", max_attempts=3)
    message = str(failed.value)
    assert "\n" not in message and TABLE in message and "after 3 attempts" in message
    assert list(Path(lake["warehouse"]).rglob("*.parquet")) == []  # no orphan data files


# -- reading back --------------------------------------------------------------------


def test_duckdb_reads_the_tables_current_data_files(lake):
    import duckdb

    write_batch([row(1, 0, "/a", 3), row(2, 0, "/a", 7)], lake)
    write_batch([row(2, 0, "/a", 8)], lake)  # day 2's first file is no longer current
    table = load_table(TABLE, **lake)
    files = [task.file.file_path for task in table.scan().plan_files()]
    assert len(files) == 2
    paths = [path.removeprefix("file://") for path in files]
    total = duckdb.sql(f"SELECT sum(count) FROM read_parquet({paths!r})").fetchall()
    assert total == [(3 + 8,)]
    current = table.scan().to_arrow()  # pyarrow, through pyiceberg's scan
    connection = duckdb.connect()
    connection.register("current", current)
    assert connection.sql("SELECT page, sum(count) FROM current GROUP BY page").fetchall() == [
        ("/a", 11)
    ]


# -- table creation and schema checks ----------------------------------------------------


def test_an_existing_table_with_another_type_fails_in_one_line_naming_table_and_column(lake):
    write_batch([row(1, 0, "/a", 3)], lake)
    wrong = pa.schema([f if f.name != "count" else pa.field("count", pa.string()) for f in SCHEMA])
    catalog = load_catalog("default", catalog_properties(lake["catalog"], lake["warehouse"]))
    with pytest.raises(SinkError) as failed:
        ensure_table(catalog, TABLE, wrong, [])
    message = str(failed.value)
    assert "\n" not in message and TABLE in message and "'count'" in message

    extra = SCHEMA.append(pa.field("referrer", pa.string()))
    with pytest.raises(SinkError, match=r"web\.page_views has no column 'referrer'"):
        ensure_table(catalog, TABLE, extra, [])


def test_an_existing_table_accepts_narrower_types_and_fewer_optional_columns(lake):
    write_batch([row(1, 0, "/a", 3)], lake)
    narrow = pa.schema([("window_start", pa.timestamp("us", tz="UTC")), ("page", pa.string()),
                        ("count", pa.int32())])
    pipeline = beam.Pipeline()
    _ = (
        pipeline
        | beam.Create([{"window_start": "2024-01-05T00:00:00Z", "page": "/n", "count": 4}])
        | WriteToIceberg(TABLE, narrow, mode="replace", **lake)
    )
    pipeline.run().wait_until_finish()
    assert ("2024-01-05T00:00:00+00:00", "/n", 4, None) in current_rows(lake)


def test_a_new_table_gets_the_schema_and_partition_spec(lake):
    write_batch([row(1, 0, "/a", 3)], lake)
    table = load_table(TABLE, **lake)
    assert [f.name for f in table.schema().fields] == SCHEMA.names
    assert str(table.schema().find_field("window_start").field_type) == "timestamptz"


def test_partitioning_is_parsed_and_checked_against_the_schema():
    assert default_partitioning(SCHEMA) == ["day(window_start)"]
    sessions = pa.schema([("user_id", pa.string()), ("session_start", pa.timestamp("us", tz="UTC"))])
    assert default_partitioning(sessions) == ["day(session_start)"]
    assert default_partitioning(pa.schema([("page", pa.string())])) == []
    fields = parse_partitioning(["day(window_start)", "bucket(16, page)", "page", "truncate(2, page)"],
                                SCHEMA)
    assert [(f.column, f.transform) for f in fields] == [
        ("window_start", "day"), ("page", "bucket[16]"), ("page", "identity"), ("page", "truncate[2]"),
    ]
    for bad, word in [("day(nope)", "nope"), ("hour(page)", "hour"), ("bucket(page)", "bucket"),
                      ("weekly(window_start)", "weekly"), ("day(", "day(")]:
        with pytest.raises(ConfigError, match="--iceberg_partition_by") as failed:
            parse_partitioning([bad], SCHEMA)
        assert word in str(failed.value)


def test_arguments_are_checked_when_the_pipeline_is_built(lake):
    with pytest.raises(ConfigError, match="--output: expected an Iceberg table as NAMESPACE.TABLE"):
        WriteToIceberg("page_views", SCHEMA, mode="replace", **lake)
    with pytest.raises(ConfigError, match="^mode: "):
        WriteToIceberg(TABLE, SCHEMA, mode="upsert", **lake)
    with pytest.raises(ConfigError, match="--iceberg_catalog") as failed:
        WriteToIceberg(TABLE, SCHEMA, mode="append", catalog="mysql://root:secret@db/x",
                       warehouse="/tmp/w")
    assert "secret" not in str(failed.value)
    with pytest.raises(ConfigError, match="--iceberg_warehouse"):
        WriteToIceberg(TABLE, SCHEMA, mode="append", catalog=lake["catalog"])
    with pytest.raises(ConfigError, match="--iceberg_partition_by"):
        WriteToIceberg(TABLE, SCHEMA, mode="append", partition_by=["day(page)"], **lake)


def test_catalog_forms():
    assert catalog_properties("https://polaris:8181/api/catalog", None) == {
        "type": "rest", "uri": "https://polaris:8181/api/catalog",
    }
    glue = catalog_properties({"type": "glue"}, "s3://bucket/lake")
    assert glue == {"type": "glue", "warehouse": "s3://bucket/lake"}
    local = catalog_properties("sqlite:///c.db", "relative/wh")
    assert local["warehouse"].startswith("/") and local["warehouse"].endswith("relative/wh")
    relative = catalog_properties("sqlite:///lake/catalog.db", "/wh")["uri"]
    assert relative.startswith("sqlite:////") and relative.endswith("/lake/catalog.db")
    rest = catalog_properties({"uri": "https://polaris/api/catalog"}, None)  # no warehouse needed
    assert rest == {"uri": "https://polaris/api/catalog"}
    keyvalue = catalog_properties("host=db dbname=lake user=etl", "/wh")
    assert keyvalue == {"type": "sql", "uri": "host=db dbname=lake user=etl", "warehouse": "/wh"}


def test_without_pyiceberg_the_error_names_the_extra(lake, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyiceberg", None)
    with pytest.raises(MissingExtraError, match=r"beam-pipelines\[iceberg\]"):
        WriteToIceberg(TABLE, SCHEMA, mode="replace", **lake)
    with pytest.raises(MissingExtraError, match=r"beam-pipelines\[iceberg\]"):
        load_catalog("default", catalog_properties(lake["catalog"], lake["warehouse"]))
