"""What every pipeline's ``run`` and ``main`` share: the runner, metrics, the end-of-run
report, and one-line errors."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from typing import Callable, Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from beam_pipelines import metrics
from beam_pipelines.metrics import counter_total
from beam_pipelines.options import IOOptions, is_streaming
from beam_pipelines.skeleton import progress
from beam_pipelines.skeleton.logs import configure_logging
from beam_pipelines.wiring.source_spec import SourceSpec
from runners import prepare
from runners.introspection import remember_dofn_introspection
from transforms.base.errors import (
    BeamPipelinesError,
    ConfigError,
    MissingExtraError,
    NotAvailableError,
)
from transforms.sinks.files import TEMP_PREFIX, remove_temp_folders, temp_folders

__all__ = ["Launched", "describe_io_failure", "execute", "file_outputs", "launch", "main",
           "prepare_runner", "report", "set_streaming", "while_running"]

_LOG = logging.getLogger(__name__)
# Set on an exception raised while the job ran (not while it was built): exit code 1.
_FAILED_WHILE_RUNNING = "_beam_pipelines_failed_while_running"
_STEP = re.compile(r" \[while running '([^']*)'\]")
# Errors that say a job cannot run at all, whenever they are raised: a runner checks the
# pipeline and connects to its cluster inside pipeline.run() (DaskRunner), a worker may
# find a bad --kafka_config setting. Exit code 2 for them, as for a bad flag.
_CANNOT_START = (ConfigError, MissingExtraError, NotAvailableError)


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
    pipeline, options, streaming = _built(options, source, build)
    with while_running(options):
        result = pipeline.run()
    return Launched(pipeline, options, result, streaming)


def execute(options: PipelineOptions, source: SourceSpec, *, pipeline_name: str,
            build: Build) -> PipelineResult:
    """Run a pipeline the same way for every pipeline module: :func:`launch`, metrics
    exported while the job runs (``--metrics_port``, ``--pushgateway``), and the
    end-of-run report of what was counted and rejected."""
    pipeline, options, streaming = _built(options, source, build)
    io = options.view_as(IOOptions)
    backfill = io.input if io.source == "file" and not streaming else None
    with while_running(options), progress.shown(backfill):
        started = time.monotonic()
        result = pipeline.run()
        with metrics.serve(result, options, pipeline=pipeline_name, started=started) as exporter:
            result.wait_until_finish()
    # The exporter's final snapshot, not a new read: Beam's portable job service stops
    # reporting the counters of stages fused with a splittable read once the job is done.
    report(result, pipeline=pipeline_name,
           dead_letter=options.view_as(IOOptions).dead_letter, snapshot=exporter.snapshot)
    return result


def _built(options: PipelineOptions, source: SourceSpec,
           build: Build) -> tuple[beam.Pipeline, PipelineOptions, bool]:
    """The graph on a new pipeline, not started yet: what fails here (a bad flag, a sink
    that cannot be reached at launch) fails before anything is read (exit code 2)."""
    skip_ipython_probe()
    remember_dofn_introspection()  # about a second of every start-up (runners/introspection.py)
    streaming = is_streaming(options) or not source.bounded
    set_streaming(options, streaming)
    options = prepare_runner(options)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options, source, streaming)
    return pipeline, options, streaming


@contextlib.contextmanager
def while_running(options: PipelineOptions) -> Iterator[None]:
    """The block runs the job. A failure in it is marked as one of a job that had started
    (:func:`main`: exit code 1, one line naming the path where an I/O error is behind
    it), and the ``beam-temp-*`` folders the batch file writers left are removed: nothing
    was replaced (file sinks rename into place only when the job succeeds), and a full
    disk does not stay full."""
    places = file_outputs(options)
    temporary = {directory: temp_folders(directory) for directory in places.values()}
    try:
        yield
    except BaseException as exc:
        for directory, before in temporary.items():
            remove_temp_folders(directory, keep=before)
        _mark_failed_while_running(exc, places)
        raise


def file_outputs(options: PipelineOptions) -> dict[str, str]:
    """Step label -> directory of this run's batch file writers (result files, dead-letter
    directory), where Beam keeps its temporary folders while it writes."""
    io = options.view_as(IOOptions)
    places = {}
    if io.sink in ("jsonl", "parquet") and io.output:
        places["WriteJsonLines" if io.sink == "jsonl" else "WriteParquet"] = io.output
    scheme = io.dead_letter.split("://", 1)[0] if io.dead_letter and "://" in io.dead_letter else ""
    if io.dead_letter and scheme not in ("kafka", "pubsub"):
        places["WriteDeadLetters"] = io.dead_letter
    return places


def _mark_failed_while_running(exc: BaseException, places: dict[str, str]) -> None:
    """Remember on ``exc`` that the job had started, and the one line that says what
    failed where an I/O error is behind it (see :func:`main`)."""
    if getattr(exc, _FAILED_WHILE_RUNNING, None) is not None:
        return  # marked by an inner block already
    try:
        setattr(exc, _FAILED_WHILE_RUNNING, describe_io_failure(exc, places) or True)
    except AttributeError:  # an exception type without attributes: exit code 2 then
        pass


def describe_io_failure(exc: BaseException, places: dict[str, str]) -> Optional[str]:
    """One line naming the path and the problem when an operating-system error (a full
    disk, a read-only or missing directory, a path that is a file) is behind ``exc``;
    None otherwise. Beam re-raises a worker's error wrapped, annotated with the step."""
    chain: list[BaseException] = []
    current: Optional[BaseException] = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    errors = [e for e in chain if isinstance(e, OSError) and e.strerror]
    if not errors:
        return None
    error = errors[-1]  # the innermost: what the system said
    steps = [found.group(1) for e in chain for found in [_STEP.search(str(e))] if found]
    step = steps[0] if steps else None
    path = str(error.filename) if error.filename else None
    if path and f"/{TEMP_PREFIX}" in path:
        path = path.split(f"/{TEMP_PREFIX}")[0]  # the output directory, not Beam's scratch
    if path is None and step:
        path = next((d for label, d in places.items() if step.startswith(label + "/")), None)
    text = f"{path}: {error.strerror}" if path else error.strerror
    return f"{text} [while running '{step}']" if step else text


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
    own errors (a sink that cannot connect, a missing topic) and for the operating
    system's (a full disk, a read-only directory) the one-line message that ``main``
    prints is the whole story, so that log record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, BeamPipelinesError) or (isinstance(exc, OSError) and exc.strerror):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


def main(run: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None) -> int:
    """Run a pipeline from the command line; every failure we can explain is one line.

    Exit code 2: the job did not start (a bad flag, no input files, a server or topic
    that cannot be reached at launch, a runner that refuses the pipeline or cannot reach
    its cluster); nothing was read or written. Exit code 1: the job
    started and failed while it ran (a truncated archive, an unreadable file, a full disk,
    a sink that stayed unreachable past its retry budget); the previous output of a file
    sink is untouched. Any other exception keeps its traceback: that is a bug.
    """
    configure_logging()
    for name in ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker"):
        logging.getLogger(name).addFilter(_HideOurErrorTracebacks())
    try:
        run(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        during_run = getattr(exc, _FAILED_WHILE_RUNNING, None)
        if isinstance(exc, BeamPipelinesError):
            print(f"error: {exc}", file=sys.stderr)
            return 1 if during_run and not isinstance(exc, _CANNOT_START) else 2
        if isinstance(during_run, str):  # an I/O error, described in one line
            print(f"error: {during_run}", file=sys.stderr)
            return 1
        raise
    return 0
