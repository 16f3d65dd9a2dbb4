"""IoT alerts: devices whose readings break a threshold in an event-time window.

The classic Azure Stream Analytics job, written once in Beam for stream and batch::

    SELECT DeviceId, Avg(Temperature) AS AvgTemp, Max(Humidity) AS MaxHumidity,
           System.Timestamp AS WindowTime
    INTO AlertsOutput FROM IoTInput TIMESTAMP BY EventTime
    GROUP BY DeviceId, TumblingWindow(minute, 1)
    HAVING Avg(Temperature) > 30 OR Max(Humidity) > 80

::

    python -m beam_pipelines.iot_alerts                      # synthetic readings, a table
    python -m beam_pipelines.iot_alerts --source=file --input='readings/*.jsonl' \\
        --sink=jsonl --output=alerts/ --dead_letter=rejected/

Thresholds and the window are flags (``--temperature_threshold``,
``--humidity_threshold``, ``--window_size``).

Notifications (``--sink=slack|pagerduty|webhook`` or ``--notify=...`` beside any sink,
docs/alerting.md): by default one incident per device, triggered by its first breaching
window (or pane) and resolved by a later window of the device that does not breach (or,
with ``--resolve_after``, after that long without readings); ``--notify_on=alerts``
sends every alert instead (each qualifying pane). HAVING is strict (``>``). Averages are
computed exactly over the decimal values as written, so a window averaging exactly 30
never alerts, whatever order a runner sums in.

``--quality_rules=rules.json`` applies data-quality rules (transforms/quality/) to the
parsed readings before aggregation; failing readings are dead-lettered with the rule.

Streaming: Stream Analytics emits each window once, at its end; here ``--early_firing``
and ``--allowed_lateness`` can give a window several panes (EARLY, ON_TIME, LATE). The
HAVING filter applies to every pane: each qualifying pane is an alert, and a pane that
stops qualifying (a late reading lowers the average) emits nothing, so an alert once
raised is never retracted (with the PostgreSQL sink the row keeps the last qualifying
pane). Without those two flags streaming output is exactly Stream Analytics': one
ON_TIME alert per qualifying window.
"""

from __future__ import annotations

import argparse
import decimal
import math
import operator
import sys
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from beam_pipelines.metrics import counter_total
from beam_pipelines.options.quality import QualityOptions
from beam_pipelines.skeleton import Alerts, Context, Core, Inputs, Pipeline, ResultSpec
from beam_pipelines.wiring.quality import rules_for
from transforms.base.errors import ConfigError
from transforms.contracts import IOT_READINGS
from transforms.contracts.iot_readings import ParseReadings, parse_reading
from transforms.records import IoTAlert, IoTReading, UtcTime, utc_iso
from transforms.sinks.notifications import message_fields
from transforms.windowing import WindowConfig, WindowedAggregate, WindowedResult

__all__ = ["IOT_ALERTS", "AlertStatsFn", "DetectAlerts", "DeviceWindow", "IotAlerts",
           "IotAlertsOptions", "ParseReadings", "Thresholds", "main", "parse_reading", "run"]

PIPELINE = "iot_alerts"
DESCRIPTION = (__doc__ or "").splitlines()[0]
DEFAULT_WINDOW = 60
DEFAULT_TEMPERATURE = 30.0
DEFAULT_HUMIDITY = 80.0


def _finite_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


class IotAlertsOptions(PipelineOptions):
    """iot_alerts-specific flags: the HAVING thresholds."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--temperature_threshold",
            type=_finite_number,
            default=DEFAULT_TEMPERATURE,
            help="Alert when a device's average temperature in a window is strictly above "
            "this. Default 30.",
        )
        parser.add_argument(
            "--humidity_threshold",
            type=_finite_number,
            default=DEFAULT_HUMIDITY,
            help="Alert when a device's maximum humidity in a window is strictly above this. "
            "Default 80.",
        )


# ---- the aggregate and the HAVING clause -------------------------------------------------

# Decimal sums in this context are exact (unlimited precision; Inexact would raise), and
# about 8x faster than summing Fractions.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN,
                         traps=[decimal.Inexact])


def exact(value: float) -> Decimal:
    """The decimal a float was written as (its shortest repr), exactly.

    JSON ``29.9`` arrives as the binary float nearest to 29.9; its repr is ``29.9`` again,
    so summing these decimals gives the sum of the values as written.
    """
    return Decimal(repr(float(value)))


class WindowStats(NamedTuple):
    avg_temperature: Fraction
    max_humidity: float
    readings: int


class AlertStatsFn(beam.CombineFn):
    """Readings -> (exact average temperature, max humidity, count) via (sum, count, max).

    The accumulator merges in any order to the same exact value, so batch (combiner
    lifting) and streaming (the stateful pane DoFn) agree on every boundary case.
    """

    def create_accumulator(self) -> tuple[Decimal, int, float]:
        return (Decimal(0), 0, -math.inf)

    def add_input(self, accumulator, reading: IoTReading):
        total, count, highest = accumulator
        humidity = reading.Humidity
        return (_EXACT.add(total, exact(reading.Temperature)), count + 1,
                humidity if humidity > highest else highest)

    def merge_accumulators(self, accumulators):
        total, count, highest = Decimal(0), 0, -math.inf
        for t, c, h in accumulators:
            total = _EXACT.add(total, t)
            count += c
            highest = h if h > highest else highest
        return (total, count, highest)

    def extract_output(self, accumulator) -> WindowStats:
        total, count, highest = accumulator
        return WindowStats(Fraction(total) / count if count else Fraction(0), highest, count)


class Thresholds(NamedTuple):
    temperature: float = DEFAULT_TEMPERATURE
    humidity: float = DEFAULT_HUMIDITY

    def validated(self) -> Thresholds:
        for flag, value in (("--temperature_threshold", self.temperature),
                            ("--humidity_threshold", self.humidity)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(flag, "a finite number", value)
        return self


class DeviceWindow(NamedTuple):
    """One device's window (or pane), breaching or not: what incidents are tracked on."""

    DeviceId: str
    AvgTemp: float
    MaxHumidity: float
    WindowTime: UtcTime  # the window end
    WindowStart: UtcTime
    breaching: bool  # the HAVING clause holds
    pane_timing: Optional[str] = None
    pane_index: Optional[int] = None
    is_final: Optional[bool] = None


WINDOWS = "windows"


class _Having(beam.DoFn):
    """HAVING Avg(Temperature) > T OR Max(Humidity) > H, on every pane; formats the alert.
    Every window (pane), breaching or not, also goes to the ``windows`` output."""

    def __init__(self, thresholds: Thresholds) -> None:
        self._temperature = Fraction(exact(thresholds.temperature))
        self._humidity = float(thresholds.humidity)
        self._alerts = Metrics.counter(PIPELINE, "alerts_emitted")

    def process(self, result: WindowedResult):
        stats: WindowStats = result.value
        breaching = bool(stats.readings) and (stats.avg_temperature > self._temperature
                                              or stats.max_humidity > self._humidity)
        window = DeviceWindow(result.key, float(stats.avg_temperature), float(stats.max_humidity),
                              utc_iso(result.window_end), utc_iso(result.window_start), breaching,
                              result.pane_timing, result.pane_index, result.is_final)
        yield beam.pvalue.TaggedOutput(WINDOWS, window)
        if breaching:
            self._alerts.inc()
            yield IoTAlert(window.DeviceId, window.AvgTemp, window.MaxHumidity, window.WindowTime,
                           window.WindowStart, window.pane_timing, window.pane_index,
                           window.is_final)


class DetectAlerts(beam.PTransform):
    """IoTReadings (timestamped) -> IoTAlert per (device, window), or per qualifying pane.

    ``.late`` of the result holds readings later than the allowed lateness (streaming);
    ``.windows`` every window (pane) of every device as a :class:`DeviceWindow`.
    """

    def __init__(self, config: WindowConfig, thresholds: Thresholds = Thresholds(), *,
                 streaming: bool) -> None:
        super().__init__()
        if not isinstance(config, WindowConfig):
            raise TypeError(f"config must be a WindowConfig, got {config!r}")
        self._config = config
        self._thresholds = Thresholds(*thresholds).validated()
        self._streaming = streaming

    def expand(self, readings):
        aggregated = (
            readings
            | "KeyByDevice" >> beam.Map(lambda r: (r.DeviceId, r))
            | "StatsPerWindow"
            >> WindowedAggregate(AlertStatsFn(), self._config, streaming=self._streaming,
                                 metrics_namespace=PIPELINE)
        )
        having = aggregated.results | "Having" >> beam.ParDo(
            _Having(self._thresholds)).with_outputs(WINDOWS, main="alerts")
        return _Alerts(having["alerts"], aggregated.late, having[WINDOWS])


class _Alerts(NamedTuple):
    alerts: beam.PCollection
    late: beam.PCollection
    windows: beam.PCollection


# ---- the pipeline ----------------------------------------------------------------------

RESULTS = ResultSpec.of(
    IoTAlert,
    name=PIPELINE,
    key=["DeviceId", "WindowStart"],
    columns=["WindowStart", "WindowTime", "DeviceId", "AvgTemp", "MaxHumidity"],
    sort_by=["WindowStart", "DeviceId"],
    title="IoT alerts per device and window",
    table="iot_alerts",
    table_columns=["DeviceId", "WindowStart", "WindowTime", "AvgTemp", "MaxHumidity"],
)


def thresholds(options: PipelineOptions) -> Thresholds:
    o = options.view_as(IotAlertsOptions)
    return Thresholds(o.temperature_threshold, o.humidity_threshold).validated()


class IotAlerts(Pipeline):
    """Devices whose readings break a threshold in a window (see the module docstring)."""

    name = PIPELINE
    description = DESCRIPTION
    contract = IOT_READINGS
    results = RESULTS
    flags = (IotAlertsOptions, QualityOptions)
    default_window = DEFAULT_WINDOW

    def check(self, options: PipelineOptions) -> None:
        self.window_config(options)
        thresholds(options)
        rules_for(options, PIPELINE, IOT_READINGS.schema)

    def core(self, inputs: Inputs, ctx: Context) -> Core:
        detected = inputs.records | "DetectAlerts" >> DetectAlerts(
            self.window_config(ctx.options), thresholds(ctx.options), streaming=ctx.streaming
        )
        return Core(detected.alerts, detected.late, outputs={WINDOWS: detected.windows})

    def alerts(self, core: Core, ctx: Context) -> Alerts:
        """Each alert, or incidents per device over every window (the default)."""
        limits = thresholds(ctx.options)
        message = message_fields(
            what=f"Average temperature above {limits.temperature:g} or humidity above "
            f"{limits.humidity:g}",
            where="DeviceId", numbers=["AvgTemp", "MaxHumidity"], window_start="WindowStart",
            window_end="WindowTime", severity="warning")
        assert core.outputs is not None
        return Alerts(core.results, message, incident_key=operator.attrgetter("DeviceId"),
                      windows=core.outputs[WINDOWS], breaching=operator.attrgetter("breaching"))

    def finish(self, result: PipelineResult, options: PipelineOptions) -> None:
        alerts = counter_total(result, PIPELINE, "alerts_emitted")
        if alerts is not None:
            print(f"{PIPELINE}: {alerts} alert{'s' if alerts != 1 else ''} emitted",
                  file=sys.stderr, flush=True)


IOT_ALERTS = IotAlerts()
run = IOT_ALERTS.run
main = IOT_ALERTS.main


if __name__ == "__main__":
    raise SystemExit(main())
