"""Kafka helpers of the fraud pipeline's integration tests: produce transactions keyed by
card with their event time as log time, read decisions back, read committed offsets."""

from __future__ import annotations

import json
import math
from typing import Any

from .support import in_event_time_order_per_card, parse_line


def produce(servers: str, topic: str, ordered: list[tuple[bytes, str]]) -> None:
    """``(line, card)`` pairs in this order, keyed by card, log time = the event time (an
    invalid line: the time of the line before it)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
    last_ms = None
    try:
        for line, card in ordered:
            tx = parse_line(line)
            if tx is not None:
                last_ms = math.floor(tx["t"] * 1000)
            producer.send(topic, line, key=card.encode(), timestamp_ms=last_ms)
        producer.flush()
    finally:
        producer.close()


def ordered_lines(lines: list[bytes]) -> list[tuple[bytes, str]]:
    return in_event_time_order_per_card(lines)


class TopicReader:
    """Reads a topic from its beginning, incrementally: ``poll()`` returns every
    ``(key, decoded JSON value)`` read so far."""

    def __init__(self, servers: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                       auto_offset_reset="earliest")
        partitions = self._consumer.partitions_for_topic(topic) or set()
        self._partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._partitions)
        self._consumer.seek_to_beginning()
        self.messages: list[tuple[bytes, Any]] = []

    def poll(self) -> list[tuple[bytes, Any]]:
        for batch in self._consumer.poll(timeout_ms=200).values():
            self.messages.extend((r.key, json.loads(r.value)) for r in batch)
        return self.messages

    def read_to_end(self) -> list[tuple[bytes, Any]]:
        """Every message written so far (up to the end offsets as of now)."""
        end = self._consumer.end_offsets(self._partitions)
        while any(self._consumer.position(tp) < end[tp] for tp in self._partitions):
            self.poll()
        return self.messages

    def close(self) -> None:
        self._consumer.close()


def committed_total(servers: str, topic: str, group: str) -> tuple[int, int]:
    """(sum of the group's committed offsets, sum of the end offsets) over the topic."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False,
                             session_timeout_ms=6000)
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = consumer.end_offsets(partitions)
        return (sum(consumer.committed(tp) or 0 for tp in partitions), sum(ends.values()))
    finally:
        consumer.close()
