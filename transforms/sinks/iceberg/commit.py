"""Commits to an Iceberg table: replace partitions, append once, retry on conflicts.

* :func:`replace_partitions` is Iceberg's ``ReplacePartitions`` (Spark's dynamic
  ``INSERT OVERWRITE``): the data files of every partition the rows fall in are removed
  and the rows' files added in ONE snapshot whose operation is ``overwrite`` (summary
  ``replace-partitions=true``). A backfill run twice therefore leaves one copy of every
  row, and the table's history says what happened. Partitions the rows do not touch keep
  their data; an unpartitioned table is replaced as a whole.
* :func:`append_once` appends in one ``append`` snapshot whose summary carries a commit
  id; when a snapshot with that id is already in the table's history, nothing is
  written. A streaming writer derives the id from the bundle's content
  (:func:`content_id`), so a bundle the runner retries after its commit landed is not
  appended twice.

Concurrent writers: a commit made against metadata that is no longer current is refused
(``CommitFailedException``). This module retries it, and a commit whose outcome is
unknown (a dropped catalog connection): every attempt refreshes the table, checks the
history for the commit's own id (so neither a bundle another worker committed meanwhile
nor an attempt that did land is applied twice), rebuilds the commit against the current
state - a replace recomputes which files it replaces, as if the writers had run one
after the other - and commits, with jittered exponential backoff between attempts, up to
``max_attempts``. The data files are written once and reused. pyiceberg's own retries
are turned off for these commits (:func:`_single_attempt`), because they rebuild a
refused commit without that history check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import uuid
from typing import Any, Callable, NamedTuple, Optional

from transforms.base.errors import SinkError

__all__ = [
    "COMMIT_ID",
    "CommitResult",
    "PIPELINE",
    "append_once",
    "content_id",
    "find_commit",
    "replace_partitions",
]

_LOG = logging.getLogger(__name__)

# Snapshot summary properties this sink sets (Iceberg keeps custom summary keys).
COMMIT_ID = "beam-pipelines.commit-id"
PIPELINE = "beam-pipelines.pipeline"
MODE = "beam-pipelines.mode"

DEFAULT_ATTEMPTS = 10
_FIRST_DELAY = 0.05
_MAX_DELAY = 5.0


class CommitResult(NamedTuple):
    """What a commit did: the snapshot it made (None when skipped or empty)."""

    snapshot_id: Optional[int]
    rows: int
    attempts: int
    skipped: bool = False  # an append whose commit id was already in the history


def content_id(pipeline: str, identifier: str, rows) -> str:
    """A stable id of a set of rows: sha256 over the pipeline, the table and the rows as
    sorted JSON lines. The same rows in any order give the same id."""
    digest = hashlib.sha256(f"{pipeline}\n{identifier}\n".encode())
    columns = rows.column_names
    lines = sorted(
        json.dumps([row[name] for name in columns], default=str, separators=(",", ":"))
        for row in rows.to_pylist()
    )
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def find_commit(table, commit_id: str):
    """The snapshot of the current branch's history whose summary carries ``commit_id``."""
    from pyiceberg.table.snapshots import ancestors_of

    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        if snapshot.summary is not None and snapshot.summary[COMMIT_ID] == commit_id:
            return snapshot
    return None


def append_once(
    table, identifier: str, rows, *, commit_id: str, pipeline: str,
    max_attempts: int = DEFAULT_ATTEMPTS,
) -> CommitResult:
    """Append ``rows`` in one snapshot tagged ``commit_id``, unless that id is already
    in the table's history."""
    properties = {COMMIT_ID: commit_id, PIPELINE: pipeline, MODE: "append"}

    def build(table, tx, data_files) -> None:
        with tx.update_snapshot(snapshot_properties=properties).fast_append() as append:
            for data_file in data_files:
                append.append_data_file(data_file)

    return _commit(table, identifier, rows, commit_id, build, max_attempts)


def replace_partitions(
    table, identifier: str, rows, *, pipeline: str, max_attempts: int = DEFAULT_ATTEMPTS,
) -> CommitResult:
    """Replace every partition ``rows`` fall in with ``rows``, in one overwrite snapshot."""
    commit_id = uuid.uuid4().hex  # only to recognise this commit if its outcome is unknown
    properties = {
        COMMIT_ID: commit_id, PIPELINE: pipeline, MODE: "replace", "replace-partitions": "true",
    }

    def build(table, tx, data_files) -> None:
        covered = {data_file.partition for data_file in data_files}
        spec_id = tx.table_metadata.default_spec_id
        existing = [task.file for task in table.scan().plan_files()]
        older = [f.file_path for f in existing if f.spec_id != spec_id]
        if older:
            raise SinkError(
                f"Iceberg table {identifier} has data files of an older partition spec "
                f"({older[0]}, ...): rewrite them to the current spec (Spark's "
                "rewrite_data_files) before replacing partitions"
            )
        with tx.update_snapshot(snapshot_properties=properties).overwrite() as overwrite:
            for data_file in existing:
                if data_file.partition in covered:
                    overwrite.delete_data_file(data_file)
            for data_file in data_files:
                overwrite.append_data_file(data_file)

    return _commit(table, identifier, rows, commit_id, build, max_attempts)


def _commit(
    table, identifier: str, rows, commit_id: str, build: Callable[[Any, Any, list], None],
    max_attempts: int,
) -> CommitResult:
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    retryable = _retryable_errors()
    if rows.num_rows == 0:
        return CommitResult(None, 0, 0)
    written: Optional[tuple[int, int, list]] = None  # (spec id, schema id, data files)
    outcome_unknown = False
    delay = _FIRST_DELAY
    for attempt in range(1, max_attempts + 1):
        try:
            # Every attempt starts from the table's current state: the history check must
            # see what other workers committed since this worker last looked.
            table.refresh()
            if find_commit(table, commit_id) is not None:
                # Committed before (a retried bundle), or an earlier attempt whose outcome
                # was unknown to us did land.
                return CommitResult(None, rows.num_rows, attempt, skipped=True)
            metadata = table.metadata
            if written is None or written[:2] != (metadata.default_spec_id, metadata.current_schema_id):
                if written is not None and not outcome_unknown:
                    _remove_files(table, written[2])  # written for a spec or schema now gone
                written = (
                    metadata.default_spec_id, metadata.current_schema_id,
                    _write_data_files(table, conform(rows, table)),
                )
            handle = _single_attempt(table)
            tx = handle.transaction()
            build(handle, tx, written[2])
            committed = tx.commit_transaction()
        except retryable as exc:
            outcome_unknown |= not isinstance(exc, (CommitFailedException, ValidationException))
            if attempt == max_attempts:
                if written is not None and not outcome_unknown:
                    _remove_files(table, written[2])
                raise SinkError(
                    f"committing to Iceberg table {identifier} failed after {attempt} attempts "
                    f"(concurrent writers or an unreachable catalog): {_first_line(exc)}"
                ) from None
            _LOG.info("commit to %s lost a race (%s); retrying", identifier, _first_line(exc))
            time.sleep(delay * random.uniform(0.5, 1.5))  # backoff between retries
            delay = min(delay * 2, _MAX_DELAY)
            continue
        snapshot = committed.current_snapshot()
        return CommitResult(snapshot.snapshot_id if snapshot else None, rows.num_rows, attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def _single_attempt(table):
    """The same table, with pyiceberg's own commit retries off for this handle only.

    On a refused commit pyiceberg would refresh and rebuild the commit by itself, without
    this module's history check: a bundle that another worker committed in the meantime
    (a retry running while the first attempt was still alive) would be appended twice.
    The setting lives in this in-memory copy of the metadata; the table's properties
    are not changed."""
    from pyiceberg.table import Table, TableProperties

    properties = {**table.metadata.properties, TableProperties.COMMIT_NUM_RETRIES: "0"}
    return Table(
        table.name(),
        metadata=table.metadata.model_copy(update={"properties": properties}),
        metadata_location=table.metadata_location,
        io=table.io,
        catalog=table.catalog,
    )


def _retryable_errors() -> tuple[type[BaseException], ...]:
    """A lost race (CommitFailedException; ValidationException: a concurrent commit
    conflicts) or an unknown outcome: a REST catalog's CommitStateUnknownException, a SQL
    catalog's dropped connection or locked SQLite."""
    from pyiceberg.exceptions import (
        CommitFailedException,
        CommitStateUnknownException,
        ValidationException,
    )

    errors: list[type[BaseException]] = [
        CommitFailedException, CommitStateUnknownException, ValidationException,
    ]
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # a REST or Glue catalog without SQLAlchemy
        pass
    else:
        errors.append(OperationalError)
    return tuple(errors)


def conform(rows, table):
    """``rows`` with the table's columns, order and types (int -> long and the like
    widened; optional table columns the rows lack filled with nulls)."""
    import pyarrow as pa

    target = table.schema().as_arrow()
    if rows.schema.equals(target, check_metadata=True):
        return rows
    columns = []
    for field in target:
        if field.name in rows.column_names:
            columns.append(rows.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(rows.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=target)


def _write_data_files(table, rows) -> list:
    # pyiceberg's own writer (what Table.append uses): splits the rows by partition and
    # writes Parquet files with Iceberg's column statistics. Private in pyiceberg, so it
    # is called in this one place only.
    from pyiceberg.io.pyarrow import _dataframe_to_data_files

    return list(
        _dataframe_to_data_files(
            table_metadata=table.metadata, df=rows, io=table.io, write_uuid=uuid.uuid4()
        )
    )


def _remove_files(table, data_files: list) -> None:
    """Data files of a commit that definitely failed are nobody's: remove them."""
    for data_file in data_files:
        try:
            table.io.delete(data_file.file_path)
        except OSError as exc:  # an orphan file is harmless; maintenance removes it
            _LOG.warning("could not remove %s: %s", data_file.file_path, exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
