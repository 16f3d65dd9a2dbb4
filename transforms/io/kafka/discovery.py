"""Finding partitions: the launch-time topic check, the partitions to read (a DoFn after
``Impulse``, so a template launched next week sees next week's partitions), and the
watcher that finds partitions added later to an unbounded read."""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms import delivery
from transforms.base.errors import SourceError
from transforms.base.extras import require
from transforms.io.kafka import client
from transforms.io.kafka.client import pooled_consumer, quiet_kafka_logs, servers
from transforms.io.kafka.offsets import Resolver, allot, committed_positions
from transforms.io.kafka.records import NEVER, WATCH, PartitionRead

__all__ = ["WatchSpec", "check_topics", "create_topic_hint", "max_message_bytes", "topic_max_message_bytes",
           "wait_for_partitions"]

_LOG = logging.getLogger(__name__)


def create_topic_hint(config: Mapping[str, Any], topic: str) -> str:
    """The command that creates ``topic`` and sends nothing to it."""
    return (f"python -m beam_pipelines.produce --bootstrap_servers={servers(config)} "
            f"--topic={topic} --create_only --partitions=N")


def check_topics(config: Mapping[str, Any], topics: Sequence[str], *, timeout_ms: int = 5000,
                 error=SourceError, flag: str = "--topic") -> dict[str, list[int]]:
    """Partitions of each topic; ``error`` naming the servers and topic when unreachable/missing.

    Called at pipeline construction, so a typo fails in seconds instead of a worker retrying.
    """
    try:
        with quiet_kafka_logs():  # the one-line error says it all; no retry log spam
            consumer = client.consumer(config, bootstrap_timeout_ms=timeout_ms,
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
                f"{servers(config)} (create it: {create_topic_hint(config, missing[0])}; or "
                f"check {flag})"
            )
        return found
    finally:
        consumer.close()


def topic_max_message_bytes(config: Mapping[str, Any], topic: str) -> Optional[int]:
    """The topic's ``max.message.bytes`` as the broker reports it; None where it does not
    (an older client or broker, no DescribeConfigs permission)."""
    require("kafka", "kafka")
    from kafka.admin import ConfigResource, ConfigResourceType

    try:
        with quiet_kafka_logs():
            admin = client.build("admin", client.settings(
                "admin", config, defaults={"request_timeout_ms": 10000}))
            try:
                found = admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, topic,
                                    configs={"max.message.bytes": None})],
                    config_filter="all")
            finally:
                admin.close()
        return int(found["topic"][topic]["max.message.bytes"]["value"])
    except Exception as exc:  # the shape differs across kafka-python versions, or no answer
        _LOG.debug("max.message.bytes of topic %r not available: %s", topic, exc)
        return None


def max_message_bytes(config: Mapping[str, Any], topic: str) -> int:
    """The largest record a producer with ``config`` can write to ``topic``: the
    producer's ``max_request_size`` and the topic's ``max.message.bytes`` (where the
    broker reports it), whichever is smaller."""
    kafka = require("kafka", "kafka")
    limit = int(config.get("max_request_size")
                or kafka.KafkaProducer.DEFAULT_CONFIG["max_request_size"])
    topic_limit = topic_max_message_bytes(config, topic)
    return min(limit, topic_limit) if topic_limit else limit


class DiscoverPartitions(beam.DoFn):
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
        consumer = client.consumer(self._config, group_id=self._group)
        try:
            tps = []
            for topic in self._topics:
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    raise SourceError(
                        f"topic {topic!r} does not exist on Kafka at {servers(self._config)}"
                    )
                tps += [kafka.TopicPartition(topic, p) for p in sorted(partitions)]
            resolver = Resolver(consumer, self._group)
            beginning = consumer.beginning_offsets(tps)
            end = consumer.end_offsets(tps)
            starts = resolver.starts(tps, self._start_at, beginning, end)
            stops = resolver.stops(tps, self._stop_at, end)
            if self._max_records:
                available = [max(0, min(stops[tp], end[tp]) - starts[tp]) for tp in tps]
                for tp, share in zip(tps, allot(self._max_records, available), strict=True):
                    stops[tp] = min(stops[tp], starts[tp] + share)
            deadline = time.time() + self._max_read_time if self._max_read_time else None
            replays = self._replays(consumer, tps, starts)
            for tp in tps:
                start = min(starts[tp], stops[tp])
                _LOG.info("reading %s[%d] offsets [%d, %s)", tp.topic, tp.partition, start,
                          "never" if stops[tp] == NEVER else stops[tp])
                yield PartitionRead(tp.topic, tp.partition, start, stops[tp], deadline,
                                    self._max_delay, self._idle_timeout, replays.get(tp, ()))
            if self._watch:
                known = frozenset((tp.topic, tp.partition) for tp in tps)
                yield beam.pvalue.TaggedOutput(WATCH, WatchSpec(deadline, known))
        finally:
            consumer.close()


    def _replays(self, consumer, tps, starts) -> dict:
        """Resuming from committed offsets on a runner that defers commits: the ranges
        read again whose outputs had settled, and the floors of the run that committed
        them (see transforms.delivery.Position), handed to the run's gate."""
        scope = delivery.current()
        if self._start_at != "committed" or not self._group or scope is None:
            return {}
        replays = {}
        for tp, position in committed_positions(consumer, tps).items():
            scope.restore(position)
            ranges = tuple((max(a, starts[tp]), b) for a, b in position.settled if b > starts[tp])
            if ranges:
                replays[tp] = ranges
        return replays


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


class WatchPartitions(beam.DoFn):
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
        with pooled_consumer(self._config) as consumer:
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


def wait_for_partitions(config: Mapping[str, Any], topic: str, partitions: int,
                        timeout: float = 30.0, error: type[Exception] = SourceError) -> None:
    """Poll metadata until ``topic`` shows ``partitions`` partitions (a topic just created
    takes a moment to get its leaders), or raise ``error``."""
    found_consumer = client.build("consumer", client.settings(
        "consumer", config, allow_auto_create_topics=False))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = found_consumer.partitions_for_topic(topic)
            if found and len(found) >= partitions:
                return
            time.sleep(0.05)  # polling metadata until it converges
        raise error(f"topic {topic!r} did not get {partitions} partitions in {timeout}s")
    finally:
        found_consumer.close()
