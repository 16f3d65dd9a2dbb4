"""JSON-lines and Parquet file sinks.

Batch (``streaming=False``): Beam's ``WriteToText`` / ``WriteToParquet`` write shards
``DIR/NAME-SSSSS-of-NNNNN.EXT`` atomically (temp files, then rename); afterwards
:class:`_RemoveStaleShards` deletes shards of the same name that this run did not
write. So re-running a backfill *replaces* its output, even when the shard count
changes, and the old output stays in place until the new one is complete.

Streaming: each bundle writes one new file ``DIR/NAME-<time>-<uuid>.EXT``, because an
unbounded PCollection never "ends" for a batch writer to finalise.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import uuid
from typing import Any, Callable, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window as beam_window

from transforms.base.errors import ConfigError
from transforms.sinks import as_dict

SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
# Beam's batch writers put their temporary files in DIR/beam-temp-NAME-UUID/ and remove
# it when the job succeeds; a failed job leaves it (a full disk stays full).
TEMP_PREFIX = "beam-temp-"
_LOG = logging.getLogger(__name__)


def to_json_line(record: Any) -> str:
    return json.dumps(as_dict(record), ensure_ascii=False, default=str)


def temp_folders(directory: str) -> set[str]:
    """Beam's temporary folders in a batch file sink's output ``directory``."""
    if "://" not in directory:
        try:
            names = os.listdir(directory)
        except OSError:  # not there (yet), not a directory: nothing to clean
            return set()
        return {os.path.join(directory, n) for n in names if n.startswith(TEMP_PREFIX)}
    base = directory.rstrip("/") + "/"
    try:  # object stores have no empty folders: the temporary files name them
        matches = FileSystems.match([base + TEMP_PREFIX + "**"])[0].metadata_list
    except Exception:  # nothing matches, or the store cannot be listed
        return set()
    return {base + m.path[len(base):].split("/", 1)[0] + "/" for m in matches}


def remove_temp_folders(directory: str, keep: set[str]) -> None:
    """Delete Beam's temporary folders in ``directory`` except ``keep`` (those that were
    there before this run: another run may be writing them). Best effort: a failure is
    logged, the run's own error stays the one reported."""
    stale = sorted(temp_folders(directory) - keep)
    if not stale:
        return
    try:
        FileSystems.delete(stale)
    except Exception as exc:
        _LOG.warning("could not remove temporary folders %s: %s", ", ".join(stale), exc)


def _require_dir(output: Optional[str], flag: str) -> str:
    if not output or not isinstance(output, str):
        raise ConfigError(flag, "a directory path (local or any Beam filesystem URL)", output)
    return output.rstrip("/")


class _RemoveStaleShards(beam.DoFn):
    def __init__(self, pattern: str) -> None:
        self._pattern = pattern

    def process(self, written: list):
        keep = set(written)
        matches = FileSystems.match([self._pattern])[0].metadata_list
        stale = [m.path for m in matches if m.path not in keep]
        if stale:
            FileSystems.delete(stale)
        yield from sorted(keep)


def _finish_batch_write(filenames, prefix: str, suffix: str):
    return (
        filenames
        | "GlobalWindow" >> beam.WindowInto(beam_window.GlobalWindows())
        | "ListWritten" >> beam.combiners.ToList()
        | "RemoveStaleShards" >> beam.ParDo(_RemoveStaleShards(f"{prefix}-*-of-*{suffix}"))
    )


class _WriteBundleFiles(beam.DoFn):
    """Streaming: one file per bundle, named so files sort by write time."""

    def __init__(self, directory: str, name: str, suffix: str, schema=None) -> None:
        self._directory = directory
        self._name = name
        self._suffix = suffix
        self._schema = schema

    def start_bundle(self):
        self._rows: list[dict] = []

    def process(self, record):
        self._rows.append(as_dict(record))

    def finish_bundle(self):
        if not self._rows:
            return
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        path = FileSystems.join(
            self._directory, f"{self._name}-{stamp}-{uuid.uuid4().hex[:8]}{self._suffix}"
        )
        with FileSystems.create(path) as handle:
            if self._schema is None:
                handle.write(
                    "".join(json.dumps(r, default=str) + "\n" for r in self._rows).encode("utf-8")
                )
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pylist(
                    [coerce_row(r, self._schema) for r in self._rows], schema=self._schema
                )
                pq.write_table(table, handle)
        self._rows = []


class WriteJsonLines(beam.PTransform):
    """Records -> JSON lines files under ``directory`` named ``name``."""

    def __init__(
        self, directory: str, name: str, *, streaming: bool, flag: str = "--output",
        num_shards: int = 0, format_fn: Callable[[Any], str] = to_json_line,
    ) -> None:
        super().__init__()
        self._directory = _require_dir(directory, flag)
        self._name = name
        self._streaming = streaming
        self._num_shards = num_shards
        self._format_fn = format_fn  # batch: a record -> its line(s), without the last newline

    def expand(self, pcoll):
        if self._streaming:
            return pcoll | "WriteBundles" >> beam.ParDo(
                _WriteBundleFiles(self._directory, self._name, ".jsonl")
            )
        prefix = FileSystems.join(self._directory, self._name)
        written = (
            pcoll
            | "ToJson" >> beam.Map(self._format_fn)
            | "Write"
            >> beam.io.WriteToText(
                prefix,
                file_name_suffix=".jsonl",
                shard_name_template=SHARD_TEMPLATE,
                num_shards=self._num_shards,
            )
        )
        return _finish_batch_write(written, prefix, ".jsonl")


def coerce_row(row: dict[str, Any], schema) -> dict[str, Any]:
    """ISO-8601 strings -> datetimes for the schema's timestamp columns."""
    import pyarrow as pa

    out = dict(row)
    for field in schema:
        value = out.get(field.name)
        if isinstance(value, str) and pa.types.is_timestamp(field.type):
            out[field.name] = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return {field.name: out.get(field.name) for field in schema}


class WriteParquet(beam.PTransform):
    """Records -> Parquet files under ``directory`` with the given pyarrow schema."""

    def __init__(self, directory: str, name: str, schema, *, streaming: bool) -> None:
        super().__init__()
        self._directory = _require_dir(directory, "--output")
        self._name = name
        self._schema = schema
        self._streaming = streaming

    def expand(self, pcoll):
        if self._streaming:
            return pcoll | "WriteBundles" >> beam.ParDo(
                _WriteBundleFiles(self._directory, self._name, ".parquet", self._schema)
            )
        prefix = FileSystems.join(self._directory, self._name)
        schema = self._schema
        written = (
            pcoll
            | "ToRow" >> beam.Map(lambda r: coerce_row(as_dict(r), schema))
            | "Write"
            >> beam.io.WriteToParquet(
                prefix,
                schema,
                file_name_suffix=".parquet",
                shard_name_template=SHARD_TEMPLATE,
            )
        )
        return _finish_batch_write(written, prefix, ".parquet")
