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
exactly as ``--batch_engine=records`` does for every record. Avro topics (``--format=avro``)
take the same path, one Arrow table per poll; Protobuf and JSON Schema topics are decoded
record by record inside it. Both engines give the same counts,
panes and dead letters (in streaming, the late records of one poll fire one LATE pane
together); the records engine is the reference the tests compare against. The
synthetic, Pub/Sub and Event Hubs sources, and ``--quality_rules`` with
``unique_within_window``, use the per-record path (other rules are checked on the tables).
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

# One OpenBLAS thread, set before Beam imports NumPy (a no-op when something imported it
# first): this job does no matrix math, and an idle OpenBLAS thread spins on the core the
# parse workers use (about 0.5 s of CPU in a 5M-event backfill, docs/performance.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import apache_beam as beam  # noqa: E402 - after the BLAS setting above
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import options as opts
from beam_pipelines.options.quality import QualityOptions
from beam_pipelines.skeleton import Context, Core, Inputs, Pipeline, ResultSpec
from beam_pipelines.skeleton.user_events import read_user_events, vectorized
from beam_pipelines.wiring.source_spec import SourceSpec
from transforms.batches import user_events
from transforms.contracts import USER_EVENTS
from transforms.records import PageViewCount, utc_iso
from transforms.windowing import (
    CountPerSlice,
    CountPerWindow,
    WindowConfig,
    WindowedAggregate,
    WindowedResult,
)

__all__ = [
    "BATCH_ENGINES", "CountPageViewBatches", "CountPageViews", "CountPageViewTables",
    "DEFAULT_WINDOW", "DESCRIPTION", "PAGEVIEWS", "Pageviews", "PageviewsOptions", "PIPELINE",
    "RESULTS", "main", "run", "to_page_view_count", "vectorized"
]

PIPELINE = "pageviews"
DESCRIPTION = (__doc__ or "").splitlines()[0]
DEFAULT_WINDOW = 300
BATCH_ENGINES = opts.BATCH_ENGINES  # --batch_engine: beam_pipelines.options.BatchEngineOptions


class PageviewsOptions(PipelineOptions):
    """Pageviews-specific flags."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--action",
            default=None,
            help="Count only events with this action (e.g. page_view). Default: every event.",
        )


RESULTS = ResultSpec.of(
    PageViewCount,
    name=PIPELINE,
    key=["window_start", "page"],
    title="page views per window",
    table="page_views",
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


class Pageviews(Pipeline):
    """Page views per page and event-time window (see the module docstring)."""

    name = PIPELINE
    description = DESCRIPTION
    contract = USER_EVENTS
    results = RESULTS
    flags = (QualityOptions, PageviewsOptions, opts.BatchEngineOptions)
    default_window = DEFAULT_WINDOW

    def read(self, pipeline: beam.Pipeline, source: SourceSpec, ctx: Context) -> Inputs:
        """Per record (as the skeleton reads), or as Arrow tables on the vectorized path."""
        return read_user_events(pipeline, source, ctx)

    def core(self, inputs: Inputs, ctx: Context) -> Core:
        action = ctx.flags(PageviewsOptions).action
        config = self.window_config(ctx.options)
        if inputs.form == "records":
            count: beam.PTransform = CountPageViews(config, streaming=ctx.streaming, action=action)
        elif inputs.form == "batches" and ctx.streaming:
            count = CountPageViewTables(config, action=action)
        else:
            count = CountPageViewBatches(config, action=action)
        counted = inputs.records | "CountPageViews" >> count
        return Core(counted.counts, counted.late)


PAGEVIEWS = Pageviews()
run = PAGEVIEWS.run
main = PAGEVIEWS.main


if __name__ == "__main__":
    raise SystemExit(main())
