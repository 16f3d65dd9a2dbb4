"""``ReadFromKafka``: a splittable DoFn with one restriction per topic-partition.

The restriction is an ``OffsetRange`` of offsets, ``[start, stop)``, where ``stop`` is
"never" for an unbounded read. Why an SDF rather than a plain DoFn looping over a
consumer: the runner can checkpoint (``defer_remainder``) and split the range, so a
streaming pipeline makes progress bundle by bundle, a restarted worker resumes at the
first unclaimed offset, and every offset is claimed exactly once within a run (no record
read twice or skipped). How partitions are found, where they start and stop, watermarks
and offset commits: docs/kafka.md and the modules ``discovery``, ``offsets``,
``watermark`` and ``commit`` of this package.
"""

# Over 500 lines: the splittable DoFn and its restriction provider and tracker are one mechanism.

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.io.iobase import RestrictionTracker
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger
from apache_beam.transforms import window as beam_window
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms import delivery
from transforms.base.errors import ConfigError
from transforms.base.extras import require
from transforms.io.kafka import rules
from transforms.io.kafka.client import NoClientsPickled, pooled_consumer, reading_consumer
from transforms.io.kafka.commit import Committer
from transforms.io.kafka.discovery import DiscoverPartitions, WatchPartitions, check_topics
from transforms.io.kafka.offsets import validate_start, validate_stop
from transforms.io.kafka.records import (
    DEAD_LETTERS,
    IDLE_FIRST,
    IDLE_RESUME,
    NAMESPACE,
    NEVER,
    WATCH,
    Deserializer,
    KafkaBatch,
    KafkaRecord,
    PartitionRead,
    StartAt,
    StopAt,
    TimestampFn,
)
from transforms.io.kafka.serde import Deserialize, deserializer
from transforms.io.kafka.watermark import WatermarkProvider
from transforms.io.results import ReadResult

__all__ = ["KafkaReadResult", "ReadFromKafka"]

_LOG = logging.getLogger(__name__)


class _KafkaOffsetTracker(OffsetRestrictionTracker):
    """Offsets [start, stop); unbounded when stop is NEVER (so runners treat it as a stream)."""

    def is_bounded(self):
        return self._range.stop != NEVER


class _PartitionRestrictions(RestrictionProvider):
    def initial_restriction(self, read: PartitionRead) -> OffsetRange:
        return OffsetRange(read.start, read.stop)

    def create_tracker(self, restriction: OffsetRange) -> RestrictionTracker:
        return _KafkaOffsetTracker(restriction)

    def restriction_size(self, read, restriction: OffsetRange) -> int:
        # The size of an unbounded range is unknown; a constant keeps runners' weights sane.
        return 1_000 if restriction.stop == NEVER else max(restriction.size(), 0)

    def split(self, read, restriction):
        yield restriction  # one restriction per partition; the runner may split dynamically


def _timestamp_of(policy: Union[str, TimestampFn], record: KafkaRecord) -> float:
    if policy == "log_time":
        return record.timestamp
    if policy == "processing_time":
        return time.time()
    return float(policy(record))  # type: ignore[operator]


class _ReadPartitionFn(NoClientsPickled, beam.DoFn):
    """The SDF: PartitionRead -> KafkaRecord (value still bytes), one claim per offset;
    with ``batches``, one KafkaBatch per poll instead."""

    def __init__(self, config, group, commit, timestamp_policy, poll_timeout_ms,
                 max_invocation_seconds, batches: bool = False):
        self._batches = batches
        self._config = config
        self._group = group
        # "transaction": an exactly-once Kafka sink commits the offsets in its transactions
        # (transactions.py); the reader only tells the runner where each poll lies.
        self._in_transactions = commit == "transaction"
        self._commit = bool(commit) and bool(group) and not self._in_transactions
        self._policy = timestamp_policy
        self._poll_timeout_ms = poll_timeout_ms
        self._max_invocation = max_invocation_seconds
        self._records_read = Metrics.counter(NAMESPACE, "records_read")
        self._no_finalizer_warned = False
        self._idle_waits: dict[tuple[str, int], float] = {}  # see _idle_wait

    _CLIENTS = ("_consumer", "_committer")

    def setup(self):
        self._consumer = reading_consumer(self._config)
        self._committer = Committer(self._config, self._group) if self._commit else None

    def process(
        self,
        read: PartitionRead,
        bundle_finalizer=beam.DoFn.BundleFinalizerParam,  # positional: before the SDF kwargs
        tracker=beam.DoFn.RestrictionParam(_PartitionRestrictions()),
        watermark=beam.DoFn.WatermarkEstimatorParam(WatermarkProvider()),
    ):
        # A generator that returns early lives in _read: Beam warns about return in process.
        yield from self._read(read, tracker, watermark, bundle_finalizer)

    def _read(self, read: PartitionRead, tracker, watermark, bundle_finalizer):
        if getattr(self, "_consumer", None) is not None:
            yield from self._read_with(self._consumer, read, tracker, watermark, bundle_finalizer)
            return
        if self._commit and getattr(self, "_committer", None) is None:
            self._committer = Committer(self._config, self._group)
        partition = (read.topic, read.partition)
        with pooled_consumer(self._config, partition) as consumer:  # setup() was not called
            yield from self._read_with(consumer, read, tracker, watermark, bundle_finalizer)

    def _read_with(self, consumer, read: PartitionRead, tracker, watermark, bundle_finalizer):
        kafka = require("kafka", "kafka")
        tp = kafka.TopicPartition(read.topic, read.partition)
        if consumer.assignment() != {tp}:
            consumer.assign([tp])
        restriction = tracker.current_restriction()
        if consumer.position(tp) != restriction.start:
            consumer.seek(tp, restriction.start)
        # After a restart, one invocation reads either a replayed range or new records,
        # never both: a runner that defers commits tells its steps which one it is.
        replaying, end = delivery.replay_segment(read.replay, restriction.start)
        segment_end = NEVER if end is None else end
        scope = delivery.current()
        bounded = read.stop != NEVER or read.deadline is not None
        partition_key = (read.topic, read.partition)
        first: Optional[int] = None
        last: Optional[int] = None
        started = time.monotonic()
        try:
            while True:
                if read.deadline is not None and time.time() >= read.deadline:
                    tracker.try_claim(tracker.current_restriction().stop)  # done: read time is up
                    return
                # Caught up last time: only take what has arrived, do not wait. A runner
                # with one executor thread (the local streaming runner) would otherwise
                # stand still for the poll timeout on every idle partition.
                highwater = consumer.highwater(tp)
                caught_up = highwater is not None and consumer.position(tp) >= highwater
                timeout = 0 if caught_up else self._poll_timeout_ms
                batch = consumer.poll(timeout_ms=timeout).get(tp, [])
                now = time.time()
                if not batch:
                    position = consumer.position(tp)
                    stop = tracker.current_restriction().stop
                    if position >= stop:  # gaps (compaction, transaction markers) up to stop
                        tracker.try_claim(stop)
                        return
                    highwater = consumer.highwater(tp)
                    if highwater is not None and position >= highwater:
                        watermark.idle(now)
                        wait = self._idle_wait(partition_key)
                        tracker.defer_remainder(Duration(seconds=min(wait, read.idle_timeout)))
                        return
                    if time.monotonic() - started > self._max_invocation:
                        tracker.defer_remainder()
                        return
                    continue
                cut = [m for m in batch if m.offset >= segment_end]
                if cut:  # the rest of the poll belongs to the next segment
                    batch = batch[:len(batch) - len(cut)]
                    consumer.seek(tp, cut[0].offset)
                    if not batch:  # the segment is read (a gap may be left of it: step over)
                        if last is None or last < segment_end - 1:
                            tracker.try_claim(segment_end - 1)
                        tracker.defer_remainder()
                        return
                newest = None  # the watermark moves once per batch, after its records
                claimed = 0
                try:
                    messages, stopped = _claim(batch, tracker)
                    if messages:
                        self._idle_waits.pop(partition_key, None)
                        claimed = len(messages)
                        first = messages[0].offset if first is None else first
                        last = messages[-1].offset
                        if scope is not None and (self._in_transactions or getattr(
                                self, "_committer", None) is not None):
                            # Before the poll's outputs: the runner ties this poll's
                            # commit to them (and to nothing read before or after).
                            self._register_commit(
                                bundle_finalizer, read.topic, read.partition, messages[0].offset,
                                last + 1, wait=bounded, replayed=replaying)
                        if self._batches:
                            element, newest = self._batch_of(messages)
                            yield element
                        else:
                            for message in messages:
                                record = _record_of(message)
                                stamp = Timestamp.of(_timestamp_of(self._policy, record))
                                if newest is None or stamp > newest:
                                    newest = stamp
                                yield TimestampedValue(record, stamp)
                    if stopped:
                        return  # the rest of the range was split off, or we reached stop
                finally:
                    if newest is not None:
                        watermark.record(newest, now)
                    self._records_read.inc(claimed)
                if cut:
                    tracker.defer_remainder()  # the next segment in a bundle of its own
                    return
                if tracker.current_restriction().stop == NEVER:
                    highwater = consumer.highwater(tp)
                    caught_up = highwater is not None and consumer.position(tp) >= highwater
                    if caught_up or time.monotonic() - started > self._max_invocation:
                        # Checkpoint: the bundle ends (its offsets get committed) and the
                        # runner moves records and watermarks downstream before we resume.
                        tracker.defer_remainder()
                        return
        finally:
            if last is not None and scope is None and getattr(self, "_committer", None) is not None:
                # A read that ends commits as it finalizes; an endless one in the background.
                self._register_commit(bundle_finalizer, read.topic, read.partition, first,
                                      last + 1, wait=bounded)

    def _idle_wait(self, partition_key: tuple) -> float:
        """How long a caught-up partition waits before it polls again: IDLE_FIRST after
        records, doubling per empty poll up to IDLE_RESUME (a hint only: a fresh DoFn
        copy starts again from IDLE_FIRST)."""
        wait = self._idle_waits.get(partition_key, IDLE_FIRST)
        self._idle_waits[partition_key] = min(wait * 2, IDLE_RESUME)
        return wait

    def _batch_of(self, messages: list) -> tuple[TimestampedValue, Timestamp]:
        """One KafkaBatch, timestamped at its earliest record; and its latest timestamp."""
        first = messages[0]
        times = [m.timestamp / 1000.0 for m in messages]
        batch = KafkaBatch(
            first.topic, first.partition, [m.offset for m in messages], times,
            [m.timestamp_type for m in messages], [m.key for m in messages],
            [m.value for m in messages],
            [tuple(m.headers) if m.headers else () for m in messages],
        )
        if self._policy == "processing_time":
            stamps = [time.time()]
        elif self._policy != "log_time":
            stamps = [_timestamp_of(self._policy, r) for r in batch.records()]
        else:
            stamps = times
        return TimestampedValue(batch, Timestamp.of(min(stamps))), Timestamp.of(max(stamps))

    def _register_commit(self, finalizer, topic: str, partition: int, first: Optional[int],
                         next_offset: int, wait: bool, replayed: bool = False) -> None:
        register = getattr(finalizer, "register", None)
        if register is None:
            if not self._no_finalizer_warned:
                _LOG.warning("this runner does not finalize bundles: offsets are not committed "
                             "to consumer group %s", self._group)
                self._no_finalizer_warned = True
            return
        scope = delivery.current()
        if scope is None:  # Beam's contract: the runner made the bundle durable
            register(self._committer.callback(topic, partition, next_offset, wait=wait))
            return
        # The runner calls this once everything derived from the read is written, maybe
        # after later reads of the partition: commit where the gate says it is safe.
        stream = (self._group, topic, partition)
        commit = _nothing if self._in_transactions else self._committer.tracked(
            scope.gate, stream, topic, partition, wait=wait)
        register(delivery.Commit(
            commit, stream=stream, first=next_offset - 1 if first is None else first,
            next=next_offset, replayed=replayed))

    def teardown(self):
        if getattr(self, "_consumer", None) is not None:
            self._consumer.close()
            self._consumer = None
        if getattr(self, "_committer", None) is not None:
            self._committer.close()


def _nothing() -> None:
    """The commit of a read whose offsets an exactly-once sink's transactions commit."""


def _record_of(message) -> KafkaRecord:
    return KafkaRecord(
        message.topic, message.partition, message.offset, message.timestamp / 1000.0,
        message.timestamp_type, message.key, message.value,
        tuple(message.headers) if message.headers else (),
    )


def _claim(messages: list, tracker) -> tuple[list, bool]:
    """The messages the restriction still holds, claimed one by one (a claim is what
    stops a read at a split point); and whether the read stops there."""
    for i, message in enumerate(messages):
        if not tracker.try_claim(message.offset):
            return messages[:i], True
    return messages, False


class _ReadUnboundedPartitionFn(_ReadPartitionFn):
    """The same reader, declared unbounded per element (``stop_at=never``).

    Runners decide from this declaration whether the output is a stream: without it, a
    streaming runner may treat the output as bounded and hold every window until the
    read ends.
    """

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        read: PartitionRead,
        bundle_finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=beam.DoFn.RestrictionParam(_PartitionRestrictions()),
        watermark=beam.DoFn.WatermarkEstimatorParam(WatermarkProvider()),
    ):
        yield from self._read(read, tracker, watermark, bundle_finalizer)


# ---- the public read transform ---------------------------------------------------------

# What ReadFromKafka returns: the records and the dead letters (the convention of every reader).
KafkaReadResult = ReadResult


class ReadFromKafka(beam.PTransform):
    """Topics -> :class:`KafkaReadResult` ``(records, dead_letters)``.

    ``records`` are :class:`KafkaRecord` s timestamped as ``timestamp_policy`` says;
    ``dead_letters`` are :class:`~transforms.records.DeadLetter` s of records whose key or
    value the deserializer rejected (every reader and writer of the project returns its
    dead letters this way, see docs/sdk.md)::

        read = p | ReadFromKafka("localhost:9092", ["user_events"], start_at="earliest",
                                 stop_at="end")
        read.records | ...
        read.dead_letters | ...

    ``stop_at="never"`` (the default) is an unbounded read; anything else, ``max_records``
    or ``max_read_time`` makes it bounded (batch).

    :param bootstrap_servers: ``HOST:PORT[,HOST:PORT...]``.
    :param topics: one topic or several (a list, or comma-separated).
    :param consumer_group: offsets are committed to it once the runner finalized the bundle
        that read them (at-least-once); ``start_at="committed"`` resumes from it.
    :param start_at: earliest, latest, committed, an ISO-8601 time or epoch seconds
        (``offsets_for_times``), or explicit offsets ``{(topic, partition): offset}``.
    :param stop_at: never, end (end offsets seen at launch), an ISO-8601 time or epoch
        seconds (exclusive).
    :param max_records: a bounded read of this many records in all (see :func:`offsets.allot`).
    :param max_read_time: a bounded read that stops after this many wall-clock seconds.
    :param timestamp_policy: log_time (the record's Kafka timestamp), processing_time, or a
        function of the KafkaRecord giving its event time (epoch seconds).
    :param max_delay: the watermark trails the largest timestamp seen by this many seconds.
    :param idle_timeout: seconds after which a caught-up, idle partition's watermark moves
        with the wall clock.
    :param value_deserializer: bytes, utf-8, json or a function of the bytes.
    :param key_deserializer: the same for keys.
    :param commit_offsets: commit to ``consumer_group`` (when one is given); ``"transaction"``:
        an exactly-once ``WriteToKafka`` commits them in its transactions, the reader does not.
    :param discovery_interval: unbounded reads: seconds between looks for added partitions
        (read from their beginning); None: never look.
    :param config: any other kafka-python setting (security, SASL, timeouts...).
    :param validate: check at construction that the topics exist.
    :param poll_timeout_ms: the longest wait of one poll.
    :param max_invocation_seconds: an unbounded read checkpoints after this long.
    :param pipeline: the pipeline name dead letters carry.
    :param batches: one :class:`KafkaBatch` per poll of a partition (up to
        ``max_poll_records``, 2000 unless ``config`` says otherwise) instead of one
        KafkaRecord per message: the same records, offsets and watermarks, for pipelines
        that process records in batches (``--batch_engine=arrow`` in streaming).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Union[str, Sequence[str]],
        *,
        consumer_group: Optional[str] = None,
        start_at: StartAt = "latest",
        stop_at: StopAt = "never",
        max_records: Optional[int] = None,
        max_read_time: Optional[float] = None,
        timestamp_policy: Union[str, TimestampFn] = "log_time",
        max_delay: float = 0.0,
        idle_timeout: float = 10.0,
        value_deserializer: Deserializer = "bytes",
        key_deserializer: Deserializer = "bytes",
        commit_offsets: Union[bool, str] = True,
        discovery_interval: Optional[float] = 60.0,
        config: Optional[Mapping[str, Any]] = None,
        validate: bool = True,
        poll_timeout_ms: int = 100,
        max_invocation_seconds: float = 0.5,
        pipeline: str = "kafka",
        batches: bool = False,
    ) -> None:
        super().__init__()
        try:
            servers = rules.bootstrap_servers(bootstrap_servers or "")
        except Exception:
            raise ConfigError("--bootstrap_servers", "HOST:PORT[,HOST:PORT...]", bootstrap_servers) from None
        names = rules.split_topics([topics] if isinstance(topics, str) else list(topics or []))
        if not names or not all(rules.is_topic_name(t) for t in names):
            raise ConfigError("--topic", "one or more topic names", topics)
        self._topics = names
        self._start_at = validate_start(start_at)
        self._stop_at = validate_stop(stop_at)
        if self._start_at == "committed" and not consumer_group:
            raise ConfigError.from_message(
                "--start_at: committed needs --consumer_group (whose offsets to resume from)")
        if max_records is not None and (not isinstance(max_records, int) or max_records <= 0):
            raise ConfigError("--max_records", "a whole number > 0", max_records)
        if max_read_time is not None and (not rules.is_time(max_read_time) or max_read_time <= 0):
            raise ConfigError("--max_read_time", "a number of seconds > 0", max_read_time)
        if not (timestamp_policy in ("log_time", "processing_time") or callable(timestamp_policy)):
            raise ConfigError("--timestamp_policy",
                              "log_time|processing_time or a function of a KafkaRecord",
                              timestamp_policy)
        for name, value in (("max_delay", max_delay), ("--idle_timeout", idle_timeout)):
            if not rules.is_time(value) or value < 0:
                raise ConfigError(name, "a number of seconds >= 0", value)
        if discovery_interval is not None and (not rules.is_time(discovery_interval) or discovery_interval <= 0):
            raise ConfigError("discovery_interval", "a number of seconds > 0 or None", discovery_interval)
        self._value = deserializer(value_deserializer, "value_deserializer")
        self._key = deserializer(key_deserializer, "key_deserializer")
        self._group = consumer_group
        self._max_records = max_records
        self._max_read_time = max_read_time
        self._policy = timestamp_policy
        self._max_delay = float(max_delay)
        self._idle_timeout = float(idle_timeout)
        self._commit = commit_offsets
        self._discovery_interval = discovery_interval
        self._config = dict(config or {})
        self._config["bootstrap_servers"] = servers.split(",")
        self._validate = validate
        self._poll_timeout_ms = poll_timeout_ms
        self._max_invocation = max_invocation_seconds
        self._pipeline = pipeline
        self._batches = bool(batches)

    @property
    def bounded(self) -> bool:
        return self._stop_at != "never" or bool(self._max_records) or bool(self._max_read_time)

    def expand(self, pbegin):
        if self._validate:
            check_topics(self._config, self._topics)
        watch = bool(self._stop_at == "never" and not self._max_records
                     and self._discovery_interval)
        discovered = (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "DiscoverPartitions" >> beam.ParDo(DiscoverPartitions(
                self._config, self._topics, self._group, self._start_at, self._stop_at,
                self._max_records, self._max_read_time, self._max_delay, self._idle_timeout,
                watch)).with_outputs(WATCH, main="reads")
        )
        # Spread the partitions over workers. Only the launch-time ones: in streaming, a
        # GroupByKey downstream of the never-ending watcher would wait for its watermark.
        reads = discovered["reads"]
        if self.bounded:
            reads = reads | "Distribute" >> beam.Reshuffle()
        if watch:
            watcher = WatchPartitions(self._config, self._topics, self._discovery_interval,
                                       self._max_delay, self._idle_timeout)
            added = (
                discovered[WATCH]
                | "WatchPartitions" >> beam.ParDo(watcher)
            )
            reads = (
                (reads, added)
                | "AllPartitions" >> beam.Flatten()
                # Runners that group an SDF's input (Beam's direct runners) must not wait for
                # the never-ending watcher's watermark: fire for every descriptor.
                | "EveryDescriptor" >> beam.WindowInto(
                    beam_window.GlobalWindows(),
                    trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                    accumulation_mode=trigger.AccumulationMode.DISCARDING)
            )
        reader = _ReadPartitionFn if self.bounded else _ReadUnboundedPartitionFn
        records = (
            reads
            | "ReadPartitions" >> beam.ParDo(reader(
                self._config, self._group, self._commit, self._policy,
                self._poll_timeout_ms, self._max_invocation, self._batches))
            | "Deserialize" >> beam.ParDo(
                Deserialize(self._key, self._value, self._pipeline)
            ).with_outputs(DEAD_LETTERS, main="records")
        )
        if watch:
            return KafkaReadResult(
                records["records"] | "DefaultWindowing" >> beam.WindowInto(
                    beam_window.GlobalWindows()),
                records[DEAD_LETTERS])
        return KafkaReadResult(records["records"], records[DEAD_LETTERS])
