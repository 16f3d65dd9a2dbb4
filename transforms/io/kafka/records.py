"""The records, constants and position types the Kafka connector's modules share."""

from __future__ import annotations

import sys
from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

__all__ = ["KafkaBatch", "KafkaRecord", "PartitionRead", "NEVER"]

NEVER = sys.maxsize  # the stop offset of an unbounded restriction
# A caught-up partition checks again after IDLE_FIRST seconds, doubling while it stays
# idle up to IDLE_RESUME (its fetch stays in flight meanwhile). Why not a fixed wait: a
# live partition is "caught up" between every two producer batches (linger.ms apart), and
# a fixed 0.1 s there put 50 ms on the median record; an idle one needs no fast polling.
# 3 ms since the runner stopped sending an idle poll's empty bundles down the pipeline
# (patch direct_handoff): an empty check now costs one invocation of the reader, and 20
# ms (the value before) was most of the median decision's wait (fraud, 2k tx/s, 1
# partition: p50 41 -> 27 ms in back-to-back runs).
IDLE_FIRST = 0.003
IDLE_RESUME = 0.1
DEAD_LETTERS = "dead_letters"
WRITTEN = "written"
WATCH = "watch"
NAMESPACE = "kafka"

StartAt = Union[str, float, int, Mapping[Any, int]]
StopAt = Union[str, float, int]
TimestampFn = Callable[["KafkaRecord"], float]
Deserializer = Union[str, Callable[[bytes], Any]]


class KafkaRecord(NamedTuple):
    """One Kafka record as the reader hands it to the pipeline."""

    topic: str
    partition: int
    offset: int
    timestamp: float  # the record's Kafka timestamp, epoch seconds
    timestamp_type: int  # 0 = CreateTime (producer), 1 = LogAppendTime (broker)
    key: Any  # bytes (or deserialized with key_deserializer); None when the record has none
    value: Any  # bytes, str or a JSON value, per value_deserializer
    headers: tuple[tuple[str, bytes], ...]


class KafkaBatch(NamedTuple):
    """The records of one poll of one partition, column by column (``batches=True``).

    One element for up to ``max_poll_records`` records: on a runner that pays a fixed
    cost per element and step (Beam's direct runners, about 25 us), that cost is paid
    once per batch. The element's timestamp is the earliest of its records'.
    """

    topic: str
    partition: int
    offsets: list[int]
    timestamps: list[float]  # Kafka timestamps, epoch seconds
    timestamp_types: list[int]
    keys: list[Any]
    values: list[Any]
    headers: list[tuple[tuple[str, bytes], ...]]

    def records(self) -> list[KafkaRecord]:
        return [
            KafkaRecord(self.topic, self.partition, *fields)
            for fields in zip(self.offsets, self.timestamps, self.timestamp_types, self.keys,
                              self.values, self.headers, strict=True)
        ]


class PartitionRead(NamedTuple):
    """What to read of one partition: offsets [start, stop), and a wall-clock deadline."""

    topic: str
    partition: int
    start: int
    stop: int  # NEVER for an unbounded read
    deadline: Optional[float] = None  # epoch seconds; stop reading at this time
    max_delay: float = 0.0  # watermark = largest timestamp seen - max_delay
    idle_timeout: float = 10.0  # seconds before an idle, caught-up partition's watermark moves
    # After a restart from committed offsets: ranges [a, b) whose outputs had settled when
    # they were committed (transforms.delivery.Position); read again as "replayed".
    replay: tuple[tuple[int, int], ...] = ()
