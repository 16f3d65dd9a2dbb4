"""Exactly-once writes to Kafka: records and the consumed offsets in one transaction.

``WriteToKafka(..., exactly_once=ExactlyOnce(group))`` writes with a transactional
producer and commits the reader's offsets of ``group`` inside the same transaction
(``send_offsets_to_transaction``), so a consumer reading the output with
``isolation_level=read_committed`` sees each result once, whatever crashes: a
transaction that did not commit is invisible, and its records are read again.

It needs a runner on which a transaction can follow what the records derive from: the
local streaming runner, whose delivery gate (:mod:`transforms.delivery`) knows which
offsets every record depends on. A bundle of the sink goes into the open transaction;
the transaction commits (on a thread of its own) as soon as everything its records
derive from is settled: their reads have nothing else in flight (dead letters written),
and every window whose last pane it carries is written and dropped, with the positions
and floors that then hold. Until then the records stay pinned, so nothing they derive
from is committed elsewhere. The reader commits nothing itself (``commit_offsets=
"transaction"``): the transaction is the only place offsets move.

One producer per transactional id and process: the runner may run the sink's bundles
on several threads, and two producers with one id would fence each other. A restarted
job with the same id fences the dead one's producer and aborts its open transaction.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any, Hashable, NamedTuple, Optional

from transforms import delivery
from transforms.base.errors import SinkError
from transforms.base.extras import require
from transforms.io.kafka import client
from transforms.io.kafka.client import first_line, servers

__all__ = ["ExactlyOnce", "Transactions"]

_LOG = logging.getLogger(__name__)


class ExactlyOnce(NamedTuple):
    """What an exactly-once Kafka sink needs.

    :param consumer_group: the group whose offsets the reader reads and the transactions
        commit (the pipeline's ``--consumer_group``).
    :param transactional_id: the producer's transactional id: the same for every run of
        the job (a restart fences the dead run's producer), different between jobs.
    """

    consumer_group: str
    transactional_id: str


class Transactions:
    """The transactional producer of one transactional id in this process, shared by the
    sink's DoFn copies (see the module docstring)."""

    _LOCK = threading.Lock()
    _SHARED: dict[str, tuple[Transactions, int]] = {}

    @classmethod
    def acquire(cls, config, spec: ExactlyOnce, topic: str) -> Transactions:
        with cls._LOCK:
            found = cls._SHARED.get(spec.transactional_id)
            if found is None:
                found = (cls(config, spec, topic), 0)
            cls._SHARED[spec.transactional_id] = (found[0], found[1] + 1)
            return found[0]

    def release(self) -> None:
        with self._LOCK:
            shared, users = self._SHARED.get(self._spec.transactional_id, (None, 0))
            if shared is not self:
                return
            if users > 1:
                self._SHARED[self._spec.transactional_id] = (self, users - 1)
                return
            del self._SHARED[self._spec.transactional_id]
        self.close()

    def __init__(self, config, spec: ExactlyOnce, topic: str) -> None:
        kafka = require("kafka", "kafka")
        self._spec = spec
        self._topic = topic
        self._errors = kafka.errors
        settings = client.settings(
            "producer", config, defaults={"linger_ms": 5, "max_block_ms": 30000,
                                          "bootstrap_timeout_ms": 10000},
            acks="all", enable_idempotence=True, transactional_id=spec.transactional_id)
        try:
            self.producer = client.build("producer", settings)
            self.producer.init_transactions()  # fences a dead run's producer, aborts its txn
        except Exception as exc:
            raise SinkError(f"cannot start a Kafka transaction (transactional id "
                            f"{spec.transactional_id!r}) at {servers(settings)}: "
                            f"{first_line(exc)}") from None
        self.lock = threading.RLock()  # held by a bundle from start to finish
        self._owner: Hashable = ("kafka-transaction", spec.transactional_id, uuid.uuid4().hex)
        self._open = False
        self._gate: Optional[delivery.Gate] = None
        self._failure: Optional[str] = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"kafka-transactions-{spec.transactional_id}")
        self._thread.start()

    # ---- the sink's bundles ------------------------------------------------------------

    def begin_bundle(self, scope: delivery.BundleScope) -> None:
        """Called with :attr:`lock` held, at the start of a bundle."""
        if self._failure:
            raise SinkError(self._failure)
        if self._gate is not scope.gate:
            if self._gate is not None:
                self._gate.unlisten(self._wake.set)
            self._gate = scope.gate
            scope.gate.listen(self._wake.set)

    def send(self, value: bytes, key: Optional[bytes], headers) -> Any:
        """Send one record in the open transaction (opened by the first record)."""
        if not self._open:
            self.producer.begin_transaction()
            self._open = True
        return self.producer.send(self._topic, value=value, key=key, headers=headers)

    def end_bundle(self, scope: delivery.BundleScope) -> None:
        """The bundle's records are in the open transaction: they wait for its commit."""
        if self._open:
            scope.staged.ops.append(("pin", self._owner, scope.element))
        self._wake.set()

    def fail(self, reason: str) -> None:
        """A bundle failed: the open transaction never commits (the run fails with it)."""
        self._failure = self._failure or reason

    # ---- committing -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                with self.lock:
                    self._commit_if_ready()
            except Exception as exc:  # the sink's next bundle fails with it
                self._failure = (f"Kafka transaction of {self._spec.transactional_id!r} to topic "
                                 f"{self._topic!r} failed: {first_line(exc)}")
                _LOG.error(self._failure)
                return

    def _commit_if_ready(self) -> None:
        gate = self._gate
        if not self._open or gate is None or self._failure:
            return
        group = self._spec.consumer_group
        positions = gate.transaction(
            self._owner, lambda stream: isinstance(stream, tuple) and stream[0] == group)
        if positions is None:
            return
        kafka = require("kafka", "kafka")
        from kafka.structs import OffsetAndMetadata

        if positions:
            self.producer.send_offsets_to_transaction(
                {kafka.TopicPartition(*_topic_partition(stream)):
                 OffsetAndMetadata(p.offset, p.metadata(), -1)
                 for stream, p in positions.items()}, group)
        self.producer.commit_transaction()
        self._open = False
        gate.unpin(self._owner)

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        with self.lock:
            if self._gate is not None:
                self._gate.unlisten(self._wake.set)
            if self._open:
                try:
                    self.producer.abort_transaction()
                except Exception:  # a dead broker: the next run's init_transactions aborts it
                    pass
                self._open = False
            try:
                self.producer.close(timeout=10)
            except Exception:
                pass


def _topic_partition(stream: Any) -> tuple[str, int]:
    """The topic and partition of a Kafka reader's stream, ``(group, topic, partition)``."""
    _, topic, partition = stream
    return topic, partition
