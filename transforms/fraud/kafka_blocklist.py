"""A blocklist that follows a Kafka topic: ``"list": "kafka://TOPIC"`` in a rules file.

The topic holds one message per blocked value: the message key is the value (UTF-8), any
non-null message value keeps it blocked, and a null value (a tombstone) unblocks it, so a
compacted topic keeps exactly the current list. A message without a key blocks its value
(UTF-8 text; an append-only list). Values are stripped of surrounding whitespace.

The list is read to the end of the topic when the rules are loaded (so the first
decisions see it whole, and a missing topic is a load error naming the rule), then a
thread of each worker follows the topic: additions and removals apply within about a
second, while the stream runs. Between the two, decisions depend on when they are made,
like any list that changes.

The fraud pipeline registers it with the ``--bootstrap_servers`` cluster
(:func:`register_kafka_blocklists`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Mapping, Optional

from transforms.fraud.blocklists import BlocklistSource, register_blocklist_source
from transforms.io.kafka import client
from transforms.io.kafka.client import first_line
from transforms.io.kafka.discovery import check_topics
from transforms.io.kafka.rules import is_topic_name

__all__ = ["KafkaBlocklist", "register_kafka_blocklists"]

_LOG = logging.getLogger(__name__)
_POLL_MS = 500
_LOAD_SECONDS = 30.0


def _text(raw: Optional[bytes]) -> Optional[str]:
    if raw is None:
        return None
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    return value or None


class KafkaBlocklist(BlocklistSource):
    """The values of a Kafka topic (see the module docstring).

    :param config: the client config (:func:`transforms.io.kafka.client_config`).
    :param topic: the topic holding the list.
    """

    def __init__(self, config: Mapping[str, Any], topic: str) -> None:
        if not is_topic_name(topic):
            raise ValueError(f"expected kafka://TOPIC with a topic name, got {topic!r}")
        self.topic = topic
        self.description = f"blocklist topic {topic}"
        self._config = dict(config)
        try:
            self._partitions = check_topics(self._config, [topic], error=ValueError,
                                            flag=f"kafka://{topic}")[topic]
        except ValueError as exc:  # "kafka://T: topic 'T' does not exist ...": once is enough
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
        self._lock = threading.Lock()
        self._entries: dict[str, bool] = {}
        self._values: frozenset[str] = frozenset()
        self._thread: Optional[threading.Thread] = None
        consumer = self._consumer()
        try:
            self._read_to_end(consumer)
        finally:
            consumer.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_lock"] = None
        state["_thread"] = None  # each worker follows the topic with a thread of its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def current(self) -> frozenset[str]:
        if self._thread is None:
            self._start()
        return self._values

    # ---- reading ----------------------------------------------------------------------

    def _consumer(self):
        kafka = client.kafka_module()
        consumer = client.consumer(self._config)
        partitions = [kafka.TopicPartition(self.topic, p) for p in self._partitions]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return consumer

    def _apply(self, records) -> None:
        changed = False
        for record in records:
            key, value = _text(record.key), record.value
            if key is None:
                key, value = _text(value), b""
                if key is None:
                    continue
            blocked = value is not None
            if self._entries.get(key, False) != blocked:
                changed = True
            if blocked:
                self._entries[key] = True
            else:
                self._entries.pop(key, None)
        if changed:
            self._values = frozenset(self._entries)

    def _read_to_end(self, consumer) -> None:
        end = consumer.end_offsets(list(consumer.assignment()))
        deadline = time.monotonic() + _LOAD_SECONDS
        while any(consumer.position(tp) < offset for tp, offset in end.items()):
            if time.monotonic() > deadline:
                raise ValueError(f"could not read topic {self.topic!r} to its end in "
                                 f"{_LOAD_SECONDS:.0f} s")
            for records in consumer.poll(timeout_ms=_POLL_MS).values():
                self._apply(records)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._follow, daemon=True,
                                            name=f"blocklist-{self.topic}")
            self._thread.start()

    def _follow(self) -> None:
        """Follow the topic from its beginning for as long as the process lives."""
        while True:
            try:
                consumer = self._consumer()
                try:
                    while True:
                        for records in consumer.poll(timeout_ms=_POLL_MS).values():
                            self._apply(records)
                finally:
                    consumer.close()
            except Exception as exc:  # keep serving the list read last; try again
                _LOG.warning("%s: following the topic failed, keeping the %d values read "
                             "last: %s", self.description, len(self._values), first_line(exc))
                time.sleep(5)  # a back-off before reconnecting, not synchronisation


def register_kafka_blocklists(config: Mapping[str, Any]) -> None:
    """Make ``"list": "kafka://TOPIC"`` in rules files follow TOPIC on this cluster."""

    def factory(target: str, reload_seconds: float) -> BlocklistSource:
        return KafkaBlocklist(config, target.split("://", 1)[1].strip("/"))

    register_blocklist_source("kafka", factory)
