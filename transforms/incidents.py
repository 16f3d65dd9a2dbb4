"""Incidents from windowed results: one trigger when a key starts breaching, one resolve
when it stops. The same rules in streaming and in batch.

``TrackIncidents(key_fn, breaching_fn, quiet_period=...)`` takes windowed results (a
pipeline's alert records, or every window's result with ``breaching_fn`` deciding) and
emits :class:`IncidentEvent` s, per key:

* ``trigger`` when the key breaches and has no open incident. The incident id (the
  notification sinks' dedup key) is ``<pipeline>:<key>:<start of the first breaching
  window>``: stable across panes, retries and re-runs, and new for every incident.
* nothing while it keeps breaching: later windows, and EARLY/ON_TIME/LATE panes of any
  window, extend the open incident.
* ``resolve`` (reason ``recovered``) when a result for a *later* window than the last
  breaching one does not breach. A later pane of the same window that no longer
  breaches does not resolve: panes of one window can go back and forth as data
  arrives, and an incident resolved and re-opened by them would page twice.
* ``resolve`` (reason ``quiet_period``) when ``quiet_period`` seconds of event time
  pass after the end of the key's last result window with no new result: for alert
  streams that only carry breaching windows (``iot_alerts``), or a source that went
  silent. ``quiet_period=None`` never resolves for silence.

A result for a window older than the newest one seen for its key is stale and changes
nothing. Streaming reads results as they come, a stateful DoFn with an event-time
timer for the quiet period; batch sorts each key's results by window start and replays
them through the same rules (:class:`IncidentTracker`), the quiet period expiring
between two results exactly when the streaming timer would have. Incidents still open
at the end of a bounded input stay open unless a quiet period resolves them.

Results whose key, window or breach cannot be read go to ``dead_letters``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Callable, Mapping, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms import window as beam_window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from transforms.base.errors import ConfigError
from transforms.records import DeadLetter, utc_iso
from transforms.validation import InvalidRecord, event_time

__all__ = [
    "RESOLVE",
    "TRIGGER",
    "IncidentEvent",
    "IncidentTracker",
    "TrackIncidents",
    "window_of",
]

TRIGGER = "trigger"
RESOLVE = "resolve"
DEAD_LETTERS = "dead_letters"

# (start, end) names a result record may carry, in order of preference: WindowedResult,
# the pipelines' records (PageViewCount, IoTAlert: WindowTime is the window end).
_WINDOW_FIELDS = (
    ("window_start", "window_end"),
    ("WindowStart", "WindowEnd"),
    ("WindowStart", "WindowTime"),
)


class IncidentEvent(NamedTuple):
    """A trigger or resolve of one incident.

    ``window_start``/``window_end`` are the window whose result caused the event (for a
    quiet-period resolve: the last breaching window); ``at`` is the event time of the
    transition (that window's end, or the quiet period's expiry). ``record`` is the
    result that caused it (for a quiet-period resolve: the last breaching one).
    """

    incident_id: str
    action: str  # trigger | resolve
    key: str
    reason: str  # breach | recovered | quiet_period
    window_start: str
    window_end: str
    opened_at: str  # start of the incident's first breaching window
    at: str
    record: Any
    pipeline: str

    def to_json_dict(self) -> dict[str, Any]:
        out = self._asdict()
        record = self.record
        out["record"] = record._asdict() if hasattr(record, "_asdict") else record
        return out


def _seconds(value: Any, name: str) -> float:
    """Epoch seconds from a number or an ISO-8601 string (the project's one time parser)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InvalidRecord(f"field '{name}' must be a finite number", "wrong_type")
        return float(value)
    return event_time({name: value}, name)[0]


def window_of(record: Any) -> tuple[float, float]:
    """(start, end) epoch seconds of a result's window, read from ``window_start`` /
    ``window_end`` (WindowedResult, PageViewCount) or ``WindowStart`` / ``WindowEnd``
    or ``WindowTime`` (IoTAlert), as numbers or ISO-8601 strings, on a NamedTuple or a
    dict. Pass your own ``window_fn`` to TrackIncidents for other records."""
    fields = record if isinstance(record, Mapping) else getattr(record, "_asdict", dict)()
    for start_name, end_name in _WINDOW_FIELDS:
        if fields.get(start_name) is not None and fields.get(end_name) is not None:
            return _seconds(fields[start_name], start_name), _seconds(fields[end_name], end_name)
    raise InvalidRecord(
        "no window: expected fields window_start/window_end, WindowStart/WindowEnd or "
        "WindowStart/WindowTime", "missing_field",
    )


class _OpenIncident(NamedTuple):
    incident_id: str
    opened_start: float
    last_breach_start: float
    last_breach_end: float
    last_record: Any


@dataclasses.dataclass
class IncidentState:
    """One key's state: its open incident, the newest window seen, the quiet deadline."""

    key: Optional[str] = None
    open: Optional[_OpenIncident] = None
    latest_start: Optional[float] = None
    deadline: Optional[float] = None  # event time at which the quiet period expires


class IncidentTracker:
    """The incident rules as plain Python, shared by the streaming and batch paths."""

    def __init__(self, pipeline: str, quiet_period: Optional[float]) -> None:
        self.pipeline = pipeline
        self.quiet_period = quiet_period

    def observe(
        self,
        state: IncidentState,
        key: str,
        record: Any,
        start: float,
        end: float,
        breaching: bool,
    ) -> Optional[IncidentEvent]:
        """Apply one result to ``state`` (in place); the event it causes, if any."""
        state.key = key
        if state.latest_start is not None and start < state.latest_start:
            return None  # stale: a pane of an older window than one already seen
        state.latest_start = start
        if self.quiet_period is not None:
            state.deadline = max(state.deadline or -math.inf, end + self.quiet_period)
        current = state.open
        if breaching:
            if current is None:
                incident_id = f"{self.pipeline}:{key}:{utc_iso(start)}"
                state.open = _OpenIncident(incident_id, start, start, end, record)
                return self._event(state.open, TRIGGER, key, "breach", start, end, end, record)
            state.open = current._replace(
                last_breach_start=max(current.last_breach_start, start),
                last_breach_end=max(current.last_breach_end, end),
                last_record=record,
            )
            return None
        if current is not None and start > current.last_breach_start:
            state.open = None
            return self._event(current, RESOLVE, key, "recovered", start, end, end, record)
        return None

    def expire(self, state: IncidentState, at: float) -> Optional[IncidentEvent]:
        """The quiet period ran out at ``at``: resolve the open incident, if any, and
        forget the key (its state is reset in place)."""
        current, key = state.open, state.key or ""
        state.key, state.open, state.latest_start, state.deadline = None, None, None, None
        if current is None:
            return None
        return self._event(current, RESOLVE, key, "quiet_period", current.last_breach_start,
                           current.last_breach_end, at, current.last_record)

    def _event(self, incident: _OpenIncident, action: str, key: str, reason: str,
               start: float, end: float, at: float, record: Any) -> IncidentEvent:
        return IncidentEvent(
            incident.incident_id, action, key, reason, utc_iso(start), utc_iso(end),
            utc_iso(incident.opened_start), utc_iso(at), record, self.pipeline,
        )


class _Observation(NamedTuple):
    record: Any
    start: float
    end: float
    breaching: bool
    pane_index: int


class _Prepare(beam.DoFn):
    """record -> (key, _Observation); a record whose key, window or breach cannot be
    read becomes a dead letter."""

    def __init__(self, key_fn, breaching_fn, window_fn, pipeline: str) -> None:
        self._key_fn = key_fn
        self._breaching_fn = breaching_fn
        self._window_fn = window_fn
        self._pipeline = pipeline

    def process(self, record, timestamp=beam.DoFn.TimestampParam):
        try:
            key = self._key_fn(record)
            if key is None:
                raise InvalidRecord("the key function returned None", "missing_field")
            start, end = self._window_fn(record)
            breaching = True if self._breaching_fn is None else bool(self._breaching_fn(record))
            pane = _field(record, "pane_index")
        except Exception as exc:
            code = exc.code if isinstance(exc, InvalidRecord) else "incident_input"
            reason = f"cannot track incidents for this result: {exc}"
            payload = json.dumps(_as_json(record), default=str)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter.of(
                self._pipeline, "incidents", reason, payload,
                {"source": "incidents", "step": "track_incidents"}, code))
            return
        pane_index = pane if isinstance(pane, int) and not isinstance(pane, bool) else 0
        yield str(key), _Observation(record, float(start), float(end), breaching, pane_index)


def _field(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def _as_json(record: Any) -> Any:
    return record._asdict() if hasattr(record, "_asdict") else record


class _TrackFn(beam.DoFn):
    """Streaming: the rules per key in state, the quiet period as an event-time timer."""

    STATE = ReadModifyWriteStateSpec("incident", coders.PickleCoder())
    QUIET = TimerSpec("quiet", TimeDomain.WATERMARK)

    def __init__(self, tracker: IncidentTracker) -> None:
        self._tracker = tracker

    def process(
        self,
        element,
        state=beam.DoFn.StateParam(STATE),
        quiet=beam.DoFn.TimerParam(QUIET),
    ):
        key, seen = element
        current: IncidentState = state.read() or IncidentState()
        before = current.deadline
        event = self._tracker.observe(current, key, seen.record, seen.start, seen.end,
                                      seen.breaching)
        state.write(current)
        if current.deadline is not None and current.deadline != before:
            quiet.set(Timestamp.of(current.deadline))
        if event is not None:
            yield event

    @on_timer(QUIET)
    def on_quiet(
        self,
        fire_time=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
        quiet=beam.DoFn.TimerParam(QUIET),
    ):
        current: Optional[IncidentState] = state.read()
        if current is None or current.deadline is None:
            return
        if fire_time < Timestamp.of(current.deadline):
            quiet.set(Timestamp.of(current.deadline))  # a firing of an earlier setting
            return
        event = self._tracker.expire(current, current.deadline)
        state.clear()
        if event is not None:
            yield event


class _Replay(beam.DoFn):
    """Batch: one key's results sorted by window, through the same rules."""

    def __init__(self, tracker: IncidentTracker) -> None:
        self._tracker = tracker

    def process(self, element):
        key, observed = element
        tracker, state = self._tracker, IncidentState()
        for seen, timestamp in sorted(observed, key=lambda pair: (
                pair[0].start, pair[0].pane_index, pair[1])):
            # The streaming timer fires before a result that arrives after its deadline.
            if state.deadline is not None and Timestamp.of(state.deadline) <= timestamp:
                expired = tracker.expire(state, state.deadline)
                if expired is not None:
                    yield beam.window.TimestampedValue(expired, Timestamp.of(_at(expired)))
            event = tracker.observe(state, key, seen.record, seen.start, seen.end, seen.breaching)
            if event is not None:
                yield beam.window.TimestampedValue(event, timestamp)
        if state.deadline is not None:  # the end of a bounded input: every timer fires
            expired = tracker.expire(state, state.deadline)
            if expired is not None:
                yield beam.window.TimestampedValue(expired, Timestamp.of(_at(expired)))


def _at(event: IncidentEvent) -> float:
    return _seconds(event.at, "at")


class _CountIncidents(beam.DoFn):
    """Counts in a plain DoFn: the bundle-based DirectRunner loses metric updates made
    in bundles that fire timers (see transforms.windowing._CountLate)."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._counters: dict[str, Any] = {}

    def process(self, event: IncidentEvent):
        name = ("incidents_triggered" if event.action == TRIGGER
                else f"incidents_resolved.{event.reason}")
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(self._namespace, name)
        counter.inc()
        yield event


class Incidents(NamedTuple):
    events: beam.PCollection
    dead_letters: beam.PCollection


class TrackIncidents(beam.PTransform):
    """Windowed results -> :class:`IncidentEvent` s (see the module docstring).

    Returns ``Incidents(events, dead_letters)``. Metrics (namespace ``pipeline``):
    ``incidents_triggered``, ``incidents_resolved.recovered``,
    ``incidents_resolved.quiet_period``.
    """

    def __init__(
        self,
        key_fn: Callable[[Any], Any],
        breaching_fn: Optional[Callable[[Any], bool]] = None,
        *,
        quiet_period: Optional[float] = None,
        window_fn: Callable[[Any], tuple[float, float]] = window_of,
        streaming: bool,
        pipeline: str = "beam_pipelines",
    ) -> None:
        """
        :param key_fn: the alert key of a result (device, service); ``str()`` of it
            names the incident.
        :param breaching_fn: whether a result breaches; None: every result does (a
            stream of alerts, which only resolves by ``quiet_period``).
        :param quiet_period: seconds of event time after the end of a key's last result
            window after which its open incident resolves; None: never for silence.
        :param window_fn: (start, end) epoch seconds of a result's window; the default
            :func:`window_of` reads the project's result records.
        :param streaming: True for an unbounded input (stateful DoFn + timers), False
            for a bounded one (sorted replay per key).
        :param pipeline: the first part of incident ids and the metrics namespace.
        """
        super().__init__()
        for name, fn in (("key_fn", key_fn), ("window_fn", window_fn)):
            if not callable(fn):
                raise ConfigError(name, "a function of the result record", fn)
        if breaching_fn is not None and not callable(breaching_fn):
            raise ConfigError("breaching_fn", "a function of the result record, or None",
                              breaching_fn)
        if quiet_period is not None and (
            isinstance(quiet_period, bool) or not isinstance(quiet_period, (int, float))
            or not math.isfinite(quiet_period) or quiet_period <= 0
        ):
            raise ConfigError("quiet_period", "a number of seconds > 0, or None", quiet_period)
        if not isinstance(pipeline, str) or not pipeline:
            raise ConfigError("pipeline", "a non-empty name", pipeline)
        self._key_fn = key_fn
        self._breaching_fn = breaching_fn
        self._window_fn = window_fn
        self._streaming = streaming
        self._pipeline = pipeline
        self._tracker = IncidentTracker(pipeline, None if quiet_period is None else float(quiet_period))

    def expand(self, results: beam.PCollection) -> Incidents:
        prepared = (
            results
            | "GlobalWindow" >> beam.WindowInto(beam_window.GlobalWindows())
            | "Prepare" >> beam.ParDo(_Prepare(
                self._key_fn, self._breaching_fn, self._window_fn, self._pipeline,
            )).with_output_types(Tuple[str, Any])  # state is keyed by the key's text
            .with_outputs(DEAD_LETTERS, main="observed")
        )
        observed = prepared["observed"]
        if self._streaming:
            events = observed | "Track" >> beam.ParDo(_TrackFn(self._tracker))
        else:
            events = (
                observed
                | "WithTimestamp" >> beam.Map(
                    lambda kv, ts=beam.DoFn.TimestampParam: (kv[0], (kv[1], ts)))
                | "PerKey" >> beam.GroupByKey()
                | "Replay" >> beam.ParDo(_Replay(self._tracker))
            )
        counted = events | "Count" >> beam.ParDo(_CountIncidents(self._pipeline))
        return Incidents(counted, prepared[DEAD_LETTERS])
