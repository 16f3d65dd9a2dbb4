"""Committing offsets to a consumer group once the runner has finalized a bundle.

Two ways in. :meth:`Committer.callback` commits the offset after a finalized bundle, as
Beam's contract has it (a runner with checkpoints finalizes a bundle once its state is
durable). :meth:`Committer.tracked` is for a runner that defers finalization until
everything derived from a read is written (the local streaming runner, see
:mod:`transforms.delivery`): there reads finish out of order (a window still open holds
an early poll back while later polls are done), so the committer asks the run's gate
where the partition is safe, and commits that offset with the metadata a restart needs
(:meth:`transforms.delivery.Position.metadata`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Hashable, Optional

from apache_beam.metrics import Metrics

from transforms.base.extras import require
from transforms.delivery import Gate
from transforms.io.kafka import client
from transforms.io.kafka.client import first_line
from transforms.io.kafka.records import NAMESPACE

__all__ = ["Committer"]

_LOG = logging.getLogger(__name__)


class Committer:
    """Commits offsets to the group from bundle-finalization callbacks.

    A bounded read commits in the callback (when the run ends, the group's offsets are
    where the read stopped). An unbounded read hands the offset to a committing thread
    and returns: the runner's thread does not wait for the broker once per bundle and
    partition (on the local runner that was 10-20 ms each, several times a second), and
    offsets that arrive while a commit is in flight go together in the next one. Either
    way an offset is committed only after its bundle was finalized, and never moved
    backwards; :meth:`flush` waits for what was handed over.
    """

    def __init__(self, config, group: str) -> None:
        self._config = config
        self._group = group
        self._lock = threading.Lock()  # the client and _committed
        self._consumer: Any = None
        self._committed: dict[tuple[str, int], tuple[int, str]] = {}
        self._pending: dict[tuple[str, int], tuple[int, str]] = {}
        self._streams: dict[tuple[str, int], tuple[Gate, Hashable]] = {}
        self._in_flight = False
        self._cond = threading.Condition()  # _pending and _in_flight
        self._thread: Optional[threading.Thread] = None
        self._commits = Metrics.counter(NAMESPACE, "offset_commits")

    def callback(self, topic: str, partition: int, next_offset: int, *,
                 wait: bool = True) -> Callable[[], None]:
        """Commit ``next_offset`` when called (a finalized bundle); never backwards."""
        def commit() -> None:
            self._commits.inc()
            tp = (topic, partition)
            if wait:
                self._commit({tp: (next_offset, "")})
                return
            with self._cond:
                current = self._pending.get(tp)
                if current is None or current[0] < next_offset:
                    self._pending[tp] = (next_offset, "")
                self._wake()

        return commit

    def tracked(self, gate: Gate, stream: Hashable, topic: str, partition: int, *,
                wait: bool = False) -> Callable[[], None]:
        """Commit where ``gate`` says the partition (``stream``) is safe, when called (the
        gate calls it once a read of the partition is done)."""
        def commit() -> None:
            self._commits.inc()
            tp = (topic, partition)
            if wait:
                self._commit_streams({tp: (gate, stream)})
                return
            with self._cond:
                self._streams[tp] = (gate, stream)
                self._wake()

        return commit

    def _wake(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"kafka-commits-{self._group}", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def _commit_streams(self, streams: dict[tuple[str, int], tuple[Gate, Hashable]]) -> None:
        offsets = {}
        for tp, (gate, stream) in streams.items():
            position = gate.position(stream)
            if position is not None:
                offsets[tp] = (position.offset, position.metadata())
        if offsets:
            self._commit(offsets)

    def _commit(self, offsets: dict[tuple[str, int], tuple[int, str]]) -> None:
        kafka = require("kafka", "kafka")
        from kafka.structs import OffsetAndMetadata

        with self._lock:
            moved = {tp: o for tp, o in offsets.items()
                     if self._committed.get(tp, (-1, ""))[0] < o[0]
                     or (self._committed[tp][0] == o[0] and self._committed[tp][1] != o[1])}
            if not moved:
                return  # never move a group's offset backwards
            if self._consumer is None:
                self._consumer = client.consumer(self._config, group_id=self._group)
            self._consumer.commit({kafka.TopicPartition(t, p): OffsetAndMetadata(o, meta, -1)
                                   for (t, p), (o, meta) in moved.items()})
            self._committed.update(moved)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._streams:
                    self._cond.wait()
                offsets, self._pending = self._pending, {}
                streams, self._streams = self._streams, {}
                self._in_flight = True
            try:
                if offsets:
                    self._commit(offsets)
                if streams:
                    self._commit_streams(streams)
            except Exception as exc:  # the next finalized bundle commits a later offset
                _LOG.warning("committing offsets to consumer group %s failed: %s",
                             self._group, first_line(exc))
            finally:
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every offset handed to the committing thread has been committed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._streams or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"offsets of group {self._group} not committed in {timeout} s")
                self._cond.wait(left)

    def close(self) -> None:
        try:
            self.flush()
        except TimeoutError:
            _LOG.warning("closing the committer of group %s with offsets not committed", self._group)
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None
