"""The pipeline skeleton: a pipeline declares what is its own, the skeleton does the rest.

A pipeline is a subclass of :class:`Pipeline` that declares

* ``name``: its name (metrics namespace, file names, default table);
* ``contract``: its input contract (``transforms.contracts``): the record and parser;
* ``results``: its result record, as a :class:`~beam_pipelines.skeleton.results.ResultSpec`
  (sink columns, Parquet schema, PostgreSQL DDL and key derive from the record);
* ``flags``: its own PipelineOptions classes (``--rules=PATH``, thresholds...);
* :meth:`Pipeline.core`: its core transform, from valid input records to results (and
  any late records, dead letters and further outputs).

The skeleton provides the source (``--source``), parsing and ``--quality_rules``, the
sink (``--sink``), notifications (``--sink=slack|pagerduty|webhook``, ``--notify``),
dead letters of every step (``--dead_letter``), metrics, the end-of-run summary and
``run()`` / ``main()``; :meth:`Pipeline.launch` starts a run without waiting (the seam
tests use). Hooks a pipeline may override: :meth:`check` (validate its flags before
anything starts), :meth:`read` (how inputs are read and parsed), :meth:`write` (more
outputs beside the main sink), :meth:`alerts` (what its notifications are about) and
:meth:`finish` (after the run). docs/sdk.md walks through a pipeline written on it.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar, NamedTuple, Optional, Sequence, Type, Union

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult
from apache_beam.transforms.window import GlobalWindows

from beam_pipelines import options as opts
from beam_pipelines.options import applies
from beam_pipelines.options.quality import QualityOptions
from beam_pipelines.program import program_name
from beam_pipelines.skeleton import run as runs
from beam_pipelines.skeleton.results import ResultSpec
from beam_pipelines.wiring import notifications, quality
from beam_pipelines.wiring.dead_letters import write_dead_letters
from beam_pipelines.wiring.extras import check_extras
from beam_pipelines.wiring.notifications import Alerts
from beam_pipelines.wiring.sinks import check_sink, write_results
from beam_pipelines.wiring.source_spec import SourceSpec
from beam_pipelines.wiring.sources import source_spec
from beam_pipelines.wiring.synthetic import synthetic_source
from transforms.contracts import InputContract
from transforms.io.results import ReadResult
from transforms.measure import MeasureOutput
from transforms.sinks.dead_letter_sink import late_record_to_dead_letter
from transforms.windowing import WindowConfig

__all__ = ["Alerts", "Context", "Core", "Inputs", "Pipeline"]


class Context(NamedTuple):
    """What a pipeline's hooks get besides their PCollections."""

    name: str  # the pipeline's name: the metrics namespace and dead letters' ``pipeline``
    options: PipelineOptions
    streaming: bool

    def flags(self, cls: Type[PipelineOptions]) -> Any:
        """The view of ``cls`` (e.g. the pipeline's own options class)."""
        return self.options.view_as(cls)


class Inputs(NamedTuple):
    """What :meth:`Pipeline.read` gives the core: valid records and the rejected ones."""

    records: beam.PCollection  # valid records of the contract, timestamped by event time
    dead_letters: list  # PCollections of DeadLetter (or DeadLetterBatch)
    # What ``records`` hold: "records" (the contract's record type), or a form of the
    # pipeline's own read (pageviews' vectorized path: Arrow tables, "blocks"/"batches").
    form: str = "records"


class Core(NamedTuple):
    """What a pipeline's core transform returns.

    ``results`` go to ``--sink``; ``late`` (WindowedAggregate's too-late records) become
    dead letters with the reason; ``dead_letters`` are the core's own rejects (a rule that
    cannot be evaluated...); ``outputs`` are further PCollections for :meth:`Pipeline.write`
    (alerts to notify, say).
    """

    results: beam.PCollection
    late: Optional[beam.PCollection] = None
    dead_letters: Sequence[beam.PCollection] = ()
    outputs: Optional[dict[str, beam.PCollection]] = None


class Pipeline:
    """A pipeline on the skeleton (see the module docstring)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""  # the first line of ``--help``
    contract: ClassVar[InputContract]
    results: ClassVar[ResultSpec]
    # The pipeline's own option classes, in --help order; QualityOptions, when not listed,
    # comes after them.
    flags: ClassVar[tuple[Type[PipelineOptions], ...]] = ()
    default_window: ClassVar[int] = 300  # seconds, when --window_size is not given
    # Sliding windows by default: a window starts every this many seconds (at most the
    # window size) when --window_period is not given; None: tumbling windows.
    default_window_period: ClassVar[Optional[int]] = None
    default_source: ClassVar[str] = "synthetic"
    # Overrides of when a flag applies (beam_pipelines/options/applies.py): flag (without
    # "--") -> a Rule, or None for "always". A flag given where it does nothing is refused.
    flag_rules: ClassVar[dict[str, Optional[applies.Rule]]] = {}

    # ---- what a pipeline writes --------------------------------------------------------

    def core(self, inputs: Inputs, ctx: Context) -> Core:
        """Valid input records (``inputs.records``, timestamped by event time) -> results."""
        raise NotImplementedError(f"{type(self).__name__} must define core()")

    # ---- hooks with defaults ------------------------------------------------------------

    def check(self, options: PipelineOptions) -> None:
        """Refuse bad flags before anything starts (one line naming the flag)."""
        self.window_config(options)
        quality.rules_for(options, self.name, self.contract.schema)

    def read(self, pipeline: beam.Pipeline, source: SourceSpec, ctx: Context) -> Inputs:
        """Read, parse (dead-lettering what breaks the contract) and apply ``--quality_rules``."""
        records, rejected = read_records(pipeline, source)
        parsed = records | "Parse" >> self.contract.parser(self.name, decoder=source.decoder)
        checked = quality.apply_quality(parsed.valid, ctx.options, self.name,
                                        schema=self.contract.schema)
        return Inputs(checked.valid, [*rejected, parsed.dead_letters, checked.dead_letters])

    def write(self, core: Core, ctx: Context) -> list:
        """Write ``core.outputs`` beside the main sink; returns their dead letters."""
        return []

    def alerts(self, core: Core, ctx: Context) -> Optional[Alerts]:
        """What the pipeline notifies about, for ``--sink=slack|pagerduty|webhook`` and
        ``--notify``: its alert records, how they read, and optionally the incident key
        and the results incidents are tracked on (see :class:`Alerts`). A pipeline that
        does not override it emits no alerts, and those flags are refused for it."""
        return None

    def finish(self, result: PipelineResult, options: PipelineOptions) -> None:
        """After the run and its summary (say how many alerts were emitted, say)."""

    # ---- helpers for the hooks ---------------------------------------------------------

    def window_config(self, options: PipelineOptions) -> WindowConfig:
        """The windows of ``--window_size`` (default :attr:`default_window`) and friends."""
        w = options.view_as(opts.WindowOptions)
        size = w.window_size or self.default_window
        period = w.window_period
        if period is None and self.default_window_period is not None:
            period = min(self.default_window_period, size)
        return WindowConfig(
            size=size,
            period=period,
            allowed_lateness=w.allowed_lateness or 0,
            early_firing=w.early_firing,
            allow_many_windows=w.allow_many_windows,
        )

    def option_classes(self) -> list[Type[PipelineOptions]]:
        classes: list[Type[PipelineOptions]] = [opts.IOOptions, opts.WindowOptions, *self.flags]
        return classes if QualityOptions in classes else [*classes, QualityOptions]

    def synthetic_source(self, options: PipelineOptions) -> SourceSpec:
        """``--source=synthetic``: the contract's generator."""
        return synthetic_source(options, self.contract)

    # ---- what the skeleton does ---------------------------------------------------------

    def parse_flags(self, argv: Optional[Sequence[str]]) -> PipelineOptions:
        """Strict parsing of ``argv`` (one line naming a bad flag); ``--help`` lists the
        pipeline's own flags first."""
        return opts.parse(argv, self.option_classes(), prog=program_name(self.module_name()),
                          description=self.description, exclude=self.other_classes())

    def module_name(self) -> str:
        """The module that defines the pipeline, as ``python -m`` runs it."""
        module = type(self).__module__
        if module == "__main__":  # run as python -m: the module's own name is in its spec
            spec = getattr(sys.modules["__main__"], "__spec__", None)
            module = spec.name if spec is not None else self.name
        return module

    def other_classes(self) -> list[Type[PipelineOptions]]:
        """Option classes of other pipelines (and optional shared ones this pipeline does
        not list): their flags do nothing here."""
        own = set(self.option_classes())
        optional = (opts.BatchEngineOptions,)
        return [cls for cls in opts.all_option_classes() if cls not in own
                and (cls in optional or _is_pipeline_module(cls.__module__))]

    def has_alerts(self) -> bool:
        """Whether the pipeline overrides :meth:`alerts` (it can notify)."""
        return type(self).alerts is not Pipeline.alerts

    def check_all(self, options: PipelineOptions) -> None:
        """The flags checked before a run starts: that each flag given applies to this run
        (``--input`` alone implies ``--source=file``), the optional extras the chosen
        source, sink and dead-letter target need, :meth:`check` (the pipeline's own) and
        the skeleton's (the notification flags and secrets)."""
        applies.implied_source(options)
        applies.check(options, default_source=self.default_source, pipeline=self.name,
                      own_classes=self.option_classes(), other_classes=self.other_classes(),
                      extra_rules=self.flag_rules)
        check_extras(options, default_source=self.default_source)
        self.check(options)
        notifications.prepare(options, pipeline=self.name, has_alerts=self.has_alerts())

    def checked_source(self, options: PipelineOptions) -> SourceSpec:
        """Everything checked before a run starts (:meth:`check_all`, then the sink:
        ``--sink=iceberg`` opens its catalog and table), and the source."""
        self.check_all(options)
        source = self.source(options)
        check_sink(options, self.results)  # last: it may create the table
        return source

    def source(self, options: PipelineOptions) -> SourceSpec:
        return source_spec(options, default=self.default_source, synthetic=self.synthetic_source,
                           contract=self.contract)

    def build(self, pipeline: beam.Pipeline, options: PipelineOptions, source: SourceSpec,
              streaming: bool) -> tuple[beam.PCollection, beam.PCollection]:
        """The whole graph on ``pipeline``; returns (results, dead letters)."""
        ctx = Context(self.name, options, streaming)
        inputs = self.read(pipeline, source, ctx)
        core = self.core(inputs, ctx)
        measured = core.results | "MeasureOutput" >> MeasureOutput(self.name)
        refused = write_results(measured, options, self.results, streaming=streaming)
        dead_parts = list(inputs.dead_letters)
        if core.late is not None:
            dead_parts.append(core.late | "LateToDeadLetter" >> beam.Map(
                late_record_to_dead_letter(self.name, "window")
            ))
        dead_parts += list(core.dead_letters)
        dead_parts += self.write(core, ctx)
        if notifications.channels(options):
            alerts = self.alerts(core, ctx)
            if alerts is None:
                notifications.prepare(options, pipeline=self.name, has_alerts=False)  # raises
            else:
                dead_parts += notifications.write_notifications(
                    alerts, options, pipeline=self.name, streaming=streaming)
        if refused is not None:
            dead_parts.append(refused)
        dead = dead_parts | "AllDeadLetters" >> beam.Flatten()
        dead | "WriteDeadLetters" >> write_dead_letters(
            options.view_as(opts.IOOptions).dead_letter, options, pipeline=self.name,
            streaming=streaming,
        )
        return core.results, dead

    def launch(self, flags: Union[Sequence[str], PipelineOptions, None] = None, *,
               source: Optional[SourceSpec] = None) -> runs.Launched:
        """Start a run without waiting for it (no metrics, no summary): flags or parsed
        options, and any source (default: the one ``--source`` names)."""
        options = flags if isinstance(flags, PipelineOptions) else self.parse_flags(flags)
        if source is None:
            source = self.checked_source(options)
        return runs.launch(options, source, build=self.build)

    def run(self, argv: Optional[Sequence[str]] = None) -> PipelineResult:
        """Parse flags, build and run the pipeline; returns the PipelineResult."""
        options = self.parse_flags(argv)
        source = self.checked_source(options)
        result = runs.execute(options, source, pipeline_name=self.name, build=self.build)
        self.finish(result, options)
        return result

    def main(self, argv: Optional[Sequence[str]] = None) -> int:
        """The command line: our errors become one line; exit code 2 when the job did not
        start (a bad flag, no input), 1 when it failed while running (see
        :func:`beam_pipelines.skeleton.run.main`)."""
        return runs.main(self.run, argv)


def _is_pipeline_module(module: str) -> bool:
    """A module of ``beam_pipelines`` outside the shared options (a pipeline's own)."""
    return module.startswith("beam_pipelines.") and not module.startswith(
        ("beam_pipelines.options", "beam_pipelines.skeleton", "beam_pipelines.wiring"))


def read_records(pipeline: beam.Pipeline, source: SourceSpec,
                 label: str = "Read") -> tuple[beam.PCollection, list]:
    """Apply ``source.transform``: its RawRecords, and its dead letters as a list (empty
    for a source that returns only records)."""
    read = pipeline | label >> source.transform
    if isinstance(read, ReadResult):
        return read.records, [read.dead_letters | f"{label}RejectsToGlobalWindow" >> beam.WindowInto(
            GlobalWindows())]
    return read, []
