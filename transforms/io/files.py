"""Read JSON-lines (optionally compressed) and Parquet files with each record's origin.

``ReadLinesWithOrigin`` yields :class:`~transforms.records.RawRecord` with
``origin={"source": "file", "file": PATH, "line": N}`` (1-based), so a dead letter says
exactly which line it was. Lines are split on ``\\n`` only (a stray ``\\r`` inside a line
is data, a trailing ``\\r`` is stripped) and read as bytes, so invalid UTF-8 reaches the
validator instead of crashing the reader. Any Beam filesystem path works (local, gs://,
s3://, ...); compression follows the extension (``.gz``, ``.bz2``, ``.zst``, ...), and a
compressed file must reach its end-of-stream marker (:mod:`transforms.io.compressed`): a
truncated or corrupt one fails the run with one line naming it, never a shorter read.

Each file is read by one worker, in order, because line numbers need the lines before
them; parallelism comes from having several files. Parquet files (``.parquet``) are read
in record batches with pyarrow; each row becomes a JSON payload with the same fields,
so it is validated by the same contract, and its origin carries the row number.

``ReadFileBlocks`` is the vectorized batch path's reader: the same files, as
:class:`LineBlock` s of whole lines (about 4 MiB each) or :class:`ParquetRows` record
batches, each knowing the number of its first line or row, so a line handed to the
per-record path keeps exactly the origin ``ReadLinesWithOrigin`` would give it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from typing import Any, Iterator, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.base.errors import ConfigError, SourceError
from transforms.io.compressed import CorruptInput, open_input
from transforms.io.progress import READ_PROGRESS
from transforms.records import RawRecord

_CHUNK = 1 << 20
# Blocks of a few MiB: the parser's pool splits each into 1-MiB pieces, the next block is
# read while one is parsed, and the runner's sampled size estimates pickle a whole block.
BLOCK_BYTES = 4 << 20
PARQUET_BATCH_ROWS = 65_536


class LineBlock(NamedTuple):
    """Whole lines of a JSON-lines file; ``first_line`` is the 1-based number of the first."""

    path: str
    first_line: int
    data: bytes


class ParquetRows(NamedTuple):
    """A record batch of a Parquet file; ``first_row`` is the 1-based number of its first row."""

    path: str
    first_row: int
    batch: Any  # pyarrow.RecordBatch


def expand_glob(pattern: str) -> list[str]:
    """Every file ``pattern`` names, sorted; a clear error when there are none.

    A glob (``*``, ``?``, ``[``) matches as Beam matches it: ``*`` stays within a folder,
    ``**`` crosses folders. A directory (``DIR/``, or ``DIR`` naming a directory) means
    every file under it, subfolders included (``DIR/date=2024-01-01/part-0.jsonl.gz``),
    except names starting with ``.`` or ``_`` at any level (``_SUCCESS``, ``_temporary/``,
    ``.crc`` files: what Spark and Hadoop skip too). Anything else is one file.
    """
    if any(ch in pattern for ch in "*?["):
        # Beam lists nothing for a glob without a folder ('*.gz'): look in "./".
        bare = "://" not in pattern and "/" not in pattern
        paths = _existing(_match("./" + pattern if bare else pattern),
                          f"no files match {pattern!r}")
        return [path[2:] if bare and path.startswith("./") else path for path in paths]
    if pattern.endswith("/") or _is_local_dir(pattern):
        return _files_under(pattern)
    paths = [m.path for m in _match(pattern) if not _is_local_dir(m.path)]
    if not paths:  # on object stores a "directory" is a prefix without a trailing slash
        paths = _files_under(pattern, missing=f"no file or directory {pattern!r}")
    return sorted(paths)


def _match(pattern: str) -> list:
    try:
        return FileSystems.match([pattern])[0].metadata_list
    except Exception as exc:  # Beam raises BeamIOError with nested causes
        raise SourceError(f"--input: cannot list {pattern!r}: {exc}") from None


def _existing(matches: list, missing: str) -> list[str]:
    paths = sorted(m.path for m in matches
                   if m.size_in_bytes is not None and not _is_local_dir(m.path))
    if not paths:
        raise SourceError(f"--input: {missing}")
    return paths


def _is_local_dir(path: str) -> bool:
    return "://" not in path and os.path.isdir(path)


def _files_under(directory: str, missing: str = "") -> list[str]:
    """Every file under ``directory``, recursively, but for hidden ones (see expand_glob)."""
    base = directory.rstrip("/") + "/"
    paths = []
    for metadata in _match(base + "**"):
        relative = metadata.path[len(base):] if metadata.path.startswith(base) else metadata.path
        if any(part.startswith((".", "_")) for part in relative.split("/")):
            continue
        paths.append(metadata)
    return _existing(paths, missing or (
        f"no files in directory {directory!r} (subfolders included; names starting with "
        "'.' or '_' are skipped)"))


def iter_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(line number, line bytes without the newline) for every line of ``path``."""
    for block in iter_blocks(path, _CHUNK):
        lines = block.data.split(b"\n")
        if block.data.endswith(b"\n"):
            lines.pop()  # the empty piece after the block's last newline
        for offset, line in enumerate(lines):
            yield block.first_line + offset, line[:-1] if line.endswith(b"\r") else line


def iter_blocks(path: str, size: int = BLOCK_BYTES) -> Iterator[LineBlock]:
    """``path`` as blocks of whole lines of about ``size`` bytes (the last line of the
    file may lack its newline), numbered as :func:`iter_lines` numbers lines."""
    with open_input(path) as handle:
        line = 1
        rest = b""
        newlines = _NewlineCounter()
        while True:
            chunk = handle.read(size)
            if not chunk:
                break
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:  # no newline yet: a line longer than a block
                rest += chunk
                continue
            # One copy of the block: the carried partial line and the chunk up to its
            # last newline (a block is tens of MiB; copies of it add up).
            if rest:
                block = rest + chunk[:cut]
            elif cut == len(chunk):
                block = chunk
            else:
                block = chunk[:cut]
            rest = chunk[cut:]
            yield LineBlock(path, line, block)
            line += newlines.count(block)
        if rest:
            yield LineBlock(path, line, rest)


class _NewlineCounter:
    """Counts newlines with numpy into a reused buffer: several times faster than
    ``bytes.count`` on blocks of megabytes, and without holding the GIL, which the
    threads parsing the previous block need."""

    def __init__(self) -> None:
        self._buffer = np.empty(0, bool)

    def count(self, data: bytes) -> int:
        if len(self._buffer) < len(data):
            self._buffer = np.empty(len(data), bool)
        found = self._buffer[: len(data)]
        np.equal(np.frombuffer(data, np.uint8), 10, out=found)
        return int(np.count_nonzero(found))


def iter_parquet_batches(path: str) -> Iterator[ParquetRows]:
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        row = 1
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield ParquetRows(path, row, batch)
            row += batch.num_rows


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:  # Parquet timestamps without a zone are UTC by convention
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    return str(value)


def parquet_row_payload(row: dict[str, Any]) -> bytes:
    """A Parquet row as the JSON payload the input contract validates."""
    return json.dumps(row, default=_json_default).encode("utf-8")


def parquet_rows(batch: Any) -> list[dict[str, Any]]:
    """A record batch's rows as dicts. A value Python cannot hold (a timestamp beyond
    year 9999) becomes Arrow's text for it, so its row is dead-lettered with a reason
    instead of failing the read."""
    try:
        return batch.to_pylist()
    except (OverflowError, ValueError):
        pass
    columns = {name: _python_values(batch.column(i)) for i, name in enumerate(batch.schema.names)}
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _python_values(column: Any) -> list[Any]:
    try:
        return column.to_pylist()
    except (OverflowError, ValueError):
        values = []
        for i in range(len(column)):
            try:
                values.append(column[i].as_py())
            except (OverflowError, ValueError):
                values.append(_arrow_text(column.slice(i, 1)))
        return values


def _arrow_text(value: Any) -> str:
    import pyarrow as pa

    try:
        return str(value.cast(pa.string())[0].as_py())
    except (pa.ArrowException, OverflowError, ValueError):
        return f"{value.type} {value.cast(pa.int64())[0].as_py()} (not representable)"


def iter_parquet_rows(path: str) -> Iterator[tuple[int, bytes]]:
    for rows in iter_parquet_batches(path):
        for offset, row in enumerate(parquet_rows(rows.batch)):
            yield rows.first_row + offset, parquet_row_payload(row)


def read_failure(path: str, exc: BaseException) -> SourceError:
    """One line naming ``path`` and why it could not be read (``--input: ...``)."""
    if isinstance(exc, CorruptInput):
        return SourceError(f"--input: {exc}")
    if isinstance(exc, OSError) and exc.strerror:
        return SourceError(f"--input: cannot read {path}: {exc.strerror}")
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return SourceError(f"--input: cannot read {path}: {first}")


def _read_errors() -> tuple[type[BaseException], ...]:
    """What reading a file raises when the file (not our code) is at fault: I/O errors,
    a compressed stream cut short, a Parquet file that is not one."""
    import pyarrow as pa

    return (OSError, CorruptInput, pa.ArrowException)


# Lines between two progress updates of the per-record reader: the lock stays off the
# per-line path.
_PROGRESS_EVERY = 4096


class _ReadFile(beam.DoFn):
    def __init__(self) -> None:
        self._lines = Metrics.counter("files", "lines_read")

    def process(self, path: str):
        if path.endswith(".parquet"):
            rows, kind = iter_parquet_rows(path), "row"
        else:
            rows, kind = iter_lines(path), "line"
        watched = READ_PROGRESS.watched  # nothing extra per line when no one looks
        count = size = 0
        try:
            for number, payload in rows:
                count += 1
                if watched:
                    size += len(payload) + 1
                    if count % _PROGRESS_EVERY == 0:
                        READ_PROGRESS.add(bytes=size, records=_PROGRESS_EVERY)
                        size = 0
                yield RawRecord(payload, {"source": "file", "file": path, kind: number})
        except _read_errors() as exc:
            raise read_failure(path, exc) from None
        if watched:
            READ_PROGRESS.add(bytes=size, records=count % _PROGRESS_EVERY, files=1)
        self._lines.inc(count)


class _ReadFiles(beam.PTransform):
    """Files matching a glob, listed at construction, read in parallel per file."""

    _label = "ReadFile"

    def __init__(self, pattern: str) -> None:
        super().__init__()
        if not pattern or not isinstance(pattern, str):
            raise ConfigError("--input", "a file path or glob (JSON lines, .gz, or .parquet)", pattern)
        self._pattern = pattern

    def _reader(self) -> beam.DoFn:
        raise NotImplementedError

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        paths = expand_glob(self._pattern)
        return (
            pbegin
            | "ListFiles" >> beam.Create(paths)
            | "Reshuffle" >> beam.Reshuffle()
            | self._label >> beam.ParDo(self._reader())
        )


class ReadLinesWithOrigin(_ReadFiles):
    """Files matching a glob -> RawRecord per line (JSON lines) or row (Parquet)."""

    def _reader(self) -> beam.DoFn:
        return _ReadFile()


class _ReadBlocks(beam.DoFn):
    def __init__(self) -> None:
        self._bytes = Metrics.counter("files", "bytes_read")

    def process(self, path: str):
        watched = READ_PROGRESS.watched  # the newline count is an extra pass over each block
        try:
            if path.endswith(".parquet"):
                for rows in iter_parquet_batches(path):
                    if watched:
                        READ_PROGRESS.add(records=rows.batch.num_rows)
                    yield rows
            else:
                for block in iter_blocks(path):
                    self._bytes.inc(len(block.data))
                    if watched:
                        READ_PROGRESS.add(bytes=len(block.data), records=block.data.count(b"\n"))
                    yield block
        except _read_errors() as exc:
            raise read_failure(path, exc) from None
        if watched:
            READ_PROGRESS.add(files=1)


class ReadFileBlocks(_ReadFiles):
    """Files matching a glob -> LineBlock (JSON lines) or ParquetRows (Parquet) elements."""

    _label = "ReadBlocks"

    def _reader(self) -> beam.DoFn:
        return _ReadBlocks()
