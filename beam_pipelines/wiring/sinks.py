"""``--sink``: where a pipeline's results go, from the flags and the pipeline's ResultSpec."""

from __future__ import annotations

from typing import Any, Callable, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindows

from beam_pipelines.options import IOOptions
from beam_pipelines.skeleton.results import ResultSpec
from beam_pipelines.wiring import eventhubs, formats, iceberg, kafka, pubsub
from beam_pipelines.wiring.notifications import NOTIFICATION_SINKS
from transforms.sinks.console import WriteToConsole
from transforms.sinks.files import WriteJsonLines, WriteParquet
from transforms.sinks.postgres import WriteToPostgres

__all__ = ["CONNECTORS", "FORMATTED", "check_sink", "connector_sink", "write_results"]

# --sink value -> the function making the message sink from the flags.
CONNECTORS: dict[str, Callable[..., beam.PTransform]] = {
    "kafka": kafka.sink_from_options,
    "pubsub": pubsub.sink_from_options,
    "eventhubs": eventhubs.sink_from_options,
}


# Message sinks that write --sink_format: they take the result record its schema derives from.
FORMATTED = formats.MESSAGE_SINKS


def connector_sink(options: PipelineOptions, *, pipeline: str, streaming: bool,
                   record: Optional[type] = None,
                   key_field: Optional[str] = None) -> beam.PTransform:
    """The message sink ``--sink`` names; Kafka keys each message by ``key_field``."""
    sink = options.view_as(IOOptions).sink
    extra: dict = {"record": record} if sink in FORMATTED else {}
    if sink == "kafka" and key_field:
        extra["key_field"] = key_field
    return CONNECTORS[sink](options, pipeline=pipeline, streaming=streaming, **extra)


def check_sink(options: PipelineOptions, spec: ResultSpec) -> None:
    """Before the run: what the sink needs is there (``--sink=iceberg``: the extra, the
    catalog and a table the results fit), or one line naming the flag or the table."""
    sink = options.view_as(IOOptions).sink
    formats.check_sink(options, sink)  # --sink_format only where it applies
    if sink == "iceberg":
        iceberg.check(options, spec)


def write_results(
    records: beam.PCollection, options: PipelineOptions, spec: ResultSpec, *, streaming: bool
) -> Optional[beam.PCollection]:
    """Write results to ``--sink``; returns the sink's dead letters where it has any (in
    the global window, where the dead letters of every step are flattened together)."""
    io = options.view_as(IOOptions)
    formats.check_sink(options, io.sink)
    if io.sink in NOTIFICATION_SINKS:
        return None  # the results are not kept: the skeleton sends the pipeline's alerts
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
            retry_seconds=io.sink_retry_seconds,
        )
        return refused | "RefusedToGlobalWindow" >> beam.WindowInto(GlobalWindows())
    elif io.sink == "iceberg":
        refused = records | "WriteIceberg" >> iceberg.sink_from_options(
            options, spec, streaming=streaming)
        return refused | "RefusedToGlobalWindow" >> beam.WindowInto(GlobalWindows())
    else:
        written: Any = records | "WriteSink" >> connector_sink(
            options, pipeline=spec.name, streaming=streaming, record=spec.record,
            key_field=spec.message_key)
        refused = getattr(written, "dead_letters", None)  # a WriteResult (Kafka)
        if refused is not None:
            return refused | "RefusedToGlobalWindow" >> beam.WindowInto(GlobalWindows())
    return None
