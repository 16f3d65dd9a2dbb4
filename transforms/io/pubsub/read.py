"""Google Cloud Pub/Sub source and sink that run on every Beam runner (extra ``[pubsub]``).

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
import datetime as _dt
import json
import logging
import os
import threading
import time
import uuid
from typing import Any, Callable, Iterable, NamedTuple

import apache_beam as beam
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from beam_pipelines.options.pubsub import (
    SUBSCRIPTION_FORM,
    SUBSCRIPTION_RE,
    TOPIC_FORM,
    TOPIC_RE,
)
from transforms.base.errors import ConfigError, SinkError, SourceError
from transforms.base.extras import require
from transforms.records import RawRecord, utc_iso

_LOG = logging.getLogger(__name__)
_NAMESPACE = "pubsub"
_ACK_CHUNK = 2500  # the service's limit of ack ids per request
_DEDUP_CAPACITY = 100_000
_MAX_LEASE = 3600.0  # stop extending a message nobody acknowledged after an hour
_LAUNCH_TIMEOUT = 10.0  # seconds a launch-time check may take, retries included
_FIRST_DEADLINE = 10.0  # the shortest ack deadline a subscription can have
_LEASE_TICK = 1.0  # how often the lease thread looks for deadlines about to run out
_LEASE_MARGIN = 5.0  # extend a deadline this many seconds before it runs out


# ---- clients -------------------------------------------------------------------------

def emulator_host(explicit: str | None = None) -> str | None:
    """The emulator to use: ``explicit``, else ``$PUBSUB_EMULATOR_HOST``, else None."""
    return explicit or os.environ.get("PUBSUB_EMULATOR_HOST") or None


def _no_credentials(exc: Exception, error: type) -> Exception:
    return error(
        f"Pub/Sub: no Google Cloud credentials ({str(exc).splitlines()[0]}): set "
        "GOOGLE_APPLICATION_CREDENTIALS, or point at an emulator with "
        "--pubsub_emulator_host=HOST:PORT (or PUBSUB_EMULATOR_HOST)"
    )


def subscriber_client(host: str | None, error: type = SourceError):
    """A SubscriberClient for the emulator at ``host``, or for the real service."""
    pubsub = require("pubsub", "google.cloud.pubsub_v1")
    if host:
        import grpc
        from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

        return pubsub.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host))
        )
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return pubsub.SubscriberClient()
    except DefaultCredentialsError as exc:
        raise _no_credentials(exc, error) from None


def publisher_client(host: str | None, *, batch_settings=None, ordering: bool = False,
                     error: type = SinkError):
    """A PublisherClient for the emulator at ``host``, or for the real service."""
    pubsub = require("pubsub", "google.cloud.pubsub_v1")
    args: list[Any] = [batch_settings or pubsub.types.BatchSettings(),
                       pubsub.types.PublisherOptions(enable_message_ordering=ordering)]
    if host:
        import grpc
        from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

        return pubsub.PublisherClient(
            *args, transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host))
        )
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return pubsub.PublisherClient(*args)
    except DefaultCredentialsError as exc:
        raise _no_credentials(exc, error) from None


def _call(what: str, error: type, host: str | None, function: Callable, **kwargs):
    """Run a launch-time API call; turn its failure into one line naming the resource.

    Retries transient failures of the service for at most 10 s (an emulator not at all),
    so an unreachable endpoint fails the launch quickly instead of after a minute.
    """
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry, if_exception_type

    # A local emulator either answers or is not running: no point retrying.
    retry = None if host else Retry(
        initial=0.1, maximum=2.0, multiplier=2.0, timeout=_LAUNCH_TIMEOUT,
        predicate=if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError),
    )
    where = f" at the emulator {host} (is it running?)" if host else ""
    try:
        return function(retry=retry, timeout=_LAUNCH_TIMEOUT, **kwargs)
    except gexc.NotFound:
        raise error(f"Pub/Sub: {what} does not exist{where}") from None
    except gexc.PermissionDenied as exc:
        raise error(f"Pub/Sub: permission denied on {what}: {exc.message}") from None
    except (gexc.GoogleAPIError, gexc.RetryError) as exc:
        raise error(f"Pub/Sub: cannot reach {what}{where}: {str(exc).splitlines()[0]}") from None


# ---- message decoding ----------------------------------------------------------------

def _timestamp_seconds(text: str) -> float:
    """Beam's convention for timestamp attributes: epoch milliseconds or RFC 3339."""
    value = text.strip()
    if value.lstrip("-").isdigit():
        return int(value) / 1000.0
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = _dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("no time zone")
    return moment.timestamp()


def _publish_seconds(message) -> float:
    stamp = message.publish_time  # a datetime (proto-plus) or a protobuf Timestamp
    if hasattr(stamp, "timestamp"):
        return stamp.timestamp()
    return stamp.seconds + stamp.nanos / 1e9


# ---- the read restriction ------------------------------------------------------------

class PullRestriction(NamedTuple):
    """What is left of one reader's work.

    ``ack_ids``/``keys`` belong to the bundle that produced this restriction: it was
    committed by the time this restriction is processed, so they are acknowledged (and
    remembered for de-duplication) first.
    """

    ack_ids: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    remaining: int | None = None  # messages still to read; None: unbounded
    deadline: float | None = None  # epoch seconds after which nothing more is pulled
    finished: bool = False
    newest: float | None = None  # the latest event time read so far (for an idle watermark)


class PullTracker(RestrictionTracker):
    """Claims pulls; splits only to checkpoint (the residual carries the claimed ack ids)."""

    def __init__(self, restriction: PullRestriction) -> None:
        self._restriction = restriction
        self._ack_ids: list[str] = []
        self._keys: list[str] = []
        self._count = 0
        self._newest = restriction.newest
        self._split = False
        self._done = restriction.finished
        self._lock = threading.Lock()

    def current_restriction(self) -> PullRestriction:
        return self._restriction

    def try_claim(self, position: tuple[list[str], list[str], int, float | None] | None) -> bool:
        """Claim one pull (ack ids, de-duplication keys, count, newest event time);
        ``None`` claims the end."""
        with self._lock:
            if self._split or self._done:
                return False
            if position is None:
                self._done = True
                return False
            ack_ids, keys, count, newest = position
            if newest is not None and (self._newest is None or newest > self._newest):
                self._newest = newest
            self._ack_ids.extend(ack_ids)
            self._keys.extend(keys)
            self._count += count
            return True

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder > 0:
            return None  # a pull stream cannot be divided; only checkpoint
        with self._lock:
            if self._split or self._done:
                return None
            self._split = True
            r = self._restriction
            remaining = None if r.remaining is None else r.remaining - self._count
            exhausted = (remaining is not None and remaining <= 0) or (
                r.deadline is not None and time.time() >= r.deadline
            )
            residual = PullRestriction(
                tuple(self._ack_ids), tuple(self._keys), remaining, r.deadline, exhausted,
                self._newest,
            )
            primary = r._replace(remaining=self._count, finished=True)
            return primary, residual

    def check_done(self) -> None:
        if not (self._split or self._done):
            raise ValueError("Pub/Sub reader returned without checkpointing or finishing")

    def current_progress(self) -> RestrictionProgress:
        r = self._restriction
        if r.remaining is None:
            return RestrictionProgress(completed=self._count, remaining=1)
        return RestrictionProgress(completed=self._count,
                                   remaining=max(0, r.remaining - self._count))

    def is_bounded(self) -> bool:
        r = self._restriction
        return r.remaining is not None or r.deadline is not None


class _PullRestrictionProvider(RestrictionProvider):
    def __init__(self, max_messages: int | None, max_seconds: float | None) -> None:
        self._max_messages = max_messages
        self._max_seconds = max_seconds

    def initial_restriction(self, element) -> PullRestriction:
        deadline = time.time() + self._max_seconds if self._max_seconds else None
        return PullRestriction(remaining=self._max_messages, deadline=deadline)

    def create_tracker(self, restriction: PullRestriction) -> PullTracker:
        return PullTracker(restriction)

    def split(self, element, restriction):
        yield restriction

    def restriction_size(self, element, restriction: PullRestriction) -> int:
        return restriction.remaining if restriction.remaining is not None else 1

    def truncate(self, element, restriction: PullRestriction):
        # On drain: keep only the acknowledgements of what was already committed.
        return restriction._replace(remaining=0, finished=not restriction.ack_ids)


# ---- leases --------------------------------------------------------------------------

class _Leases:
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
        self._stop = threading.Event()
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
            while len(self._acked) > _DEDUP_CAPACITY:
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

    def _modify(self, ack_ids: list[str], seconds: int) -> None:
        for start in range(0, len(ack_ids), _ACK_CHUNK):
            self._client.modify_ack_deadline(request={
                "subscription": self._subscription,
                "ack_ids": ack_ids[start:start + _ACK_CHUNK],
                "ack_deadline_seconds": seconds,
            })

    def _run(self) -> None:
        while not self._stop.wait(_LEASE_TICK):
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
        with self._lock:
            if ack_ids is None:
                self._stop.set()
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


# ---- the reader ----------------------------------------------------------------------

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
        self._provider = _PullRestrictionProvider(config.max_messages, config.max_seconds)
        self._client: Any = None
        self._leases: Any = None  # _Leases once set up
        self._seen: collections.OrderedDict = collections.OrderedDict()

    def setup(self) -> None:
        self._client = subscriber_client(self._config.host)
        self._leases = _Leases(self._client, self._config.subscription, self._config.ack_deadline)
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
        while len(self._seen) > _DEDUP_CAPACITY:
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
                    return _timestamp_seconds(text)
                except ValueError:
                    pass
            self._bad_timestamps.inc()
            origin["timestamp_error"] = (
                f"attribute {attribute!r} is {text!r}: expected epoch milliseconds or "
                "RFC 3339; used the publish time"
            )
        return _publish_seconds(message)

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
        records, keys = [], []
        batch_keys: set[str] = set()
        for item in received:
            message = item.message
            key = self._dedup_key(message)
            if key in self._seen or key in batch_keys:
                self._duplicates.inc()
                continue
            batch_keys.add(key)
            keys.append(key)
            origin = {
                "source": "pubsub",
                "subscription": subscription,
                "message_id": message.message_id,
                "publish_time": utc_iso(_publish_seconds(message)),
                "attributes": dict(message.attributes),
            }
            if message.ordering_key:
                origin["ordering_key"] = message.ordering_key
            seconds = self._event_seconds(message, origin)
            records.append((RawRecord(bytes(message.data), origin), seconds))
        newest = max((s for _, s in records), default=None)
        if not tracker.try_claim((ack_ids, keys, len(received), newest)):
            self._leases.release(ack_ids)  # a checkpoint came first: hand them back
            return
        if getattr(finalizer, "register", None) is not None:  # not every runner finalizes
            leases = self._leases
            finalizer.register(lambda: leases.ack(ack_ids))
        self._received.inc(len(records))
        if records:
            _advance(watermark, Timestamp.of(min(s for _, s in records)))
        for record, seconds in records:
            yield TimestampedValue(record, seconds)
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

    Yields :class:`~transforms.records.RawRecord` with the message data and
    ``origin={"source": "pubsub", "subscription": S, "message_id": ID, "publish_time": ISO,
    "attributes": {...}}``, timestamped with the event time. Unbounded unless
    ``max_messages`` or ``max_seconds`` is given. ``readers`` pulls in parallel (the
    service spreads messages across them). ``validate`` checks at construction that the
    subscription exists, so a typo fails before the pipeline starts.
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
            raise ConfigError("--subscription", SUBSCRIPTION_FORM, subscription)
        if topic is not None and not TOPIC_RE.match(str(topic)):
            raise ConfigError("--pubsub_topic", TOPIC_FORM, topic)
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
        self._host = _host_of(emulator_host)
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
                    _call(f"subscription {self._subscription}", SourceError, self._host,
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
        return (
            pbegin
            | "Subscription" >> beam.Create(readers, reshuffle=False)
            | "Pull" >> beam.ParDo(reader).with_output_types(RawRecord)
        )


def _host_of(explicit: str | None) -> str | None:
    return emulator_host(explicit)


def create_temporary_subscription(topic: str, host: str | None) -> str:
    """A subscription to ``topic`` that the service deletes after a day without use."""
    project = topic.split("/")[1]
    short = topic.rsplit("/", 1)[-1][:200]
    name = f"projects/{project}/subscriptions/{short}-beam-{uuid.uuid4().hex[:12]}"
    client = subscriber_client(host)
    try:
        _call(f"topic {topic}", SourceError, host, client.create_subscription, request={
            "name": name, "topic": topic, "ack_deadline_seconds": 60,
            "expiration_policy": {"ttl": {"seconds": 24 * 3600}},
        })
    finally:
        client.close()
    _LOG.info("Pub/Sub: reading %s through temporary subscription %s", topic, name)
    return name


# ---- the writer ----------------------------------------------------------------------

class PubSubMessage(NamedTuple):
    """A message to publish: data, string attributes, optional ordering key."""

    data: bytes
    attributes: dict[str, str] | None = None
    ordering_key: str | None = None


class _Publish(beam.DoFn):
    def __init__(self, topic: str, host: str | None, ordering: bool,
                 max_messages: int, max_bytes: int, max_latency: float) -> None:
        self._topic = topic
        self._host = host
        self._ordering = ordering
        self._batch = (max_messages, max_bytes, max_latency)
        self._client: Any = None

    def setup(self) -> None:
        pubsub = require("pubsub", "google.cloud.pubsub_v1")
        max_messages, max_bytes, max_latency = self._batch
        settings = pubsub.types.BatchSettings(
            max_messages=max_messages, max_bytes=max_bytes, max_latency=max_latency
        )
        self._client = publisher_client(self._host, batch_settings=settings,
                                        ordering=self._ordering)
        self._published = Metrics.counter(_NAMESPACE, "messages_published")

    def start_bundle(self) -> None:
        self._futures: list = []

    def process(self, element):
        message = _as_message(element)
        if message.ordering_key and not self._ordering:
            raise SinkError("Pub/Sub: a message has an ordering key but WriteToPubSub was "
                            "created without ordering=True")
        future = self._client.publish(
            self._topic, message.data, ordering_key=message.ordering_key or "",
            **(message.attributes or {}),
        )
        self._futures.append((future, message.ordering_key))

    def finish_bundle(self) -> None:
        # The bundle succeeds only once every message of it is published, so a failure
        # makes the runner retry the bundle instead of losing messages.
        failures = []
        for future, key in self._futures:
            try:
                future.result(timeout=120)
            except Exception as exc:
                failures.append(exc)
                if key:
                    self._client.resume_publish(self._topic, key)
        self._published.inc(len(self._futures) - len(failures))
        self._futures = []
        if failures:
            raise SinkError(f"Pub/Sub: {len(failures)} messages to {self._topic} were not "
                            f"published: {failures[0]}")

    def teardown(self) -> None:
        if self._client is not None:
            try:
                self._client.stop()
            except Exception:
                pass
            self._client = None


def _as_message(element: Any) -> PubSubMessage:
    if isinstance(element, PubSubMessage):
        data = element.data
        message = element
    elif isinstance(element, (bytes, bytearray)):
        return PubSubMessage(bytes(element))
    elif isinstance(element, str):
        return PubSubMessage(element.encode("utf-8"))
    else:
        raise SinkError(
            f"Pub/Sub: cannot publish a {type(element).__name__}: expected bytes, str or "
            "PubSubMessage"
        )
    if isinstance(data, str):
        message = message._replace(data=data.encode("utf-8"))
    if message.attributes:
        message = message._replace(
            attributes={str(k): str(v) for k, v in message.attributes.items()}
        )
    return message


class WriteToPubSub(beam.PTransform):
    """Publish bytes, str or :class:`PubSubMessage` elements to a topic.

    Messages are batched by the client library (``max_batch_messages``,
    ``max_batch_bytes``, ``max_latency`` seconds); a bundle completes only when all of
    its messages are published. ``ordering=True`` enables ordering keys.
    """

    def __init__(
        self,
        topic: str,
        *,
        ordering: bool = False,
        emulator_host: str | None = None,
        max_batch_messages: int = 100,
        max_batch_bytes: int = 1_000_000,
        max_latency: float = 0.05,
        validate: bool = True,
        flag: str = "--output",
    ) -> None:
        super().__init__()
        if not isinstance(topic, str) or not TOPIC_RE.match(topic):
            raise ConfigError(flag, TOPIC_FORM, topic)
        if not isinstance(max_batch_messages, int) or not 0 < max_batch_messages <= 1000:
            raise ConfigError("max_batch_messages", "a whole number from 1 to 1000",
                              max_batch_messages)
        if not isinstance(max_batch_bytes, int) or not 0 < max_batch_bytes <= 10_000_000:
            raise ConfigError("max_batch_bytes", "a number of bytes from 1 to 10000000",
                              max_batch_bytes)
        self._topic = topic
        self._ordering = ordering
        self._host = _host_of(emulator_host)
        self._batch = (max_batch_messages, max_batch_bytes, max_latency)
        self._validate = validate

    def expand(self, messages):
        if self._validate:
            client = publisher_client(self._host)
            try:
                _call(f"topic {self._topic}", SinkError, self._host, client.get_topic,
                      request={"topic": self._topic})
            finally:
                client.stop()
        return messages | "Publish" >> beam.ParDo(
            _Publish(self._topic, self._host, self._ordering, *self._batch)
        )


# ---- --source=pubsub / --sink=pubsub -------------------------------------------------

def read_from_options(options) -> ReadFromPubSub:
    from beam_pipelines.options.pubsub import PubSubOptions

    o = options.view_as(PubSubOptions)
    if not o.subscription and not o.pubsub_topic:
        raise ConfigError("--subscription",
                          f"{SUBSCRIPTION_FORM} (or --pubsub_topic={TOPIC_FORM}) "
                          "when --source=pubsub")
    if o.subscription and o.pubsub_topic:
        raise ConfigError.from_message(
            "--pubsub_topic: give either --subscription or --pubsub_topic, not both"
        )
    return ReadFromPubSub(
        o.subscription,
        topic=o.pubsub_topic,
        timestamp_attribute=o.timestamp_attribute,
        id_attribute=o.id_attribute,
        max_messages=o.pubsub_max_messages,
        max_seconds=o.pubsub_max_seconds,
        ack_deadline_seconds=o.pubsub_ack_deadline,
        emulator_host=o.pubsub_emulator_host,
        readers=o.pubsub_readers,
    )


def source_from_options(options):
    """``--source=pubsub``: a SourceSpec, bounded when a max messages/seconds is set."""
    from beam_pipelines.skeleton.sources import SourceSpec

    read = read_from_options(options)
    return SourceSpec(read, bounded=read.bounded)


def _to_messages(attribute_fields: list[str], ordering_field: str | None):
    from transforms.sinks import as_dict

    def convert(record: Any) -> PubSubMessage:
        row = as_dict(record)
        attributes = {f: _attribute_text(row[f]) for f in attribute_fields
                      if row.get(f) is not None}
        key = row.get(ordering_field) if ordering_field else None
        data = json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")
        return PubSubMessage(data, attributes or None, None if key is None else str(key))

    return convert


def _attribute_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def sink_from_options(options, *, pipeline: str, streaming: bool) -> beam.PTransform:
    """``--sink=pubsub --output=projects/P/topics/T``: each record as a JSON message."""
    from beam_pipelines.options import IOOptions
    from beam_pipelines.options.pubsub import PubSubOptions

    output = options.view_as(IOOptions).output
    o = options.view_as(PubSubOptions)
    if not output:
        raise ConfigError("--output", f"a topic ({TOPIC_FORM}) when --sink=pubsub")
    fields = o.pubsub_attribute_fields.split(",") if o.pubsub_attribute_fields else []
    write = WriteToPubSub(output, ordering=bool(o.pubsub_ordering_key),
                          emulator_host=o.pubsub_emulator_host)
    convert = _to_messages(fields, o.pubsub_ordering_key)
    return _ConvertAndWrite(convert, write, pipeline)


class _ConvertAndWrite(beam.PTransform):
    def __init__(self, convert: Callable[[Any], PubSubMessage], write: WriteToPubSub,
                 pipeline: str) -> None:
        super().__init__()
        self._convert = convert
        self._write = write
        self._pipeline = pipeline

    def expand(self, records):
        return (
            records
            | "ToMessages" >> beam.Map(self._convert)
            | "WriteToPubSub" >> self._write
        )


def dead_letter_writer(target: str, options: Any = None) -> beam.PTransform:
    """``--dead_letter pubsub://projects/P/topics/T``: each DeadLetter as a JSON message.

    The message carries ``pipeline``, ``step`` and ``reason_code`` as attributes, so a
    subscription filter or a consumer can route rejects without parsing them.
    """
    topic = target.split("://", 1)[1] if "://" in target else target
    if not TOPIC_RE.match(topic):
        raise ConfigError("--dead_letter", f"pubsub://{TOPIC_FORM}", target)
    host = None
    if options is not None:
        from beam_pipelines.options.pubsub import PubSubOptions

        host = options.view_as(PubSubOptions).pubsub_emulator_host

    def to_message(letter: Any) -> PubSubMessage:
        from transforms.sinks import as_dict

        row = as_dict(letter)
        attributes = {k: str(row[k]) for k in ("pipeline", "step", "reason_code") if row.get(k)}
        data = json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")
        return PubSubMessage(data, attributes or None)

    return _ConvertAndWrite(to_message, WriteToPubSub(topic, emulator_host=host,
                                                      flag="--dead_letter"), "dead_letters")
