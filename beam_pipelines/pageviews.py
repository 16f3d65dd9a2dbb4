"""Page views per page and event-time window, continuously updated; stream or batch.

The classic job people write as a Kafka producer plus Spark Structured Streaming's
``groupBy(window(timestamp, "5 minutes"), page).count()`` in ``update`` output mode,
written once in Beam::

    python -m beam_pipelines.pageviews                       # synthetic events, a table
    python -m beam_pipelines.pageviews --source=file --input='events/*.jsonl.gz' \\
        --sink=parquet --output=out/ --dead_letter=rejected/  # a backfill

Every valid event counts, whatever its ``action`` (as the Spark job counts every row);
``--action=page_view`` restricts the count to one action.

Sources that read in bulk take the vectorized path (``--batch_engine=arrow``, the
default): files (in blocks of lines or Parquet batches) and Kafka (one batch per poll, in
streaming and in bounded reads). Records are parsed and validated as Arrow record
batches and pre-aggregated per (page, window slice) before Beam's combine (batch) or the
stateful windowed count (streaming); only records the vectorized checks cannot prove
valid go through the per-record parser, which decides them (and words every dead letter)
exactly as ``--batch_engine=records`` does for every record. Both give the same counts,
panes and dead letters (in streaming, the late records of one poll fire one LATE pane
together); the records engine is the reference the tests compare against. The
synthetic, Pub/Sub and Event Hubs sources, and ``--quality_rules``, use the per-record path.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import options as opts
from beam_pipelines.metrics import exporter as metrics
from beam_pipelines.skeleton import run as _run
from beam_pipelines.skeleton import sources as _io
from transforms.batches import user_events
from transforms.io.synthetic.events import SyntheticEvents
from transforms.io.synthetic.read import ReadSynthetic
from transforms.parse import ParseBlocks, ParseUserEventBatches, ParseUserEvents
from transforms.quality.transform import QualityOptions, apply_quality
from transforms.records import PageViewCount, utc_iso
from transforms.sinks.dead_letter_sink import WriteDeadLetters, late_record_to_dead_letter
from transforms.windowing import (
    CountPerSlice,
    CountPerWindow,
    WindowConfig,
    WindowedAggregate,
    WindowedResult,
)

PIPELINE = "pageviews"
DEFAULT_WINDOW = 300
BATCH_ENGINES = ("arrow", "records")

COLUMNS = ["window_start", "window_end", "page", "count"]
PANE_COLUMNS = ["pane_timing", "pane_index", "is_final"]
POSTGRES_COLUMNS = [
    ("window_start", "timestamptz NOT NULL"),
    ("window_end", "timestamptz NOT NULL"),
    ("page", "text NOT NULL"),
    ("count", "bigint NOT NULL"),
    ("pane_timing", "text"),
    ("pane_index", "integer"),
    ("is_final", "boolean"),
]
POSTGRES_KEY = ["window_start", "page"]


class PageviewsOptions(PipelineOptions):
    """Pageviews-specific flags."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--action",
            default=None,
            help="Count only events with this action (e.g. page_view). Default: every event.",
        )
        parser.add_argument(
            "--batch_engine",
            type=opts.choice(*BATCH_ENGINES),
            default="arrow",
            help="How records from files (batch) and Kafka (batch and streaming) are parsed "
            "and counted: arrow (vectorized record batches, the default) or records (one "
            "record at a time, the reference). Same results either way; other sources "
            "always use records.",
        )


def parquet_schema(streaming: bool):
    import pyarrow as pa

    fields = [
        ("window_start", pa.timestamp("us", tz="UTC")),
        ("window_end", pa.timestamp("us", tz="UTC")),
        ("page", pa.string()),
        ("count", pa.int64()),
    ]
    if streaming:
        fields += [("pane_timing", pa.string()), ("pane_index", pa.int64()), ("is_final", pa.bool_())]
    return pa.schema(fields)


RESULTS = _io.ResultSpec(
    name=PIPELINE,
    columns=COLUMNS,
    pane_columns=PANE_COLUMNS,
    sort_by=["window_start", "page"],
    title="page views per window",
    parquet_schema=parquet_schema,
    postgres_table="page_views",
    postgres_columns=POSTGRES_COLUMNS,
    postgres_key=POSTGRES_KEY,
    never_decrease="count",  # accumulating panes: a later pane never has a smaller count
)


def to_page_view_count(result: WindowedResult) -> PageViewCount:
    return PageViewCount(
        utc_iso(result.window_start),
        utc_iso(result.window_end),
        result.key,
        int(result.value),
        result.pane_timing,
        result.pane_index,
        result.is_final,
    )


def window_config(options: PipelineOptions) -> WindowConfig:
    w = options.view_as(opts.WindowOptions)
    return WindowConfig(
        size=w.window_size or DEFAULT_WINDOW,
        period=w.window_period,
        allowed_lateness=w.allowed_lateness or 0,
        early_firing=w.early_firing,
    )


class CountPageViews(beam.PTransform):
    """UserEvents (timestamped) -> PageViewCount per (window, page) or per pane.

    ``.late`` of the result holds events later than the allowed lateness (streaming).
    """

    def __init__(self, config: WindowConfig, *, streaming: bool, action: Optional[str] = None):
        super().__init__()
        self._config = config
        self._streaming = streaming
        self._action = action

    def expand(self, events):
        if self._action:
            action = self._action
            events = events | "OnlyAction" >> beam.Filter(lambda e: e.action == action)
        aggregated = (
            events
            | "KeyByPage" >> beam.Map(lambda e: (e.page, e))
            | "CountPerWindow"
            >> WindowedAggregate(
                beam.combiners.CountCombineFn(), self._config, streaming=self._streaming,
                metrics_namespace=PIPELINE,
            )
        )
        counts = aggregated.results | "Format" >> beam.Map(to_page_view_count)
        return _Counts(counts, aggregated.late)


class CountPageViewBatches(beam.PTransform):
    """Batch counts from the vectorized path: Arrow tables of valid events -> the same
    PageViewCounts as :class:`CountPageViews` over those events one by one.

    Windows are assigned and counts pre-aggregated inside each table; the counts are then
    summed per (window, page) by a combiner-lifted ``CombinePerKey(sum)``."""

    def __init__(self, config: WindowConfig, *, action: Optional[str] = None):
        super().__init__()
        self._config = config
        self._action = action

    def expand(self, tables):
        config = self._config
        where = ("action", self._action) if self._action else None

        def to_count(item) -> PageViewCount:
            (start, page), count = item
            return to_page_view_count(WindowedResult(page, start, start + config.size, count))

        counts = (
            tables
            | "CountPerWindow" >> beam.ParDo(CountPerWindow("page", config, where))
            | "SumPerWindowAndPage" >> beam.CombinePerKey(sum)  # lifted like any CombineFn
            | "Format" >> beam.Map(to_count)
        )
        # No late output at all (a bounded input has no late data): an empty Create
        # flattened into the dead letters would put them in a stage of their own, and
        # every dead letter would be encoded to get there.
        return _Counts(counts, None)


class CountPageViewTables(beam.PTransform):
    """Streaming counts from Arrow tables of events (each timestamped at its earliest
    event): the same panes as :class:`CountPageViews` over the events one by one, with
    counts pre-aggregated per (page, window slice) inside each table
    (:class:`~transforms.windowing.CountPerSlice`) before the stateful windowed count."""

    def __init__(self, config: WindowConfig, *, action: Optional[str] = None):
        super().__init__()
        self._config = config
        self._action = action

    def expand(self, tables):
        where = ("action", self._action) if self._action else None
        aggregated = (
            tables
            | "CountPerSlice" >> beam.ParDo(CountPerSlice("page", self._config, user_events, where))
            | "CountPerWindow"
            >> WindowedAggregate(
                beam.combiners.CountCombineFn(), self._config, streaming=True,
                metrics_namespace=PIPELINE,
            )
        )
        counts = aggregated.results | "Format" >> beam.Map(to_page_view_count)
        return _Counts(counts, aggregated.late)


class _Counts(NamedTuple):
    counts: beam.PCollection
    late: Optional[beam.PCollection]  # None when there can be none


def synthetic_source(options: PipelineOptions) -> _io.SourceSpec:
    io = options.view_as(opts.IOOptions)
    generator = SyntheticEvents(
        seed=io.synthetic_seed, rate=io.synthetic_rate, malformed=io.synthetic_malformed
    )
    if opts.is_streaming(options):
        from transforms.io.synthetic.read import unbounded_synthetic

        return _io.SourceSpec(unbounded_synthetic(generator, io.synthetic_events), bounded=False)
    return _io.SourceSpec(ReadSynthetic(io.synthetic_events, generator), bounded=True)


def build(pipeline: beam.Pipeline, options: PipelineOptions, source: _io.SourceSpec, streaming: bool):
    """The pageviews graph on ``pipeline``; returns (counts, dead letters)."""
    io = options.view_as(opts.IOOptions)
    action = options.view_as(PageviewsOptions).action
    engine = vectorized(options, source, streaming)
    if engine == "blocks":
        assert source.blocks is not None  # vectorized() checked it
        blocks = pipeline | "Read" >> source.blocks
        tables = blocks | "Parse" >> ParseBlocks(PIPELINE)
        counted = tables.valid | "CountPageViews" >> CountPageViewBatches(
            window_config(options), action=action
        )
        rejected = tables.dead_letters
    elif engine == "batches":
        assert source.batches is not None  # vectorized() checked it
        raw_batches = pipeline | "Read" >> source.batches
        tables = raw_batches | "Parse" >> ParseUserEventBatches(PIPELINE)
        if streaming:
            counted = tables.valid | "CountPageViews" >> CountPageViewTables(
                window_config(options), action=action
            )
        else:
            counted = tables.valid | "CountPageViews" >> CountPageViewBatches(
                window_config(options), action=action
            )
        rejected = tables.dead_letters
    else:
        raw = pipeline | "Read" >> source.transform
        parsed = raw | "Parse" >> ParseUserEvents(PIPELINE)
        checked = apply_quality(parsed.valid, options, PIPELINE)
        counted = checked.valid | "CountPageViews" >> CountPageViews(
            window_config(options), streaming=streaming, action=action
        )
        rejected = (parsed.dead_letters, checked.dead_letters) | "Rejected" >> beam.Flatten()
    measured = counted.counts | "MeasureOutput" >> metrics.MeasureOutput(PIPELINE)
    refused = _io.write_results(measured, options, RESULTS, streaming=streaming)
    dead_parts = [rejected]
    if counted.late is not None:
        dead_parts.append(counted.late | "LateToDeadLetter" >> beam.Map(
            late_record_to_dead_letter(PIPELINE, "window")
        ))
    if refused is not None:
        dead_parts.append(refused)
    dead = dead_parts | "AllDeadLetters" >> beam.Flatten()
    dead | "WriteDeadLetters" >> WriteDeadLetters(
        io.dead_letter, pipeline=PIPELINE, streaming=streaming, options=options
    )
    return counted.counts, dead


def vectorized(options: PipelineOptions, source: _io.SourceSpec, streaming: bool) -> Optional[str]:
    """Which vectorized Arrow path this run takes (see the module docstring): "blocks"
    (files, batch), "batches" (a source that polls in bulk), or None (per record)."""
    if (
        options.view_as(PageviewsOptions).batch_engine != "arrow"
        or options.view_as(QualityOptions).quality_rules
    ):
        return None
    if not streaming and source.blocks is not None:
        return "blocks"
    if source.batches is not None:
        return "batches"
    return None


def run(argv: Optional[Sequence[str]] = None):
    """Parse flags, build and run the pipeline; returns the PipelineResult."""
    options = opts.parse(
        argv,
        [opts.IOOptions, opts.WindowOptions, QualityOptions, PageviewsOptions],
        prog="python -m beam_pipelines.pageviews",
        description=__doc__.splitlines()[0],
    )
    window_config(options)  # validate window flags before anything starts
    source = _io.source_spec(options, default="synthetic", synthetic=synthetic_source)
    return _run.execute(options, source, pipeline_name=PIPELINE, build=build)


def main(argv: Optional[Sequence[str]] = None) -> int:
    return _run.main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
