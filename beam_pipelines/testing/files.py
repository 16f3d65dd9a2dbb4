"""Read what the file sinks wrote, for assertions in tests (yours and ours): the one
JSON-lines reader."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

__all__ = ["read_jsonl", "read_jsonl_dir", "read_parquet_dir", "window_counts"]


def read_jsonl(pattern: str) -> list[dict[str, Any]]:
    """Every JSON object in the files matching ``pattern`` (``**`` reaches subdirectories),
    in file (then line) order."""
    rows: list[dict[str, Any]] = []
    for path in sorted(glob.glob(pattern, recursive=True)):
        with open(path, encoding="utf-8") as handle:
            rows.extend(json.loads(line) for line in handle if line.strip())
    return rows


def read_jsonl_dir(directory: str, name: str = "*") -> list[dict[str, Any]]:
    """Every JSON object in ``directory/NAME*.jsonl`` (all shards), in file order."""
    return read_jsonl(os.path.join(directory, f"{name}*.jsonl"))


def read_parquet_dir(directory: str, name: str = "*") -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for path in sorted(glob.glob(os.path.join(directory, f"{name}*.parquet"))):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def window_counts(rows: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """{(window_start, page): count} from pageviews output rows (ISO or datetime starts)."""
    out: dict[tuple[str, str], int] = {}
    for row in rows:
        start = row["window_start"]
        if not isinstance(start, str):
            start = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        out[(start, row["page"])] = row["count"]
    return out
