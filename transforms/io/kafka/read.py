"""Kafka in pure Python (kafka-python): ``ReadFromKafka``, ``WriteToKafka`` and the wiring.

**Reading** is a splittable DoFn with one restriction per topic-partition: an
``OffsetRange`` of offsets, ``[start, stop)``, where ``stop`` is "never" for an unbounded
read. Why an SDF rather than a plain DoFn looping over a consumer: the runner can
checkpoint (``defer_remainder``) and split the range, so a streaming pipeline makes
progress bundle by bundle, a restarted worker resumes at the first unclaimed offset, and
every offset is claimed exactly once within a run (no record read twice or skipped).

* Partitions are discovered when the pipeline starts (a DoFn after ``Impulse``, so a
  template launched next week sees next week's partitions); an unbounded read with
  ``discovery_interval`` also polls for partitions added later and reads those from their
  beginning.
* Start: ``earliest``, ``latest``, ``committed`` (the consumer group's offsets; earliest
  where the group has none), epoch seconds (``offsets_for_times``) or explicit offsets.
  Stop: ``never``, ``end`` (end offsets seen at launch), epoch seconds (exclusive), and/or
  ``max_records`` / ``max_read_time``. Anything but ``never`` alone is a bounded read and
  runs as batch.
* Element timestamps: the record's log time (default), processing time, or a function of
  the :class:`KafkaRecord` (event time). Each partition has its own watermark estimator
  (the largest timestamp seen minus ``max_delay``); a caught-up partition that stays idle
  for ``idle_timeout`` seconds lets its watermark advance at wall-clock speed, so one
  quiet partition does not hold every window open forever.
* Offsets are committed to ``consumer_group`` from a bundle-finalization callback, i.e.
  only after the runner has durably committed the bundle's output: at-least-once. A crash
  before finalization re-reads those records on the next ``start_at=committed`` run; a
  sink that upserts (PostgreSQL) makes that harmless.

**Writing** (:class:`WriteToKafka`) opens one producer per DoFn instance (``acks=all``),
flushes at the end of each bundle, and sends records that cannot be serialized or that the
broker rejects to a ``dead_letters`` output; transient errors fail the bundle so the
runner retries it.

**Wiring**: ``source_from_options`` (``--source=kafka``), ``sink_from_options``
(``--sink=kafka``: each result as a JSON object to the ``--output`` topic) and
``dead_letter_writer`` (``--dead_letter kafka://TOPIC``: DeadLetter records as JSON).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import sys
import threading
import time
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Sequence, Union

import apache_beam as beam
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger
from apache_beam.transforms import window as beam_window
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from beam_pipelines.options import kafka as kafka_opts
from transforms.base.errors import ConfigError, SinkError, SourceError
from transforms.base.extras import require
from transforms.records import DeadLetter, RawBatch, RawRecord
from transforms.sinks import as_dict

_LOG = logging.getLogger(__name__)


def _not_auto_commit_noise(record: logging.LogRecord) -> bool:
    # kafka-python warns on every consumer without a group, although we disable auto-commit.
    return not str(record.msg).startswith("group_id is None: disabling auto-commit")


logging.getLogger("kafka.coordinator.consumer").addFilter(_not_auto_commit_noise)

NEVER = sys.maxsize  # the stop offset of an unbounded restriction
# A caught-up partition checks again after this many seconds (its fetch stays in flight).
IDLE_RESUME = 0.1
DEAD_LETTERS = "dead_letters"
WRITTEN = "written"
WATCH = "watch"
NAMESPACE = "kafka"

StartAt = Union[str, float, int, Mapping[Any, int]]
StopAt = Union[str, float, int]
TimestampFn = Callable[["KafkaRecord"], float]
Deserializer = Union[str, Callable[[bytes], Any]]


class KafkaRecord(NamedTuple):
    """One Kafka record as the reader hands it to the pipeline."""

    topic: str
    partition: int
    offset: int
    timestamp: float  # the record's Kafka timestamp, epoch seconds
    timestamp_type: int  # 0 = CreateTime (producer), 1 = LogAppendTime (broker)
    key: Any  # bytes (or deserialized with key_deserializer); None when the record has none
    value: Any  # bytes, str or a JSON value, per value_deserializer
    headers: tuple[tuple[str, bytes], ...]


class KafkaBatch(NamedTuple):
    """The records of one poll of one partition, column by column (``batches=True``).

    One element for up to ``max_poll_records`` records: on a runner that pays a fixed
    cost per element and step (Beam's direct runners, about 25 us), that cost is paid
    once per batch. The element's timestamp is the earliest of its records'.
    """

    topic: str
    partition: int
    offsets: list[int]
    timestamps: list[float]  # Kafka timestamps, epoch seconds
    timestamp_types: list[int]
    keys: list[Any]
    values: list[Any]
    headers: list[tuple[tuple[str, bytes], ...]]

    def records(self) -> list[KafkaRecord]:
        return [
            KafkaRecord(self.topic, self.partition, *fields)
            for fields in zip(self.offsets, self.timestamps, self.timestamp_types, self.keys,
                              self.values, self.headers, strict=True)
        ]


class PartitionRead(NamedTuple):
    """What to read of one partition: offsets [start, stop), and a wall-clock deadline."""

    topic: str
    partition: int
    start: int
    stop: int  # NEVER for an unbounded read
    deadline: Optional[float] = None  # epoch seconds; stop reading at this time
    max_delay: float = 0.0  # watermark = largest timestamp seen - max_delay
    idle_timeout: float = 10.0  # seconds before an idle, caught-up partition's watermark moves


# ---- client configuration ------------------------------------------------------------

def _coerce(value: str) -> Any:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def client_config(
    bootstrap_servers: str,
    *,
    security_protocol: Optional[str] = None,
    sasl_mechanism: Optional[str] = None,
    sasl_username: Optional[str] = None,
    sasl_password: Optional[str] = None,
    ssl_cafile: Optional[str] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """kafka-python settings shared by consumers, producers and admin clients."""
    config: dict[str, Any] = {"bootstrap_servers": bootstrap_servers.split(",")}
    if security_protocol:
        config["security_protocol"] = security_protocol
    if sasl_mechanism:
        config["sasl_mechanism"] = sasl_mechanism
    if sasl_username is not None:
        config["sasl_plain_username"] = sasl_username
    if sasl_password is not None:
        config["sasl_plain_password"] = sasl_password
    if ssl_cafile:
        config["ssl_cafile"] = ssl_cafile
    config.update(extra or {})
    return config


def config_from_options(options) -> dict[str, Any]:
    """The client config from ``--bootstrap_servers``, security flags and ``--kafka_config``."""
    k = options.view_as(kafka_opts.KafkaOptions)
    extra: dict[str, Any] = {}
    for pair in k.kafka_config or []:
        key, _, value = pair.partition("=")
        extra[key.strip()] = _coerce(value)
    return client_config(
        kafka_opts.servers_from_options(options),
        security_protocol=k.security_protocol,
        sasl_mechanism=k.sasl_mechanism,
        sasl_username=k.sasl_username,
        sasl_password=k.sasl_password,
        ssl_cafile=k.ssl_cafile,
        extra=extra,
    )


def _servers(config: Mapping[str, Any]) -> str:
    servers = config.get("bootstrap_servers")
    return ",".join(servers) if isinstance(servers, (list, tuple)) else str(servers)


def _only(config: Mapping[str, Any], allowed: Iterable[str]) -> dict[str, Any]:
    """Drop settings the client class does not take (a shared config serves all three)."""
    allowed = set(allowed)
    return {k: v for k, v in config.items() if k in allowed}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _consumer(config: Mapping[str, Any], **overrides: Any):
    kafka = require("kafka", "kafka")
    settings: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest",
                "allow_auto_create_topics": False, "session_timeout_ms": 10000,
                "bootstrap_timeout_ms": 10000}
    settings.update(_only(config, kafka.KafkaConsumer.DEFAULT_CONFIG))
    settings.update(overrides)
    try:
        return kafka.KafkaConsumer(**settings)
    except kafka.errors.KafkaConfigurationError as exc:
        raise ConfigError.from_message(f"--kafka_config: {_first_line(exc)}") from None
    except Exception as exc:
        security = {k: v for k, v in settings.items() if k.startswith(("security", "sasl", "ssl"))}
        raise SourceError(
            f"cannot reach Kafka at {_servers(settings)} within "
            f"{settings['bootstrap_timeout_ms'] / 1000:.0f}s: {_first_line(exc)} (check "
            f"--bootstrap_servers and the security settings"
            + (f" {kafka_opts.redact(security)}" if security else "") + ")"
        ) from None


@contextlib.contextmanager
def _quiet_kafka_logs():
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _reading_consumer(config: Mapping[str, Any]):
    # Larger batches than kafka-python's 500 for throughput, unless --kafka_config says otherwise.
    return _consumer(config, **({} if "max_poll_records" in config else {"max_poll_records": 2000}))


_POOL_LOCK = threading.Lock()
_POOL: dict[str, list] = {}


@contextlib.contextmanager
def _pooled_consumer(config: Mapping[str, Any], partition: Optional[tuple[str, int]] = None):
    """A reading consumer for one invocation, for DoFns whose ``setup`` a runner never calls.

    Beam's direct runners wrap an SDF and pickle a fresh copy of it per bundle without
    calling its ``setup``/``teardown``; a consumer per copy would leak a connection and a
    network thread per bundle. The pool keeps idle consumers per config and, for reads,
    per partition: a consumer that stays assigned to its partition keeps its fetch in
    flight between invocations, where re-assigning a shared one would discard it.
    """
    key = repr((sorted((k, repr(v)) for k, v in config.items()), partition))
    with _POOL_LOCK:
        idle = _POOL.get(key)
        consumer = idle.pop() if idle else None
    if consumer is None:
        consumer = _reading_consumer(config)
    try:
        yield consumer
    finally:
        with _POOL_LOCK:
            _POOL.setdefault(key, []).append(consumer)


@atexit.register
def _close_pooled_consumers() -> None:
    with _POOL_LOCK:
        consumers = [c for idle in _POOL.values() for c in idle]
        _POOL.clear()
    for consumer in consumers:
        try:
            consumer.close()
        except Exception:  # closing at interpreter exit: nothing left to report to
            pass


class _NoClientsPickled:
    """Runners may pickle a DoFn after ``setup``; live clients (sockets) are not copied."""

    _CLIENTS: tuple[str, ...] = ()

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in self._CLIENTS:
            state.pop(name, None)
        return state


def check_topics(config: Mapping[str, Any], topics: Sequence[str], *, timeout_ms: int = 5000,
                 error=SourceError, flag: str = "--topic") -> dict[str, list[int]]:
    """Partitions of each topic; ``error`` naming the servers and topic when unreachable/missing.

    Called at pipeline construction, so a typo fails in seconds instead of a worker retrying.
    """
    try:
        with _quiet_kafka_logs():  # the one-line error says it all; no retry log spam
            consumer = _consumer(config, bootstrap_timeout_ms=timeout_ms,
                                 request_timeout_ms=timeout_ms + 1000)
    except SourceError as exc:
        raise error(f"{flag}: topic {', '.join(map(repr, topics))}: {exc}") from None
    try:
        found: dict[str, list[int]] = {}
        missing = []
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                missing.append(topic)
            else:
                found[topic] = sorted(partitions)
        if missing:
            raise error(
                f"{flag}: topic {', '.join(repr(t) for t in missing)} does not exist on Kafka at "
                f"{_servers(config)} (create it, e.g. python -m beam_pipelines.produce "
                f"--partitions N, or check {flag})"
            )
        return found
    finally:
        consumer.close()


# ---- resolving where each partition starts and stops ------------------------------------

def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_start(start_at: Any) -> StartAt:
    if isinstance(start_at, str) and start_at in kafka_opts.START_KEYWORDS:
        return start_at
    if isinstance(start_at, str):
        try:
            return kafka_opts.parse_time(start_at)
        except ValueError:
            pass
    elif _is_time(start_at) or isinstance(start_at, Mapping):
        return start_at
    raise ConfigError(
        "--start_at",
        "earliest|latest|committed, an ISO-8601 time, epoch seconds or {(topic, partition): offset}",
        start_at,
    )


def validate_stop(stop_at: Any) -> StopAt:
    if isinstance(stop_at, str) and stop_at in kafka_opts.STOP_KEYWORDS:
        return stop_at
    if isinstance(stop_at, str):
        try:
            return kafka_opts.parse_time(stop_at)
        except ValueError:
            pass
    elif _is_time(stop_at):
        return stop_at
    raise ConfigError("--stop_at", "end|never, an ISO-8601 time or epoch seconds", stop_at)


def shares(total: int, count: int) -> list[int]:
    """``total`` split into ``count`` near-equal whole shares (the first ones get the rest)."""
    base, rest = divmod(total, count)
    return [base + (1 if i < rest else 0) for i in range(count)]


def allot(total: int, available: Sequence[int]) -> list[int]:
    """``--max_records``: how many records each partition reads, ``total`` in all.

    Records already in the topic come first, spread as evenly as the partitions allow
    (an empty partition gets nothing, so a bounded read never waits on it); only when
    the topic holds fewer than ``total`` is the rest spread over every partition, each
    then waiting for its share to arrive.
    """
    given = [0] * len(available)
    left = total
    while left > 0:
        open_ = [i for i, a in enumerate(available) if given[i] < a]
        if not open_:
            break
        for i, share in zip(open_, shares(left, len(open_)), strict=True):
            take = min(share, available[i] - given[i])
            given[i] += take
            left -= take
    if left > 0:
        given = [g + s for g, s in zip(given, shares(left, len(given)), strict=True)]
    return given


class _Resolver:
    """Offsets for start/stop positions, from one consumer (launch time)."""

    def __init__(self, consumer, group: Optional[str]) -> None:
        self._consumer = consumer
        self._group = group

    def _times(self, tps, seconds: float, fallback: dict) -> dict:
        found = self._consumer.offsets_for_times({tp: int(seconds * 1000) for tp in tps})
        return {tp: (found[tp].offset if found.get(tp) is not None else fallback[tp]) for tp in tps}

    def starts(self, tps, start_at: StartAt, beginning: dict, end: dict) -> dict:
        if start_at == "earliest":
            return dict(beginning)
        if start_at == "latest":
            return dict(end)
        if start_at == "committed":
            out = {}
            for tp in tps:
                committed = self._consumer.committed(tp) if self._group else None
                out[tp] = beginning[tp] if committed is None else max(committed, beginning[tp])
            return out
        if isinstance(start_at, Mapping):
            out = {}
            for tp in tps:
                given = start_at.get((tp.topic, tp.partition), start_at.get(tp.partition))
                out[tp] = beginning[tp] if given is None else int(given)
            return out
        return self._times(tps, float(start_at), end)

    def stops(self, tps, stop_at: StopAt, end: dict) -> dict:
        if stop_at == "never":
            return {tp: NEVER for tp in tps}
        if stop_at == "end":
            return dict(end)
        return self._times(tps, float(stop_at), end)


class _DiscoverPartitions(beam.DoFn):
    """Impulse -> one PartitionRead per partition of the topics, positions resolved now."""

    def __init__(self, config, topics, group, start_at, stop_at, max_records, max_read_time,
                 max_delay=0.0, idle_timeout=10.0, watch=False):
        self._watch = watch
        self._max_delay = max_delay
        self._idle_timeout = idle_timeout
        self._config = config
        self._topics = list(topics)
        self._group = group
        self._start_at = start_at
        self._stop_at = stop_at
        self._max_records = max_records
        self._max_read_time = max_read_time

    def process(self, _impulse):
        kafka = require("kafka", "kafka")
        consumer = _consumer(self._config, group_id=self._group)
        try:
            tps = []
            for topic in self._topics:
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    raise SourceError(
                        f"topic {topic!r} does not exist on Kafka at {_servers(self._config)}"
                    )
                tps += [kafka.TopicPartition(topic, p) for p in sorted(partitions)]
            resolver = _Resolver(consumer, self._group)
            beginning = consumer.beginning_offsets(tps)
            end = consumer.end_offsets(tps)
            starts = resolver.starts(tps, self._start_at, beginning, end)
            stops = resolver.stops(tps, self._stop_at, end)
            if self._max_records:
                available = [max(0, min(stops[tp], end[tp]) - starts[tp]) for tp in tps]
                for tp, share in zip(tps, allot(self._max_records, available), strict=True):
                    stops[tp] = min(stops[tp], starts[tp] + share)
            deadline = time.time() + self._max_read_time if self._max_read_time else None
            for tp in tps:
                start = min(starts[tp], stops[tp])
                _LOG.info("reading %s[%d] offsets [%d, %s)", tp.topic, tp.partition, start,
                          "never" if stops[tp] == NEVER else stops[tp])
                yield PartitionRead(tp.topic, tp.partition, start, stops[tp], deadline,
                                    self._max_delay, self._idle_timeout)
            if self._watch:
                known = frozenset((tp.topic, tp.partition) for tp in tps)
                yield beam.pvalue.TaggedOutput(WATCH, WatchSpec(deadline, known))
        finally:
            consumer.close()


class _KafkaOffsetTracker(OffsetRestrictionTracker):
    """Offsets [start, stop); unbounded when stop is NEVER (so runners treat it as a stream)."""

    def is_bounded(self):
        return self._range.stop != NEVER


class WatchSpec(NamedTuple):
    """What the partition watcher needs: when to stop, and the partitions read already."""

    deadline: Optional[float]
    known: frozenset  # of (topic, partition)


class _WatchRestriction(NamedTuple):
    """The watcher's restriction: which round it is and which partitions are being read."""

    round: int
    known: frozenset  # of (topic, partition)


class _WatchTracker(RestrictionTracker):
    """One claim per round; the residual of a checkpoint carries the partitions seen so far.

    Keeping "seen" in the restriction (rather than in a stateful DoFn) means nothing
    downstream has to group, and a resumed watcher never re-emits a partition.
    """

    def __init__(self, restriction: _WatchRestriction) -> None:
        self._restriction = restriction
        self._claimed: Optional[frozenset] = None
        self._finished = False

    def current_restriction(self) -> _WatchRestriction:
        return self._restriction

    def try_claim(self, known: Optional[frozenset]) -> bool:
        """Claim this round with the partitions known after it; ``None`` ends the watch."""
        if self._finished or self._claimed is not None:
            return False
        if known is None:
            self._finished = True
            return False
        self._claimed = known
        return True

    def try_split(self, fraction_of_remainder):
        if self._finished:
            return None
        self._finished = True
        if self._claimed is None:
            return None
        done = _WatchRestriction(self._restriction.round, self._restriction.known)
        return done, _WatchRestriction(self._restriction.round + 1, self._claimed)

    def check_done(self) -> None:
        if not self._finished and self._claimed is None:
            raise ValueError(f"watch round {self._restriction.round} was neither claimed nor ended")

    def current_progress(self):
        return RestrictionProgress(completed=0, remaining=1)

    def is_bounded(self) -> bool:
        return False


class _WatchRestrictions(RestrictionProvider):
    def initial_restriction(self, spec) -> _WatchRestriction:
        return _WatchRestriction(0, spec.known)

    def create_tracker(self, restriction: _WatchRestriction) -> _WatchTracker:
        return _WatchTracker(restriction)

    def restriction_size(self, spec, restriction) -> int:
        return 1


class _WatchPartitions(beam.DoFn):
    """Reads that never stop: every ``interval`` seconds, look for partitions added since launch.

    New partitions are read from their beginning (nothing produced to them is missed).
    """

    def __init__(self, config, topics, interval: float, max_delay: float = 0.0,
                 idle_timeout: float = 10.0) -> None:
        self._max_delay = max_delay
        self._idle_timeout = idle_timeout
        self._config = config
        self._topics = list(topics)
        self._interval = interval

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        spec: WatchSpec,
        tracker=beam.DoFn.RestrictionParam(_WatchRestrictions()),
        watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider()),
    ):
        yield from self._round(spec, tracker, watermark)

    def _round(self, spec: WatchSpec, tracker, watermark):
        if spec.deadline is not None and time.time() >= spec.deadline:
            tracker.try_claim(None)  # read time is up: done
            return
        kafka = require("kafka", "kafka")
        known = tracker.current_restriction().known
        tps = []
        with _pooled_consumer(self._config) as consumer:
            consumer.topics()  # a metadata request: partitions_for_topic alone answers from cache
            for topic in self._topics:
                for p in sorted(consumer.partitions_for_topic(topic) or ()):
                    if (topic, p) not in known:
                        tps.append(kafka.TopicPartition(topic, p))
            beginning = consumer.beginning_offsets(tps) if tps else {}
        if not tracker.try_claim(known | {(tp.topic, tp.partition) for tp in tps}):
            return
        # The watcher's watermark is the time of its next round, so it never holds the
        # records' watermark back between rounds (a wall-clock estimator would pin it at
        # the time of the last round), and what the next round emits is not late.
        current = watermark.current_watermark()
        now = Timestamp.now()
        stamp = now if current is None or now > current else current
        for tp in tps:
            _LOG.info("new partition %s[%d]: reading it from offset %d", tp.topic, tp.partition,
                      beginning[tp])
            yield TimestampedValue(
                PartitionRead(tp.topic, tp.partition, beginning[tp], NEVER, spec.deadline,
                              self._max_delay, self._idle_timeout), stamp)
        delay = self._interval
        if spec.deadline is not None:
            delay = max(0.0, min(delay, spec.deadline - time.time()))
        watermark.set_watermark(stamp + Duration(seconds=delay))
        tracker.defer_remainder(Duration(seconds=delay))


# ---- the splittable reader ------------------------------------------------------------

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


class _WatermarkState(NamedTuple):
    watermark: int  # micros
    max_seen: Optional[int]  # micros of the largest element timestamp seen
    active_at: float  # wall-clock seconds of the last record (or of the first poll)
    max_delay: int  # micros
    idle_timeout: float  # seconds


class PartitionWatermark(beam.io.iobase.WatermarkEstimator):
    """Largest timestamp seen minus ``max_delay``; advances with wall-clock time when idle.

    The state carries the settings too, because a runner rebuilds estimators from the
    state alone when it resumes a checkpointed partition.
    """

    def __init__(self, state: _WatermarkState) -> None:
        self._state = state

    def observe_timestamp(self, timestamp) -> None:
        pass  # record() does it, with the wall-clock time of the read

    def record(self, timestamp: Timestamp, now: float) -> None:
        s = self._state
        seen = timestamp.micros if s.max_seen is None else max(s.max_seen, timestamp.micros)
        self._state = s._replace(watermark=max(s.watermark, seen - s.max_delay), max_seen=seen,
                                 active_at=now)

    def idle(self, now: float) -> None:
        """Called when the partition is caught up and a poll returned nothing."""
        s = self._state
        quiet = now - s.active_at
        if quiet < s.idle_timeout:
            return
        if s.max_seen is None:  # nothing read yet: follow wall-clock time
            candidate = int((now - s.idle_timeout) * 1_000_000)
        else:  # as if event time had kept pace with wall-clock time since the last record
            candidate = s.max_seen - s.max_delay + int(quiet * 1_000_000)
        candidate = min(candidate, MAX_TIMESTAMP.micros)
        self._state = s._replace(watermark=max(s.watermark, candidate))

    def current_watermark(self) -> Timestamp:
        return Timestamp(micros=self._state.watermark)

    def get_estimator_state(self) -> _WatermarkState:
        return self._state


class _WatermarkProvider(WatermarkEstimatorProvider):
    def initial_estimator_state(self, read: PartitionRead, restriction) -> _WatermarkState:
        return _WatermarkState(MIN_TIMESTAMP.micros, None, time.time(),
                               int(read.max_delay * 1_000_000), read.idle_timeout)

    def create_watermark_estimator(self, state: _WatermarkState) -> PartitionWatermark:
        return PartitionWatermark(state)


class _Committer:
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
        self._committed: dict[tuple[str, int], int] = {}
        self._pending: dict[tuple[str, int], int] = {}
        self._in_flight = False
        self._cond = threading.Condition()  # _pending and _in_flight
        self._thread: Optional[threading.Thread] = None
        self._commits = Metrics.counter(NAMESPACE, "offset_commits")

    def callback(self, topic: str, partition: int, next_offset: int, *,
                 wait: bool = True) -> Callable[[], None]:
        def commit() -> None:
            self._commits.inc()
            if wait:
                self._commit({(topic, partition): next_offset})
                return
            with self._cond:
                tp = (topic, partition)
                self._pending[tp] = max(self._pending.get(tp, -1), next_offset)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name=f"kafka-commits-{self._group}", daemon=True)
                    self._thread.start()
                self._cond.notify_all()

        return commit

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        kafka = require("kafka", "kafka")
        from kafka.structs import OffsetAndMetadata

        with self._lock:
            moved = {tp: o for tp, o in offsets.items() if self._committed.get(tp, -1) < o}
            if not moved:
                return  # never move a group's offset backwards
            if self._consumer is None:
                self._consumer = _consumer(self._config, group_id=self._group)
            self._consumer.commit({kafka.TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                                   for (t, p), o in moved.items()})
            self._committed.update(moved)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                offsets, self._pending = self._pending, {}
                self._in_flight = True
            try:
                self._commit(offsets)
            except Exception as exc:  # the next finalized bundle commits a later offset
                _LOG.warning("committing offsets to consumer group %s failed: %s",
                             self._group, _first_line(exc))
            finally:
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every offset handed to the committing thread has been committed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._in_flight:
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


def _timestamp_of(policy: Union[str, TimestampFn], record: KafkaRecord) -> float:
    if policy == "log_time":
        return record.timestamp
    if policy == "processing_time":
        return time.time()
    return float(policy(record))  # type: ignore[operator]


class _ReadPartitionFn(_NoClientsPickled, beam.DoFn):
    """The SDF: PartitionRead -> KafkaRecord (value still bytes), one claim per offset;
    with ``batches``, one KafkaBatch per poll instead."""

    def __init__(self, config, group, commit, timestamp_policy, poll_timeout_ms,
                 max_invocation_seconds, batches: bool = False):
        self._batches = batches
        self._config = config
        self._group = group
        self._commit = commit and bool(group)
        self._policy = timestamp_policy
        self._poll_timeout_ms = poll_timeout_ms
        self._max_invocation = max_invocation_seconds
        self._records_read = Metrics.counter(NAMESPACE, "records_read")
        self._no_finalizer_warned = False

    _CLIENTS = ("_consumer", "_committer")

    def setup(self):
        self._consumer = _reading_consumer(self._config)
        self._committer = _Committer(self._config, self._group) if self._commit else None

    def process(
        self,
        read: PartitionRead,
        bundle_finalizer=beam.DoFn.BundleFinalizerParam,  # positional: before the SDF kwargs
        tracker=beam.DoFn.RestrictionParam(_PartitionRestrictions()),
        watermark=beam.DoFn.WatermarkEstimatorParam(_WatermarkProvider()),
    ):
        # A generator that returns early lives in _read: Beam warns about return in process.
        yield from self._read(read, tracker, watermark, bundle_finalizer)

    def _read(self, read: PartitionRead, tracker, watermark, bundle_finalizer):
        if getattr(self, "_consumer", None) is not None:
            yield from self._read_with(self._consumer, read, tracker, watermark, bundle_finalizer)
            return
        if self._commit and getattr(self, "_committer", None) is None:
            self._committer = _Committer(self._config, self._group)
        partition = (read.topic, read.partition)
        with _pooled_consumer(self._config, partition) as consumer:  # setup() was not called
            yield from self._read_with(consumer, read, tracker, watermark, bundle_finalizer)

    def _read_with(self, consumer, read: PartitionRead, tracker, watermark, bundle_finalizer):
        kafka = require("kafka", "kafka")
        tp = kafka.TopicPartition(read.topic, read.partition)
        if consumer.assignment() != {tp}:
            consumer.assign([tp])
        restriction = tracker.current_restriction()
        if consumer.position(tp) != restriction.start:
            consumer.seek(tp, restriction.start)
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
                        tracker.defer_remainder(Duration(seconds=min(IDLE_RESUME, read.idle_timeout)))
                        return
                    if time.monotonic() - started > self._max_invocation:
                        tracker.defer_remainder()
                        return
                    continue
                newest = None  # the watermark moves once per batch, after its records
                claimed = 0
                try:
                    if self._batches:
                        messages, stopped = _claim(batch, tracker)
                        if messages:
                            element, newest = self._batch_of(messages)
                            last, claimed = messages[-1].offset, len(messages)
                            yield element
                        if stopped:
                            return
                    else:
                        for message in batch:
                            if not tracker.try_claim(message.offset):
                                return  # the rest of the range was split off, or we reached stop
                            record = _record_of(message)
                            stamp = Timestamp.of(_timestamp_of(self._policy, record))
                            if newest is None or stamp > newest:
                                newest = stamp
                            last = message.offset
                            claimed += 1
                            yield TimestampedValue(record, stamp)
                finally:
                    if newest is not None:
                        watermark.record(newest, now)
                    self._records_read.inc(claimed)
                if tracker.current_restriction().stop == NEVER:
                    highwater = consumer.highwater(tp)
                    caught_up = highwater is not None and consumer.position(tp) >= highwater
                    if caught_up or time.monotonic() - started > self._max_invocation:
                        # Checkpoint: the bundle ends (its offsets get committed) and the
                        # runner moves records and watermarks downstream before we resume.
                        tracker.defer_remainder()
                        return
        finally:
            if last is not None and getattr(self, "_committer", None) is not None:
                # A read that ends commits as it finalizes; an endless one in the background.
                self._register_commit(bundle_finalizer, read.topic, read.partition, last + 1,
                                      wait=read.stop != NEVER or read.deadline is not None)

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

    def _register_commit(self, finalizer, topic: str, partition: int, next_offset: int,
                         wait: bool) -> None:
        register = getattr(finalizer, "register", None)
        if register is None:
            if not self._no_finalizer_warned:
                _LOG.warning("this runner does not finalize bundles: offsets are not committed "
                             "to consumer group %s", self._group)
                self._no_finalizer_warned = True
            return
        register(self._committer.callback(topic, partition, next_offset, wait=wait))

    def teardown(self):
        if getattr(self, "_consumer", None) is not None:
            self._consumer.close()
            self._consumer = None
        if getattr(self, "_committer", None) is not None:
            self._committer.close()


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
        watermark=beam.DoFn.WatermarkEstimatorParam(_WatermarkProvider()),
    ):
        yield from self._read(read, tracker, watermark, bundle_finalizer)


# ---- deserializing --------------------------------------------------------------------

def _as_is(value: Any) -> Any:
    return value


def _deserializer(spec: Deserializer, flag: str) -> Callable[[Optional[bytes]], Any]:
    if callable(spec):
        return lambda b: None if b is None else spec(b)
    if spec == "bytes":
        return _as_is
    if spec in ("utf-8", "utf8", "str"):
        return lambda b: None if b is None else b.decode("utf-8")
    if spec == "json":
        return lambda b: None if b is None else json.loads(b)
    raise ConfigError(flag, "bytes|utf-8|json or a function of bytes", spec)


class _Deserialize(beam.DoFn):
    def __init__(self, key_fn, value_fn, pipeline: str) -> None:
        self._key_fn = key_fn
        self._value_fn = value_fn
        self._pipeline = pipeline
        self._failed = Metrics.counter(NAMESPACE, "records_not_deserialized")

    def process(self, record: Union[KafkaRecord, KafkaBatch]):
        if isinstance(record, KafkaBatch):
            yield from self._batch(record)
            return
        try:
            yield record._replace(key=self._key_fn(record.key), value=self._value_fn(record.value))
        except Exception as exc:
            yield self._dead_letter(record, exc)

    def _batch(self, batch: KafkaBatch):
        if self._key_fn is _as_is and self._value_fn is _as_is:
            yield batch
            return
        kept: list[KafkaRecord] = []
        for record in batch.records():
            try:
                kept.append(record._replace(key=self._key_fn(record.key),
                                            value=self._value_fn(record.value)))
            except Exception as exc:
                yield self._dead_letter(record, exc)
        if kept:
            yield batch._replace(
                offsets=[r.offset for r in kept], timestamps=[r.timestamp for r in kept],
                timestamp_types=[r.timestamp_type for r in kept], keys=[r.key for r in kept],
                values=[r.value for r in kept], headers=[r.headers for r in kept])

    def _dead_letter(self, record: KafkaRecord, exc: Exception) -> beam.pvalue.TaggedOutput:
        self._failed.inc()
        origin = {"source": "kafka", "topic": record.topic, "partition": record.partition,
                  "offset": record.offset}
        return beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter.of(
            self._pipeline, "deserialize", f"cannot deserialize: {_first_line(exc)}",
            record.value or b"", origin, "deserialize"))


# ---- the public read transform ---------------------------------------------------------

class ReadFromKafka(beam.PTransform):
    """Topics -> :class:`KafkaRecord` s, timestamped; ``.dead_letters`` after application.

    ``p | ReadFromKafka("localhost:9092", ["user_events"], start_at="earliest", stop_at="end")``
    is a bounded read (batch); ``stop_at="never"`` (the default) an unbounded one.
    Records whose key/value the deserializer rejects go to ``self.dead_letters``
    (a PCollection of DeadLetter, set by ``expand``).

    ``batches=True`` gives one :class:`KafkaBatch` per poll of a partition (up to
    ``max_poll_records``, 2000 unless ``config`` says otherwise) instead of one
    KafkaRecord per message: the same records, offsets and watermarks, for pipelines that
    process records in batches (``--batch_engine=arrow`` in streaming).
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
        commit_offsets: bool = True,
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
            servers = kafka_opts.bootstrap_servers(bootstrap_servers or "")
        except Exception:
            raise ConfigError("--bootstrap_servers", "HOST:PORT[,HOST:PORT...]", bootstrap_servers) from None
        names = kafka_opts.split_topics([topics] if isinstance(topics, str) else list(topics or []))
        if not names or not all(kafka_opts._TOPIC.match(t) for t in names):
            raise ConfigError("--topic", "one or more topic names", topics)
        self._topics = names
        self._start_at = validate_start(start_at)
        self._stop_at = validate_stop(stop_at)
        if self._start_at == "committed" and not consumer_group:
            raise ConfigError.from_message(
                "--start_at: committed needs --consumer_group (whose offsets to resume from)")
        if max_records is not None and (not isinstance(max_records, int) or max_records <= 0):
            raise ConfigError("--max_records", "a whole number > 0", max_records)
        if max_read_time is not None and (not _is_time(max_read_time) or max_read_time <= 0):
            raise ConfigError("--max_read_time", "a number of seconds > 0", max_read_time)
        if not (timestamp_policy in ("log_time", "processing_time") or callable(timestamp_policy)):
            raise ConfigError("--timestamp_policy",
                              "log_time|processing_time or a function of a KafkaRecord",
                              timestamp_policy)
        for name, value in (("max_delay", max_delay), ("--idle_timeout", idle_timeout)):
            if not _is_time(value) or value < 0:
                raise ConfigError(name, "a number of seconds >= 0", value)
        if discovery_interval is not None and (not _is_time(discovery_interval) or discovery_interval <= 0):
            raise ConfigError("discovery_interval", "a number of seconds > 0 or None", discovery_interval)
        self._value = _deserializer(value_deserializer, "value_deserializer")
        self._key = _deserializer(key_deserializer, "key_deserializer")
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
        self.dead_letters: Optional[beam.PCollection] = None

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
            | "DiscoverPartitions" >> beam.ParDo(_DiscoverPartitions(
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
            watcher = _WatchPartitions(self._config, self._topics, self._discovery_interval,
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
                _Deserialize(self._key, self._value, self._pipeline)
            ).with_outputs(DEAD_LETTERS, main="records")
        )
        self.dead_letters = records[DEAD_LETTERS]
        if watch:
            return records["records"] | "DefaultWindowing" >> beam.WindowInto(
                beam_window.GlobalWindows())
        return records["records"]


def to_raw_record(record: KafkaRecord) -> RawRecord:
    """KafkaRecord -> the pipelines' RawRecord, keeping where it came from for dead letters."""
    return RawRecord(
        record.value if isinstance(record.value, bytes) else bytes(record.value or b""),
        {"source": "kafka", "topic": record.topic, "partition": record.partition,
         "offset": record.offset},
    )


def to_raw_batch(batch: KafkaBatch) -> RawBatch:
    """KafkaBatch -> RawBatch: the payloads, with each record's origin as :func:`to_raw_record` gives it."""
    return RawBatch(
        [v if isinstance(v, bytes) else bytes(v or b"") for v in batch.values],
        {"source": "kafka", "topic": batch.topic, "partition": batch.partition},
        "offset",
        batch.offsets,
    )


def json_event_time(field: str = "timestamp") -> TimestampFn:
    """Event time from a JSON payload's ``field`` (epoch seconds); log time when unreadable."""

    def event_time(record: KafkaRecord) -> float:
        try:
            value = json.loads(record.value)[field]
            if _is_time(value):
                return float(value)
        except Exception:  # malformed payloads are dead-lettered later; keep their log time
            pass
        return record.timestamp

    return event_time


# ---- writing ---------------------------------------------------------------------------

def to_json_bytes(record: Any) -> bytes:
    """Default serializer: bytes as they are, str as UTF-8, NamedTuple/dict as a JSON object."""
    if isinstance(record, bytes):
        return record
    if isinstance(record, str):
        return record.encode("utf-8")
    return json.dumps(as_dict(record), ensure_ascii=False, default=str,
                      separators=(",", ":")).encode("utf-8")


def _as_bytes(value: Any) -> Optional[bytes]:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


class _Pending(NamedTuple):
    future: Any
    element: Any
    payload: bytes
    timestamp: Any
    window: Any


class _WriteFn(_NoClientsPickled, beam.DoFn):
    _CLIENTS = ("_producer", "_errors")

    def __init__(self, config, topic, value_fn, key_fn, headers_fn, pipeline, step, on_reject):
        self._config = config
        self._topic = topic
        self._value_fn = value_fn
        self._key_fn = key_fn
        self._headers_fn = headers_fn
        self._pipeline = pipeline
        self._step = step
        self._on_reject = on_reject
        self._written = Metrics.counter(NAMESPACE, "records_written")
        self._rejected = Metrics.counter(NAMESPACE, "records_rejected")

    def setup(self):
        kafka = require("kafka", "kafka")
        self._errors = kafka.errors
        settings = {"acks": "all", "linger_ms": 5, "max_block_ms": 30000,
                    "bootstrap_timeout_ms": 10000}
        settings.update(_only(self._config, kafka.KafkaProducer.DEFAULT_CONFIG))
        settings["acks"] = "all"  # the delivery guarantee is not configurable
        try:
            self._producer = kafka.KafkaProducer(**settings)
        except Exception as exc:
            raise SinkError(f"cannot reach Kafka at {_servers(settings)} to write to topic "
                            f"{self._topic!r}: {_first_line(exc)}") from None

    def start_bundle(self):
        self._pending: list[_Pending] = []

    def _reject(self, element, payload, reason, code, timestamp, window):
        self._rejected.inc()
        if self._on_reject == "raise":
            raise SinkError(f"Kafka topic {self._topic!r} rejected a record: {reason}")
        origin = {"sink": "kafka", "topic": self._topic}
        if payload is None and isinstance(element, (bytes, str)):
            payload = element
        elif payload is None:
            try:
                payload = json.dumps(as_dict(element), default=str)
            except TypeError:
                payload = repr(element)
        letter = DeadLetter.of(self._pipeline, self._step, reason, payload, origin, code)
        return beam.pvalue.TaggedOutput(DEAD_LETTERS, WindowedValue(letter, timestamp, [window]))

    def process(self, element, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        payload = None
        try:
            payload = self._value_fn(element)
            if not isinstance(payload, bytes):
                raise TypeError(f"the value function returned {type(payload).__name__}, not bytes")
            key = _as_bytes(self._key_fn(element)) if self._key_fn else None
            headers = [(str(k), _as_bytes(v)) for k, v in (self._headers_fn(element) or [])] \
                if self._headers_fn else None
        except Exception as exc:
            yield _unwrap(self._reject(element, payload, f"cannot serialize: {_first_line(exc)}",
                                       "serialization", timestamp, window))
            return
        try:
            future = self._producer.send(self._topic, value=payload, key=key, headers=headers)
        except Exception as exc:
            if getattr(exc, "retriable", False) or isinstance(exc, self._errors.KafkaTimeoutError):
                raise SinkError(f"writing to Kafka topic {self._topic!r} at "
                                f"{_servers(self._config)} failed: {_first_line(exc)}") from None
            yield _unwrap(self._reject(element, payload, f"rejected: {_first_line(exc)}",
                                       "rejected", timestamp, window))
            return
        self._pending.append(_Pending(future, element, payload, timestamp, window))
        if len(self._pending) >= 10_000:
            for out in self._drain():
                yield _unwrap(out)

    def _drain(self):
        self._producer.flush()
        pending, self._pending = self._pending, []
        written = 0
        for item in pending:
            exc = item.future.exception if item.future.failed() else None
            if exc is None:
                written += 1
                yield beam.pvalue.TaggedOutput(
                    WRITTEN, WindowedValue(item.element, item.timestamp, [item.window]))
                continue
            if getattr(exc, "retriable", False):
                raise SinkError(f"writing to Kafka topic {self._topic!r} at "
                                f"{_servers(self._config)} failed: {_first_line(exc)}")
            yield self._reject(item.element, item.payload, f"rejected: {_first_line(exc)}",
                               "rejected", item.timestamp, item.window)
        self._written.inc(written)

    def finish_bundle(self):
        yield from self._drain()

    def teardown(self):
        producer = getattr(self, "_producer", None)
        if producer is not None:
            producer.close(timeout=10)
            self._producer = None


def _unwrap(tagged: beam.pvalue.TaggedOutput) -> beam.pvalue.TaggedOutput:
    """In process(), outputs are plain values (the runner adds timestamp and window)."""
    value = tagged.value
    if isinstance(value, WindowedValue):
        value = value.value
    return beam.pvalue.TaggedOutput(tagged.tag, value)


class KafkaWriteResult(NamedTuple):
    written: beam.PCollection
    dead_letters: beam.PCollection


class WriteToKafka(beam.PTransform):
    """Records -> ``topic``; returns ``KafkaWriteResult(written, dead_letters)``.

    ``value_fn`` turns a record into bytes (default: JSON of a NamedTuple/dict, bytes and
    str as they are); ``key_fn`` / ``headers_fn`` give the key (bytes/str/None) and headers
    ([(name, bytes|str)]). ``on_reject="raise"`` fails the bundle instead of
    dead-lettering (used for the dead-letter topic itself: nothing is dropped silently).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        value_fn: Callable[[Any], bytes] = to_json_bytes,
        key_fn: Optional[Callable[[Any], Any]] = None,
        headers_fn: Optional[Callable[[Any], Iterable[tuple[str, Any]]]] = None,
        config: Optional[Mapping[str, Any]] = None,
        pipeline: str = "kafka",
        step: str = "write_kafka",
        on_reject: str = "dead_letter",
        validate: bool = True,
        flag: str = "--output",
    ) -> None:
        super().__init__()
        try:
            servers = kafka_opts.bootstrap_servers(bootstrap_servers or "")
        except Exception:
            raise ConfigError("--bootstrap_servers", "HOST:PORT[,HOST:PORT...]", bootstrap_servers) from None
        if not isinstance(topic, str) or not kafka_opts._TOPIC.match(topic):
            raise ConfigError(flag, "a Kafka topic name (letters, digits, '.', '_', '-')", topic)
        for name, fn in (("value_fn", value_fn), ("key_fn", key_fn), ("headers_fn", headers_fn)):
            if fn is not None and not callable(fn):
                raise ConfigError(name, "a function of the record", fn)
        if on_reject not in ("dead_letter", "raise"):
            raise ConfigError("on_reject", "dead_letter|raise", on_reject)
        self._config = dict(config or {})
        self._config["bootstrap_servers"] = servers.split(",")
        self._topic = topic
        self._value_fn = value_fn
        self._key_fn = key_fn
        self._headers_fn = headers_fn
        self._pipeline = pipeline
        self._step = step
        self._on_reject = on_reject
        self._validate = validate
        self._flag = flag

    def expand(self, pcoll):
        if self._validate:
            check_topics(self._config, [self._topic], error=SinkError, flag=self._flag)
        outputs = pcoll | "Produce" >> beam.ParDo(_WriteFn(
            self._config, self._topic, self._value_fn, self._key_fn, self._headers_fn,
            self._pipeline, self._step, self._on_reject,
        )).with_outputs(DEAD_LETTERS, WRITTEN)
        return KafkaWriteResult(outputs[WRITTEN], outputs[DEAD_LETTERS])


# ---- wiring to the pipelines' flags -----------------------------------------------------

def _timestamp_policy(options) -> Union[str, TimestampFn]:
    policy = options.view_as(kafka_opts.KafkaOptions).timestamp_policy or "log_time"
    return json_event_time("timestamp") if policy == "event_time" else policy


def read_from_options(options, *, pipeline: str = "kafka", batches: bool = False) -> ReadFromKafka:
    k = options.view_as(kafka_opts.KafkaOptions)
    topics = kafka_opts.split_topics(k.topic)
    if not topics:
        raise ConfigError("--topic", "one or more topic names when --source=kafka")
    config = config_from_options(options)
    return ReadFromKafka(
        ",".join(config.pop("bootstrap_servers")),
        topics,
        consumer_group=k.consumer_group,
        start_at=k.start_at or "latest",
        stop_at=k.stop_at or "never",
        max_records=k.max_records,
        max_read_time=k.max_read_time,
        timestamp_policy=_timestamp_policy(options),
        idle_timeout=k.idle_timeout or 10.0,
        discovery_interval=k.kafka_discovery_interval or 60.0,
        config=config,
        pipeline=pipeline,
        batches=batches,
    )


class _ReadAs(beam.PTransform):
    """``read``, each element converted by ``convert`` in a step labelled ``label``."""

    def __init__(self, read: ReadFromKafka, label: str, convert) -> None:
        super().__init__()
        self._read = read
        self._label = label
        self._convert = convert

    def expand(self, pbegin):
        return pbegin | "ReadFromKafka" >> self._read | self._label >> beam.Map(self._convert)


def source_from_options(options):
    """``--source=kafka``: RawRecords with their topic/partition/offset; bounded unless
    never. The same read as RawBatches (one per poll) for pipelines that take batches."""
    from beam_pipelines.skeleton.sources import SourceSpec

    read = read_from_options(options)
    return SourceSpec(
        _ReadAs(read, "ToRawRecord", to_raw_record), bounded=read.bounded,
        batches=_ReadAs(read_from_options(options, batches=True), "ToRawBatch", to_raw_batch),
    )


def _writer_config(options) -> tuple[str, dict[str, Any]]:
    config = config_from_options(options)
    return ",".join(config.pop("bootstrap_servers")), config


def sink_from_options(options, *, pipeline: str, streaming: bool) -> beam.PTransform:
    """``--sink=kafka``: every result as a JSON object to the ``--output`` topic."""
    from beam_pipelines.options import IOOptions

    topic = options.view_as(IOOptions).output
    if not topic:
        raise ConfigError("--output", "the topic to write results to when --sink=kafka")
    servers, config = _writer_config(options)
    return WriteToKafka(servers, topic, config=config, pipeline=pipeline, step="write_results",
                        flag="--output")


def dead_letter_writer(target: str, options) -> beam.PTransform:
    """``--dead_letter kafka://TOPIC``: DeadLetter records as JSON, keyed by pipeline."""
    topic = target.split("://", 1)[1].strip("/") if "://" in target else target
    if options is None:
        raise ConfigError("--dead_letter", "kafka://TOPIC together with --bootstrap_servers", target)
    servers, config = _writer_config(options)
    return WriteToKafka(
        servers, topic, config=config, key_fn=lambda letter: letter.pipeline,
        headers_fn=lambda letter: [("reason_code", letter.reason_code)],
        step="write_dead_letters", on_reject="raise", flag="--dead_letter",
    )
