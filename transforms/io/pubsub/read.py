"""``ReadFromPubSub``: a Pub/Sub source that runs on every Beam runner (extra ``[pubsub]``).

Beam's own ``ReadFromPubSub`` is implemented natively by Dataflow and the direct runner
only. :class:`ReadFromPubSub` here is a plain splittable DoFn over google-cloud-pubsub's
synchronous Pull, so Flink, Spark, Prism, Dask and the portable runners run it too.

Delivery is at least once, and a message is acknowledged only once the runner has
durably committed the bundle that read it:

* each pull is claimed by the restriction tracker and the DoFn then checkpoints, so the
  *residual* restriction carries the ack ids of the bundle just read. A runner processes
  a residual only after committing the bundle that produced it, so the residual's first
  act is to acknowledge them. This works on runners without bundle finalization (the
  direct runner's streaming mode);
* where the runner supports bundle finalization, a finalization callback acknowledges
  the same ids as soon as the bundle is committed (a second ack is harmless);
* a runner that keeps its state in memory (the local streaming runner) defers
  finalization until everything derived from a message is written (an open window
  holds it back, see transforms/delivery): there each message is acknowledged on its
  own, then, and the residual acknowledges nothing;
* meanwhile a lease thread extends their ack deadlines, and on teardown (a failed or
  cancelled pipeline) unacknowledged messages are released at once (``modack 0``) so a
  restarted reader gets them again without waiting for the deadline.

Event time is the publish time, or the ``timestamp_attribute`` (epoch milliseconds or
RFC 3339). The watermark is the oldest event time of the latest pull, and the wall clock
when the subscription is idle. Redeliveries are de-duplicated by message id, and by the
``id_attribute`` when given, per reader over the last 100000 committed ids.
"""

from __future__ import annotations

import collections
import logging
import time
import uuid
from typing import Any, Iterable, NamedTuple

import apache_beam as beam
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms import delivery
from transforms.base.errors import ConfigError, SourceError
from transforms.io.pubsub.client import call, subscriber_client
from transforms.io.pubsub.client import emulator_host as host_of
from transforms.io.pubsub.leases import DEDUP_CAPACITY, Leases
from transforms.io.pubsub.restriction import PullRestriction, PullRestrictionProvider
from transforms.io.pubsub.rules import (
    SUBSCRIPTION_FORM,
    SUBSCRIPTION_RE,
    TOPIC_FORM,
    TOPIC_RE,
    refusal,
)
from transforms.io.pubsub.serde import publish_seconds, timestamp_seconds
from transforms.io.results import ReadResult, no_dead_letters
from transforms.records import RawRecord, utc_iso

__all__ = ["ReadFromPubSub", "create_temporary_subscription"]

_LOG = logging.getLogger(__name__)
_NAMESPACE = "pubsub"


class _ReadConfig(NamedTuple):
    subscription: str
    host: str | None
    timestamp_attribute: str | None
    id_attribute: str | None
    max_messages: int | None
    max_seconds: float | None
    ack_deadline: int
    batch_size: int
    poll_interval: float
    pull_timeout: float


class _PullMessages(beam.DoFn, RestrictionProvider):
    """subscription -> RawRecords, one pull per bundle, checkpointing after each.

    It is its own RestrictionProvider (delegating), so its configuration travels with it.
    """

    def __init__(self, config: _ReadConfig) -> None:
        self._config = config
        self._provider = PullRestrictionProvider(config.max_messages, config.max_seconds)
        self._client: Any = None
        self._leases: Any = None  # _Leases once set up
        self._seen: collections.OrderedDict = collections.OrderedDict()

    def setup(self) -> None:
        self._client = subscriber_client(self._config.host)
        self._leases = Leases(self._client, self._config.subscription, self._config.ack_deadline)
        self._received = Metrics.counter(_NAMESPACE, "messages_read")
        self._duplicates = Metrics.counter(_NAMESPACE, "duplicates_dropped")
        self._bad_timestamps = Metrics.counter(_NAMESPACE, "bad_timestamp_attribute")

    def initial_restriction(self, element):
        return self._provider.initial_restriction(element)

    def create_tracker(self, restriction):
        return self._provider.create_tracker(restriction)

    def split(self, element, restriction):
        return self._provider.split(element, restriction)

    def restriction_size(self, element, restriction):
        return self._provider.restriction_size(element, restriction)

    def truncate(self, element, restriction):
        return self._provider.truncate(element, restriction)

    def teardown(self) -> None:
        if self._leases is not None:
            self._leases.release()
            self._leases = None
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                pass
            self._client = None

    def _remember(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._seen[key] = None
            self._seen.move_to_end(key)
        while len(self._seen) > DEDUP_CAPACITY:
            self._seen.popitem(last=False)

    def _pull(self, count: int) -> list:
        from google.api_core import exceptions as gexc

        try:
            response = self._client.pull(
                request={"subscription": self._config.subscription, "max_messages": count,
                         "return_immediately": False},
                timeout=self._config.pull_timeout,
            )
        except (gexc.DeadlineExceeded, gexc.ServiceUnavailable):
            return []  # nothing arrived in time, or a transient blip: poll again
        except gexc.NotFound:
            raise SourceError(
                f"Pub/Sub: subscription {self._config.subscription} does not exist"
            ) from None
        return list(response.received_messages)

    def _event_seconds(self, message, origin: dict) -> float:
        attribute = self._config.timestamp_attribute
        if attribute:
            text = message.attributes.get(attribute)
            if text is not None:
                try:
                    return timestamp_seconds(text)
                except ValueError:
                    pass
            self._bad_timestamps.inc()
            origin["timestamp_error"] = (
                f"attribute {attribute!r} is {text!r}: expected epoch milliseconds or "
                "RFC 3339; used the publish time"
            )
        return publish_seconds(message)

    def process(
        self,
        subscription: str,
        # Beam fills positional placeholders first: the finalizer must precede the
        # keyword-filled restriction and watermark parameters.
        finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=beam.DoFn.RestrictionParam(),
        watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider()),
    ):
        if self._client is None:  # some runners' SDF drivers never call setup
            self.setup()
        restriction = tracker.current_restriction()
        if restriction.ack_ids:  # the bundle that read them has been committed
            self._leases.ack(restriction.ack_ids)
        self._remember(restriction.keys)
        if restriction.finished:
            return
        budget = _budget(restriction, self._config.batch_size)
        if budget == 0:
            tracker.try_claim(None)  # exhausted (count or time): the restriction is done
            return
        received = self._pull(budget)
        if not received:
            # Idle: everything published so far has been read. Event times from an
            # attribute can only be trusted up to the newest one seen; publish times
            # follow the clock.
            if not self._config.timestamp_attribute:
                _advance(watermark, Timestamp.now())
            elif restriction.newest is not None:
                _advance(watermark, Timestamp.of(restriction.newest))
            tracker.defer_remainder(Duration.of(self._config.poll_interval))
            return
        ack_ids = [m.ack_id for m in received]
        self._leases.add(ack_ids)
        records, keys, duplicates = [], [], []
        batch_keys: set[str] = set()
        for item in received:
            message = item.message
            key = self._dedup_key(message)
            if key in self._seen or key in batch_keys:
                self._duplicates.inc()
                duplicates.append(item.ack_id)
                continue
            batch_keys.add(key)
            keys.append(key)
            origin = {
                "source": "pubsub",
                "subscription": subscription,
                "message_id": message.message_id,
                "publish_time": utc_iso(publish_seconds(message)),
                "attributes": dict(message.attributes),
            }
            if message.ordering_key:
                origin["ordering_key"] = message.ordering_key
            seconds = self._event_seconds(message, origin)
            records.append((RawRecord(bytes(message.data), origin), seconds, item.ack_id))
        newest = max((s for _, s, _ in records), default=None)
        # A runner that defers finalization until a message's outputs are written (the
        # local streaming runner) acknowledges each message then; the residual must not
        # acknowledge them when the next invocation starts.
        per_message = delivery.tracked() and getattr(finalizer, "register", None) is not None
        claimed = [] if per_message else ack_ids
        if not tracker.try_claim((claimed, keys, len(received), newest)):
            self._leases.release(ack_ids)  # a checkpoint came first: hand them back
            return
        leases = self._leases
        if not per_message and getattr(finalizer, "register", None) is not None:
            finalizer.register(lambda: leases.ack(ack_ids))  # not every runner finalizes
        self._received.inc(len(records))
        if records:
            _advance(watermark, Timestamp.of(min(s for _, s, _ in records)))
        for record, seconds, ack_id in records:
            if per_message:  # registered before its output: it waits for that output only
                finalizer.register(lambda ack_id=ack_id: leases.ack_soon([ack_id]))
            yield TimestampedValue(record, seconds)
        if per_message and duplicates:  # after the last output: waits for all of them
            finalizer.register(lambda: leases.ack_soon(duplicates))
        tracker.defer_remainder(Duration.of(0))

    def _dedup_key(self, message) -> str:
        attribute = self._config.id_attribute
        if attribute and attribute in message.attributes:
            return "a:" + message.attributes[attribute]
        return "m:" + message.message_id


def _budget(restriction: PullRestriction, batch: int) -> int:
    """How many messages the next pull may take (0: the restriction is exhausted)."""
    if restriction.deadline is not None and time.time() >= restriction.deadline:
        return 0
    if restriction.remaining is not None:
        return max(0, min(batch, restriction.remaining))
    return batch


def _advance(estimator: ManualWatermarkEstimator, moment: Timestamp) -> None:
    current = estimator.current_watermark()
    if current is None or moment > current:
        estimator.set_watermark(moment)


class ReadFromPubSub(beam.PTransform):
    """Read a Pub/Sub subscription (or a topic, through a temporary subscription).

    Returns a :class:`~transforms.io.results.ReadResult`: ``records`` are
    :class:`~transforms.records.RawRecord` s with the message data and
    ``origin={"source": "pubsub", "subscription": S, "message_id": ID, "publish_time": ISO,
    "attributes": {...}}``, timestamped with the event time; ``dead_letters`` is empty (a
    message is never refused here: a bad timestamp attribute is noted in the origin and
    the publish time used). Unbounded unless ``max_messages`` or ``max_seconds`` is given.

    :param subscription: ``projects/P/subscriptions/S`` to read (or ``topic``, not both).
    :param topic: ``projects/P/topics/T`` read through a temporary subscription created at
        launch (it sees only messages published after that).
    :param timestamp_attribute: the attribute holding event time (epoch ms or RFC 3339).
    :param id_attribute: the attribute holding a unique id, to drop redeliveries by it.
    :param max_messages: a bounded read of at most this many messages.
    :param max_seconds: a bounded read that stops pulling after this many seconds.
    :param ack_deadline_seconds: each extension of a read message's ack deadline (10-600).
    :param emulator_host: HOST:PORT of an emulator (default ``$PUBSUB_EMULATOR_HOST``).
    :param readers: how many readers pull in parallel (the service spreads messages).
    :param batch_size: messages per pull (1-1000).
    :param poll_interval: seconds between pulls while the subscription is idle.
    :param pull_timeout: the longest wait of one pull.
    :param validate: check at construction that the subscription exists, so a typo fails
        before the pipeline starts.
    """

    def __init__(
        self,
        subscription: str | None = None,
        *,
        topic: str | None = None,
        timestamp_attribute: str | None = None,
        id_attribute: str | None = None,
        max_messages: int | None = None,
        max_seconds: float | None = None,
        ack_deadline_seconds: int = 60,
        emulator_host: str | None = None,
        readers: int = 1,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        pull_timeout: float = 10.0,
        validate: bool = True,
    ) -> None:
        super().__init__()
        if (subscription is None) == (topic is None):
            raise ConfigError("--subscription",
                              f"either a subscription ({SUBSCRIPTION_FORM}) or --pubsub_topic "
                              f"({TOPIC_FORM}), not both and not neither")
        if subscription is not None and not SUBSCRIPTION_RE.match(str(subscription)):
            raise ConfigError.from_message(
                f"--subscription: {refusal(SUBSCRIPTION_FORM, subscription)}")
        if topic is not None and not TOPIC_RE.match(str(topic)):
            raise ConfigError.from_message(f"--pubsub_topic: {refusal(TOPIC_FORM, topic)}")
        if max_messages is not None and (not isinstance(max_messages, int) or max_messages <= 0):
            raise ConfigError("--pubsub_max_messages", "a whole number > 0", max_messages)
        if max_seconds is not None and not (isinstance(max_seconds, (int, float))
                                            and max_seconds > 0):
            raise ConfigError("--pubsub_max_seconds", "a number of seconds > 0", max_seconds)
        if not isinstance(ack_deadline_seconds, int) or not 10 <= ack_deadline_seconds <= 600:
            raise ConfigError("--pubsub_ack_deadline", "a whole number of seconds from 10 to 600",
                              ack_deadline_seconds)
        if not isinstance(readers, int) or readers <= 0:
            raise ConfigError("--pubsub_readers", "a whole number > 0", readers)
        if not isinstance(batch_size, int) or not 0 < batch_size <= 1000:
            raise ConfigError("batch_size", "a whole number from 1 to 1000", batch_size)
        self._subscription = subscription
        self._topic = topic
        self._timestamp_attribute = timestamp_attribute
        self._id_attribute = id_attribute
        self._max_messages = max_messages
        self._max_seconds = max_seconds
        self._ack_deadline = ack_deadline_seconds
        self._host = host_of(emulator_host)
        self._readers = readers
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._pull_timeout = pull_timeout
        self._validate = validate

    @property
    def bounded(self) -> bool:
        return self._max_messages is not None or self._max_seconds is not None

    def _resolve_subscription(self) -> str:
        if self._subscription is not None:
            if self._validate:
                client = subscriber_client(self._host)
                try:
                    call(f"subscription {self._subscription}", SourceError, self._host,
                         client.get_subscription,
                         request={"subscription": self._subscription})
                finally:
                    client.close()
            return self._subscription
        assert self._topic is not None  # __init__ checked that one of the two is set
        return create_temporary_subscription(self._topic, self._host)

    def expand(self, pbegin):
        subscription = self._resolve_subscription()
        per_reader = None
        if self._max_messages is not None:
            per_reader = -(-self._max_messages // self._readers)
        config = _ReadConfig(
            subscription, self._host, self._timestamp_attribute, self._id_attribute,
            per_reader, self._max_seconds, self._ack_deadline, self._batch_size,
            self._poll_interval, self._pull_timeout,
        )
        readers = [subscription] * self._readers
        reader = _PullMessages(config)
        records = (
            pbegin
            | "Subscription" >> beam.Create(readers, reshuffle=False)
            | "Pull" >> beam.ParDo(reader).with_output_types(RawRecord)
        )
        return ReadResult(records, no_dead_letters(pbegin))


def create_temporary_subscription(topic: str, host: str | None) -> str:
    """A subscription to ``topic`` that the service deletes after a day without use."""
    project = topic.split("/")[1]
    short = topic.rsplit("/", 1)[-1][:200]
    name = f"projects/{project}/subscriptions/{short}-beam-{uuid.uuid4().hex[:12]}"
    client = subscriber_client(host)
    try:
        call(f"topic {topic}", SourceError, host, client.create_subscription, request={
            "name": name, "topic": topic, "ack_deadline_seconds": 60,
            "expiration_policy": {"ttl": {"seconds": 24 * 3600}},
        })
    finally:
        client.close()
    _LOG.info("Pub/Sub: reading %s through temporary subscription %s", topic, name)
    return name
