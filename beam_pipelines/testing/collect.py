"""Collect a PCollection's elements into a Python list, for assertions in tests.

Works on runners that execute in the test's own process (DirectRunner, the local
streaming runner, PortableRunner with the LOOPBACK environment)::

    with TestPipeline() as p:
        counts = ... | CountPageViews(...)
        got = collect(counts.counts)
    assert sorted(got.items) == [...]

Unlike ``assert_that`` it keeps pane order and lets the test inspect panes as they
fired (EARLY, ON_TIME, LATE) instead of only the final multiset.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import apache_beam as beam

__all__ = ["collect", "Collected"]

_STORE: dict[str, list[Any]] = {}
_LOCK = threading.Lock()


class Collected:
    """A handle to the elements collected so far (``.items``)."""

    def __init__(self) -> None:
        self.key = uuid.uuid4().hex
        with _LOCK:
            _STORE[self.key] = []

    @property
    def items(self) -> list[Any]:
        with _LOCK:
            return list(_STORE[self.key])


class _Append(beam.DoFn):
    def __init__(self, key: str, timestamps: bool) -> None:
        self._key = key
        self._timestamps = timestamps

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        item = (element, float(timestamp)) if self._timestamps else element
        with _LOCK:
            _STORE[self._key].append(item)


def collect(pcoll: beam.PCollection, label: str | None = None, *,
            timestamps: bool = False) -> Collected:
    """Collect ``pcoll``'s elements (with ``timestamps``: ``(element, epoch seconds)`` pairs)."""
    handle = Collected()
    pcoll | (label or f"Collect_{handle.key[:8]}") >> beam.ParDo(_Append(handle.key, timestamps))
    return handle
