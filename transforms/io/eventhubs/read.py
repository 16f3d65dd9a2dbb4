"""Azure Event Hubs source and sink on every Beam runner (extra ``[eventhubs]``).

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
least once), never loses them. Two stores: Azure Blob Storage in the layout of
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

import concurrent.futures
import datetime as _dt
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from typing import Any, Iterator, NamedTuple, Optional

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from beam_pipelines.options import eventhubs as eh_options
from beam_pipelines.options.eventhubs import redact
from transforms.base.errors import ConfigError, SinkError, SourceError
from transforms.base.extras import require
from transforms.records import RawRecord

_LOG = logging.getLogger(__name__)
_NAMESPACE = "eventhubs"
_UNBOUNDED = sys.maxsize
_ABANDONED = 60.0  # seconds without a pull after which a reader closes itself
_CONNECT_WAIT = 30.0  # a bounded read's first event may take this long (connect, auth, attach)


def _client_module():
    return require("eventhubs", "azure.eventhub")


def _check_connection(connection_string: str, eventhub: Optional[str], flag: str) -> str:
    if not isinstance(connection_string, str) or not connection_string:
        raise ConfigError("--eventhubs_connection_string", eh_options.CONNECTION_FORM)
    try:
        eh_options.connection_string(connection_string)
    except Exception:
        raise ConfigError("--eventhubs_connection_string", eh_options.CONNECTION_FORM,
                          redact(connection_string)) from None
    fields = {k.strip().lower(): v for k, _, v in
              (p.partition("=") for p in connection_string.split(";")) if k}
    hub = eventhub or fields.get("entitypath")
    if not hub:
        raise ConfigError(flag, "an event hub name (or EntityPath= in the connection string)")
    return hub


def _consumer(connection_string: str, eventhub: str, consumer_group: str, retries: int = 2):
    azure_eh = _client_module()
    return azure_eh.EventHubConsumerClient.from_connection_string(
        str.__str__(connection_string), consumer_group=consumer_group, eventhub_name=eventhub,
        retry_total=retries,
    )


def _with_retries(call, *args, attempts: int = 3):
    """``call(*args)``, retried with backoff, except for errors that will not go away
    (an unknown hub or partition, a refused token): those fail at once."""
    for attempt in range(attempts):
        try:
            return call(*args)
        except Exception as exc:
            text = str(exc)
            permanent = any(mark in text for mark in (
                "404", "NotFound", "not-found", "could not be found", "401", "Unauthorized"))
            if permanent or attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2 ** attempt)  # backoff between attempts, not synchronisation
    raise AssertionError("unreachable")


def _wrap(error: Exception, what: str, kind: type = SourceError) -> Exception:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return kind(f"Event Hubs: {what}: {redact(text)}")


# ---- checkpoint stores -----------------------------------------------------------------

class Checkpoint(NamedTuple):
    sequence_number: int
    offset: str


class _FileCheckpoints:
    """Our own committed state: DIR/<namespace>/<hub>/<group>/<partition>.json."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, namespace: str, hub: str, group: str, partition: str) -> str:
        safe = [part.replace("/", "_").replace(":", "_") for part in (namespace, hub, group)]
        return os.path.join(self.directory, *safe, f"{partition}.json")

    def get(self, namespace: str, hub: str, group: str, partition: str) -> Optional[Checkpoint]:
        try:
            with open(self._path(namespace, hub, group, partition), encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        return Checkpoint(int(data["sequence_number"]), str(data["offset"]))

    def put(self, namespace: str, hub: str, group: str, partition: str, point: Checkpoint) -> None:
        path = self._path(namespace, hub, group, partition)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"sequence_number": point.sequence_number, "offset": point.offset}, handle)
        os.replace(tmp, path)  # atomic: a reader sees the old or the new checkpoint

    def close(self) -> None:
        pass


class _BlobCheckpoints:
    """azure-eventhub-checkpointstoreblob's BlobCheckpointStore (the container is created)."""

    def __init__(self, connection_string: str, container: str) -> None:
        blob = require("eventhubs", "azure.eventhub.extensions.checkpointstoreblob")
        self.store = blob.BlobCheckpointStore.from_connection_string(
            str.__str__(connection_string), container)
        try:
            self.store._container_client.create_container()
        except Exception as exc:
            if "ContainerAlreadyExists" not in str(exc) and "already exists" not in str(exc):
                raise _wrap(exc, f"cannot create checkpoint container {container!r}") from None

    def get(self, namespace: str, hub: str, group: str, partition: str) -> Optional[Checkpoint]:
        for item in self.store.list_checkpoints(namespace, hub, group):
            if str(item["partition_id"]) == partition:
                return Checkpoint(int(item["sequence_number"]), str(item["offset"]))
        return None

    def put(self, namespace: str, hub: str, group: str, partition: str, point: Checkpoint) -> None:
        self.store.update_checkpoint({
            "fully_qualified_namespace": namespace, "eventhub_name": hub,
            "consumer_group": group, "partition_id": partition,
            "sequence_number": point.sequence_number, "offset": point.offset,
        })

    def close(self) -> None:
        self.store.close()


def open_checkpoint_store(spec: Optional[str], container: str):
    if not spec:
        return None
    if spec.startswith("file://"):
        return _FileCheckpoints(spec[len("file://"):])
    try:
        return _BlobCheckpoints(spec, container)
    except Exception as exc:
        if isinstance(exc, (SourceError, ConfigError)):
            raise
        raise _wrap(exc, "cannot open the checkpoint store") from None


# ---- reading -----------------------------------------------------------------------------

class _Task(NamedTuple):
    """One partition to read: sequence numbers [start, stop)."""

    partition: str
    start: int
    stop: int
    last: int = -1  # the partition's last sequence number when the read was planned


class _ReadConfig(NamedTuple):
    connection_string: str
    eventhub: str
    consumer_group: str
    start_at: str
    bounded: bool
    max_events: Optional[int]
    owner_level: Optional[int]
    checkpoint_store: Optional[str]
    checkpoint_container: str
    event_time_field: Optional[str]
    idle_timeout: float


def _event_position(start_at: str):
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
    return eh_options.parse_time(start_at), True


class _PlanPartitions(beam.DoFn):
    """Impulse -> one _Task per partition, with its first and (bounded) last sequence number."""

    def __init__(self, config: _ReadConfig) -> None:
        self._config = config

    def process(self, _):
        config = self._config
        client = _consumer(config.connection_string, config.eventhub, config.consumer_group,
                           retries=0)
        store = open_checkpoint_store(config.checkpoint_store, config.checkpoint_container)
        try:
            try:
                ids = _with_retries(client.get_partition_ids)
                # One management round trip per partition, each ~0.4 s of client-side
                # polling: ask for all partitions at once.
                with concurrent.futures.ThreadPoolExecutor(min(16, len(ids) or 1)) as pool:
                    properties = list(pool.map(
                        lambda p: _with_retries(client.get_partition_properties, p), ids))
            except Exception as exc:
                raise _wrap(exc, f"cannot read hub {config.eventhub!r}") from None
            for partition, props in zip(ids, properties, strict=True):
                begin = props["beginning_sequence_number"]
                last = props["last_enqueued_sequence_number"]
                point = store.get(client._address.hostname, config.eventhub,
                                  config.consumer_group, partition) if store else None
                if point is not None:
                    start = point.sequence_number + 1
                else:
                    start = self._start(partition, props)
                stop = last + 1 if config.bounded else _UNBOUNDED
                if config.max_events:
                    stop = min(stop, start + config.max_events)
                yield _Task(partition, max(start, begin), max(stop, start), last)
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
        position, inclusive = _event_position(start_at)
        if props["is_empty"]:
            return last + 1
        if isinstance(position, _dt.datetime):
            if props["last_enqueued_time_utc"] < position:
                return last + 1
        elif int(props["last_enqueued_offset"]) <= int(position):
            return last + 1
        reader = _PartitionReader(self._config, partition, position, inclusive)
        try:
            for event in reader.events(0, connect_wait=_CONNECT_WAIT):
                return event.sequence_number
            raise SourceError(
                f"Event Hubs: partition {partition} of {self._config.eventhub!r}: no event at "
                f"{start_at!r} within {_CONNECT_WAIT:g}s although the partition has later events")
        finally:
            reader.close()


class _PartitionReader:
    """A background receive loop on one partition feeding a queue (the client's API is
    callback-based; the DoFn pulls from the queue so it can stop at any event)."""

    def __init__(self, config: _ReadConfig, partition: str, position: Any, inclusive: bool) -> None:
        self.partition = partition
        self.queue: queue.Queue = queue.Queue(maxsize=10_000)
        self.client = _consumer(config.connection_string, config.eventhub, config.consumer_group)
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
                raise _wrap(item, f"reading partition {self.partition}") from None
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


class _PartitionRestrictions(RestrictionProvider):
    def initial_restriction(self, task: _Task) -> OffsetRange:
        return OffsetRange(task.start, task.stop)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return _SequenceTracker(restriction)

    def split(self, task: _Task, restriction: OffsetRange):
        yield restriction  # a partition is read in order by one reader

    def restriction_size(self, task: _Task, restriction: OffsetRange) -> int:
        return min(restriction.size(), 1 << 30)


class _SequenceTracker(OffsetRestrictionTracker):
    def is_bounded(self) -> bool:
        return self.current_restriction().stop < _UNBOUNDED


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
                return eh_options.parse_time(value).timestamp()
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
_SHARED_READERS: dict[_ReadConfig, dict[str, tuple[_PartitionReader, int]]] = {}
_SHARED_LOCK = threading.Lock()


def _shared_readers(config: _ReadConfig) -> dict[str, tuple[_PartitionReader, int]]:
    """The readers of ``config``. Beam's bundle-based direct runner hands every invocation
    a fresh copy of the DoFn and checkpoints an invocation after a second: with a reader
    per copy, a partition whose connection took longer than that (a loaded machine) was
    split before its first event and reconnected from scratch on every resume, never to
    read. A resumed restriction now continues on the connected reader at its position."""
    with _SHARED_LOCK:
        return _SHARED_READERS.setdefault(config, {})


class _ReadPartitions(beam.DoFn):
    def __init__(self, config: _ReadConfig) -> None:
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

    def _reader(self, partition: str, start: int) -> _PartitionReader:
        current = self._readers.get(partition)
        if current and current[1] == start and not current[0].closed.is_set():
            return current[0]
        if current:
            current[0].close()
        reader = _PartitionReader(self._config, partition, start, True)
        self._readers[partition] = (reader, start)
        if self._namespace is None:
            self._namespace = reader.client._address.hostname
        return reader

    def process(
        self,
        task: _Task,
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
        # Not tracker.is_bounded(): Beam 2.77's RestrictionTrackerView drops its result.
        bounded = restriction.stop < _UNBOUNDED
        wait = config.idle_timeout if bounded else min(config.idle_timeout, 0.25)
        # Events known to exist (enqueued before the read was planned): waiting for the
        # first one is connecting, not idleness.
        connect_wait = _CONNECT_WAIT if restriction.start <= task.last else None
        for event in reader.events(wait, connect_wait=connect_wait):
            if event.sequence_number < expected:
                continue  # already read (a restarted reader may deliver from an older point)
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
            yield TimestampedValue(RawRecord(_body(event), origin), moment)
            if expected >= restriction.stop:
                break
            if count >= 1000 and not bounded:
                break  # let the runner commit; the residual continues from here
        self._readers[task.partition] = (reader, expected)
        self._events.inc(count)
        if last is not None and self._store is not None:
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
        if count == 0:
            watermark.set_watermark(Timestamp.of(time.time() - 1.0))
        tracker.defer_remainder(Duration.of(0.2 if count == 0 else 0))


class ReadFromEventHubs(beam.PTransform):
    """Event Hubs -> RawRecord(event body, origin), one restriction per partition.

    Bounded (a batch read) when ``stop_at="end"`` or ``max_events`` is set.
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
        hub = _check_connection(connection_string, eventhub, "--eventhub")
        for flag, parse, value in (
            ("--eventhubs_start_at", eh_options.start_at, start_at),
            ("--eventhubs_stop_at", eh_options.stop_at, stop_at),
            ("--eventhubs_checkpoint_container", eh_options.container_name, checkpoint_container),
        ):
            try:
                parse(value)
            except Exception as exc:
                raise ConfigError.from_message(f"{flag}: {exc}") from None
        if checkpoint_store is not None:
            try:
                eh_options.checkpoint_store(checkpoint_store)
            except Exception:
                raise ConfigError("--eventhubs_checkpoint_store", eh_options.STORE_FORM,
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
        self._config = _ReadConfig(
            connection_string, hub, consumer_group, start_at, stop_at == "end", max_events,
            owner_level, checkpoint_store, checkpoint_container, event_time_field,
            float(idle_timeout))

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "PlanPartitions" >> beam.ParDo(_PlanPartitions(self._config))
            | "Reshuffle" >> beam.Reshuffle()
            | "ReadPartitions" >> beam.ParDo(_ReadPartitions(self._config))
        )


# ---- writing -----------------------------------------------------------------------------

def _json_default(value: Any) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "_asdict"):
        return value._asdict()
    return str(value)


class _WriteEvents(beam.DoFn):
    def __init__(self, connection_string: str, eventhub: str, key_field: Optional[str]) -> None:
        self._connection_string = connection_string
        self._eventhub = eventhub
        self._key_field = key_field
        self._written = Metrics.counter(_NAMESPACE, "events_written")

    def setup(self) -> None:
        azure_eh = _client_module()
        self._client = azure_eh.EventHubProducerClient.from_connection_string(
            str.__str__(self._connection_string), eventhub_name=self._eventhub, retry_total=2)
        self._event_data = azure_eh.EventData

    def start_bundle(self) -> None:
        self._pending: dict[Optional[str], list[bytes]] = {}

    def process(self, record: Any) -> None:
        from transforms.sinks import as_dict

        row = record if isinstance(record, (bytes, str)) else as_dict(record)
        if isinstance(row, str):
            row = row.encode("utf-8")
        body = row if isinstance(row, bytes) else json.dumps(row, default=_json_default).encode()
        key = None
        if self._key_field and isinstance(row, dict) and row.get(self._key_field) is not None:
            key = str(row[self._key_field])
        self._pending.setdefault(key, []).append(body)
        if sum(len(v) for v in self._pending.values()) >= 5000:
            self._flush()

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        try:
            for key, bodies in self._pending.items():
                batch = self._client.create_batch(partition_key=key)
                for body in bodies:
                    try:
                        batch.add(self._event_data(body))
                    except ValueError:  # the batch is full: send it, start the next
                        self._client.send_batch(batch)
                        batch = self._client.create_batch(partition_key=key)
                        batch.add(self._event_data(body))
                if len(batch):
                    self._client.send_batch(batch)
                self._written.inc(len(bodies))
        except Exception as exc:
            if isinstance(exc, SinkError):
                raise
            raise _wrap(exc, f"cannot write to {self._eventhub!r}", SinkError) from None
        self._pending = {}

    def teardown(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()


class WriteToEventHubs(beam.PTransform):
    """Records (NamedTuple, dict, str or bytes) -> one event each, JSON for records,
    batched per partition key (the ``partition_key_field`` of each record)."""

    def __init__(self, connection_string: str, eventhub: Optional[str] = None, *,
                 partition_key_field: Optional[str] = None) -> None:
        super().__init__()
        self._eventhub = _check_connection(connection_string, eventhub, "--eventhub")
        self._connection_string = connection_string
        self._key_field = partition_key_field

    def expand(self, records: beam.PCollection) -> beam.pvalue.PDone:
        records | "Send" >> beam.ParDo(
            _WriteEvents(self._connection_string, self._eventhub, self._key_field))
        return beam.pvalue.PDone(records.pipeline)


# ---- --source / --sink ------------------------------------------------------------------

def _options(options):
    return options.view_as(eh_options.EventHubsOptions)


def source_from_options(options):
    """``--source=eventhubs``: bounded with ``--eventhubs_stop_at end`` or ``--eventhubs_max_events``."""
    from beam_pipelines.skeleton.sources import SourceSpec

    _client_module()
    eh = _options(options)
    if not eh.eventhubs_connection_string:
        raise ConfigError("--eventhubs_connection_string",
                          f"{eh_options.CONNECTION_FORM} when --source=eventhubs")
    read = ReadFromEventHubs(
        eh.eventhubs_connection_string, eh.eventhub,
        consumer_group=eh.eventhubs_consumer_group, start_at=eh.eventhubs_start_at,
        stop_at=eh.eventhubs_stop_at, max_events=eh.eventhubs_max_events,
        owner_level=eh.eventhubs_owner_level, checkpoint_store=eh.eventhubs_checkpoint_store,
        checkpoint_container=eh.eventhubs_checkpoint_container,
        event_time_field=eh.eventhubs_event_time_field, idle_timeout=eh.eventhubs_idle_timeout,
    )
    return SourceSpec(read, bounded=read.bounded)


def sink_from_options(options, *, pipeline: str, streaming: bool) -> beam.PTransform:
    """``--sink=eventhubs``: JSON of each record to ``--eventhub``."""
    _client_module()
    eh = _options(options)
    if not eh.eventhubs_connection_string:
        raise ConfigError("--eventhubs_connection_string",
                          f"{eh_options.CONNECTION_FORM} when --sink=eventhubs")
    return WriteToEventHubs(eh.eventhubs_connection_string, eh.eventhub,
                            partition_key_field=eh.eventhubs_partition_key_field)
