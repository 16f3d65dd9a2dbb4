"""The Iceberg sink with a PostgreSQL SQL catalog (the real server of the postgres fixture)."""

from __future__ import annotations

import psycopg
import pytest

from tests.transforms.sinks.test_iceberg import (
    current_rows,
    operations,
    row,
    stream_panes,
    write_batch,
)

pytestmark = pytest.mark.integration


def test_a_postgres_sql_catalog_replaces_and_appends(postgres_dsn, tmp_path):
    lake = {"catalog": postgres_dsn, "warehouse": str(tmp_path / "warehouse")}
    rows = [row(1, 0, "/a", 3), row(2, 0, "/b", 1)]
    write_batch(rows, lake)
    write_batch(rows, lake)
    assert len(current_rows(lake)) == 2
    assert operations(lake) == ["append", "overwrite"]


    with psycopg.connect(postgres_dsn) as conn:
        found = conn.execute(
            "SELECT table_namespace, table_name FROM iceberg_tables"
        ).fetchall()
    assert found == [("web", "page_views")]

    stream_panes(lake, [[row(3, 0, "/a", 1, 0, "EARLY")]])
    stream_panes(lake, [[row(3, 0, "/a", 1, 0, "EARLY")]])  # replayed: skipped
    assert len(current_rows(lake)) == 3
