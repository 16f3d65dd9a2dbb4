"""User sessions: user events -> one record per user and session (or per pane).

``Sessionize(SessionConfig(gap=1800), streaming=...)`` is the core transform of the
``sessions`` pipeline: "how long, how many pages, where they dropped" per visit.

* Users are keyed by the id's string form, so ``123`` and ``"123"`` are one user.
* Sessions are Beam's session windows (:mod:`transforms.session_windows`): an event
  exactly ``gap`` or more after the previous event of the session starts a new one.
  Event times are the events' own (float) ``timestamp`` to the microsecond, not the whole
  second a parser stamped the element with: 10.7 and 40.2 with a 30 s gap are one session.
* :class:`SessionStatsFn` is a ``CombineFn``, so the same statistics come out of Beam's
  batch combine and of the streaming panes, where merged sessions merge accumulators.
  Ties are broken so that any order of adding gives the same answer: of events at the same
  microsecond, ``first_page`` is the smallest page and ``last_page`` the largest.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.transforms.window import TimestampedValue

from transforms.records import UtcTime, utc_iso
from transforms.session_windows import (
    SessionConfig,
    SessionWindowedAggregate,
    event_micros,
    event_timestamp,
)
from transforms.windowing import WindowedResult

__all__ = [
    "SessionStats",
    "SessionStatsFn",
    "Sessionize",
    "UserSession",
    "session_schema",
    "to_user_session",
]


class SessionStats(NamedTuple):
    """What :class:`SessionStatsFn` computes for one session (times in epoch seconds)."""

    session_start: Optional[float]  # the first event's time
    session_end: Optional[float]  # the last event's time
    events: int
    distinct_pages: int
    first_page: Optional[str]
    last_page: Optional[str]
    duration_seconds: float  # session_end - session_start


class UserSession(NamedTuple):
    """One user's session (batch) or one pane of it (streaming: pane fields set)."""

    user_id: str
    session_start: UtcTime  # ISO-8601 UTC, the first event's time
    session_end: UtcTime  # ISO-8601 UTC, the last event's time
    events: int
    distinct_pages: int
    first_page: str
    last_page: str
    duration_seconds: float
    pane_timing: Optional[str] = None  # EARLY | ON_TIME | LATE
    pane_index: Optional[int] = None
    is_final: Optional[bool] = None


def session_schema(streaming: bool = True):
    """The pyarrow schema of :class:`UserSession` rows (Parquet, Iceberg)."""
    import pyarrow as pa

    fields = [
        ("user_id", pa.string()),
        ("session_start", pa.timestamp("us", tz="UTC")),
        ("session_end", pa.timestamp("us", tz="UTC")),
        ("events", pa.int64()),
        ("distinct_pages", pa.int64()),
        ("first_page", pa.string()),
        ("last_page", pa.string()),
        ("duration_seconds", pa.float64()),
    ]
    if streaming:
        fields += [("pane_timing", pa.string()), ("pane_index", pa.int64()), ("is_final", pa.bool_())]
    return pa.schema(fields)


class SessionStatsFn(beam.CombineFn):
    """Events (anything with ``timestamp`` in epoch seconds and ``page``) -> SessionStats.

    The accumulator is ``[first_micros, first_page, last_micros, last_page, events,
    set of pages]``; ``(time, page)`` pairs are compared, which makes the result
    independent of the order of inputs and merges."""

    def create_accumulator(self) -> list:
        return [None, None, None, None, 0, set()]

    def add_input(self, accumulator: list, event: Any) -> list:
        moment, page = event_micros(event.timestamp), event.page
        if accumulator[4] == 0 or (moment, page) < (accumulator[0], accumulator[1]):
            accumulator[0], accumulator[1] = moment, page
        if accumulator[4] == 0 or (moment, page) > (accumulator[2], accumulator[3]):
            accumulator[2], accumulator[3] = moment, page
        accumulator[4] += 1
        accumulator[5].add(page)
        return accumulator

    def merge_accumulators(self, accumulators) -> list:
        accumulators = iter(accumulators)
        merged = next(accumulators)  # Beam lets the first accumulator be modified
        for other in accumulators:
            if other[4] == 0:
                continue
            if merged[4] == 0 or (other[0], other[1]) < (merged[0], merged[1]):
                merged[0], merged[1] = other[0], other[1]
            if merged[4] == 0 or (other[2], other[3]) > (merged[2], merged[3]):
                merged[2], merged[3] = other[2], other[3]
            merged[4] += other[4]
            merged[5] |= other[5]
        return merged

    def extract_output(self, accumulator: list) -> SessionStats:
        first, first_page, last, last_page, events, pages = accumulator
        if events == 0:
            return SessionStats(None, None, 0, 0, None, None, 0.0)
        return SessionStats(
            first / 1e6, last / 1e6, events, len(pages), first_page, last_page, (last - first) / 1e6
        )


def to_user_session(result: WindowedResult) -> UserSession:
    stats: SessionStats = result.value
    assert stats.session_start is not None and stats.session_end is not None  # never empty
    return UserSession(
        result.key,
        utc_iso(stats.session_start),
        utc_iso(stats.session_end),
        stats.events,
        stats.distinct_pages,
        stats.first_page or "",
        stats.last_page or "",
        stats.duration_seconds,
        result.pane_timing,
        result.pane_index,
        result.is_final,
    )


def _key_by_user(event) -> TimestampedValue:
    # The element's timestamp becomes the event's own time to the microsecond: parsers
    # stamp whole seconds (the floor, so this never moves a timestamp back).
    return TimestampedValue((str(event.user_id), event), event_timestamp(event.timestamp))


class SessionOutputs(NamedTuple):
    sessions: beam.PCollection  # UserSession
    late: beam.PCollection  # (user_id, event, event_seconds, window_start, window_end)


class Sessionize(beam.PTransform):
    """UserEvents -> UserSession per user and session (batch) or per pane (streaming).

    ``.late`` of the result holds events later than the allowed lateness (streaming);
    ``transforms.sinks.dead_letter_sink.late_record_to_dead_letter`` turns them into dead letters.
    """

    def __init__(
        self, config: SessionConfig, *, streaming: bool, metrics_namespace: str = "sessions"
    ) -> None:
        """
        Args:
            config: the session gap, allowed lateness and early firing (seconds).
            streaming: panes as sessions grow and merge (True), or final sessions.
            metrics_namespace: namespace of the ``late_events_dropped`` counter.
        """
        super().__init__()
        self._config = config
        self._streaming = streaming
        self._ns = metrics_namespace

    def expand(self, events):
        aggregated = (
            events
            # String keys, declared: a deterministic key coder for the streaming state.
            | "KeyByUser" >> beam.Map(_key_by_user).with_output_types(Tuple[str, Any])
            | "Sessionize"
            >> SessionWindowedAggregate(
                SessionStatsFn(), self._config, streaming=self._streaming,
                metrics_namespace=self._ns,
            )
        )
        sessions = aggregated.results | "Format" >> beam.Map(to_user_session)
        return SessionOutputs(sessions, aggregated.late)
