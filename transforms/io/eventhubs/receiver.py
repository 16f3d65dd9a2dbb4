"""A partition's receive loop in the background, feeding a queue the reading DoFn pulls
from (the client's API is callback-based; the DoFn must be able to stop at any event)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Iterator

from transforms.io.eventhubs.client import consumer_client, wrap
from transforms.io.eventhubs.records import ReadConfig

__all__ = ["PartitionReader"]

_LOG = logging.getLogger(__name__)
_ABANDONED = 60.0  # seconds without a pull after which a reader closes itself
CONNECT_WAIT = 30.0  # a bounded read's first event may take this long (connect, auth, attach)


class PartitionReader:
    """A background receive loop on one partition feeding a queue (the client's API is
    callback-based; the DoFn pulls from the queue so it can stop at any event)."""

    def __init__(self, config: ReadConfig, partition: str, position: Any, inclusive: bool) -> None:
        self.partition = partition
        self.queue: queue.Queue = queue.Queue(maxsize=10_000)
        self.client = consumer_client(config.connection_string, config.eventhub,
                                      config.consumer_group, partition=partition)
        self.closed = threading.Event()
        self.started = False
        self.last_pull = time.monotonic()
        self.waiting = False
        self._put_back: list[Any] = []  # taken but not claimed: the next read starts with it
        kwargs: dict[str, Any] = {
            "partition_id": partition, "starting_position": position,
            "starting_position_inclusive": inclusive, "max_batch_size": 300,
            "max_wait_time": None, "on_error": self._on_error,
        }
        if config.owner_level is not None:
            kwargs["owner_level"] = config.owner_level
        self.thread = threading.Thread(
            target=self._run, args=(kwargs,), daemon=True,
            name=f"eventhubs-reader-{config.eventhub}-{partition}")
        self.thread.start()
        threading.Thread(target=self._watch, daemon=True,
                         name=f"eventhubs-watch-{config.eventhub}-{partition}").start()

    def _run(self, kwargs: dict) -> None:
        try:
            self.client.receive_batch(self._on_batch, **kwargs)
        except Exception as exc:  # surfaced to the DoFn by events()
            self.queue.put(exc)

    def _watch(self) -> None:
        # A reader nobody pulls from for a minute belongs to a cancelled pipeline (runners
        # do not always tear DoFns down): close it, or its client threads live forever.
        while not self.closed.wait(5):
            if not self.waiting and time.monotonic() - self.last_pull > _ABANDONED:
                _LOG.info("Event Hubs: closing the abandoned reader of partition %s",
                          self.partition)
                self.close()
                return

    def _on_batch(self, _context, events) -> None:
        for event in events:
            if self.closed.is_set():
                return
            self.queue.put(event)

    def _on_error(self, _context, error: Exception) -> None:
        if not self.closed.is_set():
            self.queue.put(error)

    def events(self, wait: float, connect_wait: float | None = None) -> Iterator[Any]:
        """Events as they come; returns after ``wait`` seconds without one. When an event is
        known to be there, ``connect_wait`` is the wait for the first one: connecting (auth,
        link attach) on a loaded machine is not idleness."""
        while self._put_back:
            yield self._put_back.pop()
        while True:
            self.last_pull = time.monotonic()
            timeout = wait if self.started or connect_wait is None else max(wait, connect_wait)
            self.waiting = True
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                return
            finally:
                self.waiting = False
                self.last_pull = time.monotonic()
            if isinstance(item, Exception):
                raise wrap(item, f"reading partition {self.partition}") from None
            self.started = True
            yield item
            self.last_pull = time.monotonic()

    def put_back(self, event: Any) -> None:
        """An event taken from :meth:`events` that the reader could not claim (the runner
        split the restriction): the residual, read by the same reader, starts with it."""
        self._put_back.append(event)

    def close(self) -> None:
        self.closed.set()
        try:
            self.client.close()
        finally:
            self.thread.join(10)

    def close_in_background(self) -> threading.Thread:
        """Closing takes the client most of a second: do it while the next partition reads."""
        closer = threading.Thread(target=self.close, daemon=True,
                                  name=f"eventhubs-close-{self.partition}")
        closer.start()
        return closer
