"""Where rejected records go: ``--dead_letter`` is a directory, ``kafka://TOPIC`` or
``pubsub://projects/P/topics/T``.

Every pipeline routes each rejected input (parse failures, records later than the
allowed lateness, records a sink refused) into one PCollection of
:class:`~transforms.records.DeadLetter` and hands it to :class:`WriteDeadLetters`.
With no ``--dead_letter`` the records are still counted (Beam metrics
``events_dead_lettered``) and the run reports them at the end, so nothing is dropped
without a trace.

A letter larger than its destination takes (a 50 MB bad line and Kafka's 1 MiB records)
would fail the write and with it the run. :func:`fit_dead_letter` keeps such a letter
within the destination's limit (Kafka: the producer's ``max_request_size`` and the
topic's ``max.message.bytes``; Pub/Sub: 10 MB; files: 1 MiB): the payload is cut to a
prefix (base64 payloads on a 4-character boundary, so the prefix still decodes) and
``origin["truncated"]`` marks it with the original's size and SHA-256, so the original
can be found and told apart; everything else is kept. Truncated letters are counted
(``dead_letters_truncated``) and ``dead_letters replay`` leaves them out.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Optional

import apache_beam as beam
import msgspec
from apache_beam.metrics import Metrics

from transforms.base.errors import ConfigError
from transforms.records import DeadLetter, DeadLetterBatch
from transforms.sinks.files import WriteJsonLines

__all__ = ["EVENTHUBS_LIMIT_BYTES", "FILE_LIMIT_BYTES", "KAFKA_LIMIT_BYTES", "PUBSUB_LIMIT_BYTES",
           "TRUNCATED", "WriteDeadLetters", "dead_letter_lines", "dead_letter_to_json",
           "each_dead_letter", "fit_dead_letter", "late_record_to_dead_letter", "message_scheme"]

# Targets written by a message writer the caller passes (``writer``); any other scheme is
# a Beam filesystem directory.
MESSAGE_SCHEMES = ("kafka", "pubsub")
_FILESYSTEMS = ("gs", "s3", "file", "hdfs", "azfs")

# The largest letter (JSON bytes) a destination takes, when the caller does not say.
FILE_LIMIT_BYTES = 1 << 20  # a line that editors, jq and `inspect` still handle
PUBSUB_LIMIT_BYTES = 10_000_000 - (64 << 10)  # 10 MB a message, less room for attributes
EVENTHUBS_LIMIT_BYTES = (1 << 20) - (16 << 10)  # 1 MiB an event (Standard/Premium tiers)
# kafka-python's default max_request_size (1 MiB), less room for key, header and framing;
# beam_pipelines.wiring.kafka asks the producer config and the topic for the real one.
KAFKA_LIMIT_BYTES = (1 << 20) - 1024
_MESSAGE_LIMITS = {"kafka": KAFKA_LIMIT_BYTES, "pubsub": PUBSUB_LIMIT_BYTES}
TRUNCATED = "truncated"  # the origin key that marks a cut payload


# msgspec encodes a letter about 3x faster than json (a backfill with 1.5% bad lines
# writes tens of thousands): compact separators, UTF-8 unescaped, and always valid JSON
# (a NaN in an origin becomes null). Of the values JSON has no type for, bytes become
# base64 and datetimes ISO-8601; anything else its str(), as json's default=str did.
_ENCODE = msgspec.json.Encoder(enc_hook=str).encode


def dead_letter_to_json(letter: DeadLetter) -> str:
    return _ENCODE(letter._asdict()).decode("utf-8")


# The message writers (Kafka, Pub/Sub, Event Hubs) encode with json.dumps: ", " and ": "
# separators, so a letter is measured in that, their most verbose form.
_SPACED = json.JSONEncoder(ensure_ascii=False, default=str)


def _json_size(letter: DeadLetter) -> int:
    # No writer's encoding is longer (UTF-8, no ASCII escapes): a safe measure.
    return len(_SPACED.encode(letter._asdict()).encode("utf-8"))


def fit_dead_letter(letter: DeadLetter, limit_bytes: int,
                    size: Callable[[DeadLetter], int] = _json_size) -> DeadLetter:
    """``letter`` if its JSON fits ``limit_bytes``; else the letter with its payload cut
    to a prefix that fits and ``origin["truncated"] = {"original_bytes",
    "original_sha256", "kept_bytes"}`` (of the payload's bytes)."""
    # Cheap first: JSON escapes at most 6 bytes a character, and letters are small.
    if 6 * (len(letter.payload) + len(letter.reason)) + 4096 <= limit_bytes:
        return letter
    if size(letter) <= limit_bytes:
        return letter
    original = letter.payload_bytes()
    reason = letter.reason if len(letter.reason) <= 4096 else letter.reason[:4096] + "..."

    def cut(prefix: str) -> DeadLetter:
        kept = letter._replace(payload=prefix).payload_bytes()
        marker = {"original_bytes": len(original),
                  "original_sha256": hashlib.sha256(original).hexdigest(),
                  "kept_bytes": len(kept)}
        return letter._replace(payload=prefix, reason=reason,
                               origin={**letter.origin, TRUNCATED: marker})

    room = limit_bytes - size(cut(""))
    text = letter.payload
    keep = max(0, min(len(text), room - 16))  # kept_bytes grows by a few digits
    while keep > 0:
        if letter.payload_encoding == "base64":
            keep -= keep % 4  # whole base64 quanta: the prefix decodes to a prefix of the bytes
        encoded = len(json.dumps(text[:keep], ensure_ascii=False).encode("utf-8")) - 2
        if encoded + 16 <= room:
            break
        keep = min(keep - 1, keep * (room - 16) // encoded)
    return cut(text[:max(keep, 0)])


class _FitToDestination(beam.DoFn):
    """Every letter within ``limit_bytes`` (:func:`fit_dead_letter`), counting the cut ones."""

    def __init__(self, pipeline: str, limit_bytes: int) -> None:
        self._limit = limit_bytes
        self._truncated = Metrics.counter(pipeline, "dead_letters_truncated")

    def _fit(self, letter: DeadLetter) -> DeadLetter:
        fitted = fit_dead_letter(letter, self._limit)
        if fitted is not letter:
            self._truncated.inc()
        return fitted

    def process(self, element: DeadLetter | DeadLetterBatch):
        if isinstance(element, DeadLetterBatch):
            letters = [self._fit(letter) for letter in element.letters]
            yield element if all(a is b for a, b in zip(letters, element.letters, strict=True)) \
                else DeadLetterBatch(letters)
        else:
            yield self._fit(element)


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
    :param limit_bytes: the largest letter (JSON bytes) the target takes; larger ones are
        cut to fit (:func:`fit_dead_letter`). Default: :data:`FILE_LIMIT_BYTES` for a
        directory, :data:`KAFKA_LIMIT_BYTES` / :data:`PUBSUB_LIMIT_BYTES` for a topic.
    """

    def __init__(
        self,
        target: Optional[str],
        *,
        pipeline: str,
        streaming: bool,
        writer: Optional[beam.PTransform] = None,
        limit_bytes: Optional[int] = None,
    ) -> None:
        super().__init__()
        self._target = target
        self._pipeline = pipeline
        self._streaming = streaming
        self._scheme = message_scheme(target)  # None: a Beam filesystem directory
        if self._scheme and writer is None:
            raise ConfigError("--dead_letter", f"a writer for {self._scheme}:// targets", target)
        self._writer = writer
        if limit_bytes is not None and (isinstance(limit_bytes, bool)
                                        or not isinstance(limit_bytes, int) or limit_bytes < 1):
            raise ConfigError("limit_bytes", "a whole number of bytes > 0", limit_bytes)
        self._limit_bytes = limit_bytes

    def limit_bytes(self) -> int:
        """The largest letter (JSON bytes) the target takes."""
        if self._limit_bytes is not None:
            return self._limit_bytes
        return _MESSAGE_LIMITS.get(self._scheme or "", FILE_LIMIT_BYTES)

    def expand(self, letters):
        counted = letters | "Count" >> beam.ParDo(_CountDeadLetters(self._pipeline))
        if not self._target:
            return counted
        counted = counted | "FitToDestination" >> beam.ParDo(
            _FitToDestination(self._pipeline, self.limit_bytes()))
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
