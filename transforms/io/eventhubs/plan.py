"""Planning a read: one task per partition, from its checkpoint or ``start_at`` to the
end of the partition at launch (a bounded read) or to "never"."""

from __future__ import annotations

import concurrent.futures
import datetime as _dt

import apache_beam as beam

from transforms import delivery
from transforms.base.errors import SourceError
from transforms.delivery import Position
from transforms.io.eventhubs import rules
from transforms.io.eventhubs.checkpoints import open_checkpoint_store
from transforms.io.eventhubs.client import consumer_client, with_retries, wrap
from transforms.io.eventhubs.receiver import CONNECT_WAIT, PartitionReader
from transforms.io.eventhubs.records import UNBOUNDED, ReadConfig, Task

__all__ = ["PlanPartitions", "event_position"]

def event_position(start_at: str):
    """The client's starting_position (and whether inclusive) for a start_at flag value."""
    if start_at == "earliest":
        return "-1", False
    if start_at == "latest":
        return "@latest", False
    kind, _, rest = start_at.partition(":")
    if kind == "seq":
        return int(rest), True
    if kind == "offset":
        return rest, False
    return rules.parse_time(start_at), True


def _restore(start: int, metadata: str) -> tuple:
    """On a runner that defers checkpoints (transforms.delivery): hand a checkpoint's
    floors to the run's gate; the ranges it says are read again as "replayed"."""
    scope = delivery.current()
    if scope is None or not metadata:
        return ()
    position = Position.parse(start, metadata)
    scope.restore(position)
    return tuple((max(a, start), b) for a, b in position.settled if b > start)


class PlanPartitions(beam.DoFn):
    """Impulse -> one Task per partition, with its first and (bounded) last sequence number."""

    def __init__(self, config: ReadConfig) -> None:
        self._config = config

    def process(self, _):
        config = self._config
        client = consumer_client(config.connection_string, config.eventhub, config.consumer_group,
                           retries=0)
        store = open_checkpoint_store(config.checkpoint_store, config.checkpoint_container)
        try:
            try:
                ids = with_retries(client.get_partition_ids)
                # One management round trip per partition, each ~0.4 s of client-side
                # polling: ask for all partitions at once.
                with concurrent.futures.ThreadPoolExecutor(min(16, len(ids) or 1)) as pool:
                    properties = list(pool.map(
                        lambda p: with_retries(client.get_partition_properties, p), ids))
            except Exception as exc:
                raise wrap(exc, f"cannot read hub {config.eventhub!r}") from None
            for partition, props in zip(ids, properties, strict=True):
                begin = props["beginning_sequence_number"]
                last = props["last_enqueued_sequence_number"]
                point = store.get(client._address.hostname, config.eventhub,
                                  config.consumer_group, partition) if store else None
                replay: tuple = ()
                if point is not None:
                    start = point.sequence_number + 1
                    replay = _restore(start, point.metadata)
                else:
                    start = self._start(partition, props)
                stop = last + 1 if config.bounded else UNBOUNDED
                if config.max_events:
                    stop = min(stop, start + config.max_events)
                yield Task(partition, max(start, begin), max(stop, start), last, replay)
        finally:
            client.close()
            if store:
                store.close()

    def _start(self, partition: str, props: dict) -> int:
        start_at = self._config.start_at
        begin, last = props["beginning_sequence_number"], props["last_enqueued_sequence_number"]
        if start_at == "earliest":
            return begin
        if start_at == "latest":
            return last + 1
        if start_at.startswith("seq:"):
            return int(start_at[4:])
        # An offset or a time: the first event there tells its sequence number. The
        # partition's last event says whether there is one, so the probe below never
        # mistakes a slow connection for "nothing there".
        position, inclusive = event_position(start_at)
        if props["is_empty"]:
            return last + 1
        if isinstance(position, _dt.datetime):
            if props["last_enqueued_time_utc"] < position:
                return last + 1
        elif int(props["last_enqueued_offset"]) <= int(position):
            return last + 1
        reader = PartitionReader(self._config, partition, position, inclusive)
        try:
            for event in reader.events(0, connect_wait=CONNECT_WAIT):
                return event.sequence_number
            raise SourceError(
                f"Event Hubs: partition {partition} of {self._config.eventhub!r}: no event at "
                f"{start_at!r} within {CONNECT_WAIT:g}s although the partition has later events")
        finally:
            reader.close()
