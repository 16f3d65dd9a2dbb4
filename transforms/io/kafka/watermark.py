"""The watermark of one partition: the largest timestamp seen minus ``max_delay``, moving
with the wall clock while a caught-up partition stays idle (so one quiet partition does
not hold every window open forever)."""

from __future__ import annotations

import time
from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.transforms.core import WatermarkEstimatorProvider
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Timestamp

from transforms.io.kafka.records import PartitionRead

__all__ = ["PartitionWatermark", "WatermarkProvider"]


class _WatermarkState(NamedTuple):
    watermark: int  # micros
    max_seen: Optional[int]  # micros of the largest element timestamp seen
    active_at: float  # wall-clock seconds of the last record (or of the first poll)
    max_delay: int  # micros
    idle_timeout: float  # seconds


class PartitionWatermark(beam.io.iobase.WatermarkEstimator):
    """Largest timestamp seen minus ``max_delay``; advances with wall-clock time when idle.

    The state carries the settings too, because a runner rebuilds estimators from the
    state alone when it resumes a checkpointed partition.
    """

    def __init__(self, state: _WatermarkState) -> None:
        self._state = state

    def observe_timestamp(self, timestamp) -> None:
        pass  # record() does it, with the wall-clock time of the read

    def record(self, timestamp: Timestamp, now: float) -> None:
        s = self._state
        seen = timestamp.micros if s.max_seen is None else max(s.max_seen, timestamp.micros)
        self._state = s._replace(watermark=max(s.watermark, seen - s.max_delay), max_seen=seen,
                                 active_at=now)

    def idle(self, now: float) -> None:
        """Called when the partition is caught up and a poll returned nothing."""
        s = self._state
        quiet = now - s.active_at
        if quiet < s.idle_timeout:
            return
        if s.max_seen is None:  # nothing read yet: follow wall-clock time
            candidate = int((now - s.idle_timeout) * 1_000_000)
        else:  # as if event time had kept pace with wall-clock time since the last record
            candidate = s.max_seen - s.max_delay + int(quiet * 1_000_000)
        candidate = min(candidate, MAX_TIMESTAMP.micros)
        self._state = s._replace(watermark=max(s.watermark, candidate))

    def current_watermark(self) -> Timestamp:
        return Timestamp(micros=self._state.watermark)

    def get_estimator_state(self) -> _WatermarkState:
        return self._state


class WatermarkProvider(WatermarkEstimatorProvider):
    def initial_estimator_state(self, read: PartitionRead, restriction) -> _WatermarkState:
        return _WatermarkState(MIN_TIMESTAMP.micros, None, time.time(),
                               int(read.max_delay * 1_000_000), read.idle_timeout)

    def create_watermark_estimator(self, state: _WatermarkState) -> PartitionWatermark:
        return PartitionWatermark(state)
