"""Reading a running pipeline's Beam metrics: a :class:`Snapshot`, summed over steps."""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple, Optional

import apache_beam as beam

__all__ = ["Snapshot", "counter_total", "fresh_metrics", "read_snapshot"]

_LOG = logging.getLogger(__name__)


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


def fresh_metrics(result: Any):
    """``result.metrics()`` read now. Beam's portable PipelineResult caches its first
    answer, so a read while the job runs (the Prometheus bridge polls) would freeze the
    metrics at that moment; dropping the cache makes every read current."""
    if getattr(result, "_metrics", None) is not None and hasattr(result, "_job_service"):
        result._metrics = None
    return result.metrics()


def counter_total(
    result: beam.runners.runner.PipelineResult, namespace: str, name: str
) -> Optional[int]:
    """A counter's total over all steps, read the way the Prometheus bridge reads it;
    None where the runner has no metrics API (Dask)."""
    try:
        fresh_metrics(result)
    except Exception:  # the runner has no metrics API
        return None
    return read_snapshot(result).counters.get((namespace, name), 0)
