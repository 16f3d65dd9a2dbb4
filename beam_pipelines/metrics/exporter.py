"""The exporter: polls a running pipeline's Beam metrics and serves them to Prometheus,
pushes a batch run's final values to a Pushgateway, and prints the end-of-run summary."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TextIO

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.metrics.lag import lag_probe_for
from beam_pipelines.metrics.prometheus import Families, Series, notification_series, to_families
from beam_pipelines.metrics.snapshot import Snapshot, read_snapshot
from beam_pipelines.options.metrics import MetricsOptions
from beam_pipelines.wiring.notifications import channels
from transforms.base.errors import ConfigError, SinkError
from transforms.base.extras import require
from transforms.measure import LATENCY_BUCKETS

__all__ = ["Exporter", "serve", "summary"]

_LOG = logging.getLogger(__name__)


_HELP = {
    "events_processed_total": "Records processed, per pipeline step (Beam counters).",
    "events_dead_lettered_total": "Records sent to the dead-letter output, per reason code.",
    "late_events_dropped_total": "Records later than the allowed lateness (dead-lettered).",
    "late_events_accepted_total": "Late records that still updated their window (LATE pane).",
    "source_lag_records": "Records behind the source's head (Kafka consumer lag, backlog).",
    "watermark_lag_seconds": "Wall-clock time minus the output watermark (latest output "
    "event time).",
    "notifications_sent_total": "Notifications delivered, per channel (slack, pagerduty, "
    "webhook).",
    "notifications_failed_total": "Notifications dead-lettered (refused, or not delivered "
    "within the retry budget), per channel.",
    "notifications_retried_total": "Notification attempts after the first, per channel.",
    "notifications_suppressed_total": "Re-sends of a retried bundle not sent again, per channel.",
    "incidents_opened_total": "Incidents triggered (a key started breaching).",
    "incidents_resolved_total": "Incidents resolved, per reason (recovered, quiet_period).",
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
        zeros: Sequence[tuple[str, dict[str, str]]] = (),
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
        self._zeros = list(zeros)  # series exported at 0 until counted (notifications)

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
        return to_families(snapshot, self.pipeline, zeros=self._zeros)

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
            _LOG.info("%s: Prometheus metrics on http://%s:%d/metrics", self.pipeline,
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


def summary(families: Families, pipeline: str, *, counters: Optional[Mapping[Any, int]] = None,
            streaming: bool = False, elapsed: Optional[float] = None) -> str:
    """The end-of-run summary, the same lines in every run of a mode, zeros included.

    Batch: records read, rejected (not valid input; failed data-quality rules apart),
    counted (valid), dead letters by reason, result rows written and throughput. Streaming adds what means something only
    there: late records and event time to output (in a backfill of old data that would be
    the data's age, not a latency). ``counters`` are the snapshot's Beam counters
    (namespace, name) -> value; ``elapsed`` the run's wall-clock seconds."""
    counters = counters or {}

    def count(name: str) -> int:
        return int(counters.get((pipeline, name), 0))

    parsed, parse_rejected = count("events_parsed"), count("events_dead_lettered")
    quality = count("quality_failed")
    read = parsed + parse_rejected
    reasons = ", ".join(
        f"{name.split('.', 1)[1]}={int(value)}"
        for (namespace, name), value in sorted(counters.items())
        if namespace == pipeline and name.startswith("dead_letters_written.") and value)
    written = count("events_processed.output")
    lines = [f"{pipeline} summary:", f"  read: {read} records",
             f"  rejected: {parse_rejected} (not valid input)"]
    if quality:
        lines.append(f"  failed data-quality rules: {quality}")
    lines += [f"  counted: {parsed - quality} valid records",
              f"  dead letters by reason: {reasons or 'none'}",
              f"  {'result panes' if streaming else 'result rows'} written: {written}"]
    if streaming:
        lines.append(f"  late records: {count('late_events_accepted')} accepted into their "
                     f"window, {count('late_events_dropped')} dropped")
        if families.histogram_count:
            mean = families.histogram_sum / families.histogram_count
            median = next(
                (le for le, total in families.histogram_buckets
                 if total >= families.histogram_count / 2), "+Inf",
            )
            median_text = (f"over {_duration(LATENCY_BUCKETS[-1])}" if median == "+Inf"
                           else f"within {_duration(float(median))}")
            lines.append(f"  event time to output: mean {_duration(mean)}, median "
                         f"{median_text}, over {int(families.histogram_count)} panes")
    if elapsed is not None and elapsed > 0:
        lines.append(f"  throughput: {read / elapsed:,.0f} records/s ({read} records in "
                     f"{elapsed:.1f} s)")
    return "\n".join(lines)


@contextlib.contextmanager
def serve(
    result: Any,
    options: PipelineOptions,
    *,
    pipeline: str,
    out: TextIO | None = None,
    started: Optional[float] = None,
) -> Iterator[Exporter]:
    """Export ``result``'s metrics for the duration of the block (see the module docstring).

    On exit: a final read, the summary on ``out`` (:func:`summary`; ``started``, the
    ``time.monotonic()`` of the job's start, gives its throughput), the ``--pushgateway``
    push; the endpoint stays up for ``--metrics_linger`` seconds or until scraped.
    """
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
        zeros=notification_series(channels(options)),
    )
    exporter.start()
    failed = False
    try:
        yield exporter
    except BaseException:
        failed = True  # the job's error is the one line to read: no summary under it
        raise
    finally:
        try:
            exporter.finish()
            out = out or sys.stderr  # looked up now: tests and embedders replace sys.stderr
            # No counters at all: a runner without a metrics API (Dask); the run's last
            # line says so (skeleton/run.py report) instead of a summary of zeros.
            if not failed and exporter.snapshot.counters:
                # started: time.monotonic() when the job started (a direct batch run may
                # be over when pipeline.run() returns, before the exporter started).
                elapsed = time.monotonic() - started if started is not None else None
                print(summary(exporter.families(), pipeline,
                              counters=exporter.snapshot.counters, streaming=streaming,
                              elapsed=elapsed), file=out, flush=True)
            if flags.pushgateway:
                try:
                    exporter.push(flags.pushgateway)
                except SinkError as exc:  # the run itself succeeded: say so, do not fail it
                    print(f"warning: {exc}", file=out, flush=True)
            exporter.linger(flags.metrics_linger)
        finally:
            exporter.close()
