"""``ReadFromEventHubs``: an Azure Event Hubs source on every Beam runner (extra ``[eventhubs]``).

:class:`ReadFromEventHubs` is a splittable DoFn with **one restriction per partition**:
an offset range of sequence numbers ``[first, last + 1)`` for a bounded read, or
``[first, ∞)`` for an unbounded one. The runner checkpoints the residual range, so a
reader that is moved or restarted by the runner resumes exactly where it stopped.

Where a partition starts:

1. its checkpoint, when ``checkpoint_store`` is given and one exists (the next sequence
   number after it);
2. otherwise ``start_at``: ``earliest``, ``latest``, ``seq:N``, ``offset:O`` (after O) or an
   ISO-8601 enqueued time.

Checkpoints are written from a bundle-finalization callback, i.e. only once the runner
has durably committed the bundle's output: a crash before that re-reads the events (at
least once), never loses them. A runner that keeps its state in memory (the local
streaming runner) calls it only once everything derived from the events is written (an
open window holds it back; see transforms/delivery). Two stores: Azure Blob Storage in the layout of
azure-eventhub-checkpointstoreblob (so EventProcessorClient apps and this reader share
checkpoints), or ``file://DIRECTORY`` (one JSON file per partition, replaced atomically).

Owner level (epoch): with ``owner_level`` set, the service (and our emulator) disconnects
any reader of the same consumer group and partition with a lower level, so two jobs
never both own a partition; the displaced reader fails with a clear error.

Event time is the enqueued time, or a JSON payload field (``event_time_field``).
The watermark follows the event times read, and the wall clock while a partition is idle.

:class:`WriteToEventHubs` writes JSON of each record, batched per partition key (a record
field) so that events with one key land in one partition, in order.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
import time
from typing import Optional

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms import delivery
from transforms.base.errors import ConfigError, SourceError
from transforms.io.eventhubs import rules
from transforms.io.eventhubs.checkpoints import Checkpoint, open_checkpoint_store
from transforms.io.eventhubs.client import check_connection
from transforms.io.eventhubs.plan import PlanPartitions
from transforms.io.eventhubs.receiver import CONNECT_WAIT, PartitionReader
from transforms.io.eventhubs.records import UNBOUNDED, ReadConfig, Task
from transforms.io.eventhubs.rules import redact
from transforms.io.results import ReadResult, no_dead_letters
from transforms.records import RawRecord

__all__ = ["ReadFromEventHubs"]

_LOG = logging.getLogger(__name__)
_NAMESPACE = "eventhubs"
_CHUNK = 100  # events per checkpoint a runner that defers checkpoints tracks
# An unbounded read takes what has arrived and, when that is nothing, checks again after
# IDLE_RESUME seconds (the Kafka reader's IDLE_RESUME). It used to wait up to 0.25 s for
# the next event instead: on a runner with one executor thread (the local streaming
# runner) every idle partition then held the whole pipeline still for that long, so a
# closed window took seconds to reach its sink.
IDLE_RESUME = 0.1


class _PartitionRestrictions(RestrictionProvider):
    def initial_restriction(self, task: Task) -> OffsetRange:
        return OffsetRange(task.start, task.stop)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return _SequenceTracker(restriction)

    def split(self, task: Task, restriction: OffsetRange):
        yield restriction  # a partition is read in order by one reader

    def restriction_size(self, task: Task, restriction: OffsetRange) -> int:
        return min(restriction.size(), 1 << 30)


class _SequenceTracker(OffsetRestrictionTracker):
    def is_bounded(self) -> bool:
        return self.current_restriction().stop < UNBOUNDED


def _iso(moment: _dt.datetime) -> str:
    return moment.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _event_time(event, field: Optional[str]) -> float:
    if field:
        try:
            value = json.loads(event.body_as_str()).get(field)
        except Exception:
            value = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value / 1000.0 if value > 1e11 else float(value)
        if isinstance(value, str):
            try:
                return rules.parse_time(value).timestamp()
            except ValueError:
                pass
    return event.enqueued_time.timestamp()


def _body(event) -> bytes:
    parts = event.body
    if isinstance(parts, (bytes, bytearray)):
        return bytes(parts)
    try:
        return b"".join(bytes(p) for p in parts)
    except TypeError:
        return json.dumps(parts).encode("utf-8")


# Partition readers (connected clients) shared by every copy of a reading DoFn with the
# same configuration: partition -> (reader, next sequence number).
_SHARED_READERS: dict[ReadConfig, dict[str, tuple[PartitionReader, int]]] = {}
_SHARED_LOCK = threading.Lock()


def _shared_readers(config: ReadConfig) -> dict[str, tuple[PartitionReader, int]]:
    """The readers of ``config``. Beam's bundle-based direct runner hands every invocation
    a fresh copy of the DoFn and checkpoints an invocation after a second: with a reader
    per copy, a partition whose connection took longer than that (a loaded machine) was
    split before its first event and reconnected from scratch on every resume, never to
    read. A resumed restriction now continues on the connected reader at its position."""
    with _SHARED_LOCK:
        return _SHARED_READERS.setdefault(config, {})


class _ReadPartitions(beam.DoFn):
    def __init__(self, config: ReadConfig) -> None:
        self._config = config
        self._events = Metrics.counter(_NAMESPACE, "events_read")
        self._checkpoints = Metrics.counter(_NAMESPACE, "checkpoints_written")

    def setup(self) -> None:
        # Also called lazily from process(): the bundle-based direct runner's splittable
        # DoFn driver does not call setup() on the wrapped DoFn.
        self._ready = True
        self._readers = _shared_readers(self._config)
        self._closing: list[threading.Thread] = []
        self._uncommitted: dict[str, tuple[tuple, Checkpoint]] = {}
        self._ends: dict[str, dict[int, str]] = {}  # partition -> {next sequence number: offset}
        self._store = open_checkpoint_store(self._config.checkpoint_store,
                                            self._config.checkpoint_container)
        self._namespace: Optional[str] = None

    def teardown(self) -> None:
        for reader, _ in getattr(self, "_readers", {}).values():
            reader.close()
        for closer in getattr(self, "_closing", []):
            closer.join(10)
        self._readers = {}
        self._closing = []
        if getattr(self, "_store", None):
            self._store.close()

    def _commit(self, key: tuple, point: Checkpoint) -> None:
        self._store.put(*key, point)
        self._checkpoints.inc()

    def _key(self, partition: str) -> tuple:
        config = self._config
        return (self._namespace, config.eventhub, config.consumer_group, partition)

    def _chunk(self, partition: str, first: int, replayed: bool) -> delivery.Commit:
        """A checkpoint the runner calls once every output of the chunk is written (maybe
        after later chunks): it checkpoints where the gate says the partition is safe."""
        gate = delivery.current().gate  # type: ignore[union-attr]  # tracked: a scope exists
        stream = self._key(partition)

        def checkpoint() -> None:
            position = gate.position(stream)
            ends = self._ends.get(partition, {})
            offset = None if position is None else ends.get(position.offset)
            if position is None or offset is None:
                return  # nothing done yet, or a position before this run's first read
            for done in [n for n in ends if n < position.offset]:
                del ends[done]
            self._commit(stream, Checkpoint(position.offset - 1, offset, position.metadata()))

        return delivery.Commit(checkpoint, stream=stream, first=first, next=first + 1,
                               replayed=replayed)

    def _reader(self, partition: str, start: int) -> PartitionReader:
        current = self._readers.get(partition)
        if current and current[1] == start and not current[0].closed.is_set():
            return current[0]
        if current:
            current[0].close()
        reader = PartitionReader(self._config, partition, start, True)
        self._readers[partition] = (reader, start)
        if self._namespace is None:
            self._namespace = reader.client._address.hostname
        return reader

    def process(
        self,
        task: Task,
        # Beam fills positional placeholders first: the finalizer must precede the
        # keyword-filled restriction and watermark parameters.
        finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=beam.DoFn.RestrictionParam(_PartitionRestrictions()),
        watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider()),
    ):
        if not getattr(self, "_ready", False):
            self.setup()
        config = self._config
        restriction = tracker.current_restriction()
        if restriction.start >= restriction.stop:
            return
        pending = self._uncommitted.pop(task.partition, None)
        if pending is not None and pending[1].sequence_number == restriction.start - 1:
            self._commit(*pending)
        reader = self._reader(task.partition, restriction.start)
        expected = restriction.start
        last = None
        count = 0
        # On a runner that defers checkpoints until the outputs are written (the local
        # streaming runner), each chunk of events registers its own checkpoint before its
        # outputs; after a restart a bundle reads either replayed events or new ones.
        tracked = (self._store is not None and delivery.tracked()
                   and getattr(finalizer, "register", None) is not None)
        replaying, segment_end = delivery.replay_segment(task.replay, restriction.start)
        chunks: list[delivery.Commit] = []
        chunk_ends: dict[int, str] = {}  # each chunk's next sequence number -> its last offset
        # Not tracker.is_bounded(): Beam 2.77's RestrictionTrackerView drops its result.
        bounded = restriction.stop < UNBOUNDED
        wait = config.idle_timeout if bounded else 0.0  # unbounded: see IDLE_RESUME
        # Events known to exist (enqueued before the read was planned): waiting for the
        # first one is connecting, not idleness.
        connect_wait = CONNECT_WAIT if restriction.start <= task.last else None
        for event in reader.events(wait, connect_wait=connect_wait):
            if event.sequence_number < expected:
                continue  # already read (a restarted reader may deliver from an older point)
            if segment_end is not None and event.sequence_number >= segment_end:
                reader.put_back(event)  # the next segment, in a bundle of its own
                break
            if not tracker.try_claim(event.sequence_number):
                reader.put_back(event)  # the residual continues on this reader from here
                break
            expected = event.sequence_number + 1
            last = event
            count += 1
            moment = _event_time(event, config.event_time_field)
            origin = {
                "source": "eventhubs", "eventhub": config.eventhub, "partition": task.partition,
                "sequence_number": event.sequence_number, "offset": str(event.offset),
                "enqueued_time": _iso(event.enqueued_time),
            }
            current = watermark.current_watermark()
            if current is None or Timestamp.of(moment) > current:
                watermark.set_watermark(Timestamp.of(moment))
            if tracked:
                if not chunks or chunks[-1].next - chunks[-1].first >= _CHUNK:
                    chunks.append(self._chunk(task.partition, event.sequence_number, replaying))
                    finalizer.register(chunks[-1])
                chunks[-1].next = event.sequence_number + 1
                chunk_ends[chunks[-1].next] = str(event.offset)
            yield TimestampedValue(RawRecord(_body(event), origin), moment)
            if expected >= restriction.stop:
                break
            if count >= 1000 and not bounded:
                break  # let the runner commit; the residual continues from here
        self._readers[task.partition] = (reader, expected)
        self._events.inc(count)
        if chunks:  # where each chunk ends, for the checkpoint that stops there
            self._ends.setdefault(task.partition, {}).update(
                (c.next, chunk_ends[c.next]) for c in chunks)
        if last is not None and self._store is not None and not tracked:
            point = Checkpoint(last.sequence_number, str(last.offset))
            key = (self._namespace, config.eventhub, config.consumer_group, task.partition)
            if getattr(finalizer, "register", None) is not None:
                finalizer.register(lambda: self._commit(key, point))
            else:
                # No bundle finalization (the bundle-based direct runner): the runner hands
                # us the residual only after committing this bundle, so commit then.
                self._uncommitted[task.partition] = (key, point)
        if expected >= restriction.stop:
            self._closing.append(reader.close_in_background())
            self._readers.pop(task.partition, None)
            return
        if segment_end is not None and expected >= segment_end:
            tracker.defer_remainder(Duration.of(0))
            return
        if bounded and not config.bounded:
            # --eventhubs_max_events alone: "at most N", and this partition had fewer.
            _LOG.info("Event Hubs: partition %s of %r idle for %gs after %d events: done",
                      task.partition, config.eventhub, config.idle_timeout, expected - task.start)
            tracker.try_claim(restriction.stop)  # marks the restriction done
            self._closing.append(reader.close_in_background())
            self._readers.pop(task.partition, None)
            return
        if bounded:
            raise SourceError(
                f"Event Hubs: partition {task.partition} of {config.eventhub!r} yielded nothing "
                f"for {config.idle_timeout:g}s at sequence number {expected}, before the end of "
                f"the bounded read ({restriction.stop - 1}); raise --eventhubs_idle_timeout?")
        if count == 0:  # idle: event time keeps pace with the clock (never goes back)
            idle = Timestamp.of(time.time() - 1.0)
            current = watermark.current_watermark()
            if current is None or idle > current:
                watermark.set_watermark(idle)
        tracker.defer_remainder(Duration.of(IDLE_RESUME if count == 0 else 0))


class ReadFromEventHubs(beam.PTransform):
    """Event Hubs -> :class:`~transforms.io.results.ReadResult`: ``records`` are
    RawRecord(event body, origin), one restriction per partition; ``dead_letters`` is
    empty (every event is handed on as its bytes).

    Bounded (a batch read) when ``stop_at="end"`` or ``max_events`` is set.

    :param connection_string: a namespace or hub connection string (never logged).
    :param eventhub: the hub (default: the connection string's EntityPath).
    :param consumer_group: the consumer group to read as; checkpoints are kept per group.
    :param start_at: where a partition without a checkpoint starts: earliest, latest,
        seq:N, offset:O (after O) or an ISO-8601 enqueued time.
    :param stop_at: never (an unbounded read) or end (the last events at launch).
    :param max_events: a bounded read of at most this many events per partition.
    :param owner_level: the readers' owner level (epoch): a higher one takes a partition over.
    :param checkpoint_store: an Azure Storage connection string or ``file://DIRECTORY``
        where positions are checkpointed once the runner committed the bundle.
    :param checkpoint_container: the blob container of Azure Storage checkpoints.
    :param event_time_field: a JSON payload field holding the event time (default: the
        enqueued time).
    :param idle_timeout: bounded reads: fail a partition that yields nothing this long
        while events are still expected.
    """

    def __init__(
        self,
        connection_string: str,
        eventhub: Optional[str] = None,
        *,
        consumer_group: str = "$Default",
        start_at: str = "earliest",
        stop_at: str = "never",
        max_events: Optional[int] = None,
        owner_level: Optional[int] = None,
        checkpoint_store: Optional[str] = None,
        checkpoint_container: str = "eventhubs-checkpoints",
        event_time_field: Optional[str] = None,
        idle_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        hub = check_connection(connection_string, eventhub, "--eventhub")
        for flag, parse, value in (
            ("--eventhubs_start_at", rules.start_at, start_at),
            ("--eventhubs_stop_at", rules.stop_at, stop_at),
            ("--eventhubs_checkpoint_container", rules.container_name, checkpoint_container),
        ):
            try:
                parse(value)
            except Exception as exc:
                raise ConfigError.from_message(f"{flag}: {exc}") from None
        if checkpoint_store is not None:
            try:
                rules.checkpoint_store(checkpoint_store)
            except Exception:
                raise ConfigError("--eventhubs_checkpoint_store", rules.STORE_FORM,
                                  redact(checkpoint_store)) from None
        if max_events is not None and (not isinstance(max_events, int) or max_events <= 0):
            raise ConfigError("--eventhubs_max_events", "a whole number > 0", max_events)
        if owner_level is not None and (not isinstance(owner_level, int) or owner_level < 0):
            raise ConfigError("--eventhubs_owner_level", "a whole number >= 0", owner_level)
        if not consumer_group:
            raise ConfigError("--eventhubs_consumer_group", "a consumer group name", consumer_group)
        if not idle_timeout or idle_timeout <= 0:
            raise ConfigError("--eventhubs_idle_timeout", "a number of seconds > 0", idle_timeout)
        self.bounded = stop_at == "end" or max_events is not None
        self._config = ReadConfig(
            connection_string, hub, consumer_group, start_at, stop_at == "end", max_events,
            owner_level, checkpoint_store, checkpoint_container, event_time_field,
            float(idle_timeout))

    def expand(self, pbegin: beam.pvalue.PBegin) -> ReadResult:
        records = (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "PlanPartitions" >> beam.ParDo(PlanPartitions(self._config))
            | "Reshuffle" >> beam.Reshuffle()
            | "ReadPartitions" >> beam.ParDo(_ReadPartitions(self._config))
        )
        return ReadResult(records, no_dead_letters(pbegin))
