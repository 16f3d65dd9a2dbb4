"""The Publisher and Subscriber RPCs of the emulator."""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from typing import Any, Iterator

from beam_pipelines.testing.emulators.pubsub.state import (
    DEFAULT_ACK_DEADLINE,
    MAX_ACK_DEADLINE,
    PubSubState,
    Subscription,
)

__all__ = ["Abort", "PubSubServicer", "empty", "pubsub_types"]

_LOG = logging.getLogger(__name__)

_TOPIC = re.compile(r"^projects/[^/]+/topics/[A-Za-z][\w.~+%-]{2,254}$")
_SUBSCRIPTION = re.compile(r"^projects/[^/]+/subscriptions/[A-Za-z][\w.~+%-]{2,254}$")

# How long a Pull without return_immediately waits for a message before answering empty
# (the real service also answers empty after a while); short so pollers stay responsive.
_PULL_WAIT = 0.5
# How often StreamingPull re-checks for expired ack deadlines while it has nothing to send.
_TICK = 0.05


class Abort(Exception):
    def __init__(self, code: Any, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def pubsub_types():
    from google.pubsub_v1 import types

    return types


class PubSubServicer:
    """The Publisher and Subscriber RPCs over one :class:`PubSubState`."""

    def __init__(self, state: PubSubState | None = None) -> None:
        import grpc

        self._grpc = grpc
        self.state = state or PubSubState()
        self._stopping = threading.Event()
        self.pulling: collections.Counter = collections.Counter()  # subscription -> Pull calls

    # ---- helpers -------------------------------------------------------------------

    def _invalid(self, details: str) -> Abort:
        return Abort(self._grpc.StatusCode.INVALID_ARGUMENT, details)

    def _not_found(self, what: str) -> Abort:
        return Abort(self._grpc.StatusCode.NOT_FOUND, f"Resource not found (resource={what}).")

    def _topic_name(self, name: str) -> str:
        if not _TOPIC.match(name or ""):
            raise self._invalid(f"Invalid [topics] name: ({name}); expected projects/P/topics/T")
        return name

    def _subscription(self, name: str) -> Subscription:
        if not _SUBSCRIPTION.match(name or ""):
            raise self._invalid(
                f"Invalid [subscriptions] name: ({name}); expected projects/P/subscriptions/S"
            )
        found = self.state.subscriptions.get(name)
        if found is None:
            raise self._not_found(name.rsplit("/", 1)[-1])
        return found

    def _check_deadline(self, seconds: int, *, allow_zero: bool) -> None:
        low = 0 if allow_zero else 10
        if not low <= seconds <= MAX_ACK_DEADLINE:
            raise self._invalid(
                f"Invalid ack deadline {seconds}s: expected {low}..{MAX_ACK_DEADLINE} seconds"
            )

    def _received(self, taken: list) -> list:
        received = pubsub_types().ReceivedMessage.pb()
        return [received(ack_id=ack_id, message=message) for ack_id, message in taken]

    # ---- Publisher -----------------------------------------------------------------

    def CreateTopic(self, request, context):
        name = self._topic_name(request.name)
        with self.state.lock:
            if name in self.state.topics:
                raise Abort(self._grpc.StatusCode.ALREADY_EXISTS, "Topic already exists")
            topic = pubsub_types().Topic.pb()()
            topic.CopyFrom(request)
            self.state.topics[name] = topic
            return topic

    def GetTopic(self, request, context):
        with self.state.lock:
            topic = self.state.topics.get(self._topic_name(request.topic))
            if topic is None:
                raise self._not_found(request.topic)
            return topic

    def ListTopics(self, request, context):
        prefix = request.project.rstrip("/") + "/topics/"
        with self.state.lock:
            topics = [t for n, t in sorted(self.state.topics.items()) if n.startswith(prefix)]
        return pubsub_types().ListTopicsResponse.pb()(topics=topics)

    def ListTopicSubscriptions(self, request, context):
        with self.state.lock:
            self.GetTopic(pubsub_types().GetTopicRequest.pb()(topic=request.topic), context)
            names = sorted(
                n for n, s in self.state.subscriptions.items() if s.proto.topic == request.topic
            )
        return pubsub_types().ListTopicSubscriptionsResponse.pb()(subscriptions=names)

    def DeleteTopic(self, request, context):
        with self.state.lock:
            if self.state.topics.pop(self._topic_name(request.topic), None) is None:
                raise self._not_found(request.topic)
            for subscription in self.state.subscriptions.values():
                if subscription.proto.topic == request.topic:
                    subscription.proto.topic = "_deleted-topic_"
        return empty()

    def Publish(self, request, context):
        topic = self._topic_name(request.topic)
        if not request.messages:
            raise self._invalid("The request contains no messages")
        with self.state.lock:
            if topic not in self.state.topics:
                raise self._not_found(topic)
            targets = [s for s in self.state.subscriptions.values() if s.proto.topic == topic]
            ids = []
            now = time.time()
            for incoming in request.messages:
                if not incoming.data and not incoming.attributes:
                    raise self._invalid("A message must have data or attributes")
                message = pubsub_types().PubsubMessage.pb()()
                message.CopyFrom(incoming)
                message.message_id = self.state.next_message_id()
                message.publish_time.FromNanoseconds(int(now * 1e9))
                ids.append(message.message_id)
                for subscription in targets:
                    subscription.waiting.append(message)
            self.state.changed.notify_all()
        return pubsub_types().PublishResponse.pb()(message_ids=ids)

    # ---- Subscriber ----------------------------------------------------------------

    def CreateSubscription(self, request, context):
        if not _SUBSCRIPTION.match(request.name or ""):
            raise self._invalid(
                f"Invalid [subscriptions] name: ({request.name}); "
                "expected projects/P/subscriptions/S"
            )
        self._topic_name(request.topic)
        deadline = request.ack_deadline_seconds or DEFAULT_ACK_DEADLINE
        self._check_deadline(deadline, allow_zero=False)
        with self.state.lock:
            if request.name in self.state.subscriptions:
                raise Abort(self._grpc.StatusCode.ALREADY_EXISTS, "Subscription already exists")
            if request.topic not in self.state.topics:
                raise self._not_found(request.topic)
            proto = pubsub_types().Subscription.pb()()
            proto.CopyFrom(request)
            proto.ack_deadline_seconds = deadline
            self.state.subscriptions[request.name] = Subscription(proto, self.state.changed)
            return proto

    def GetSubscription(self, request, context):
        with self.state.lock:
            return self._subscription(request.subscription).proto

    def ListSubscriptions(self, request, context):
        prefix = request.project.rstrip("/") + "/subscriptions/"
        with self.state.lock:
            found = [s.proto for n, s in sorted(self.state.subscriptions.items())
                     if n.startswith(prefix)]
        return pubsub_types().ListSubscriptionsResponse.pb()(subscriptions=found)

    def DeleteSubscription(self, request, context):
        with self.state.lock:
            self._subscription(request.subscription)
            del self.state.subscriptions[request.subscription]
            self.state.changed.notify_all()
        return empty()

    def _modify(self, subscription: Subscription, ack_ids, seconds: int) -> None:
        now = time.monotonic()
        for ack_id in ack_ids:
            delivery = subscription.outstanding.get(ack_id)
            if delivery is not None:  # unknown or expired ack ids are ignored, as the service does
                delivery.deadline = now + seconds
        if seconds == 0:
            subscription.expire(now)
            self.state.changed.notify_all()

    def _ack(self, subscription: Subscription, ack_ids) -> None:
        for ack_id in ack_ids:
            subscription.outstanding.pop(ack_id, None)
        if subscription.ordered:  # the next message of that ordering key may go out now
            self.state.changed.notify_all()

    def ModifyAckDeadline(self, request, context):
        self._check_deadline(request.ack_deadline_seconds, allow_zero=True)
        with self.state.lock:
            self._modify(self._subscription(request.subscription), request.ack_ids,
                         request.ack_deadline_seconds)
        return empty()

    def Acknowledge(self, request, context):
        with self.state.lock:
            self._ack(self._subscription(request.subscription), request.ack_ids)
        return empty()

    def Pull(self, request, context):
        if request.max_messages <= 0:
            raise self._invalid("max_messages must be > 0")
        wait_until = time.monotonic() + (0 if request.return_immediately else _PULL_WAIT)
        with self.state.lock:
            self.pulling[request.subscription] += 1
        try:
            return self._pull(request, wait_until)
        finally:
            with self.state.lock:
                self.pulling[request.subscription] -= 1

    def _pull(self, request, wait_until: float):
        with self.state.lock:
            while True:
                subscription = self._subscription(request.subscription)
                taken = subscription.take(
                    request.max_messages, subscription.proto.ack_deadline_seconds,
                    self.state.next_ack_id,
                )
                remaining = wait_until - time.monotonic()
                if taken or remaining <= 0 or self._stopping.is_set():
                    break
                self.state.changed.wait(min(remaining, _TICK))
        return pubsub_types().PullResponse.pb()(received_messages=self._received(taken))

    def StreamingPull(self, request_iterator, context) -> Iterator[Any]:
        first = next(request_iterator)
        with self.state.lock:
            subscription = self._subscription(first.subscription)
        deadline = first.stream_ack_deadline_seconds or subscription.proto.ack_deadline_seconds
        self._check_deadline(deadline, allow_zero=False)
        closed = threading.Event()

        def handle(req) -> None:
            with self.state.lock:
                if req.ack_ids:
                    self._ack(subscription, req.ack_ids)
                if req.modify_deadline_ack_ids:
                    for ack_id, seconds in zip(req.modify_deadline_ack_ids,
                                               req.modify_deadline_seconds, strict=False):
                        self._modify(subscription, [ack_id], seconds)

        def read_requests() -> None:
            try:
                for req in request_iterator:
                    handle(req)
            except Exception:  # the client went away; the stream ends below
                pass
            finally:
                closed.set()
                with self.state.lock:
                    self.state.changed.notify_all()

        handle(first)
        threading.Thread(target=read_requests, name="pubsub-emulator-stream", daemon=True).start()
        response = pubsub_types().StreamingPullResponse.pb()
        while not closed.is_set() and context.is_active() and not self._stopping.is_set():
            with self.state.lock:
                if self.state.subscriptions.get(subscription.proto.name) is not subscription:
                    raise self._not_found(subscription.proto.name)
                taken = subscription.take(1000, deadline, self.state.next_ack_id)
                if not taken:
                    self.state.changed.wait(_TICK)
                    continue
            yield response(received_messages=self._received(taken))

    def stop(self) -> None:
        self._stopping.set()
        with self.state.lock:
            self.state.changed.notify_all()


def empty():
    from google.protobuf import empty_pb2

    return empty_pb2.Empty()
