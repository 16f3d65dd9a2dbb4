"""Prometheus metrics for running pipelines, bridged from Beam metrics.

Beam metrics (counters, distributions, gauges) are the source of truth: transforms count
with ``Metrics.counter(pipeline, name)`` and every runner aggregates them, including over
retried bundles (committed values). This module only *reads* them — it polls
``result.metrics()`` of the running pipeline in a background thread and serves the last
snapshot on ``--metrics_port`` — so nothing is counted twice and there is no second
counting path to drift. A pipeline calls it around ``wait_until_finish``::

    result = pipeline.run()
    with metrics.serve(result, options, pipeline=PIPELINE):
        result.wait_until_finish()

Prometheus labels cannot be expressed in Beam metric names, so names follow a convention
(namespace = pipeline name; any namespace is read):

===============================================  =============================================
Beam metric                                       Prometheus
===============================================  =============================================
counter ``events_parsed``                         ``events_processed_total{step="parse"}``
counter ``events_processed.<step>``               ``events_processed_total{step="<step>"}``
counter ``dead_letters_written.<reason_code>``    ``events_dead_lettered_total{reason=...}``
counter ``late_events_dropped`` / ``_accepted``   ``late_events_dropped_total`` / ``_accepted_``
counters ``processing_time_seconds.le.<bound>``   ``processing_time_seconds`` (histogram) with
+ distribution ``processing_time_ms``             the sum from the distribution
gauge ``source_lag.<source>.<partition>``         ``source_lag_records{source,partition}``
gauge ``watermark_ms``                            ``watermark_lag_seconds`` (now - watermark)
any other counter / gauge                         ``beam_counter_total`` / ``beam_gauge``
                                                  ``{namespace,name}``
===============================================  =============================================

Every series also has ``pipeline=<name>``. :class:`MeasureOutput` produces the
processing-time histogram, the ``output`` step count and the watermark gauge: put it
just before a pipeline's sink. Source connectors set the ``source_lag`` gauges (Kafka
consumer lag per partition; Pub/Sub and Event Hubs backlog where their APIs tell).

On the in-process DirectRunner ``pipeline.run()`` returns when a batch job is already
finished, so the endpoint shows final values; ``--metrics_linger`` keeps it up until
Prometheus has scraped them. Runners that run asynchronously (Flink, Dataflow, Prism,
streaming) show live values. Batch runs print a summary and, with ``--pushgateway``,
push the final values (job = pipeline name), since no scraper sees a short job.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
import time
from typing import Any, Callable, Iterator, NamedTuple, TextIO

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from transforms.base.errors import ConfigError, SinkError
from transforms.base.extras import require

_LOG = logging.getLogger(__name__)

# Upper bounds (seconds) of the processing-time buckets: sub-second streaming outputs up to
# day-old backfill data. Shared by MeasureOutput (which counts) and the bridge (which reads).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400,
)
_INF = "inf"

# Every metric family the bridge can export; the alert rules and the dashboard use only these.
EXPORTED = (
    "events_processed_total",
    "events_dead_lettered_total",
    "late_events_dropped_total",
    "late_events_accepted_total",
    "processing_time_seconds",
    "source_lag_records",
    "watermark_lag_seconds",
    "beam_counter_total",
    "beam_gauge",
    "pipeline_running",
    "metrics_last_poll_timestamp_seconds",
)


def _bucket_label(bound: float) -> str:
    return _INF if math.isinf(bound) else format(bound, "g")


class _MeasureOutputFn(beam.DoFn):
    def __init__(self, pipeline: str, step: str) -> None:
        self._pipeline = pipeline
        self._step = step

    def setup(self) -> None:
        ns = self._pipeline
        self._count = Metrics.counter(ns, f"events_processed.{self._step}")
        self._latency_ms = Metrics.distribution(ns, "processing_time_ms")
        self._buckets = [
            (bound, Metrics.counter(ns, f"processing_time_seconds.le.{_bucket_label(bound)}"))
            for bound in (*LATENCY_BUCKETS, math.inf)
        ]
        self._watermark = Metrics.gauge(ns, "watermark_ms")
        self._max_event_ms = -1

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        self._count.inc()
        try:
            event_seconds = float(timestamp.micros) / 1e6
        except (AttributeError, OverflowError):  # global-window MIN/MAX timestamps
            yield element
            return
        if -1e11 < event_seconds < 1e11:
            latency = max(0.0, time.time() - event_seconds)
            self._latency_ms.update(int(latency * 1000))
            for bound, counter in self._buckets:  # one counter per element; cumulated on export
                if latency <= bound:
                    counter.inc()
                    break
            event_ms = int(event_seconds * 1000)
            if event_ms > self._max_event_ms:
                self._max_event_ms = event_ms
                self._watermark.set(event_ms)
        yield element


class MeasureOutput(beam.PTransform):
    """Pass-through that measures outputs: count, event-time-to-output latency, watermark.

    The latency of an element is wall-clock time minus its event timestamp (for a window's
    result: the window's end), so it reads as "how late are our results".
    """

    def __init__(self, pipeline: str, step: str = "output") -> None:
        super().__init__()
        if not isinstance(pipeline, str) or not pipeline:
            raise ConfigError("pipeline", "a non-empty pipeline name", pipeline)
        if not isinstance(step, str) or not step or "." in step:
            raise ConfigError("step", "a non-empty step name without dots", step)
        self._pipeline = pipeline
        self._step = step

    def expand(self, pcoll):
        return pcoll | "Measure" >> beam.ParDo(_MeasureOutputFn(self._pipeline, self._step))


# ---- reading Beam metrics --------------------------------------------------------------

class Snapshot(NamedTuple):
    """Beam metrics at one moment, keyed by (namespace, name), summed over steps."""

    counters: dict[tuple[str, str], int]
    distributions: dict[tuple[str, str], tuple[int, int]]  # (sum, count)
    gauges: dict[tuple[str, str], tuple[int, float]]  # (value, set at epoch seconds)
    taken_at: float
    # Lag measured outside Beam (KafkaLagProbe): {(source, partition): records}.
    external_lag: dict[tuple[str, str], int] = {}


def _value(result: Any) -> Any:
    return result.committed if result.committed is not None else result.attempted


def read_snapshot(result: Any) -> Snapshot:
    """All Beam metrics of ``result`` (a PipelineResult); empty when the runner has none."""
    counters: dict[tuple[str, str], int] = {}
    distributions: dict[tuple[str, str], tuple[int, int]] = {}
    gauges: dict[tuple[str, str], tuple[int, float]] = {}
    try:
        from beam_pipelines.skeleton.run import fresh_metrics

        found = fresh_metrics(result).query()
    except Exception as exc:  # some runners have no metrics API, or it is briefly unavailable
        _LOG.debug("reading Beam metrics failed: %s", exc)
        found = {}
    for item in found.get("counters", []):
        key = (item.key.metric.namespace, item.key.metric.name)
        counters[key] = counters.get(key, 0) + int(_value(item) or 0)
    for item in found.get("distributions", []):
        key = (item.key.metric.namespace, item.key.metric.name)
        dist = _value(item)
        if dist is None:
            continue
        total, count = distributions.get(key, (0, 0))
        distributions[key] = (total + int(dist.sum or 0), count + int(dist.count or 0))
    for item in found.get("gauges", []):
        key = (item.key.metric.namespace, item.key.metric.name)
        gauge = _value(item)
        if gauge is None or gauge.value is None:
            continue
        stamp = gauge.timestamp or 0
        stamp = stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)
        if key not in gauges or stamp >= gauges[key][1]:  # the latest value across steps
            gauges[key] = (int(gauge.value), stamp)
    return Snapshot(counters, distributions, gauges, time.time())


class Series(NamedTuple):
    name: str  # family name, e.g. events_processed_total
    labels: dict[str, str]
    value: float


class Families(NamedTuple):
    """The Prometheus view of a snapshot: plain series plus the histogram's parts."""

    series: list[Series]
    histogram_buckets: list[tuple[str, float]]  # (le, cumulative count), ascending, +Inf last
    histogram_sum: float
    histogram_count: float


def to_families(snapshot: Snapshot, pipeline: str, *, now: float | None = None) -> Families:
    """Apply the naming convention of the module docstring."""
    now = time.time() if now is None else now
    series: list[Series] = []
    buckets: dict[float, float] = {}
    base = {"pipeline": pipeline}

    def add(family: str, value: float, /, **labels: str) -> None:
        series.append(Series(family, {**base, **labels}, float(value)))

    for (namespace, name), value in sorted(snapshot.counters.items()):
        head, _, rest = name.partition(".")
        if name == "events_parsed":
            add("events_processed_total", value, step="parse")
        elif head == "events_processed" and rest:
            add("events_processed_total", value, step=rest)
        elif head == "dead_letters_written" and rest:
            add("events_dead_lettered_total", value, reason=rest)
        elif name in ("late_events_dropped", "late_events_accepted"):
            add(f"{name}_total", value)
        elif head == "processing_time_seconds" and rest.startswith("le."):
            bound = rest[3:]
            upper = math.inf if bound == _INF else float(bound)
            buckets[upper] = buckets.get(upper, 0) + value
        else:
            add("beam_counter_total", value, namespace=namespace, name=name)
    probed = {source for source, _partition in snapshot.external_lag}
    for (source, partition), lag in sorted(snapshot.external_lag.items()):
        add("source_lag_records", lag, source=source, partition=partition)
    for (namespace, name), (value, _stamp) in sorted(snapshot.gauges.items()):
        head, _, rest = name.partition(".")
        source, _, partition = rest.partition(".")
        if head == "source_lag" and source:
            if source not in probed:  # the broker's view wins over the workers' own
                add("source_lag_records", value, source=source, partition=partition or "all")
        elif name == "watermark_ms":
            add("watermark_lag_seconds", max(0.0, now - value / 1000.0))
        else:
            add("beam_gauge", value, namespace=namespace, name=name)
    cumulative: list[tuple[str, float]] = []
    running = 0.0
    if buckets:
        for limit in (*LATENCY_BUCKETS, math.inf):
            running += buckets.pop(limit, 0)
            cumulative.append(("+Inf" if math.isinf(limit) else format(limit, "g"), running))
    hist_sum = sum(
        total for (_ns, name), (total, _count) in snapshot.distributions.items()
        if name == "processing_time_ms"
    ) / 1000.0
    return Families(series, cumulative, hist_sum, running)


def source_lag_gauge(namespace: str, source: str, partition: str | int):
    """The Beam gauge a connector sets to its lag or backlog (records) for one partition."""
    if not source or "." in source:
        raise ConfigError("source", "a source name without dots, e.g. kafka", source)
    return Metrics.gauge(namespace, f"source_lag.{source}.{partition}")


class KafkaLagProbe:
    """Consumer lag of ``--consumer_group`` per partition: end offset minus committed offset.

    Read from the brokers, like ``kafka-consumer-groups --describe``, so it works on every
    runner without help from the reading workers. The connector commits offsets when a
    bundle is finalized, so this lag includes what is read but not yet committed (at most
    one bundle, or one Flink checkpoint interval).
    """

    def __init__(self, options: PipelineOptions) -> None:
        from beam_pipelines.options import kafka as kafka_opts
        from transforms.io.kafka.read import config_from_options

        flags = options.view_as(kafka_opts.KafkaOptions)
        self.group = flags.consumer_group
        self.topics = kafka_opts.split_topics(flags.topic)
        if not self.group or not self.topics:
            raise ConfigError("--consumer_group", "a consumer group (and --topic) to measure "
                              "Kafka consumer lag", self.group)
        self._config = config_from_options(options)
        self._consumer = None

    def _client(self):
        if self._consumer is None:
            kafka = require("kafka", "kafka")
            allowed = set(kafka.KafkaConsumer.DEFAULT_CONFIG)
            settings = {k: v for k, v in self._config.items() if k in allowed}
            settings.update(group_id=self.group, enable_auto_commit=False,
                            client_id="beam-pipelines-lag-probe")
            self._consumer = kafka.KafkaConsumer(**settings)
        return self._consumer

    def __call__(self) -> dict[str, int]:
        """{"TOPIC-PARTITION": lag}; a partition with no committed offset counts from its start."""
        from kafka.structs import TopicPartition

        consumer = self._client()
        partitions = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return {}
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        lags = {}
        for tp in partitions:
            committed = consumer.committed(tp)
            position = committed if committed is not None else starts.get(tp, 0)
            lags[f"{tp.topic}-{tp.partition}"] = max(0, int(ends.get(tp, 0)) - int(position))
        return lags

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def lag_probe_for(options: PipelineOptions) -> KafkaLagProbe | None:
    """A lag probe when the pipeline reads Kafka with a consumer group, else None."""
    from beam_pipelines.options import IOOptions

    if options.view_as(IOOptions).source != "kafka":
        return None
    from beam_pipelines.options import kafka as kafka_opts

    if not options.view_as(kafka_opts.KafkaOptions).consumer_group:
        return None
    return KafkaLagProbe(options)


# ---- serving -------------------------------------------------------------------------

_HELP = {
    "events_processed_total": "Records processed, per pipeline step (Beam counters).",
    "events_dead_lettered_total": "Records sent to the dead-letter output, per reason code.",
    "late_events_dropped_total": "Records later than the allowed lateness (dead-lettered).",
    "late_events_accepted_total": "Late records that still updated their window (LATE pane).",
    "source_lag_records": "Records behind the source's head (Kafka consumer lag, backlog).",
    "watermark_lag_seconds": "Wall-clock time minus the output watermark (latest output "
    "event time).",
    "beam_counter_total": "Other Beam counters of the pipeline.",
    "beam_gauge": "Other Beam gauges of the pipeline.",
}


class _Collector:
    """A prometheus_client collector over the exporter's latest snapshot."""

    def __init__(self, exporter: Exporter, *, is_scrape: bool = True) -> None:
        self._exporter = exporter
        self._is_scrape = is_scrape  # a Pushgateway push is not a scrape

    def collect(self):
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        exporter = self._exporter
        if self._is_scrape:
            exporter._note_scrape()
        families = exporter.families()
        by_name: dict[str, list[Series]] = {}
        for item in families.series:
            by_name.setdefault(item.name, []).append(item)
        for name, items in sorted(by_name.items()):
            label_names = sorted(items[0].labels)
            help_text = _HELP.get(name, name)
            if name.endswith("_total"):
                family: Any = CounterMetricFamily(name[: -len("_total")], help_text,
                                                  labels=label_names)
            else:
                family = GaugeMetricFamily(name, help_text, labels=label_names)
            for item in items:
                family.add_metric([item.labels[k] for k in label_names], item.value)
            yield family
        if families.histogram_buckets:
            histogram = HistogramMetricFamily(
                "processing_time_seconds",
                "Event time to output time of results (MeasureOutput).",
                labels=["pipeline"],
            )
            histogram.add_metric(
                [exporter.pipeline], families.histogram_buckets, families.histogram_sum
            )
            yield histogram
        running = GaugeMetricFamily(
            "pipeline_running", "1 while the pipeline runs, 0 once it ended.", labels=["pipeline"]
        )
        running.add_metric([exporter.pipeline], 0.0 if exporter.finished else 1.0)
        yield running
        polled = GaugeMetricFamily(
            "metrics_last_poll_timestamp_seconds",
            "When Beam metrics were last read from the runner.", labels=["pipeline"],
        )
        polled.add_metric([exporter.pipeline], exporter.snapshot.taken_at)
        yield polled


class Exporter:
    """Polls a PipelineResult's Beam metrics and serves them to Prometheus.

    Use :func:`serve`, which starts and stops it around the run.
    """

    def __init__(
        self,
        result: Any,
        *,
        pipeline: str,
        port: int | None = None,
        address: str = "0.0.0.0",
        poll_interval: float = 5.0,
        lag_probe: Callable[[], dict[str, int]] | None = None,
        lag_source: str = "kafka",
    ) -> None:
        if not isinstance(pipeline, str) or not pipeline:
            raise ConfigError("pipeline", "a non-empty pipeline name", pipeline)
        if port is not None and not (isinstance(port, int) and 0 <= port <= 65535):
            raise ConfigError("--metrics_port", "a TCP port between 0 and 65535", port)
        if not poll_interval > 0:
            raise ConfigError("--metrics_poll_interval", "a number of seconds > 0", poll_interval)
        self.result = result
        self.pipeline = pipeline
        self._port = port
        self._address = address
        self._poll_interval = float(poll_interval)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._scraped = threading.Condition()
        self._scrapes = 0
        self._scrapes_at_finish = 0
        self.snapshot = Snapshot({}, {}, {}, 0.0)
        self.finished = False
        self.port: int | None = None
        self._httpd: Any = None
        self._poller: threading.Thread | None = None
        self._registry = None
        self._lag_probe = lag_probe
        self._lag_source = lag_source
        self._lag_warned = False

    # The registry is built lazily so a run without metrics flags needs no prometheus_client.
    @property
    def registry(self):
        if self._registry is None:
            prometheus = require("metrics", "prometheus_client")
            self._registry = prometheus.CollectorRegistry(auto_describe=False)
            self._registry.register(_Collector(self))
        return self._registry

    def poll(self) -> Snapshot:
        snapshot = read_snapshot(self.result)
        if self._lag_probe is not None:
            try:
                lags = self._lag_probe()
            except Exception as exc:  # a broker hiccup must not stop the metrics
                if not self._lag_warned:
                    _LOG.warning("%s: measuring %s lag failed: %s", self.pipeline,
                                 self._lag_source, exc)
                    self._lag_warned = True
            else:
                snapshot = snapshot._replace(external_lag={
                    (self._lag_source, partition): lag for partition, lag in lags.items()})
        with self._lock:
            self.snapshot = snapshot
        return snapshot

    def families(self) -> Families:
        with self._lock:
            snapshot = self.snapshot
        return to_families(snapshot, self.pipeline)

    def start(self) -> Exporter:
        self.poll()
        if self._port is not None:
            prometheus = require("metrics", "prometheus_client")
            try:
                self._httpd, _thread = prometheus.start_http_server(
                    self._port, addr=self._address, registry=self.registry
                )
            except OSError as exc:
                reason = exc.strerror or exc
                raise ConfigError.from_message(
                    f"--metrics_port: cannot listen on {self._address}:{self._port} ({reason}); "
                    "pick a free port or 0 for any"
                ) from None
            self.port = self._httpd.server_port
            _LOG.warning("%s: Prometheus metrics on http://%s:%d/metrics", self.pipeline,
                         self._address, self.port)
        self._poller = threading.Thread(target=self._poll_loop, name="beam-metrics-poll",
                                        daemon=True)
        self._poller.start()
        return self

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_interval):
            self.poll()

    def _note_scrape(self) -> None:
        with self._scraped:
            self._scrapes += 1
            self._scraped.notify_all()

    def finish(self) -> Snapshot:
        """Stop polling and take the final values."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        final = self.poll()
        with self._scraped:
            self.finished = True
            self._scrapes_at_finish = self._scrapes
        return final

    def linger(self, seconds: float) -> bool:
        """Keep serving until a scrape after :meth:`finish` saw the final values, or timeout."""
        if self._httpd is None or not seconds:
            return False
        deadline = time.monotonic() + seconds
        with self._scraped:
            while self._scrapes == self._scrapes_at_finish:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._scraped.wait(remaining)
        return True

    def close(self) -> None:
        close_probe = getattr(self._lag_probe, "close", None)
        if close_probe is not None:
            close_probe()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def push(self, gateway: str) -> None:
        """Push the current values to a Pushgateway (job = pipeline name)."""
        prometheus = require("metrics", "prometheus_client")
        try:
            registry = prometheus.CollectorRegistry(auto_describe=False)
            registry.register(_Collector(self, is_scrape=False))
            prometheus.push_to_gateway(gateway, job=self.pipeline, registry=registry, timeout=10)
        except Exception as exc:  # URLError, HTTPError, socket errors
            raise SinkError(f"--pushgateway: pushing metrics to {gateway} failed: {exc}") from None


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def summary(families: Families, pipeline: str) -> str:
    """A few lines for the end of a batch run: what each step did, why records were rejected."""
    lines = [f"{pipeline} metrics:"]
    values: dict[str, list[Series]] = {}
    for item in families.series:
        values.setdefault(item.name, []).append(item)
    for item in values.get("events_processed_total", []):
        lines.append(f"  events processed at {item.labels['step']}: {int(item.value)}")
    rejected = values.get("events_dead_lettered_total", [])
    if rejected:
        reasons = ", ".join(f"{s.labels['reason']}={int(s.value)}" for s in rejected)
        lines.append(f"  dead-lettered by reason: {reasons}")
    for name in ("late_events_dropped_total", "late_events_accepted_total"):
        for item in values.get(name, []):
            if item.value:
                lines.append(f"  {name[: -len('_total')].replace('_', ' ')}: {int(item.value)}")
    if families.histogram_count:
        mean = families.histogram_sum / families.histogram_count
        median = next(
            (le for le, count in families.histogram_buckets
             if count >= families.histogram_count / 2), "+Inf",
        )
        median_text = (f"over {_duration(LATENCY_BUCKETS[-1])}" if median == "+Inf"
                       else f"within {_duration(float(median))}")
        lines.append(
            f"  event time to output: mean {_duration(mean)}, median {median_text}, over "
            f"{int(families.histogram_count)} results"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def serve(
    result: Any,
    options: PipelineOptions,
    *,
    pipeline: str,
    out: TextIO | None = None,
) -> Iterator[Exporter]:
    """Export ``result``'s metrics for the duration of the block (see the module docstring).

    On exit: a final read; for batch runs a summary on ``out`` and the ``--pushgateway``
    push; the endpoint stays up for ``--metrics_linger`` seconds or until scraped.
    """
    from beam_pipelines.options.metrics import MetricsOptions

    flags = options.view_as(MetricsOptions)
    streaming = bool(options.view_as(StandardOptions).streaming)
    exporter = Exporter(
        result,
        pipeline=pipeline,
        port=flags.metrics_port,
        address=flags.metrics_address or "0.0.0.0",
        poll_interval=flags.metrics_poll_interval or 5.0,
        lag_probe=(lag_probe_for(options)
                   if flags.metrics_port is not None or flags.pushgateway else None),
    )
    exporter.start()
    try:
        yield exporter
    finally:
        try:
            exporter.finish()
            out = out or sys.stderr  # looked up now: tests and embedders replace sys.stderr
            if not streaming:
                print(summary(exporter.families(), pipeline), file=out, flush=True)
            if flags.pushgateway:
                try:
                    exporter.push(flags.pushgateway)
                except SinkError as exc:  # the run itself succeeded: say so, do not fail it
                    print(f"warning: {exc}", file=out, flush=True)
            exporter.linger(flags.metrics_linger)
        finally:
            exporter.close()
