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
``--humidity_threshold``, ``--window_size``). HAVING is strict (``>``). Averages are
computed exactly over the decimal values as written, so a window averaging exactly 30
never alerts, whatever order a runner sums in.

``--quality_rules=rules.json`` applies data-quality rules (transforms/quality.py) to the
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
import sys
from decimal import Decimal
from fractions import Fraction
from typing import Any, NamedTuple, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import options as opts
from beam_pipelines.metrics import exporter as metrics
from beam_pipelines.skeleton import run as _run
from beam_pipelines.skeleton import sources as _io
from beam_pipelines.testing.iot import SyntheticReadings
from transforms.base.errors import ConfigError
from transforms.io.synthetic.read import ReadSynthetic
from transforms.parse import ParseRecords
from transforms.quality.transform import QualityOptions, apply_quality, rules_for
from transforms.records import IoTAlert, IoTReading, utc_iso
from transforms.sinks.dead_letter_sink import WriteDeadLetters, late_record_to_dead_letter
from transforms.validation import event_time, non_empty_string, number
from transforms.windowing import WindowConfig, WindowedAggregate, WindowedResult

PIPELINE = "iot_alerts"
DEFAULT_WINDOW = 60
DEFAULT_TEMPERATURE = 30.0
DEFAULT_HUMIDITY = 80.0

COLUMNS = ["WindowStart", "WindowTime", "DeviceId", "AvgTemp", "MaxHumidity"]
PANE_COLUMNS = ["pane_timing", "pane_index", "is_final"]
POSTGRES_COLUMNS = [
    ("DeviceId", "text NOT NULL"),
    ("WindowStart", "timestamptz NOT NULL"),
    ("WindowTime", "timestamptz NOT NULL"),
    ("AvgTemp", "double precision NOT NULL"),
    ("MaxHumidity", "double precision NOT NULL"),
    ("pane_timing", "text"),
    ("pane_index", "integer"),
    ("is_final", "boolean"),
]
POSTGRES_KEY = ["DeviceId", "WindowStart"]


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


# ---- the input contract ---------------------------------------------------------------

def parse_reading(obj: dict[str, Any]) -> tuple[IoTReading, int]:
    """The iot_alerts input contract; extra fields are ignored. Epoch times are rejected."""
    device = non_empty_string(obj, "DeviceId")
    temperature = number(obj, "Temperature")
    humidity = number(obj, "Humidity")
    seconds, whole = event_time(obj, "EventTime", allow_epoch=False)
    return IoTReading(device, temperature, humidity, utc_iso(seconds)), whole


def ParseReadings(pipeline: str = PIPELINE) -> ParseRecords:
    """ParseRecords for the IoT reading contract."""
    return ParseRecords(parse_reading, pipeline=pipeline, step="parse")


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


class _Having(beam.DoFn):
    """HAVING Avg(Temperature) > T OR Max(Humidity) > H, on every pane; formats the alert."""

    def __init__(self, thresholds: Thresholds) -> None:
        self._temperature = Fraction(exact(thresholds.temperature))
        self._humidity = float(thresholds.humidity)
        self._alerts = Metrics.counter(PIPELINE, "alerts_emitted")

    def process(self, result: WindowedResult):
        stats: WindowStats = result.value
        if stats.readings and (stats.avg_temperature > self._temperature
                            or stats.max_humidity > self._humidity):
            self._alerts.inc()
            yield IoTAlert(
                result.key,
                float(stats.avg_temperature),
                float(stats.max_humidity),
                utc_iso(result.window_end),
                utc_iso(result.window_start),
                result.pane_timing,
                result.pane_index,
                result.is_final,
            )


class DetectAlerts(beam.PTransform):
    """IoTReadings (timestamped) -> IoTAlert per (device, window), or per qualifying pane.

    ``.late`` of the result holds readings later than the allowed lateness (streaming).
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
        alerts = aggregated.results | "Having" >> beam.ParDo(_Having(self._thresholds))
        return _Alerts(alerts, aggregated.late)


class _Alerts(NamedTuple):
    alerts: beam.PCollection
    late: beam.PCollection


# ---- options, sources, sinks ---------------------------------------------------------

def window_config(options: PipelineOptions) -> WindowConfig:
    w = options.view_as(opts.WindowOptions)
    return WindowConfig(
        size=w.window_size or DEFAULT_WINDOW,
        period=w.window_period,
        allowed_lateness=w.allowed_lateness or 0,
        early_firing=w.early_firing,
    )


def thresholds(options: PipelineOptions) -> Thresholds:
    o = options.view_as(IotAlertsOptions)
    return Thresholds(o.temperature_threshold, o.humidity_threshold).validated()


def parquet_schema(streaming: bool):
    import pyarrow as pa

    fields = [
        ("WindowStart", pa.timestamp("us", tz="UTC")),
        ("WindowTime", pa.timestamp("us", tz="UTC")),
        ("DeviceId", pa.string()),
        ("AvgTemp", pa.float64()),
        ("MaxHumidity", pa.float64()),
    ]
    if streaming:
        fields += [("pane_timing", pa.string()), ("pane_index", pa.int64()), ("is_final", pa.bool_())]
    return pa.schema(fields)


RESULTS = _io.ResultSpec(
    name=PIPELINE,
    columns=COLUMNS,
    pane_columns=PANE_COLUMNS,
    sort_by=["WindowStart", "DeviceId"],
    title="IoT alerts per device and window",
    parquet_schema=parquet_schema,
    postgres_table="iot_alerts",
    postgres_columns=POSTGRES_COLUMNS,
    postgres_key=POSTGRES_KEY,
)


def synthetic_source(options: PipelineOptions) -> _io.SourceSpec:
    io = options.view_as(opts.IOOptions)
    # ReadSynthetic only calls generator.payloads(count, first), which both generators have.
    generator: Any = SyntheticReadings(
        seed=io.synthetic_seed, rate=io.synthetic_rate, malformed=io.synthetic_malformed
    )
    if opts.is_streaming(options):
        return _io.SourceSpec(_unbounded_readings(generator, io.synthetic_events), bounded=False)
    return _io.SourceSpec(ReadSynthetic(io.synthetic_events, generator), bounded=True)


def _unbounded_readings(generator: Any, count: int) -> beam.PTransform:
    """The streaming synthetic source, if it can generate readings (not only user events)."""
    unavailable = ConfigError.from_message(
        "--streaming: the streaming synthetic source generates user events only in this "
        "version; stream readings from --source=kafka, pubsub or eventhubs, or drop --streaming"
    )
    try:
        from transforms.io.synthetic import read as synthetic
    except ImportError:
        raise unavailable from None
    try:  # the source re-creates the generator at "now": it must keep it a reading generator
        restarted = synthetic._starting_at(generator, 0.0)  # type: ignore[attr-defined]
        source = synthetic.unbounded_synthetic  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        raise unavailable from None
    if not isinstance(restarted, SyntheticReadings):
        raise unavailable
    return source(generator, count)


# ---- the pipeline ----------------------------------------------------------------------

def build(pipeline: beam.Pipeline, options: PipelineOptions, source: _io.SourceSpec, streaming: bool):
    """The iot_alerts graph on ``pipeline``; returns (alerts, dead letters)."""
    io = options.view_as(opts.IOOptions)
    raw = pipeline | "Read" >> source.transform
    parsed = raw | "Parse" >> ParseReadings(PIPELINE)
    checked = apply_quality(parsed.valid, options, PIPELINE, schema="IoTReading")
    detected = checked.valid | "DetectAlerts" >> DetectAlerts(
        window_config(options), thresholds(options), streaming=streaming
    )
    measured = detected.alerts | "MeasureOutput" >> metrics.MeasureOutput(PIPELINE)
    refused = _io.write_results(measured, options, RESULTS, streaming=streaming)
    late = detected.late | "LateToDeadLetter" >> beam.Map(
        late_record_to_dead_letter(PIPELINE, "window")
    )
    dead_parts = [parsed.dead_letters, checked.dead_letters, late]
    if refused is not None:
        dead_parts.append(refused)
    dead = dead_parts | "AllDeadLetters" >> beam.Flatten()
    dead | "WriteDeadLetters" >> WriteDeadLetters(
        io.dead_letter, pipeline=PIPELINE, streaming=streaming, options=options
    )
    return detected.alerts, dead


def run(argv: Sequence[str] | None = None):
    """Parse flags, build and run the pipeline; returns the PipelineResult."""
    options = opts.parse(
        argv,
        [opts.IOOptions, opts.WindowOptions, IotAlertsOptions, QualityOptions],
        prog="python -m beam_pipelines.iot_alerts",
        description=__doc__.splitlines()[0],
    )
    window_config(options)  # validate flags before anything starts
    thresholds(options)
    rules_for(options, PIPELINE, "IoTReading")
    source = _io.source_spec(options, default="synthetic", synthetic=synthetic_source)
    result = _run.execute(options, source, pipeline_name=PIPELINE, build=build)
    alerts = _run.counter_total(result, PIPELINE, "alerts_emitted")
    if alerts is not None:
        print(f"{PIPELINE}: {alerts} alert{'s' if alerts != 1 else ''} emitted", file=sys.stderr,
              flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return _run.main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
