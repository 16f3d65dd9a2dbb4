"""The Prometheus view of Beam metrics: the naming convention of the package docstring."""

from __future__ import annotations

import math
import time
from typing import NamedTuple, Sequence

from beam_pipelines.metrics.snapshot import Snapshot
from transforms.measure import LATENCY_BUCKETS

__all__ = ["EXPORTED", "Families", "NOTIFICATION_COUNTERS", "Series", "notification_series",
           "to_families"]

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
    "notifications_sent_total",
    "notifications_failed_total",
    "notifications_retried_total",
    "notifications_suppressed_total",
    "incidents_opened_total",
    "incidents_resolved_total",
    "beam_counter_total",
    "beam_gauge",
    "pipeline_running",
    "metrics_last_poll_timestamp_seconds",
)
# (family, step label) series every pipeline exports from its first scrape, 0 until counted.
_ALWAYS = (
    ("events_processed_total", "parse"),
    ("events_processed_total", "output"),
    ("late_events_dropped_total", None),
    ("late_events_accepted_total", None),
)


# The notification sinks' counters (transforms/sinks/notifications/write.py), suffixed with
# the channel, and their family.
NOTIFICATION_COUNTERS = {
    "notifications_delivered": "notifications_sent_total",
    "notifications_dead_lettered": "notifications_failed_total",
    "notifications_retries": "notifications_retried_total",
    "notifications_suppressed": "notifications_suppressed_total",
}
INCIDENT_RESOLVE_REASONS = ("recovered", "quiet_period")


def notification_series(channels: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    """(family, labels) of every notification and incident series a run sending to
    ``channels`` exports, so they exist (at 0) from the first scrape."""
    out = [(family, {"channel": channel}) for channel in channels
           for family in NOTIFICATION_COUNTERS.values()]
    out.append(("incidents_opened_total", {}))
    out += [("incidents_resolved_total", {"reason": reason}) for reason in INCIDENT_RESOLVE_REASONS]
    return out if channels else []


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


def to_families(snapshot: Snapshot, pipeline: str, *, now: float | None = None,
                zeros: Sequence[tuple[str, dict[str, str]]] = ()) -> Families:
    """Apply the naming convention of the module docstring. ``zeros``: (family, labels)
    of series exported at 0 until a counter gives them a value."""
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
        elif head in NOTIFICATION_COUNTERS and rest:
            add(NOTIFICATION_COUNTERS[head], value, channel=rest)
        elif name == "incidents_triggered":
            add("incidents_opened_total", value)
        elif head == "incidents_resolved" and rest:
            add("incidents_resolved_total", value, reason=rest)
        elif head == "processing_time_seconds" and rest.startswith("le."):
            bound = rest[3:]
            upper = math.inf if bound == _INF else float(bound)
            buckets[upper] = buckets.get(upper, 0) + value
        else:
            add("beam_counter_total", value, namespace=namespace, name=name)
    counted = {(item.name, tuple(sorted(item.labels.items()))) for item in series}
    for family, labels in zeros:  # the notification families of a run that notifies
        if (family, tuple(sorted({**base, **labels}.items()))) not in counted:
            add(family, 0, **labels)
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
    # The families alerts and dashboards use exist from the first scrape, at 0 until the
    # first record: absent() and rate() over them must not misfire while a job starts.
    present = {(item.name, item.labels.get("step")) for item in series}
    for family, step in _ALWAYS:
        if (family, step) not in present:
            if step is None:
                add(family, 0)
            else:
                add(family, 0, step=step)
    cumulative: list[tuple[str, float]] = []
    running = 0.0
    for limit in (*LATENCY_BUCKETS, math.inf):  # the histogram too, all buckets at 0 at first
        running += buckets.pop(limit, 0)
        cumulative.append(("+Inf" if math.isinf(limit) else format(limit, "g"), running))
    hist_sum = sum(
        total for (_ns, name), (total, _count) in snapshot.distributions.items()
        if name == "processing_time_ms"
    ) / 1000.0
    return Families(series, cumulative, hist_sum, running)
