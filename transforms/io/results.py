"""What readers and writers return: their outputs and their dead letters, the same way.

Every ``ReadFromX`` returns a :class:`ReadResult` and every ``WriteToX`` that can refuse a
record a :class:`WriteResult`, so a pipeline routes a connector's rejects without knowing
which connector it is::

    read = p | ReadFromKafka(...)            # ReadResult(records, dead_letters)
    parsed = read.records | ...
    written = results | WriteToKafka(...)    # WriteResult(written, dead_letters)
    (read.dead_letters, written.dead_letters) | beam.Flatten() | WriteDeadLetters(...)

``dead_letters`` holds :class:`~transforms.records.DeadLetter` s (records that could not
be deserialized, or that a broker refused). A connector that rejects nothing returns an
empty one. Writers that fail the bundle on any error instead (Pub/Sub, Event Hubs: the
runner retries it, nothing is dropped) return what Beam gives for their last step.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam

__all__ = ["ReadResult", "WriteResult", "no_dead_letters"]


class ReadResult(NamedTuple):
    """A reader's output: the records it read and the dead letters of those it could not."""

    records: beam.PCollection
    dead_letters: beam.PCollection


class WriteResult(NamedTuple):
    """A writer's output: the records written and the dead letters of those refused."""

    written: beam.PCollection
    dead_letters: beam.PCollection


def no_dead_letters(pbegin: beam.pvalue.PBegin, label: str = "NoDeadLetters") -> beam.PCollection:
    """An empty dead-letter PCollection for a reader that rejects nothing (a root of its own,
    so it costs nothing per record)."""
    return pbegin | label >> beam.Create([])
