"""Sinks for results and dead letters: console, JSON lines, Parquet, PostgreSQL, Apache Iceberg.

Records are NamedTuples or dicts; :func:`as_dict` is the one conversion every sink uses.
Batch file sinks *replace* their output (a re-run of a backfill never leaves duplicate
or stale shards); streaming file sinks add one file per bundle; the PostgreSQL sink
upserts on a key, so re-runs and later panes replace earlier rows.
"""

from __future__ import annotations

from typing import Any, Mapping


def as_dict(record: Any) -> dict[str, Any]:
    """A NamedTuple, dataclass-like or mapping record as a plain dict."""
    if isinstance(record, Mapping):
        return dict(record)
    if hasattr(record, "_asdict"):
        return record._asdict()
    raise TypeError(f"cannot turn {type(record).__name__} into a row: expected a NamedTuple or dict")
