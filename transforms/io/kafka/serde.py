"""Bytes in and out: deserializing read records (failures become dead letters), the
default JSON serializer of the writer, and conversions to the pipelines' raw records."""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, Union

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.base.errors import ConfigError
from transforms.io.kafka.client import first_line
from transforms.io.kafka.records import (
    DEAD_LETTERS,
    NAMESPACE,
    Deserializer,
    KafkaBatch,
    KafkaRecord,
    TimestampFn,
)
from transforms.io.kafka.rules import is_time
from transforms.records import DeadLetter, RawBatch, RawRecord
from transforms.sinks import as_dict

__all__ = ["json_event_time", "to_json_bytes", "to_raw_batch", "to_raw_record"]


def _as_is(value: Any) -> Any:
    return value


def deserializer(spec: Deserializer, flag: str) -> Callable[[Optional[bytes]], Any]:
    if callable(spec):
        return lambda b: None if b is None else spec(b)
    if spec == "bytes":
        return _as_is
    if spec in ("utf-8", "utf8", "str"):
        return lambda b: None if b is None else b.decode("utf-8")
    if spec == "json":
        return lambda b: None if b is None else json.loads(b)
    raise ConfigError(flag, "bytes|utf-8|json or a function of bytes", spec)


class Deserialize(beam.DoFn):
    def __init__(self, key_fn, value_fn, pipeline: str) -> None:
        self._key_fn = key_fn
        self._value_fn = value_fn
        self._pipeline = pipeline
        self._failed = Metrics.counter(NAMESPACE, "records_not_deserialized")

    def process(self, record: Union[KafkaRecord, KafkaBatch]):
        if isinstance(record, KafkaBatch):
            yield from self._batch(record)
            return
        try:
            yield record._replace(key=self._key_fn(record.key), value=self._value_fn(record.value))
        except Exception as exc:
            yield self._dead_letter(record, exc)

    def _batch(self, batch: KafkaBatch):
        if self._key_fn is _as_is and self._value_fn is _as_is:
            yield batch
            return
        kept: list[KafkaRecord] = []
        for record in batch.records():
            try:
                kept.append(record._replace(key=self._key_fn(record.key),
                                            value=self._value_fn(record.value)))
            except Exception as exc:
                yield self._dead_letter(record, exc)
        if kept:
            yield batch._replace(
                offsets=[r.offset for r in kept], timestamps=[r.timestamp for r in kept],
                timestamp_types=[r.timestamp_type for r in kept], keys=[r.key for r in kept],
                values=[r.value for r in kept], headers=[r.headers for r in kept])

    def _dead_letter(self, record: KafkaRecord, exc: Exception) -> beam.pvalue.TaggedOutput:
        self._failed.inc()
        origin = {"source": "kafka", "topic": record.topic, "partition": record.partition,
                  "offset": record.offset}
        return beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter.of(
            self._pipeline, "deserialize", f"cannot deserialize: {first_line(exc)}",
            record.value or b"", origin, "deserialize"))


def to_raw_record(record: KafkaRecord) -> RawRecord:
    """KafkaRecord -> the pipelines' RawRecord, keeping where it came from for dead letters."""
    return RawRecord(
        record.value if isinstance(record.value, bytes) else bytes(record.value or b""),
        {"source": "kafka", "topic": record.topic, "partition": record.partition,
         "offset": record.offset},
    )


def to_raw_batch(batch: KafkaBatch) -> RawBatch:
    """KafkaBatch -> RawBatch: the payloads, with each record's origin as :func:`to_raw_record` gives it."""
    return RawBatch(
        [v if isinstance(v, bytes) else bytes(v or b"") for v in batch.values],
        {"source": "kafka", "topic": batch.topic, "partition": batch.partition},
        "offset",
        batch.offsets,
    )


def json_event_time(field: str = "timestamp",
                    decode: Optional[Callable[[bytes], Any]] = None) -> TimestampFn:
    """Event time from a JSON payload's ``field`` (epoch seconds); log time when unreadable.

    ``decode`` reads payloads of another format (an Avro/Protobuf/JSON Schema decoder's
    ``decode``; default ``json.loads``)."""
    read = decode or json.loads

    def event_time(record: KafkaRecord) -> float:
        try:
            value = read(record.value)[field]
            if is_time(value):
                return float(value)
        except Exception:  # malformed payloads are dead-lettered later; keep their log time
            pass
        return record.timestamp

    return event_time


def to_json_bytes(record: Any) -> bytes:
    """Default serializer: bytes as they are, str as UTF-8, NamedTuple/dict as a JSON object."""
    if isinstance(record, bytes):
        return record
    if isinstance(record, str):
        return record.encode("utf-8")
    return json.dumps(as_dict(record), ensure_ascii=False, default=str,
                      separators=(",", ":")).encode("utf-8")


def as_bytes(value: Any) -> Optional[bytes]:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
