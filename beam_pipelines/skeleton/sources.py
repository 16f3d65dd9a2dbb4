"""Choosing a source and a sink from the shared flags (``--source``, ``--sink``).

Connector modules provide two functions, looked up lazily so a missing extra or a
connector that has not landed yet gives a one-line error naming the flag:

* ``source_from_options(options) -> SourceSpec``: a PTransform producing
  :class:`~transforms.records.RawRecord` and whether it is bounded;
* ``sink_from_options(options, *, pipeline, streaming) -> PTransform`` taking records.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows

from beam_pipelines.options import IOOptions
from transforms.base.errors import ConfigError
from transforms.io.files import ReadFileBlocks, ReadLinesWithOrigin

_CONNECTORS = {"kafka": "transforms.io.kafka.read", "pubsub": "transforms.io.pubsub.read",
               "eventhubs": "transforms.io.eventhubs.read"}


class SourceSpec(NamedTuple):
    transform: beam.PTransform
    bounded: bool
    # The same input as blocks of lines / record batches for the vectorized batch path
    # (transforms.batches), where the source has one.
    blocks: Optional[beam.PTransform] = None
    # The same stream as RawBatches (transforms.records), one element per poll, for the
    # vectorized streaming path, where the source has one.
    batches: Optional[beam.PTransform] = None


def _connector(name: str, function: str, flag: str) -> Callable[..., Any]:
    module_name = _CONNECTORS[name]
    try:
        module = importlib.import_module(module_name)
        return getattr(module, function)
    except (ModuleNotFoundError, AttributeError):
        raise ConfigError.from_message(
            f"{flag}: {name} needs the {name} connector ({module_name}), which is not "
            f"available in this version"
        ) from None


def source_spec(
    options: PipelineOptions,
    *,
    default: str,
    synthetic: Callable[[PipelineOptions], SourceSpec],
) -> SourceSpec:
    io = options.view_as(IOOptions)
    source = io.source or default
    if source == "synthetic":
        return synthetic(options)
    if source == "file":
        if not io.input:
            raise ConfigError("--input", "a file path or glob when --source=file")
        return SourceSpec(
            ReadLinesWithOrigin(io.input), bounded=True, blocks=ReadFileBlocks(io.input)
        )
    return _connector(source, "source_from_options", "--source")(options)


def connector_sink(options: PipelineOptions, *, pipeline: str, streaming: bool) -> beam.PTransform:
    sink = options.view_as(IOOptions).sink
    return _connector(sink, "sink_from_options", "--sink")(
        options, pipeline=pipeline, streaming=streaming
    )


class ResultSpec(NamedTuple):
    """How a pipeline's result records look in each sink (all that differs between pipelines)."""

    name: str  # file name prefix and default table name
    columns: list[str]
    pane_columns: list[str]
    sort_by: list[str]
    title: str
    parquet_schema: Callable[[bool], Any]  # streaming -> pyarrow schema
    postgres_table: str
    postgres_columns: list[tuple[str, str]]
    postgres_key: list[str]
    # Streaming only: a column whose value never decreases across panes of one window
    # (an accumulating count); the upsert then never replaces it with a smaller value.
    never_decrease: Optional[str] = None


def write_results(
    records: beam.PCollection, options: PipelineOptions, spec: ResultSpec, *, streaming: bool
) -> Optional[beam.PCollection]:
    """Write results to ``--sink``; returns the sink's dead letters where it has any."""
    from transforms.sinks.console import WriteToConsole
    from transforms.sinks.files import WriteJsonLines, WriteParquet
    from transforms.sinks.postgres import WriteToPostgres

    io = options.view_as(IOOptions)
    if io.sink == "console":
        columns = spec.columns + (spec.pane_columns if streaming else [])
        records | "WriteConsole" >> WriteToConsole(
            columns, streaming=streaming, sort_by=spec.sort_by, title=spec.title
        )
    elif io.sink == "jsonl":
        records | "WriteJsonLines" >> WriteJsonLines(io.output, spec.name, streaming=streaming)
    elif io.sink == "parquet":
        records | "WriteParquet" >> WriteParquet(
            io.output, spec.name, spec.parquet_schema(streaming), streaming=streaming
        )
    elif io.sink == "postgres":
        refused = records | "WritePostgres" >> WriteToPostgres(
            io.output,
            io.output_table or spec.postgres_table,
            spec.postgres_columns,
            spec.postgres_key,
            pipeline=spec.name,
            never_decrease=spec.never_decrease if streaming else None,
        )
        # Dead letters of every step are flattened together, in the global window.
        return refused | "RefusedToGlobalWindow" >> beam.WindowInto(GlobalWindows())
    else:
        records | "WriteSink" >> connector_sink(options, pipeline=spec.name, streaming=streaming)
    return None
