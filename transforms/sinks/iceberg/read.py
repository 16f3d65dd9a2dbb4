"""Reading an Iceberg table the sink wrote, and its latest pane per window.

A streaming job appends a row per pane (EARLY, ON_TIME, LATE; accumulating, so each pane
holds the window's whole result so far). The current answer is the row with the highest
``pane_index`` of each window and key. In SQL (DuckDB, Trino, Spark)::

    SELECT * EXCLUDE (rn) FROM (
      SELECT *, row_number() OVER (PARTITION BY window_start, page
                                   ORDER BY pane_index DESC NULLS LAST) AS rn
      FROM page_views)
    WHERE rn = 1

and in pyarrow :func:`latest_panes` (rows of a batch backfill have no pane index; they
sort after every pane, and a window holds either kind, never both, because a backfill
replaces whole partitions).
"""

from __future__ import annotations

from typing import Optional, Sequence

from transforms.sinks.iceberg.catalog import (
    CatalogConfig,
    catalog_properties,
    load_catalog,
    validate_identifier,
)

__all__ = ["latest_panes", "load_table", "read_table"]


def load_table(
    table: str, *, catalog: CatalogConfig, warehouse: Optional[str] = None,
    catalog_name: str = "default",
):
    """The pyiceberg ``Table`` (``.scan()``, ``.snapshots()``, ``.inspect``)."""
    identifier = validate_identifier(table)
    return load_catalog(catalog_name, catalog_properties(catalog, warehouse)).load_table(identifier)


def read_table(
    table: str, *, catalog: CatalogConfig, warehouse: Optional[str] = None,
    catalog_name: str = "default", row_filter: Optional[str] = None,
):
    """The table's current rows as a ``pyarrow.Table`` (optionally filtered, e.g.
    ``"window_start >= '2024-01-01T00:00:00+00:00'"``)."""
    loaded = load_table(table, catalog=catalog, warehouse=warehouse, catalog_name=catalog_name)
    scan = loaded.scan(row_filter=row_filter) if row_filter else loaded.scan()
    return scan.to_arrow()


def latest_panes(rows, keys: Sequence[str], pane_column: str = "pane_index"):
    """Of every group of ``rows`` (a pyarrow Table) with equal ``keys``, the row with the
    highest ``pane_column`` (one row per group, even when a pane was written twice)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if rows.num_rows == 0:
        return rows
    numbered = rows.append_column("__row", pa.array(range(rows.num_rows), pa.int64()))
    # Rows without a pane index (a backfill's) rank after every pane.
    numbered = numbered.append_column("__pane", pc.fill_null(rows.column(pane_column), -1))
    ordered = numbered.sort_by([(key, "ascending") for key in keys] + [("__pane", "descending")])
    first = ordered.group_by(list(keys), use_threads=False).aggregate([("__row", "first")])
    return rows.take(first.column("__row_first")).sort_by([(key, "ascending") for key in keys])
