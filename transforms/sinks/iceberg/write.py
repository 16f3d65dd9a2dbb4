"""``WriteToIceberg``: results into an Apache Iceberg table, replaced in batch, appended
once per bundle in streaming. See ``docs/iceberg.md`` for the whole story.

``mode="replace"`` (batch backfills): all rows go to a single writer step (results are
aggregates, small), which replaces the partitions they cover in one atomic commit
(:func:`~transforms.sinks.iceberg.commit.replace_partitions`). A re-run gives the same
table, and the history shows an ``overwrite`` snapshot.

``mode="append"`` (streaming): every bundle's rows are appended in one commit at the end
of the bundle, tagged with an id derived from the rows, so a bundle the runner retries
after its commit landed is skipped instead of appended again. Updated panes (EARLY,
ON_TIME, LATE) are appended as rows with their ``pane_index``, never updated in place:
the latest pane per window is one query away (:func:`latest_panes`, docs/iceberg.md).

A row that cannot become a row of the table's Arrow schema (a value of the wrong type,
an unparsable timestamp) comes out of the transform as a DeadLetter (reason code
``sink_rejected``), and the other rows are written.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import window as beam_window
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms.base.errors import BeamPipelinesError, ConfigError, SinkError
from transforms.base.extras import require
from transforms.records import DeadLetter
from transforms.sinks import as_dict
from transforms.sinks.files import coerce_row
from transforms.sinks.iceberg import commit as commits
from transforms.sinks.iceberg.catalog import (
    CatalogConfig,
    catalog_properties,
    ensure_table,
    load_catalog,
    validate_identifier,
)
from transforms.sinks.iceberg.partitioning import (
    PartitionField,
    default_partitioning,
    parse_partitioning,
)
from transforms.sinks.postgres import redact_dsn

__all__ = ["MODES", "WriteToIceberg", "rows_to_arrow"]

_LOG = logging.getLogger(__name__)
MODES = ("replace", "append")
DEAD_LETTERS = "dead_letters"
_ARROW_ERRORS: tuple[type[BaseException], ...] = (TypeError, ValueError, OverflowError)


class _Config(NamedTuple):
    """Everything the writer DoFns need, checked and picklable."""

    identifier: str
    schema: Any  # pyarrow.Schema
    properties: dict[str, str]  # pyiceberg catalog properties
    catalog_name: str
    partitioning: list[PartitionField]
    table_properties: dict[str, str]
    pipeline: str
    max_attempts: int


def _refused(config: _Config, row: dict[str, Any], why: str) -> DeadLetter:
    return DeadLetter.of(
        config.pipeline, "sink", f"Iceberg table {config.identifier} refused the row: {why}",
        json.dumps(row, default=str),
        {"source": "sink", "sink": "iceberg", "table": config.identifier}, "sink_rejected",
    )


def rows_to_arrow(rows: list[dict[str, Any]], schema) -> tuple[Any, list[tuple[int, str]]]:
    """Dict rows -> (an Arrow table of ``schema``, [(index of a refused row, why)]).
    ISO-8601 strings become timestamps. One conversion for the whole list; only when it
    fails are the rows converted one by one to find the refused ones."""
    import pyarrow as pa

    try:
        return pa.Table.from_pylist([coerce_row(r, schema) for r in rows], schema=schema), []
    except _ARROW_ERRORS + (pa.ArrowException,):
        pass
    good: list[dict[str, Any]] = []
    refused: list[tuple[int, str]] = []
    for index, row in enumerate(rows):
        try:
            coerced = coerce_row(row, schema)
            pa.Table.from_pylist([coerced], schema=schema)
        except _ARROW_ERRORS + (pa.ArrowException,) as exc:
            text = str(exc).strip()
            refused.append((index, text.splitlines()[0] if text else type(exc).__name__))
            continue
        good.append(coerced)
    return pa.Table.from_pylist(good, schema=schema), refused


class _TableDoFn(beam.DoFn):
    """Opens the catalog and the table (created if missing) once per worker."""

    def __init__(self, config: _Config) -> None:
        self._config = config
        self._table: Any = None

    def setup(self):
        config = self._config
        catalog = load_catalog(config.catalog_name, config.properties)
        self._table = ensure_table(
            catalog, config.identifier, config.schema, config.partitioning, config.table_properties
        )


class _AppendBundles(_TableDoFn):
    """Streaming: one idempotent append per bundle."""

    def __init__(self, config: _Config) -> None:
        super().__init__(config)
        self._committed = Metrics.counter(config.pipeline, "iceberg_rows_committed")
        self._skipped = Metrics.counter(config.pipeline, "iceberg_bundles_skipped")

    def start_bundle(self):
        self._rows: list[dict[str, Any]] = []
        self._windows: list[Any] = []

    def process(self, record, window=beam.DoFn.WindowParam):
        self._rows.append(as_dict(record))
        self._windows.append(window)

    def finish_bundle(self):
        if not self._rows:
            return
        config = self._config
        rows, windows = self._rows, self._windows
        self._rows, self._windows = [], []
        table, refused = rows_to_arrow(rows, config.schema)
        for index, why in refused:
            window = windows[index]
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                WindowedValue(_refused(config, rows[index], why), window.max_timestamp(), (window,)),
            )
        if table.num_rows == 0:
            return
        result = commits.append_once(
            self._table, config.identifier, table,
            commit_id=commits.content_id(config.pipeline, config.identifier, table),
            pipeline=config.pipeline, max_attempts=config.max_attempts,
        )
        if result.skipped:
            _LOG.info("bundle of %d rows already in %s: skipped", table.num_rows, config.identifier)
            self._skipped.inc()
        else:
            self._committed.inc(result.rows)


class _BundlesToArrow(beam.DoFn):
    """Batch: a bundle's rows -> one Arrow table (+ dead letters), in the global window."""

    def __init__(self, config: _Config) -> None:
        self._config = config

    def start_bundle(self):
        self._rows: list[dict[str, Any]] = []

    def process(self, record):
        self._rows.append(as_dict(record))

    def finish_bundle(self):
        if not self._rows:
            return
        config = self._config
        rows, self._rows = self._rows, []
        table, refused = rows_to_arrow(rows, config.schema)
        window = beam_window.GlobalWindow()
        for index, why in refused:
            letter = _refused(config, rows[index], why)
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, WindowedValue(letter, MIN_TIMESTAMP, (window,))
            )
        if table.num_rows:
            yield WindowedValue(table, MIN_TIMESTAMP, (window,))


class _ConcatTables(beam.CombineFn):
    """Arrow tables -> one table (None when there were no rows)."""

    def create_accumulator(self) -> list:
        return []

    def add_input(self, accumulator: list, table) -> list:
        accumulator.append(table)
        return accumulator

    def merge_accumulators(self, accumulators) -> list:
        return [table for accumulator in accumulators for table in accumulator]

    def compact(self, accumulator: list) -> list:
        import pyarrow as pa

        return [pa.concat_tables(accumulator)] if len(accumulator) > 1 else accumulator

    def extract_output(self, accumulator: list):
        import pyarrow as pa

        return pa.concat_tables(accumulator) if accumulator else None


class _ReplacePartitions(_TableDoFn):
    """Batch: the single writer, one replace commit for all rows."""

    def process(self, table):
        config = self._config
        if table is None or table.num_rows == 0:
            _LOG.info("no rows for %s: the table is left as it is", config.identifier)
            return
        result = commits.replace_partitions(
            self._table, config.identifier, table, pipeline=config.pipeline,
            max_attempts=config.max_attempts,
        )
        Metrics.counter(config.pipeline, "iceberg_rows_committed").inc(result.rows)
        yield result


class WriteToIceberg(beam.PTransform):
    """Write records (NamedTuples or dicts) to the Iceberg table ``table``.

    The result is a PCollection of DeadLetters for rows that do not fit ``schema``.
    """

    def __init__(
        self,
        table: str,
        schema,
        *,
        catalog: CatalogConfig,
        mode: str,
        warehouse: Optional[str] = None,
        partition_by: Optional[Sequence[str]] = None,
        pipeline: str = "beam_pipelines",
        catalog_name: str = "default",
        table_properties: Optional[Mapping[str, str]] = None,
        max_commit_attempts: int = commits.DEFAULT_ATTEMPTS,
    ) -> None:
        """
        Args:
            table: ``NAMESPACE.TABLE`` in the catalog (created with ``schema`` if missing).
            schema: the result's ``pyarrow.Schema`` (timestamps as ``timestamp("us", tz="UTC")``;
                ISO-8601 strings in the records are converted).
            catalog: a SQL catalog URI (``sqlite:///PATH``, a PostgreSQL DSN), an ``http(s)://``
                REST catalog URI, or a mapping of pyiceberg catalog properties (Glue, Hive, REST
                with credentials).
            mode: ``"replace"`` (batch: replace the partitions the rows cover, in one commit)
                or ``"append"`` (streaming: one idempotent append per bundle).
            warehouse: where data files go, a directory or a bucket URI; required for SQL
                catalogs, optional where the catalog chooses.
            partition_by: partition fields for a new table, e.g. ``["day(window_start)"]``;
                default :func:`default_partitioning` (day of the first timestamp column).
                An existing table keeps its own spec.
            pipeline: the pipeline's name, in snapshot summaries, commit ids, dead letters and
                metrics.
            catalog_name: the catalog's name (a SQL catalog keeps tables per name).
            table_properties: Iceberg table properties for a new table
                (``write.parquet.compression-codec`` ...).
            max_commit_attempts: commits tried per bundle (replace: per run) before failing,
                against concurrent writers.
        """
        super().__init__()
        import pyarrow as pa

        require("iceberg", "pyiceberg")  # the install hint now, not on a worker later
        if mode not in MODES:
            raise ConfigError("mode", f"one of {', '.join(MODES)}", mode)
        if not isinstance(schema, pa.Schema):
            raise ConfigError("schema", "a pyarrow.Schema", type(schema).__name__)
        if not isinstance(max_commit_attempts, int) or max_commit_attempts < 1:
            raise ConfigError("max_commit_attempts", "a whole number >= 1", max_commit_attempts)
        fields = default_partitioning(schema) if partition_by is None else partition_by
        self._mode = mode
        self._config = _Config(
            identifier=validate_identifier(table),
            schema=schema,
            properties=catalog_properties(catalog, warehouse),
            catalog_name=catalog_name,
            partitioning=parse_partitioning(fields, schema),
            table_properties=dict(table_properties or {}),
            pipeline=pipeline,
            max_attempts=max_commit_attempts,
        )

    def check_table(self) -> None:
        """Open the catalog and create or check the table now, where the job starts: a
        wrong catalog, a missing driver or a table the result does not fit fails in one
        line before anything is read (workers do the same again in ``setup``)."""
        config = self._config
        catalog = load_catalog(config.catalog_name, config.properties)
        try:
            ensure_table(catalog, config.identifier, config.schema, config.partitioning,
                         config.table_properties)
        except BeamPipelinesError:
            raise
        except Exception as exc:  # the catalog's own refusal (a nested namespace in a SQL
            # catalog, a permission, a lost connection): one line naming the table
            text = redact_dsn(str(exc).strip()).splitlines()
            raise SinkError(f"cannot create or load Iceberg table {config.identifier}: "
                            f"{text[0] if text else type(exc).__name__}") from None

    def expand(self, pcoll):
        """Returns the dead letters of rows the table refused."""
        config = self._config
        if self._mode == "append":
            outputs = pcoll | "AppendBundles" >> beam.ParDo(_AppendBundles(config)).with_outputs(
                DEAD_LETTERS, main="written"
            )
            return outputs[DEAD_LETTERS]
        tables = (
            pcoll
            | "GlobalWindow" >> beam.WindowInto(beam_window.GlobalWindows())
            | "ToArrow" >> beam.ParDo(_BundlesToArrow(config)).with_outputs(DEAD_LETTERS, main="tables")
        )
        _ = (
            tables["tables"]
            | "OneTable" >> beam.CombineGlobally(_ConcatTables())
            | "ReplacePartitions" >> beam.ParDo(_ReplacePartitions(config))
        )
        return tables[DEAD_LETTERS]
