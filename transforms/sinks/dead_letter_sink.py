"""Where rejected records go: ``--dead_letter`` is a directory, ``kafka://TOPIC`` or
``pubsub://projects/P/topics/T``.

Every pipeline routes each rejected input (parse failures, records later than the
allowed lateness, records a sink refused) into one PCollection of
:class:`~transforms.records.DeadLetter` and hands it to :class:`WriteDeadLetters`.
With no ``--dead_letter`` the records are still counted (Beam metrics
``events_dead_lettered``) and the run reports them at the end, so nothing is dropped
without a trace.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.base.errors import ConfigError
from transforms.records import DeadLetter, DeadLetterBatch
from transforms.sinks.files import WriteJsonLines

__all__ = ["WriteDeadLetters", "dead_letter_lines", "dead_letter_to_json", "each_dead_letter",
           "late_record_to_dead_letter", "message_scheme"]

# Targets written by a message writer the caller passes (``writer``); any other scheme is
# a Beam filesystem directory.
MESSAGE_SCHEMES = ("kafka", "pubsub")
_FILESYSTEMS = ("gs", "s3", "file", "hdfs", "azfs")


# json.dumps with keyword arguments builds an encoder per call; a backfill writes many letters.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def dead_letter_to_json(letter: DeadLetter) -> str:
    return _ENCODER.encode(letter._asdict())


def each_dead_letter(element: DeadLetter | DeadLetterBatch) -> list[DeadLetter]:
    """The DeadLetters of an element of a dead-letter PCollection, one or a batch."""
    return element.letters if isinstance(element, DeadLetterBatch) else [element]


def dead_letter_lines(element: DeadLetter | DeadLetterBatch) -> str:
    """JSON lines of an element of a dead-letter PCollection (no final newline)."""
    return "\n".join(dead_letter_to_json(letter) for letter in each_dead_letter(element))


def late_record_to_dead_letter(pipeline: str, step: str):
    """A function turning WindowedAggregate's late output into DeadLetters."""

    def convert(late: tuple) -> DeadLetter:
        key, record, event_seconds, window_start, window_end = late
        payload = json.dumps(_record_dict(record), default=str)
        origin: dict[str, Any] = {"source": "window", "key": str(key)}
        reason = (
            f"late: event time {event_seconds} is beyond the allowed lateness of window "
            f"[{window_start}, {window_end}), which had already closed"
        )
        return DeadLetter.of(pipeline, step, reason, payload, origin, "late")

    return convert


def _record_dict(record: Any) -> Any:
    if hasattr(record, "_asdict"):
        return record._asdict()
    return record


class _CountDeadLetters(beam.DoFn):
    def __init__(self, pipeline: str) -> None:
        self._pipeline = pipeline
        self._counters: dict[str, Any] = {}  # reason code -> counter (few codes, many letters)

    def process(self, element: DeadLetter | DeadLetterBatch):
        for letter in each_dead_letter(element):
            counter = self._counters.get(letter.reason_code)
            if counter is None:
                counter = self._counters[letter.reason_code] = Metrics.counter(
                    self._pipeline, f"dead_letters_written.{letter.reason_code}"
                )
            counter.inc()
        yield element


def message_scheme(target: Optional[str]) -> Optional[str]:
    """``kafka`` or ``pubsub`` for a message target, None for a directory; ConfigError for
    anything else."""
    if not target or "://" not in target:
        return None
    scheme = target.split("://", 1)[0]
    if scheme in MESSAGE_SCHEMES:
        return scheme
    if scheme not in _FILESYSTEMS:
        raise ConfigError(
            "--dead_letter",
            "a directory (local or gs://, s3://...), kafka://TOPIC or pubsub://projects/P/topics/T",
            target,
        )
    return None


class WriteDeadLetters(beam.PTransform):
    """DeadLetter records (or DeadLetterBatches) -> the ``--dead_letter`` target (or
    counted only, when None).

    :param target: a directory (any Beam filesystem) for JSON lines, ``kafka://TOPIC`` or
        ``pubsub://projects/P/topics/T`` (then ``writer`` writes them), or None.
    :param pipeline: the metrics namespace of the counts per reason code.
    :param streaming: one file per bundle instead of a batch write's shards.
    :param writer: the transform writing DeadLetters to a message target (e.g.
        ``WriteToKafka``); ``beam_pipelines.wiring.dead_letters`` builds it from the flags.
    """

    def __init__(
        self,
        target: Optional[str],
        *,
        pipeline: str,
        streaming: bool,
        writer: Optional[beam.PTransform] = None,
    ) -> None:
        super().__init__()
        self._target = target
        self._pipeline = pipeline
        self._streaming = streaming
        self._scheme = message_scheme(target)  # None: a Beam filesystem directory
        if self._scheme and writer is None:
            raise ConfigError("--dead_letter", f"a writer for {self._scheme}:// targets", target)
        self._writer = writer

    def expand(self, letters):
        counted = letters | "Count" >> beam.ParDo(_CountDeadLetters(self._pipeline))
        if not self._target:
            return counted
        if not self._scheme and not self._streaming:
            # Batch files: a DeadLetterBatch is written as its lines at once.
            return counted | "Write" >> WriteJsonLines(
                self._target, "dead_letters", streaming=False, flag="--dead_letter",
                format_fn=dead_letter_lines,
            )
        one_by_one = counted | "OneByOne" >> beam.FlatMap(each_dead_letter)
        if self._scheme:
            return one_by_one | "Write" >> self._writer
        return one_by_one | "Write" >> WriteJsonLines(
            self._target, "dead_letters", streaming=True, flag="--dead_letter"
        )
