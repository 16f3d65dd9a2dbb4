"""Reading user events the fast way: the vectorized Arrow path of the pipelines on
``USER_EVENTS`` (pageviews, sessions), chosen by ``--batch_engine``.

Sources that read in bulk take the vectorized path (``--batch_engine=arrow``, the
default): files in blocks of lines or Parquet batches (batch), and Kafka in one batch per
poll (batch and streaming). Records are parsed and validated as Arrow tables of
:data:`transforms.batches.EVENT_SCHEMA`; only records the vectorized checks cannot prove
valid go through the per-record parser, which decides them (and words every dead letter)
exactly as ``--batch_engine=records`` does for every record. ``--quality_rules`` checks
the tables on the vectorized path (transforms/quality/tables.py), except
``unique_within_window``, which keeps a run per record. The synthetic, Pub/Sub and
Event Hubs sources use the per-record path. Payloads are decoded
by ``source.decoder`` (``--format``): an Avro poll becomes one Arrow table, Protobuf and
JSON Schema polls are decoded record by record inside the same step.
"""

from __future__ import annotations

from typing import Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import options as opts
from beam_pipelines.options.quality import QualityOptions
from beam_pipelines.skeleton.pipeline import Context, Inputs, read_records
from beam_pipelines.wiring import quality
from beam_pipelines.wiring.source_spec import SourceSpec
from transforms.contracts import USER_EVENTS
from transforms.parse import ParseBlocks, ParseUserEventBatches

__all__ = ["read_user_events", "vectorized"]


def vectorized(options: PipelineOptions, source: SourceSpec, streaming: bool) -> Optional[str]:
    """Which vectorized Arrow path this run takes: "blocks" (files, batch), "batches" (a
    source that polls in bulk), or None (per record)."""
    if options.view_as(opts.BatchEngineOptions).batch_engine != "arrow":
        return None
    if options.view_as(QualityOptions).quality_rules and not quality.tables_allowed(
            options, USER_EVENTS.schema):
        return None
    if not streaming and source.blocks is not None:
        return "blocks"
    if source.batches is not None:
        return "batches"
    return None


def _checked(tables: beam.PCollection, dead_letters: list, ctx: Context) -> tuple:
    """``--quality_rules`` on the parsed tables: (valid tables, dead-letter PCollections)."""
    checked = quality.apply_quality_to_tables(tables, ctx.options, ctx.name, USER_EVENTS.record,
                                              schema=USER_EVENTS.schema)
    if checked is None:
        return tables, dead_letters
    return checked.valid, [*dead_letters, checked.dead_letters]


def read_user_events(pipeline: beam.Pipeline, source: SourceSpec, ctx: Context) -> Inputs:
    """UserEvents per record (form "records"), or Arrow tables of them (form "blocks" or
    "batches", each table timestamped at its earliest event) on the vectorized path."""
    engine = vectorized(ctx.options, source, ctx.streaming)
    if engine == "blocks":
        assert source.blocks is not None  # vectorized() checked it
        blocks = pipeline | "Read" >> source.blocks
        tables = blocks | "Parse" >> ParseBlocks(ctx.name)
        valid, dead = _checked(tables.valid, [tables.dead_letters], ctx)
        return Inputs(valid, dead, form="blocks")
    if engine == "batches":
        assert source.batches is not None  # vectorized() checked it
        raw_batches, rejected = read_records(pipeline, source._replace(transform=source.batches))
        tables = raw_batches | "Parse" >> ParseUserEventBatches(ctx.name, source.decoder)
        valid, dead = _checked(tables.valid, [*rejected, tables.dead_letters], ctx)
        return Inputs(valid, dead, form="batches")
    raw, rejected = read_records(pipeline, source)
    parsed = raw | "Parse" >> USER_EVENTS.parser(ctx.name, decoder=source.decoder)
    checked = quality.apply_quality(parsed.valid, ctx.options, ctx.name, schema=USER_EVENTS.schema)
    dead = (parsed.dead_letters, checked.dead_letters) | "Rejected" >> beam.Flatten()
    return Inputs(checked.valid, [*rejected, dead])
