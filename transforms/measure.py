"""``MeasureOutput``: count a pipeline's outputs and measure how late they are.

A pass-through put just before a pipeline's sink: it counts the ``output`` step, records
the event-time-to-output latency as a histogram of counters (plus a distribution for the
sum) and sets the watermark gauge; ``beam_pipelines.metrics`` exports them to Prometheus.
Connectors set their lag with :func:`source_lag_gauge`.
"""

from __future__ import annotations

import math
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.base.errors import ConfigError

__all__ = ["LATENCY_BUCKETS", "MeasureOutput", "source_lag_gauge"]

# Upper bounds (seconds) of the processing-time buckets: sub-second streaming outputs up to
# day-old backfill data. Shared by MeasureOutput (which counts) and the bridge (which reads).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, 86400,
)
_INF = "inf"


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


def source_lag_gauge(namespace: str, source: str, partition: str | int):
    """The Beam gauge a connector sets to its lag or backlog (records) for one partition."""
    if not source or "." in source:
        raise ConfigError("source", "a source name without dots, e.g. kafka", source)
    return Metrics.gauge(namespace, f"source_lag.{source}.{partition}")
