"""Merging session windows: the one piece of arithmetic batch and streaming sessions share.

A :class:`SessionSet` holds one key's sessions as disjoint windows ``[start, end)`` in
microseconds, each with a ``CombineFn`` accumulator. Adding a window merges it with every
window it overlaps (``a.start < b.end and b.start < a.end``: windows that only touch stay
apart, as in Beam's ``Sessions.merge``), and the merged session's accumulator merges
theirs. Sessions are the connected components of overlapping event windows, so merging
partial sessions built from any split of the events gives the same sessions as merging
the events one by one; that is what makes :class:`MergeSessionsFn` a correct (and
combiner-lifted) batch implementation.
"""

from __future__ import annotations

import bisect
from typing import Any, Iterator

import apache_beam as beam

__all__ = ["MergeSessionsFn", "Session", "SessionSet"]


class Session:
    """A session of one key: its span, accumulator and (streaming) pane bookkeeping."""

    __slots__ = ("start", "end", "accumulator", "next_pane", "on_time_done", "dirty", "was_on_time")

    def __init__(self, start: int, end: int, accumulator: Any) -> None:
        self.start = start  # micros: the first event's time
        self.end = end  # micros, exclusive: the last event's time + gap
        self.accumulator = accumulator
        self.next_pane = 0
        self.on_time_done = False  # the watermark passed the end and its pane fired
        self.dirty = False  # changed since its last pane
        self.was_on_time = False  # it, or a session merged into it, had its ON_TIME pane

    def __getstate__(self):
        return (self.start, self.end, self.accumulator, self.next_pane, self.on_time_done,
                self.dirty, self.was_on_time)

    def __setstate__(self, state):
        (self.start, self.end, self.accumulator, self.next_pane, self.on_time_done,
         self.dirty, self.was_on_time) = state


class SessionSet:
    """One key's disjoint sessions, ordered by start."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._sessions: dict[int, Session] = {}

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[Session]:
        return (self._sessions[start] for start in list(self._starts))

    def remove(self, session: Session) -> None:
        del self._sessions[session.start]
        self._starts.pop(bisect.bisect_left(self._starts, session.start))

    def _overlapping(self, start: int, end: int) -> list[Session]:
        # Disjoint windows sorted by start also have sorted ends: walk back from the last
        # window starting before ``end`` while it still ends after ``start``.
        found = []
        index = bisect.bisect_left(self._starts, end) - 1
        while index >= 0 and self._sessions[self._starts[index]].end > start:
            found.append(self._sessions[self._starts[index]])
            index -= 1
        found.reverse()
        return found

    def _replace(self, parts: list[Session], merged: Session) -> Session:
        for part in parts:
            self.remove(part)
        bisect.insort(self._starts, merged.start)
        self._sessions[merged.start] = merged
        return merged

    def add_record(self, start: int, end: int, record: Any, combine: beam.CombineFn) -> Session:
        """Add one event's window ``[start, end)``; the session it ends up in."""
        parts = self._overlapping(start, end)
        if not parts:
            session = Session(start, end, combine.add_input(combine.create_accumulator(), record))
            return self._replace([], session)
        accumulator = parts[0].accumulator
        if len(parts) > 1:
            accumulator = combine.merge_accumulators([p.accumulator for p in parts])
        return self._replace(parts, _merged(parts, start, end, combine.add_input(accumulator, record)))

    def add(self, session: Session, combine: beam.CombineFn) -> Session:
        """Add a (partial) session; the session it ends up in."""
        parts = self._overlapping(session.start, session.end)
        if not parts:
            return self._replace([], session)
        accumulator = combine.merge_accumulators([p.accumulator for p in parts] + [session.accumulator])
        merged = _merged(parts + [session], session.start, session.end, accumulator)
        return self._replace(parts, merged)


def _merged(parts: list[Session], start: int, end: int, accumulator: Any) -> Session:
    merged = Session(min(start, parts[0].start), max(end, max(p.end for p in parts)), accumulator)
    merged.next_pane = max(p.next_pane for p in parts)  # the merged session's panes follow theirs
    merged.was_on_time = any(p.was_on_time for p in parts)
    return merged


class MergeSessionsFn(beam.CombineFn):
    """Batch sessions as a CombineFn: ``(event micros, record)`` -> ``[(start micros, end
    micros, output of combine_fn)]`` for every session of the key. Lifted by the runner,
    so each worker merges its events into partial sessions before the shuffle."""

    def __init__(self, combine_fn: beam.CombineFn, gap_micros: int) -> None:
        self._combine_fn = combine_fn
        self._gap = gap_micros

    def setup(self, *args, **kwargs):
        self._combine_fn.setup(*args, **kwargs)

    def teardown(self, *args, **kwargs):
        self._combine_fn.teardown(*args, **kwargs)

    def create_accumulator(self) -> SessionSet:
        return SessionSet()

    def add_input(self, sessions: SessionSet, timed: tuple[int, Any]) -> SessionSet:
        micros, record = timed
        sessions.add_record(micros, micros + self._gap, record, self._combine_fn)
        return sessions

    def merge_accumulators(self, accumulators) -> SessionSet:
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for other in accumulators:
            for session in other:
                merged.add(session, self._combine_fn)
        return merged

    def compact(self, sessions: SessionSet) -> SessionSet:
        for session in sessions:
            session.accumulator = self._combine_fn.compact(session.accumulator)
        return sessions

    def extract_output(self, sessions: SessionSet) -> list[tuple[int, int, Any]]:
        return [
            (s.start, s.end, self._combine_fn.extract_output(s.accumulator)) for s in sessions
        ]
