"""Session windows per key, the same definition in batch and in streaming.

``SessionWindowedAggregate(combine_fn, SessionConfig(gap=...), streaming=...)`` takes
``(key, record)`` pairs timestamped with event time and produces one
:class:`~transforms.windowing.WindowedResult` per key and session (batch) or per pane
(streaming), with ``.late`` holding records later than the allowed lateness, exactly as
:class:`~transforms.windowing.WindowedAggregate` does for fixed and sliding windows.

**What a session is** (Beam's ``Sessions``): an event at time ``t`` opens the window
``[t, t + gap)``; windows of one key that overlap merge into one, ``[first event, last
event + gap)``. Two windows ``[a, a + gap)`` and ``[b, b + gap)`` with ``a <= b``
overlap when ``b < a + gap``, strictly. So an event *exactly* ``gap`` after the previous
one starts a new session; any event less than ``gap`` after it joins the session. Times
are compared in whole microseconds (Beam's timestamp resolution; :func:`event_timestamp`
rounds an event's float seconds to the nearest microsecond), so the boundary is exact.

* **Batch** is a ``CombinePerKey`` in the global window whose accumulator is the key's
  set of sessions (:class:`~transforms.session_merge.MergeSessionsFn`): events merge into
  partial sessions on each worker before the shuffle (combiner lifting), and partial
  sessions merge after it. The result equals Beam's ``WindowInto(Sessions(gap))`` +
  ``CombinePerKey`` (a test checks it) at the same cost (30 s vs 31 s of CPU for 200k
  events on the FnApiRunner), but needs nothing of a runner's merging-window support,
  which varies (Beam's Dask runner ignores windows in GroupByKey).
* **Streaming** uses a stateful DoFn with event-time and processing-time timers, for the
  reason the fixed windows do (Beam's Python SDK drops too-late data silently inside a
  GroupByKey). Per key it keeps the open sessions, each with its accumulator. A record
  whose own window ``[t, t + gap)`` has expired (the watermark is past its end plus the
  allowed lateness) goes to the ``late`` output, as Beam decides lateness before merging.
  Otherwise its window is merged with every session it overlaps: the merged session's
  accumulator merges theirs (``CombineFn.merge_accumulators``), its pane index continues
  after the highest of theirs, and it is open again if its new end is ahead of the
  watermark. Panes, accumulating: EARLY at most every ``early_firing`` seconds of
  processing time while a session grows or merges; ON_TIME when the watermark passes the
  session's end; LATE for every late record merged into a session the watermark has
  passed, until ``end + allowed_lateness``. The last pane of a session is ``is_final``:
  the ON_TIME pane when there is no allowed lateness; otherwise, when the session expires,
  a closing pane (timing LATE, the session's final value) says that nothing will follow,
  as Beam's Java runner fires at garbage collection. A session whose panes were emitted
  and that later merged into another never fires again; its rows are superseded by the
  merged session's (docs/sessions.md has the query).

  The same limitation as the fixed windows': a key learns the watermark from its own
  timers, so a key without open sessions counts a too-late record into a new session
  instead of dead-lettering it (it errs on keeping data).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.transforms import window as beam_window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.base.errors import ConfigError
from transforms.session_merge import MergeSessionsFn, Session, SessionSet
from transforms.windowing import (
    LATE,
    WindowedResult,
    _Aggregated,
    _CountLate,
    arm_early_timer,
    early_firing_due,
    is_positive_seconds,
    keyed_by_strings,
)

__all__ = [
    "DEFAULT_GAP",
    "SessionConfig",
    "SessionWindowedAggregate",
    "event_micros",
    "event_timestamp",
]

DEFAULT_GAP = 1800
_MICRO = Duration(micros=1)


def event_micros(seconds: float) -> int:
    """Event time in float seconds -> whole microseconds (nearest)."""
    return round(seconds * 1_000_000)


def event_timestamp(seconds: float) -> Timestamp:
    """The Beam timestamp of an event time, to the microsecond (see the module doc)."""
    return Timestamp(micros=event_micros(seconds))


@dataclasses.dataclass(frozen=True)
class SessionConfig:
    """Session window and trigger settings, in whole seconds."""

    gap: int = DEFAULT_GAP
    allowed_lateness: int = 0
    early_firing: Optional[float] = None  # processing-time early panes (streaming), sub-second allowed

    def __post_init__(self) -> None:
        if not isinstance(self.gap, int) or isinstance(self.gap, bool) or self.gap <= 0:
            raise ConfigError("--session_gap", "a whole number of seconds > 0", self.gap)
        if not isinstance(self.allowed_lateness, int) or self.allowed_lateness < 0:
            raise ConfigError(
                "--allowed_lateness", "a whole number of seconds >= 0", self.allowed_lateness
            )
        if self.early_firing is not None and not is_positive_seconds(self.early_firing):
            raise ConfigError("--early_firing", "a number of seconds > 0", self.early_firing)

    def window_fn(self) -> beam_window.Sessions:
        return beam_window.Sessions(self.gap)


def _max_timestamp(session: Session) -> Timestamp:
    return Timestamp(micros=session.end) - _MICRO


class _StreamingSessionsFn(beam.DoFn):
    SESSIONS = ReadModifyWriteStateSpec("sessions", coders.PickleCoder())
    WATERMARK = ReadModifyWriteStateSpec("watermark_seen", coders.PickleCoder())
    KEY = ReadModifyWriteStateSpec("key", coders.PickleCoder())
    # When the armed early timer is due (micros); empty when none is armed.
    EARLY_DEADLINE = ReadModifyWriteStateSpec("early_deadline", coders.VarIntCoder())
    EVENT_TIMER = TimerSpec("event_time", TimeDomain.WATERMARK)
    EARLY_TIMER = TimerSpec("early", TimeDomain.REAL_TIME)

    def __init__(self, combine_fn: beam.CombineFn, config: SessionConfig) -> None:
        self._combine_fn = combine_fn
        self._config = config
        self._gap = config.gap * 1_000_000
        self._lateness = Duration(seconds=config.allowed_lateness)

    def setup(self):
        self._combine_fn.setup()

    def _expiry(self, session: Session) -> Timestamp:
        return _max_timestamp(session) + self._lateness

    def process(
        self,
        element,
        timestamp=beam.DoFn.TimestampParam,
        sessions_state=beam.DoFn.StateParam(SESSIONS),
        watermark_state=beam.DoFn.StateParam(WATERMARK),
        key_state=beam.DoFn.StateParam(KEY),
        early_deadline=beam.DoFn.StateParam(EARLY_DEADLINE),
        event_timer=beam.DoFn.TimerParam(EVENT_TIMER),
        early_timer=beam.DoFn.TimerParam(EARLY_TIMER),
    ):
        key, record = element
        start = timestamp.micros
        end = start + self._gap
        seen = watermark_state.read()
        if seen is not None and seen >= self._expiry(Session(start, end, None)):
            yield beam.pvalue.TaggedOutput(LATE, (key, record, start / 1e6, start / 1e6, end / 1e6))
            return
        if key_state.read() is None:
            key_state.write(key)
        sessions: SessionSet = sessions_state.read() or SessionSet()
        merged = sessions.add_record(start, end, record, self._combine_fn)
        if seen is not None and seen >= _max_timestamp(merged):
            # The watermark has passed the (merged) session: every late record fires a LATE pane.
            merged.on_time_done = merged.was_on_time = True
            yield self._pane(key, merged, "LATE", final=False)
        else:
            merged.on_time_done = False
            merged.dirty = True
        sessions_state.write(sessions)
        self._arm_event_timer(sessions, event_timer)
        if self._config.early_firing and merged.dirty:
            arm_early_timer(self._config.early_firing, early_deadline, early_timer)

    def _arm_event_timer(self, sessions: SessionSet, event_timer) -> None:
        deadlines = [self._expiry(s) if s.on_time_done else _max_timestamp(s) for s in sessions]
        if deadlines:
            event_timer.set(min(deadlines))

    def _pane(self, key, session: Session, timing: str, final: bool) -> WindowedResult:
        index = session.next_pane
        session.next_pane += 1
        session.dirty = False
        session.accumulator = self._combine_fn.compact(session.accumulator)
        value = self._combine_fn.extract_output(session.accumulator)
        return WindowedResult(
            key, session.start / 1e6, session.end / 1e6, value, timing, index, final
        )

    @on_timer(EVENT_TIMER)
    def on_event_time(
        self,
        fire_time=beam.DoFn.TimestampParam,
        sessions_state=beam.DoFn.StateParam(SESSIONS),
        watermark_state=beam.DoFn.StateParam(WATERMARK),
        key_state=beam.DoFn.StateParam(KEY),
        event_timer=beam.DoFn.TimerParam(EVENT_TIMER),
    ):
        key = key_state.read()
        watermark_state.write(fire_time)
        sessions: SessionSet = sessions_state.read() or SessionSet()
        for session in sessions:
            expired = fire_time >= self._expiry(session)
            if not session.on_time_done and fire_time >= _max_timestamp(session):
                session.on_time_done = True
                # One ON_TIME pane per session: a session that grew from late data after
                # its ON_TIME pane (see the limitation above) fires LATE when it closes again.
                timing = "LATE" if session.was_on_time else "ON_TIME"
                session.was_on_time = True
                yield self._pane(key, session, timing, final=expired)
            elif expired:
                yield self._pane(key, session, "LATE", final=True)  # the closing pane
            if expired:
                sessions.remove(session)
        if sessions:
            sessions_state.write(sessions)
            self._arm_event_timer(sessions, event_timer)
        else:
            sessions_state.clear()

    @on_timer(EARLY_TIMER)
    def on_early(
        self,
        fire_time=beam.DoFn.TimestampParam,
        sessions_state=beam.DoFn.StateParam(SESSIONS),
        key_state=beam.DoFn.StateParam(KEY),
        early_deadline=beam.DoFn.StateParam(EARLY_DEADLINE),
        early_timer=beam.DoFn.TimerParam(EARLY_TIMER),
    ):
        if not early_firing_due(fire_time, early_deadline, early_timer):
            return
        sessions: SessionSet = sessions_state.read() or SessionSet()
        key = key_state.read()
        fired = False
        for session in sessions:
            if session.dirty and not session.on_time_done:
                fired = True
                yield self._pane(key, session, "EARLY", final=False)
        if fired:
            sessions_state.write(sessions)


class _WithEventMicros(beam.DoFn):
    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        key, record = element
        yield key, (timestamp.micros, record)


def _per_session(keyed_sessions) -> list[WindowedResult]:
    key, sessions = keyed_sessions
    return [WindowedResult(key, start / 1e6, end / 1e6, value) for start, end, value in sessions]


class SessionWindowedAggregate(beam.PTransform):
    """(key, record) timestamped by event time -> WindowedResult per key and session/pane.

    ``window_start`` is the session's first event time and ``window_end`` its last event
    time + gap (seconds). In streaming, records later than the allowed lateness come out
    of ``late`` as ``(key, record, event_seconds, window_start, window_end)`` of the
    record's own window; in batch that output is empty. Keys are strings. The results
    are in the global window in both modes.
    """

    def __init__(
        self,
        combine_fn: beam.CombineFn,
        config: SessionConfig,
        *,
        streaming: bool,
        metrics_namespace: str = "beam_pipelines",
    ) -> None:
        """
        Args:
            combine_fn: what to compute per session; merged sessions merge accumulators.
            config: the gap, allowed lateness and early firing.
            streaming: stateful panes (True) or Beam's merging windows over a bounded input.
            metrics_namespace: namespace of the ``late_events_dropped`` counter.
        """
        super().__init__()
        self._combine_fn = combine_fn
        self._config = config
        self._streaming = streaming
        self._ns = metrics_namespace

    def expand(self, keyed: beam.PCollection):
        if not self._streaming:
            results = (
                keyed
                | "GlobalWindow" >> beam.WindowInto(beam_window.GlobalWindows())
                | "WithEventTime" >> beam.ParDo(_WithEventMicros())
                | "MergeSessions"
                >> beam.CombinePerKey(MergeSessionsFn(self._combine_fn, self._config.gap * 1_000_000))
                | "PerSession" >> beam.FlatMap(_per_session)
            )
            late = results.pipeline | "NoLateData" >> beam.Create([])
            return _Aggregated(results, late)
        windowed = keyed | "GlobalWindow" >> beam.WindowInto(beam_window.GlobalWindows())
        outputs = (
            keyed_by_strings(windowed)
            | "FireSessionPanes"
            >> beam.ParDo(_StreamingSessionsFn(self._combine_fn, self._config))
            .with_input_types(Tuple[str, Any])
            .with_outputs(LATE, main="results")
        )
        late = outputs[LATE] | "CountLate" >> beam.ParDo(_CountLate(self._ns))
        return _Aggregated(outputs["results"], late)
