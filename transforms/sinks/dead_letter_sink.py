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

import importlib
import json
from typing import Any, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.base.errors import ConfigError
from transforms.records import DeadLetter, DeadLetterBatch
from transforms.sinks.files import WriteJsonLines

# scheme -> "module:function"; the function takes (target, options) and returns a PTransform.
_SCHEME_WRITERS = {
    "kafka": "transforms.io.kafka.read:dead_letter_writer",
    "pubsub": "transforms.io.pubsub.read:dead_letter_writer",
}


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


class WriteDeadLetters(beam.PTransform):
    """DeadLetter records (or DeadLetterBatches) -> the ``--dead_letter`` target (or
    counted only, when None)."""

    def __init__(
        self,
        target: Optional[str],
        *,
        pipeline: str,
        streaming: bool,
        options: Any = None,
    ) -> None:
        super().__init__()
        self._target = target
        self._pipeline = pipeline
        self._streaming = streaming
        self._options = options
        self._scheme: Optional[str] = None  # None: a Beam filesystem directory
        if target and "://" in target:
            scheme = target.split("://", 1)[0]
            if scheme in _SCHEME_WRITERS:
                self._scheme = scheme
            elif scheme not in ("gs", "s3", "file", "hdfs", "azfs"):
                raise ConfigError(
                    "--dead_letter",
                    "a directory (local or gs://, s3://...), kafka://TOPIC or pubsub://projects/P/topics/T",
                    target,
                )

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
            module_name, func = _SCHEME_WRITERS[self._scheme].split(":")
            writer = getattr(importlib.import_module(module_name), func)
            return one_by_one | "Write" >> writer(self._target, self._options)
        return one_by_one | "Write" >> WriteJsonLines(
            self._target, "dead_letters", streaming=True, flag="--dead_letter"
        )
