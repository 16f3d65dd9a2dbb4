"""Parse raw inputs into typed records; everything that fails becomes a dead letter.

:class:`ParseRecords` is the one parsing transform every pipeline uses: it applies a
contract's parse function to each :class:`~transforms.records.RawRecord`, stamps the
result with its event time, and routes failures (with the reason, the step and the
origin) to the ``dead_letters`` output. Blank lines are skipped, not dead-lettered.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import TimestampedValue

from transforms.records import DeadLetter, RawRecord, UserEvent
from transforms.validation import (
    InvalidRecord,
    decode_json_object,
    event_time,
    non_empty_string,
    string_or_integer_id,
)

DEAD_LETTERS = "dead_letters"
VALID = "valid"

# A parse function turns a decoded JSON object into (record, event time in whole seconds).
ParseFn = Callable[[dict[str, Any]], tuple[Any, int]]


def parse_user_event(obj: dict[str, Any]) -> tuple[UserEvent, int]:
    """The pageviews input contract; extra fields are ignored."""
    user_id = string_or_integer_id(obj, "user_id")
    action = non_empty_string(obj, "action")
    page = non_empty_string(obj, "page")
    seconds, whole = event_time(obj, "timestamp")
    return UserEvent(user_id, action, page, seconds), whole


def is_blank(payload: bytes | str) -> bool:
    return not payload.strip()


class _ParseDoFn(beam.DoFn):
    def __init__(self, parse_fn: ParseFn, pipeline: str, step: str) -> None:
        self._parse_fn = parse_fn
        self._pipeline = pipeline
        self._step = step
        self._parsed = Metrics.counter(pipeline, "events_parsed")
        self._rejected = Metrics.counter(pipeline, "events_dead_lettered")
        self._blank = Metrics.counter(pipeline, "blank_lines_skipped")

    def process(self, raw: RawRecord):
        payload = raw.payload
        if is_blank(payload):
            self._blank.inc()
            return
        try:
            record, whole_seconds = self._parse_fn(decode_json_object(payload))
        except InvalidRecord as exc:
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                DeadLetter.of(self._pipeline, self._step, str(exc), payload, raw.origin, exc.code),
            )
            return
        self._parsed.inc()
        yield TimestampedValue(record, whole_seconds)


class ParsedRecords(NamedTuple):
    valid: beam.PCollection
    dead_letters: beam.PCollection


class ParseRecords(beam.PTransform):
    """RawRecord -> (valid records timestamped by event time, dead letters)."""

    def __init__(self, parse_fn: ParseFn, *, pipeline: str, step: str = "parse") -> None:
        super().__init__()
        if not callable(parse_fn):
            raise TypeError(f"parse_fn must be callable, got {parse_fn!r}")
        self._parse_fn = parse_fn
        self._pipeline = pipeline
        self._step = step

    def expand(self, raw: beam.PCollection) -> ParsedRecords:
        outputs = raw | "Validate" >> beam.ParDo(
            _ParseDoFn(self._parse_fn, self._pipeline, self._step)
        ).with_outputs(DEAD_LETTERS, main=VALID)
        return ParsedRecords(outputs[VALID], outputs[DEAD_LETTERS])


def ParseUserEvents(pipeline: str = "pageviews") -> ParseRecords:
    """ParseRecords for the user-event contract."""
    return ParseRecords(parse_user_event, pipeline=pipeline, step="parse")
