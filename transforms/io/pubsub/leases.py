"""Ack deadlines of read, not yet acknowledged messages, kept from expiring."""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Iterable

from apache_beam.metrics import Metrics

__all__ = ["Leases"]

_LOG = logging.getLogger(__name__)
_NAMESPACE = "pubsub"
_ACK_CHUNK = 2500  # the service's limit of ack ids per request
DEDUP_CAPACITY = 100_000
_MAX_LEASE = 3600.0  # stop extending a message nobody acknowledged after an hour
_FIRST_DEADLINE = 10.0  # the shortest ack deadline a subscription can have
_LEASE_TICK = 1.0  # how often the lease thread looks for deadlines about to run out
_LEASE_MARGIN = 5.0  # extend a deadline this many seconds before it runs out


class Leases:
    """Keeps ack deadlines of read, not yet acknowledged messages from expiring.

    One per DoFn instance; a daemon thread extends deadlines shortly before they run
    out. ``release`` (teardown) hands unacknowledged messages back at once.
    """

    def __init__(self, client, subscription: str, extension: int) -> None:
        self._client = client
        self._subscription = subscription
        self._extension = extension
        self._lock = threading.Lock()
        self._leases: dict[str, tuple[float, float]] = {}  # ack id -> (expires, started)
        self._acked: collections.OrderedDict = collections.OrderedDict()
        self._to_ack: list[str] = []  # acknowledged by the lease thread, in batches
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pubsub-leases", daemon=True)
        self._thread.start()

    def add(self, ack_ids: Iterable[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for ack_id in ack_ids:
                self._leases[ack_id] = (now + _FIRST_DEADLINE, now)

    def ack(self, ack_ids: Iterable[str]) -> None:
        """Acknowledge ``ack_ids`` (once each, as far as this instance knows)."""
        with self._lock:
            todo = [a for a in ack_ids if a not in self._acked]
            for ack_id in todo:
                self._leases.pop(ack_id, None)
                self._acked[ack_id] = None
            while len(self._acked) > DEDUP_CAPACITY:
                self._acked.popitem(last=False)
        for start in range(0, len(todo), _ACK_CHUNK):
            chunk = todo[start:start + _ACK_CHUNK]
            try:
                self._client.acknowledge(
                    request={"subscription": self._subscription, "ack_ids": chunk}
                )
                Metrics.counter(_NAMESPACE, "messages_acked").inc(len(chunk))
            except Exception as exc:  # they will be redelivered: at least once, never lost
                _LOG.warning("Pub/Sub: acknowledging %d messages failed (%s); they will be "
                             "redelivered", len(chunk), exc)

    def ack_soon(self, ack_ids: Iterable[str]) -> None:
        """Acknowledge ``ack_ids`` from the lease thread, batched with others (a runner
        that finalizes each message on its own calls this once per message)."""
        with self._lock:
            self._to_ack.extend(ack_ids)
        self._wake.set()

    def _flush_acks(self) -> None:
        with self._lock:
            todo, self._to_ack = self._to_ack, []
        if todo:
            self.ack(todo)

    def _modify(self, ack_ids: list[str], seconds: int) -> None:
        for start in range(0, len(ack_ids), _ACK_CHUNK):
            self._client.modify_ack_deadline(request={
                "subscription": self._subscription,
                "ack_ids": ack_ids[start:start + _ACK_CHUNK],
                "ack_deadline_seconds": seconds,
            })

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(_LEASE_TICK)
            self._wake.clear()
            self._flush_acks()
            now = time.monotonic()
            with self._lock:
                for ack_id, (_, started) in list(self._leases.items()):
                    if now - started > _MAX_LEASE:
                        del self._leases[ack_id]
                due = [a for a, (expires, _) in self._leases.items() if expires - now < _LEASE_MARGIN]
                for ack_id in due:
                    self._leases[ack_id] = (now + self._extension, self._leases[ack_id][1])
            if due:
                try:
                    self._modify(due, self._extension)
                except Exception as exc:
                    _LOG.warning("Pub/Sub: extending %d ack deadlines failed: %s", len(due), exc)

    def release(self, ack_ids: Iterable[str] | None = None) -> None:
        """Hand messages back for redelivery now: ``ack_ids``, or all (and stop)."""
        if ack_ids is None:
            self._flush_acks()  # what is safe to acknowledge goes first
        with self._lock:
            if ack_ids is None:
                self._stop.set()
                self._wake.set()
                pending = list(self._leases)
                self._leases.clear()
            else:
                pending = [a for a in ack_ids if self._leases.pop(a, None) is not None]
        if pending:
            try:
                self._modify(pending, 0)
            except Exception as exc:
                _LOG.warning("Pub/Sub: releasing %d unacknowledged messages failed (%s); "
                             "they are redelivered after their ack deadline", len(pending), exc)
