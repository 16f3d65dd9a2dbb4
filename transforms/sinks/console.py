"""Print results for people: a sorted table in batch, one line per pane in streaming."""

from __future__ import annotations

import sys
from typing import Any, Sequence

import apache_beam as beam
from apache_beam.transforms import window as beam_window

from transforms.sinks import as_dict


def cell(value: Any) -> str:
    """A value as the console shows it: lists as comma-separated items (``a,b``), floats
    to two decimals (``30.46``, not ``30.458333333333332``). For display only: the file,
    database and message sinks keep every digit."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(map(cell, value))
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table with a header, columns padded to fit."""
    cells = [[str(c) for c in columns]] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class _PrintTable(beam.DoFn):
    def __init__(self, columns: Sequence[str], sort_by: Sequence[str], title: str) -> None:
        self._columns = list(columns)
        self._sort_by = list(sort_by)
        self._title = title

    def process(self, records: list):
        rows = sorted((as_dict(r) for r in records), key=lambda r: [r[k] for k in self._sort_by])
        out = sys.stdout
        out.write(f"\n{self._title} ({len(rows)} rows)\n")
        out.write(format_table(rows, self._columns) + "\n")
        out.flush()


class _PrintLine(beam.DoFn):
    def __init__(self, columns: Sequence[str]) -> None:
        self._columns = list(columns)

    def process(self, record):
        row = as_dict(record)
        print("  ".join(f"{c}={cell(row.get(c))}" for c in self._columns if row.get(c) is not None),
              flush=True)


class WriteToConsole(beam.PTransform):
    """Batch: one sorted table at the end. Streaming: a line per result as it fires."""

    def __init__(
        self,
        columns: Sequence[str],
        *,
        streaming: bool,
        sort_by: Sequence[str] | None = None,
        title: str = "results",
    ) -> None:
        super().__init__()
        self._columns = list(columns)
        self._streaming = streaming
        self._sort_by = list(sort_by or columns[:1])
        self._title = title

    def expand(self, pcoll):
        if self._streaming:
            return pcoll | "PrintLine" >> beam.ParDo(_PrintLine(self._columns))
        return (
            pcoll
            | "GlobalWindow" >> beam.WindowInto(beam_window.GlobalWindows())
            | "Collect" >> beam.combiners.ToList()
            | "PrintTable" >> beam.ParDo(_PrintTable(self._columns, self._sort_by, self._title))
        )
