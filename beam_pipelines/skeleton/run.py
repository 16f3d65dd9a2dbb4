"""What every pipeline's ``run`` and ``main`` share: the runner, metrics, the end-of-run
report, and one-line errors."""

from __future__ import annotations

import logging
import sys
from typing import Callable, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from beam_pipelines import metrics
from beam_pipelines.metrics import counter_total
from beam_pipelines.options import IOOptions, is_streaming
from beam_pipelines.wiring.source_spec import SourceSpec
from runners import prepare
from runners.introspection import remember_dofn_introspection
from transforms.base.errors import BeamPipelinesError

__all__ = ["Launched", "execute", "launch", "main", "prepare_runner", "report", "set_streaming"]

_LOG = logging.getLogger(__name__)


def set_streaming(options: PipelineOptions, streaming: bool) -> None:
    options.view_as(StandardOptions).streaming = streaming


Build = Callable[[beam.Pipeline, PipelineOptions, SourceSpec, bool], object]


class Launched(NamedTuple):
    """A run started by :func:`launch`: its graph, final options and result."""

    pipeline: beam.Pipeline
    options: PipelineOptions
    result: PipelineResult
    streaming: bool


def launch(options: PipelineOptions, source: SourceSpec, *, build: Build) -> Launched:
    """Start a run without waiting for it: the runner preset checks and fills the options,
    ``build`` puts the graph on a new pipeline, the pipeline runs.

    Streaming follows ``--streaming`` or an unbounded source. :func:`execute` is this
    plus metrics and the end-of-run report; tests call it to run a pipeline on a source
    of their own (a TestStream, a source that fails) or to watch a run while it runs.
    """
    skip_ipython_probe()
    remember_dofn_introspection()  # about a second of every start-up (runners/introspection.py)
    streaming = is_streaming(options) or not source.bounded
    set_streaming(options, streaming)
    options = prepare_runner(options)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options, source, streaming)
    return Launched(pipeline, options, pipeline.run(), streaming)


def execute(options: PipelineOptions, source: SourceSpec, *, pipeline_name: str,
            build: Build) -> PipelineResult:
    """Run a pipeline the same way for every pipeline module: :func:`launch`, metrics
    exported while the job runs (``--metrics_port``, ``--pushgateway``), and the
    end-of-run report of what was counted and rejected."""
    run = launch(options, source, build=build)
    with metrics.serve(run.result, run.options, pipeline=pipeline_name) as exporter:
        run.result.wait_until_finish()
    # The exporter's final snapshot, not a new read: Beam's portable job service stops
    # reporting the counters of stages fused with a splittable read once the job is done.
    report(run.result, pipeline=pipeline_name,
           dead_letter=run.options.view_as(IOOptions).dead_letter, snapshot=exporter.snapshot)
    return run.result


def skip_ipython_probe() -> None:
    """Beam asks "am I inside IPython?" for every transform applied and before a direct
    run, by importing IPython: about a second wherever IPython is installed (the
    [notebooks] extra). A process that has not imported IPython is not inside it, so the
    answer is False without the import; in a notebook Beam's own check stays."""
    if "IPython" in sys.modules:
        return
    from apache_beam.utils import interactive_utils

    def not_in_ipython() -> bool:
        return False

    original = interactive_utils.is_in_ipython
    # Modules that imported the function by name (pipeline, direct_runner) hold their own
    # reference; modules imported later take the replaced one.
    for module in list(sys.modules.values()):
        if getattr(module, "is_in_ipython", None) is original:
            module.is_in_ipython = not_in_ipython  # type: ignore[attr-defined]


def prepare_runner(options: PipelineOptions) -> PipelineOptions:
    """Apply the runner preset (validation, defaults) for ``--runner``."""
    options.view_as(SetupOptions).save_main_session = False
    return prepare(options)


def report(
    result, *, pipeline: str, dead_letter: Optional[str], out=None, snapshot=None
) -> dict[str, int]:
    """Print the end-of-run summary: what was counted and what was rejected, and where.

    ``snapshot`` (metrics.Snapshot) is the metrics bridge's final reading; without it the
    counters are read from ``result``."""

    def total(name: str) -> Optional[int]:
        if snapshot is not None and snapshot.counters:
            return snapshot.counters.get((pipeline, name), 0)
        return counter_total(result, pipeline, name)

    parsed = total("events_parsed")
    if parsed is None:
        print(f"{pipeline}: metrics are not available on this runner", file=out or sys.stderr,
              flush=True)
        return {}
    rejected = total("events_dead_lettered") or 0
    late = total("late_events_dropped") or 0
    quality = total("quality_failed") or 0
    summary = {"valid": parsed, "rejected": rejected, "late_dropped": late, "quality_failed": quality}
    line = f"{pipeline}: {parsed} valid records, {rejected} rejected"
    if quality:
        line += f", {quality} failed data-quality rules"
    if late:
        line += f", {late} later than the allowed lateness"
    if rejected or late or quality:
        if dead_letter:
            line += f"; dead letters written to {dead_letter}"
        else:
            line += "; dead letters were not kept: pass --dead_letter DIR to write them"
    print(line, file=out or sys.stderr, flush=True)
    return summary


class _HideOurErrorTracebacks(logging.Filter):
    """Beam logs a worker's exception with its traceback before re-raising it. For our
    own errors (a sink that cannot connect, a missing topic) the one-line message that
    ``main`` prints is the whole story, so that log record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, BeamPipelinesError):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def main(run: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None) -> int:
    """Run a pipeline from the command line: our errors become one line, exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker"):
        logging.getLogger(name).addFilter(_HideOurErrorTracebacks())
    try:
        run(argv)
    except BeamPipelinesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
