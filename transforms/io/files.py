"""Read JSON-lines (optionally compressed) and Parquet files with each record's origin.

``ReadLinesWithOrigin`` yields :class:`~transforms.records.RawRecord` with
``origin={"source": "file", "file": PATH, "line": N}`` (1-based), so a dead letter says
exactly which line it was. Lines are split on ``\\n`` only (a stray ``\\r`` inside a line
is data, a trailing ``\\r`` is stripped) and read as bytes, so invalid UTF-8 reaches the
validator instead of crashing the reader. Any Beam filesystem path works (local, gs://,
s3://, ...); compression follows the extension (``.gz``, ``.bz2``, ``.zst``, ...).

Each file is read by one worker, in order, because line numbers need the lines before
them; parallelism comes from having several files. Parquet files (``.parquet``) are read
in record batches with pyarrow; each row becomes a JSON payload with the same fields,
so it is validated by the same contract, and its origin carries the row number.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_pipelines.errors import ConfigError, SourceError
from transforms.records import RawRecord

_CHUNK = 1 << 20


def expand_glob(pattern: str) -> list[str]:
    """Every file matching ``pattern``, sorted; a clear error when there are none."""
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception as exc:  # Beam raises BeamIOError with nested causes
        raise SourceError(f"--input: cannot list {pattern!r}: {exc}") from None
    paths = sorted(m.path for m in matches if m.size_in_bytes is not None)
    if not paths:
        raise SourceError(f"--input: no files match {pattern!r}")
    return paths


def iter_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(line number, line bytes without the newline) for every line of ``path``."""
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
        number = 0
        rest = b""
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            for line in lines:
                number += 1
                yield number, line[:-1] if line.endswith(b"\r") else line
        if rest:
            yield number + 1, rest[:-1] if rest.endswith(b"\r") else rest


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:  # Parquet timestamps without a zone are UTC by convention
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    return str(value)


def iter_parquet_rows(path: str) -> Iterator[tuple[int, bytes]]:
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        reader = pq.ParquetFile(handle)
        number = 0
        for batch in reader.iter_batches(batch_size=65_536):
            for row in batch.to_pylist():
                number += 1
                yield number, json.dumps(row, default=_json_default).encode("utf-8")


class _ReadFile(beam.DoFn):
    def __init__(self) -> None:
        self._lines = Metrics.counter("files", "lines_read")

    def process(self, path: str):
        if path.endswith(".parquet"):
            rows, kind = iter_parquet_rows(path), "row"
        else:
            rows, kind = iter_lines(path), "line"
        count = 0
        for number, payload in rows:
            count += 1
            yield RawRecord(payload, {"source": "file", "file": path, kind: number})
        self._lines.inc(count)


class ReadLinesWithOrigin(beam.PTransform):
    """Files matching a glob -> RawRecord per line (JSON lines) or row (Parquet)."""

    def __init__(self, pattern: str) -> None:
        super().__init__()
        if not pattern or not isinstance(pattern, str):
            raise ConfigError("--input", "a file path or glob (JSON lines, .gz, or .parquet)", pattern)
        self._pattern = pattern

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        paths = expand_glob(self._pattern)
        return (
            pbegin
            | "ListFiles" >> beam.Create(paths)
            | "Reshuffle" >> beam.Reshuffle()
            | "ReadFile" >> beam.ParDo(_ReadFile())
        )
