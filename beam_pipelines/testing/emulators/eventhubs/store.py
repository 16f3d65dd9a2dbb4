"""The emulator's store: hubs, partitions and their events, and the receivers attached."""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["Consumer", "Event", "Hub", "Partition", "now_ms", "partition_for_key"]

_SELECTOR = re.compile(
    r"amqp\.annotation\.x-opt-(?P<field>offset|sequence-number|enqueued-time)\s*"
    r"(?P<op>>=|>|=)\s*'(?P<value>-?\d+|@latest)'"
)


def partition_for_key(key: str, partitions: int) -> int:
    """The partition a partition key maps to: stable across runs and processes."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % partitions


@dataclass
class Event:
    sequence_number: int
    offset: int
    enqueued_ms: int
    partition_key: str | None
    raw: bytes  # the encoded message as the producer sent it


@dataclass
class Partition:
    id: str
    events: list[Event] = field(default_factory=list)
    next_offset: int = 0

    def append(self, raw: bytes, partition_key: str | None, now_ms: int) -> Event:
        event = Event(len(self.events), self.next_offset, now_ms, partition_key, raw)
        self.events.append(event)
        self.next_offset += len(raw)
        return event

    def start_index(self, selector: str | None) -> int:
        """Index of the first event a receiver with this selector filter gets."""
        if not selector:
            return 0
        match = _SELECTOR.search(selector)
        if not match:
            raise ValueError(f"unsupported selector filter {selector!r}")
        if match["value"] == "@latest":
            return len(self.events)
        value = int(match["value"])
        key = {"offset": lambda e: e.offset, "sequence-number": lambda e: e.sequence_number,
               "enqueued-time": lambda e: e.enqueued_ms}[match["field"]]
        inclusive = match["op"] in (">=", "=")
        for index, event in enumerate(self.events):
            if key(event) > value or (inclusive and key(event) == value):
                return index
        return len(self.events)


@dataclass
class Hub:
    name: str
    partitions: list[Partition]
    created_ms: int
    round_robin: Iterator[int] = field(default_factory=itertools.count)

    def partition(self, partition_id: str) -> Partition | None:
        for partition in self.partitions:
            if partition.id == partition_id:
                return partition
        return None


@dataclass
class Consumer:
    link: Any
    hub: str
    group: str
    partition: Partition
    epoch: int | None
    position: int
    tags: Iterator[int] = field(default_factory=itertools.count)


def now_ms() -> int:
    return int(time.time() * 1000)
