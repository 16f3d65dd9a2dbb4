"""``--sink=iceberg`` from the command line, batch: a backfill run twice leaves one copy
of every row (the history shows partition replaces, not appends), for pageviews and for
sessions; DuckDB reads the table; the catalog flags; and every problem is one line before
anything is read."""

from __future__ import annotations

import sys
from collections import Counter

import duckdb
import pytest

from beam_pipelines import pageviews, sessions
from beam_pipelines.testing.sessions import (
    ReferenceSession,
    reference_events,
    reference_sessions,
    session_lines,
)
from transforms.sinks.iceberg import load_table, read_table

pytestmark = pytest.mark.unit

GAP = 60


@pytest.fixture
def events_file(tmp_path):
    lines = [line for _, line in session_lines(600, seed=8, gap=GAP)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, reference_events(lines)


def lake_flags(tmp_path, table: str) -> list[str]:
    return ["--sink=iceberg", f"--output={table}", f"--iceberg_warehouse={tmp_path / 'lake'}"]


def lake(tmp_path) -> dict:
    """The catalog --iceberg_warehouse alone makes: a SQLite file in the warehouse."""
    return {"catalog": f"sqlite:///{tmp_path / 'lake' / 'catalog.db'}",
            "warehouse": str(tmp_path / "lake")}


def history(table) -> list[tuple[str, dict]]:
    return [(s.summary.operation.value, s.summary.additional_properties) for s in table.snapshots()]


def assert_replaced_twice(table, rows: int) -> None:
    """Two commits, each replacing the partitions of its rows; the second removed exactly
    what the first added."""
    (first_op, first), (second_op, second) = history(table)
    assert first["replace-partitions"] == second["replace-partitions"] == "true"
    assert first["beam-pipelines.mode"] == second["beam-pipelines.mode"] == "replace"
    assert first_op in ("append", "overwrite")  # into an empty table nothing is deleted
    assert second_op == "overwrite"
    assert int(second["deleted-records"]) == int(second["added-records"]) == rows
    assert int(second["total-records"]) == rows


def test_a_pageviews_backfill_run_twice_leaves_one_copy_of_every_row(tmp_path, events_file):
    path, events = events_file
    flags = ["--source=file", f"--input={path}", *lake_flags(tmp_path, "web.page_views")]
    assert pageviews.main(flags) == 0
    assert pageviews.main(flags) == 0

    table = load_table("web.page_views", **lake(tmp_path))
    expected = Counter((micros // 10**6 // 300 * 300, page) for _, micros, page in events)
    assert_replaced_twice(table, len(expected))
    db = duckdb.connect()
    db.register("page_views", table.scan().to_arrow())  # pyiceberg's scan: live files only
    got = db.sql("SELECT epoch(window_start)::BIGINT, page, count, pane_index IS NULL "
                 "FROM page_views").fetchall()
    assert sorted(got) == sorted((start, page, n, True) for (start, page), n in expected.items())
    assert [f.name for f in table.schema().fields] == [
        "window_start", "window_end", "page", "count", "pane_timing", "pane_index", "is_final"]
    assert [str(f.transform) for f in table.spec().fields] == ["day"]


def test_a_sessions_backfill_run_twice_leaves_one_copy_of_every_session(tmp_path, events_file):
    path, events = events_file
    flags = ["--source=file", f"--input={path}", f"--session_gap={GAP}",
             *lake_flags(tmp_path, "web.sessions"), "--iceberg_partition_by=day(session_start)"]
    assert sessions.main(flags) == 0
    assert sessions.main([*flags, "--batch_engine=records"]) == 0

    table = load_table("web.sessions", **lake(tmp_path))
    expected = reference_sessions(events, GAP)
    assert_replaced_twice(table, len(expected))
    got = [ReferenceSession(r["user_id"], int(r["session_start"].timestamp() * 10**6),
                            int(r["session_end"].timestamp() * 10**6), r["events"],
                            r["distinct_pages"], r["first_page"], r["last_page"],
                            r["duration_seconds"])
           for r in table.scan().to_arrow().to_pylist()]
    assert sorted(got) == expected


def test_a_catalog_file_with_pyiceberg_layout_and_partition_fields(tmp_path, events_file):
    path, events = events_file
    catalog = tmp_path / "pyiceberg.yaml"
    catalog.write_text(
        "catalog:\n"
        "  other:\n    uri: sqlite:////nonexistent/never.db\n"
        f"  lake:\n    uri: sqlite:///{tmp_path / 'cat' / 'catalog.db'}\n"
        f"    warehouse: {tmp_path / 'wh'}\n")
    assert sessions.main([
        "--source=file", f"--input={path}", "--sink=iceberg", "--output=web.sessions",
        f"--iceberg_catalog={catalog}", "--iceberg_catalog_name=lake",
        "--iceberg_partition_by=bucket(4, user_id), day(session_start)",
    ]) == 0
    table = load_table("web.sessions", catalog=f"sqlite:///{tmp_path / 'cat' / 'catalog.db'}",
                       warehouse=str(tmp_path / "wh"), catalog_name="lake")
    assert [(f.name, str(f.transform)) for f in table.spec().fields] == [
        ("user_id_bucket_4", "bucket[4]"), ("session_start_day", "day")]
    assert table.scan().to_arrow().num_rows == len(reference_sessions(events, 1800))


def test_a_nested_namespace_in_a_sql_catalog_is_one_line(tmp_path, capsys):
    assert pageviews.main(["--synthetic_events=10", *lake_flags(tmp_path, "lake.web.pv")]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: cannot create or load Iceberg table lake.web.pv: Invalid path, hierarchical "
        "namespaces are not supported: lake.web.pv")


def test_a_postgres_dsn_catalog_is_checked_at_start_and_never_shows_the_password(tmp_path, capsys):
    code = pageviews.main(["--synthetic_events=10", "--sink=iceberg", "--output=web.pv",
                           "--iceberg_catalog=postgresql://etl:s3cret@127.0.0.1:1/lake",
                           f"--iceberg_warehouse={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert err.startswith("error: cannot open the Iceberg catalog at postgresql://etl:***@127.0.0.1:1/lake")
    assert "s3cret" not in err


@pytest.mark.parametrize("flags, message", [
    (["--sink=iceberg", "--iceberg_warehouse=W"], "--output: expected the Iceberg table as "
     "NAMESPACE.TABLE when --sink=iceberg"),
    (["--sink=iceberg", "--output=pv", "--iceberg_warehouse=W"],
     "--output: expected an Iceberg table as NAMESPACE.TABLE"),
    (["--sink=iceberg", "--output=web.pv"], "--iceberg_catalog: expected the catalog when "
     "--sink=iceberg"),
    (["--sink=iceberg", "--output=web.pv", "--iceberg_catalog=mysql://root:pw@db/x",
      "--iceberg_warehouse=W"], "--iceberg_catalog: expected sqlite:///PATH"),
    (["--sink=iceberg", "--output=web.pv", "--iceberg_warehouse=W",
      "--iceberg_partition_by=day(page)"], "--iceberg_partition_by: expected day() of a "
     "timestamp column"),
    (["--sink=iceberg", "--output=web.pv", "--iceberg_warehouse=W",
      "--iceberg_partition_by=month(nope)"], "--iceberg_partition_by: expected a column of the "
     "result"),
    (["--sink=iceberg", "--output=web.pv", "--iceberg_catalog_properties=credential"],
     "--iceberg_catalog_properties: expected KEY=VALUE"),
    (["--sink=iceberg", "--output=web.pv", "--iceberg_catalog_properties=s3.region=eu"],
     "--iceberg_catalog_properties: expected a type=... or uri=... property"),
])
def test_bad_iceberg_flags_are_one_line_naming_the_flag(tmp_path, monkeypatch, capsys, flags,
                                                        message):
    monkeypatch.chdir(tmp_path)
    assert pageviews.main(["--synthetic_events=10", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}") and "\n" not in err, err
    assert "pw@" not in err


def test_a_table_the_results_do_not_fit_fails_at_start_in_one_line(tmp_path, events_file, capsys):
    path, _ = events_file
    flags = ["--source=file", f"--input={path}", *lake_flags(tmp_path, "web.t")]
    assert pageviews.main(flags) == 0
    capsys.readouterr()
    assert sessions.main([*flags, f"--dead_letter={tmp_path / 'rejected'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: Iceberg table web.t has no column 'user_id' that the result has "
                   "(string); use a new table or add the column")
    assert not (tmp_path / "rejected").exists()  # nothing was read


def test_without_the_extra_the_run_says_which_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyiceberg", None)  # import pyiceberg raises ImportError
    assert pageviews.main(["--synthetic_events=10", *lake_flags(tmp_path, "web.pv")]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --sink=iceberg: pyiceberg is not installed: it needs the [iceberg] extra "
        "(pip install 'beam-pipelines[iceberg]')")


def test_synthetic_events_into_a_lake_with_only_a_warehouse_directory(tmp_path):
    assert pageviews.main(["--synthetic_events=200", "--synthetic_malformed=0",
                           *lake_flags(tmp_path, "web.pv")]) == 0
    rows = read_table("web.pv", **lake(tmp_path))
    assert sum(rows.column("count").to_pylist()) == 200
