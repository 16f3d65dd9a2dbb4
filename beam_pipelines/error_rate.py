"""Error rate: per service and sliding window, the errors in its logs; an incident when the
ratio is too high.

Service logs (``{"service", "level" and/or "status", "timestamp", ...}``, the contract
of ``transforms/contracts/service_logs.py``: an error is a status >= 500, or without a
status an error level) are counted per service in sliding event-time windows (default
60 s, a new one every 10 s). Every window is a result (``--sink``): its events, errors,
error ratio and whether it breaches, i.e. the ratio is above ``--max_error_ratio`` with
at least ``--min_events`` lines. With notifications (``--sink=pagerduty|slack|webhook``
or ``--notify=...`` beside any sink) a service opens an incident when a window first
breaches, and resolves it when a later window with at least ``--min_events`` lines does
not (a window with fewer lines neither opens nor resolves anything)::

    python -m beam_pipelines.error_rate                     # synthetic logs, a table
    python -m beam_pipelines.error_rate --source=file --input='logs/*.jsonl' --sink=jsonl \\
        --output=rates/ --dead_letter=rejected/
    python -m beam_pipelines.error_rate --source=kafka --topic=service_logs \\
        --bootstrap_servers=kafka:9092 --sink=postgres --output=postgresql://me@db/ops \\
        --notify=pagerduty --pagerduty_routing_key=env:PD_KEY --early_firing=1

Streaming: with ``--early_firing`` a window's running counts come out as EARLY panes, so
an incident opens (and resolves) on an early pane without waiting for the window's end.
The default synthetic run (batch) scripts an incident: ``checkout`` fails 40% of its
requests from minute 5 to minute 8.

Metrics (namespace ``error_rate``): ``events_parsed``, ``windows_breaching`` (results
that breach, panes included), ``incidents_triggered``, ``incidents_resolved.<reason>``,
``notifications_delivered/dead_lettered/retries.<channel>``; the Prometheus bridge
exports them as ``incidents_opened_total``, ``incidents_resolved_total{reason}``,
``notifications_sent_total{channel}`` ... (docs/alerting.md).
"""

from __future__ import annotations

import operator
import sys
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from beam_pipelines.metrics import counter_total
from beam_pipelines.options import fraction, positive_int
from beam_pipelines.options.quality import QualityOptions
from beam_pipelines.skeleton import Alerts, Context, Core, Inputs, Pipeline, ResultSpec
from beam_pipelines.wiring import notifications
from transforms.base.errors import ConfigError
from transforms.contracts.service_logs import SERVICE_LOGS
from transforms.records import ServiceErrorRate, ServiceLog, utc_iso
from transforms.sinks.notifications import message_fields
from transforms.windowing import WindowedAggregate, WindowedResult

__all__ = ["ERROR_RATE", "CountErrors", "ErrorRate", "ErrorRateOptions", "Limits", "main", "run"]

PIPELINE = "error_rate"
DESCRIPTION = (__doc__ or "").splitlines()[0]
DEFAULT_WINDOW = 60
DEFAULT_PERIOD = 10
DEFAULT_MAX_ERROR_RATIO = 0.05
# Hystrix's request-volume threshold: fewer requests say too little about a ratio.
DEFAULT_MIN_EVENTS = 20


class ErrorRateOptions(PipelineOptions):
    """error_rate flags: when a window breaches."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--max_error_ratio", type=fraction, default=DEFAULT_MAX_ERROR_RATIO,
            help="A window breaches when its error ratio (errors / lines) is strictly above "
            "this. Default 0.05.",
        )
        parser.add_argument(
            "--min_events", type=positive_int, default=DEFAULT_MIN_EVENTS,
            help="...and it has at least this many lines; a window with fewer neither opens "
            "nor resolves an incident. Default 20.",
        )


class Limits(NamedTuple):
    """When a window breaches: ratio strictly above ``max_error_ratio`` with at least
    ``min_events`` lines. The ratio is compared exactly (as a fraction of the decimal
    written), so 1 error in 20 lines is not above 0.05."""

    max_error_ratio: float = DEFAULT_MAX_ERROR_RATIO
    min_events: int = DEFAULT_MIN_EVENTS

    def validated(self) -> Limits:
        ratio, minimum = self.max_error_ratio, self.min_events
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ConfigError("--max_error_ratio", "a fraction between 0 and 1", ratio)
        if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
            raise ConfigError("--min_events", "a whole number >= 1", minimum)
        return self

    def ratio(self) -> Fraction:
        return Fraction(Decimal(repr(float(self.max_error_ratio))))


def limits(options: PipelineOptions) -> Limits:
    flags = options.view_as(ErrorRateOptions)
    return Limits(flags.max_error_ratio, flags.min_events).validated()


class CountErrors(beam.CombineFn):
    """Log lines -> (lines, errors): merges in any order to the same counts."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add_input(self, accumulator: tuple[int, int], line: ServiceLog) -> tuple[int, int]:
        return (accumulator[0] + 1, accumulator[1] + (1 if line.error else 0))

    def merge_accumulators(self, accumulators) -> tuple[int, int]:
        events = errors = 0
        for e, f in accumulators:
            events += e
            errors += f
        return (events, errors)

    def extract_output(self, accumulator: tuple[int, int]) -> tuple[int, int]:
        return accumulator


class _Rate(beam.DoFn):
    """WindowedResult of (lines, errors) -> ServiceErrorRate, with the breach decided exactly."""

    def __init__(self, limits: Limits) -> None:
        self._ratio = limits.ratio()
        self._min_events = limits.min_events
        self._breaching = Metrics.counter(PIPELINE, "windows_breaching")

    def process(self, result: WindowedResult):
        events, errors = result.value
        breaching = events >= self._min_events and Fraction(errors, events) > self._ratio
        if breaching:
            self._breaching.inc()
        yield ServiceErrorRate(utc_iso(result.window_start), utc_iso(result.window_end),
                               result.key, events, errors, errors / events if events else 0.0,
                               breaching, result.pane_timing, result.pane_index, result.is_final)


RESULTS = ResultSpec.of(
    ServiceErrorRate,
    name=PIPELINE,
    key=["window_start", "service"],
    title="Error rate per service and window",
    never_decrease="events",
)


class ErrorRate(Pipeline):
    """Error ratio per service and sliding window; incidents (see the module docstring)."""

    name = PIPELINE
    description = DESCRIPTION
    contract = SERVICE_LOGS
    results = RESULTS
    flags = (ErrorRateOptions, QualityOptions)
    default_window = DEFAULT_WINDOW
    default_window_period = DEFAULT_PERIOD

    def check(self, options: PipelineOptions) -> None:
        super().check(options)
        limits(options)

    def core(self, inputs: Inputs, ctx: Context) -> Core:
        counted = (inputs.records
                   | "KeyByService" >> beam.Map(lambda line: (line.service, line))
                   .with_output_types(Tuple[str, ServiceLog])
                   | "CountErrors" >> WindowedAggregate(
                       CountErrors(), self.window_config(ctx.options), streaming=ctx.streaming,
                       metrics_namespace=PIPELINE))
        rates = counted.results | "ErrorRatio" >> beam.ParDo(_Rate(limits(ctx.options)))
        return Core(rates, counted.late)

    def alerts(self, core: Core, ctx: Context) -> Alerts:
        """Breaching windows are the alerts; incidents per service over every window with
        at least --min_events lines (fewer say nothing either way)."""
        bounds = limits(ctx.options)
        minimum = bounds.min_events
        message = message_fields(
            what=f"Error ratio above {bounds.max_error_ratio * 100:.4g}%", where="service",
            numbers=["error_ratio", "errors", "events"], window_start="window_start",
            window_end="window_end", severity="error")
        breaching = core.results | "Breaching" >> beam.Filter(operator.attrgetter("breaching"))
        decided = core.results | "EnoughEvents" >> beam.Filter(
            lambda rate, minimum=minimum: rate.events >= minimum)
        return Alerts(breaching, message, incident_key=operator.attrgetter("service"),
                      windows=decided, breaching=operator.attrgetter("breaching"))

    def finish(self, result: PipelineResult, options: PipelineOptions) -> None:
        breaching = counter_total(result, PIPELINE, "windows_breaching")
        if breaching is None:
            return
        line = (f"{PIPELINE}: {breaching} window result{'s' if breaching != 1 else ''} above "
                f"--max_error_ratio")
        opened = counter_total(result, PIPELINE, "incidents_triggered")
        if notifications.channels(options) and opened is not None:
            resolved = sum(counter_total(result, PIPELINE, f"incidents_resolved.{reason}") or 0
                           for reason in ("recovered", "quiet_period"))
            line += f"; incidents: {opened} opened, {resolved} resolved"
        print(line, file=sys.stderr, flush=True)


ERROR_RATE = ErrorRate()
run = ERROR_RATE.run
main = ERROR_RATE.main


if __name__ == "__main__":
    raise SystemExit(main())
