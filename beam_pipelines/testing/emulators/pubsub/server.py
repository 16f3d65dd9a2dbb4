"""An in-memory Google Cloud Pub/Sub emulator speaking the real gRPC protocol.

The official ``google-cloud-pubsub`` clients talk to it unchanged once
``PUBSUB_EMULATOR_HOST`` is set before they are created::

    python -m beam_pipelines.testing.emulators.pubsub --port 8085
    export PUBSUB_EMULATOR_HOST=127.0.0.1:8085

or, in a test or a notebook::

    with PubSubEmulator() as emulator:
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host

It implements what the Publisher and Subscriber clients use: topics and subscriptions
(create/get/list/delete), Publish, Pull, StreamingPull, Acknowledge and
ModifyAckDeadline, with at-least-once delivery: a message that is not acknowledged
within its ack deadline is delivered again, with a new ack id. Subscriptions with
``enable_message_ordering`` deliver messages of one ordering key one at a time, in
publish order. Not implemented (the server answers UNIMPLEMENTED): snapshots, seek,
schemas, push and export subscriptions, filters, dead-letter policies.

The request/response messages are the protobuf classes generated inside
google-cloud-pubsub (``google.pubsub_v1.types``), served through grpcio's generic
handlers, so nothing is generated or downloaded here.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import logging
import re
import threading
import time
from concurrent import futures
from typing import Any, Callable, Iterator

_LOG = logging.getLogger(__name__)

_TOPIC = re.compile(r"^projects/[^/]+/topics/[A-Za-z][\w.~+%-]{2,254}$")
_SUBSCRIPTION = re.compile(r"^projects/[^/]+/subscriptions/[A-Za-z][\w.~+%-]{2,254}$")
_DEFAULT_ACK_DEADLINE = 10
_MAX_ACK_DEADLINE = 600
# How long a Pull without return_immediately waits for a message before answering empty
# (the real service also answers empty after a while); short so pollers stay responsive.
_PULL_WAIT = 0.5
# How often StreamingPull re-checks for expired ack deadlines while it has nothing to send.
_TICK = 0.05


class _Delivery:
    __slots__ = ("message", "deadline")

    def __init__(self, message: Any, deadline: float) -> None:
        self.message = message
        self.deadline = deadline


class _Subscription:
    """Messages waiting for delivery and messages delivered but not acknowledged yet."""

    def __init__(self, proto: Any, condition: threading.Condition) -> None:
        self.proto = proto
        self.waiting: collections.deque = collections.deque()  # PubsubMessage protos
        self.outstanding: dict[str, _Delivery] = {}  # ack id -> delivery
        self.condition = condition

    @property
    def ordered(self) -> bool:
        return bool(self.proto.enable_message_ordering)

    def expire(self, now: float) -> None:
        """Put messages whose ack deadline passed back at the front, oldest first."""
        expired = [(ack_id, d) for ack_id, d in self.outstanding.items() if d.deadline <= now]
        if not expired:
            return
        for ack_id, _ in expired:
            del self.outstanding[ack_id]
        expired.sort(key=lambda item: int(item[1].message.message_id))
        self.waiting.extendleft(d.message for _, d in reversed(expired))

    def take(self, limit: int, deadline_seconds: float, next_ack_id: Callable[[], str]) -> list:
        """Up to ``limit`` deliverable messages, leased for ``deadline_seconds``."""
        now = time.monotonic()
        self.expire(now)
        busy_keys = (
            {d.message.ordering_key for d in self.outstanding.values() if d.message.ordering_key}
            if self.ordered else set()
        )
        taken: list = []
        kept: collections.deque = collections.deque()
        while self.waiting and len(taken) < limit:
            message = self.waiting.popleft()
            if self.ordered and message.ordering_key in busy_keys:
                kept.append(message)
                continue
            ack_id = next_ack_id()
            self.outstanding[ack_id] = _Delivery(message, now + deadline_seconds)
            taken.append((ack_id, message))
        kept.extend(self.waiting)
        self.waiting = kept
        return taken


class PubSubState:
    """Topics, subscriptions and messages of one emulator, guarded by one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.topics: dict[str, Any] = {}
        self.subscriptions: dict[str, _Subscription] = {}
        self._message_ids = itertools.count(1)
        self._ack_ids = itertools.count(1)

    def next_ack_id(self) -> str:
        return f"ack-{next(self._ack_ids)}"

    def next_message_id(self) -> str:
        return str(next(self._message_ids))


class _Abort(Exception):
    def __init__(self, code: Any, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _types():
    from google.pubsub_v1 import types

    return types


class PubSubServicer:
    """The Publisher and Subscriber RPCs over one :class:`PubSubState`."""

    def __init__(self, state: PubSubState | None = None) -> None:
        import grpc

        self._grpc = grpc
        self.state = state or PubSubState()
        self._stopping = threading.Event()

    # ---- helpers -------------------------------------------------------------------

    def _invalid(self, details: str) -> _Abort:
        return _Abort(self._grpc.StatusCode.INVALID_ARGUMENT, details)

    def _not_found(self, what: str) -> _Abort:
        return _Abort(self._grpc.StatusCode.NOT_FOUND, f"Resource not found (resource={what}).")

    def _topic_name(self, name: str) -> str:
        if not _TOPIC.match(name or ""):
            raise self._invalid(f"Invalid [topics] name: ({name}); expected projects/P/topics/T")
        return name

    def _subscription(self, name: str) -> _Subscription:
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
        if not low <= seconds <= _MAX_ACK_DEADLINE:
            raise self._invalid(
                f"Invalid ack deadline {seconds}s: expected {low}..{_MAX_ACK_DEADLINE} seconds"
            )

    def _received(self, taken: list) -> list:
        received = _types().ReceivedMessage.pb()
        return [received(ack_id=ack_id, message=message) for ack_id, message in taken]

    # ---- Publisher -----------------------------------------------------------------

    def CreateTopic(self, request, context):
        name = self._topic_name(request.name)
        with self.state.lock:
            if name in self.state.topics:
                raise _Abort(self._grpc.StatusCode.ALREADY_EXISTS, "Topic already exists")
            topic = _types().Topic.pb()()
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
        return _types().ListTopicsResponse.pb()(topics=topics)

    def ListTopicSubscriptions(self, request, context):
        with self.state.lock:
            self.GetTopic(_types().GetTopicRequest.pb()(topic=request.topic), context)
            names = sorted(
                n for n, s in self.state.subscriptions.items() if s.proto.topic == request.topic
            )
        return _types().ListTopicSubscriptionsResponse.pb()(subscriptions=names)

    def DeleteTopic(self, request, context):
        with self.state.lock:
            if self.state.topics.pop(self._topic_name(request.topic), None) is None:
                raise self._not_found(request.topic)
            for subscription in self.state.subscriptions.values():
                if subscription.proto.topic == request.topic:
                    subscription.proto.topic = "_deleted-topic_"
        return _empty()

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
                message = _types().PubsubMessage.pb()()
                message.CopyFrom(incoming)
                message.message_id = self.state.next_message_id()
                message.publish_time.FromNanoseconds(int(now * 1e9))
                ids.append(message.message_id)
                for subscription in targets:
                    subscription.waiting.append(message)
            self.state.changed.notify_all()
        return _types().PublishResponse.pb()(message_ids=ids)

    # ---- Subscriber ----------------------------------------------------------------

    def CreateSubscription(self, request, context):
        if not _SUBSCRIPTION.match(request.name or ""):
            raise self._invalid(
                f"Invalid [subscriptions] name: ({request.name}); "
                "expected projects/P/subscriptions/S"
            )
        self._topic_name(request.topic)
        deadline = request.ack_deadline_seconds or _DEFAULT_ACK_DEADLINE
        self._check_deadline(deadline, allow_zero=False)
        with self.state.lock:
            if request.name in self.state.subscriptions:
                raise _Abort(self._grpc.StatusCode.ALREADY_EXISTS, "Subscription already exists")
            if request.topic not in self.state.topics:
                raise self._not_found(request.topic)
            proto = _types().Subscription.pb()()
            proto.CopyFrom(request)
            proto.ack_deadline_seconds = deadline
            self.state.subscriptions[request.name] = _Subscription(proto, self.state.changed)
            return proto

    def GetSubscription(self, request, context):
        with self.state.lock:
            return self._subscription(request.subscription).proto

    def ListSubscriptions(self, request, context):
        prefix = request.project.rstrip("/") + "/subscriptions/"
        with self.state.lock:
            found = [s.proto for n, s in sorted(self.state.subscriptions.items())
                     if n.startswith(prefix)]
        return _types().ListSubscriptionsResponse.pb()(subscriptions=found)

    def DeleteSubscription(self, request, context):
        with self.state.lock:
            self._subscription(request.subscription)
            del self.state.subscriptions[request.subscription]
            self.state.changed.notify_all()
        return _empty()

    def _modify(self, subscription: _Subscription, ack_ids, seconds: int) -> None:
        now = time.monotonic()
        for ack_id in ack_ids:
            delivery = subscription.outstanding.get(ack_id)
            if delivery is not None:  # unknown or expired ack ids are ignored, as the service does
                delivery.deadline = now + seconds
        if seconds == 0:
            subscription.expire(now)
            self.state.changed.notify_all()

    def _ack(self, subscription: _Subscription, ack_ids) -> None:
        for ack_id in ack_ids:
            subscription.outstanding.pop(ack_id, None)
        if subscription.ordered:  # the next message of that ordering key may go out now
            self.state.changed.notify_all()

    def ModifyAckDeadline(self, request, context):
        self._check_deadline(request.ack_deadline_seconds, allow_zero=True)
        with self.state.lock:
            self._modify(self._subscription(request.subscription), request.ack_ids,
                         request.ack_deadline_seconds)
        return _empty()

    def Acknowledge(self, request, context):
        with self.state.lock:
            self._ack(self._subscription(request.subscription), request.ack_ids)
        return _empty()

    def Pull(self, request, context):
        if request.max_messages <= 0:
            raise self._invalid("max_messages must be > 0")
        wait_until = time.monotonic() + (0 if request.return_immediately else _PULL_WAIT)
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
        return _types().PullResponse.pb()(received_messages=self._received(taken))

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
        response = _types().StreamingPullResponse.pb()
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


def _empty():
    from google.protobuf import empty_pb2

    return empty_pb2.Empty()


_PUBLISHER = {
    "CreateTopic": ("Topic", "Topic"),
    "GetTopic": ("GetTopicRequest", "Topic"),
    "ListTopics": ("ListTopicsRequest", "ListTopicsResponse"),
    "ListTopicSubscriptions": ("ListTopicSubscriptionsRequest", "ListTopicSubscriptionsResponse"),
    "DeleteTopic": ("DeleteTopicRequest", None),
    "Publish": ("PublishRequest", "PublishResponse"),
}
_SUBSCRIBER = {
    "CreateSubscription": ("Subscription", "Subscription"),
    "GetSubscription": ("GetSubscriptionRequest", "Subscription"),
    "ListSubscriptions": ("ListSubscriptionsRequest", "ListSubscriptionsResponse"),
    "DeleteSubscription": ("DeleteSubscriptionRequest", None),
    "ModifyAckDeadline": ("ModifyAckDeadlineRequest", None),
    "Acknowledge": ("AcknowledgeRequest", None),
    "Pull": ("PullRequest", "PullResponse"),
    "StreamingPull": ("StreamingPullRequest", "StreamingPullResponse"),
}


def _unary(method: Callable) -> Callable:
    def call(request, context):
        try:
            return method(request, context)
        except _Abort as abort:
            context.abort(abort.code, abort.details)

    return call


def _stream(method: Callable) -> Callable:
    def call(request_iterator, context):
        try:
            yield from method(request_iterator, context)
        except _Abort as abort:
            context.abort(abort.code, abort.details)

    return call


def _handlers(servicer: PubSubServicer):
    import grpc

    types = _types()
    handlers = []
    for service, methods in (("Publisher", _PUBLISHER), ("Subscriber", _SUBSCRIBER)):
        table = {}
        for name, (request, _response) in methods.items():
            deserialize = getattr(types, request).pb().FromString
            method = getattr(servicer, name)
            if name == "StreamingPull":
                table[name] = grpc.stream_stream_rpc_method_handler(
                    _stream(method), request_deserializer=deserialize,
                    response_serializer=lambda m: m.SerializeToString(),
                )
            else:
                table[name] = grpc.unary_unary_rpc_method_handler(
                    _unary(method), request_deserializer=deserialize,
                    response_serializer=lambda m: m.SerializeToString(),
                )
        handlers.append(grpc.method_handlers_generic_handler(f"google.pubsub.v1.{service}", table))
    return handlers


class PubSubEmulator:
    """A Pub/Sub emulator serving on ``host:port`` in this process (threads).

    ``port=0`` picks a free port; ``.host`` is the value for ``PUBSUB_EMULATOR_HOST``.
    Nothing global is changed: callers set the environment variable themselves.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_workers: int = 64) -> None:
        self._bind_host = host
        self._port = port
        self._max_workers = max_workers
        self._server: Any = None
        self._servicer: PubSubServicer | None = None
        self.port: int | None = None

    @property
    def servicer(self) -> PubSubServicer:
        if self._servicer is None:
            raise RuntimeError("the emulator is not started")
        return self._servicer

    @property
    def host(self) -> str:
        if self.port is None:
            raise RuntimeError("the emulator is not started")
        return f"{self._bind_host}:{self.port}"

    def start(self) -> PubSubEmulator:
        import grpc

        from transforms.base.extras import require

        require("pubsub", "google.pubsub_v1")
        self._servicer = PubSubServicer()
        # Every open StreamingPull holds a worker thread, so leave plenty.
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers))
        self._server.add_generic_rpc_handlers(tuple(_handlers(self.servicer)))
        self.port = self._server.add_insecure_port(f"{self._bind_host}:{self._port}")
        if not self.port:
            raise OSError(f"cannot listen on {self._bind_host}:{self._port}")
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.servicer.stop()
            self._server.stop(grace=0.5).wait()
            self._server = None

    def __enter__(self) -> PubSubEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # Conveniences for tests and notebooks (the client library works just as well).

    def create_topic(self, topic: str) -> None:
        self.servicer.CreateTopic(_types().Topic.pb()(name=topic), None)

    def create_subscription(self, subscription: str, topic: str, **fields: Any) -> None:
        proto = _types().Subscription.pb()(name=subscription, topic=topic, **fields)
        self.servicer.CreateSubscription(proto, None)

    def backlog(self, subscription: str) -> tuple[int, int]:
        """(messages waiting, messages delivered but not acknowledged) of a subscription."""
        with self.servicer.state.lock:
            found = self.servicer.state.subscriptions[subscription]
            found.expire(time.monotonic())
            return len(found.waiting), len(found.outstanding)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beam_pipelines.testing.emulators.pubsub",
        description="Serve an in-memory Pub/Sub emulator that the official clients talk to.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on.")
    parser.add_argument("--port", type=int, default=8085, help="Port (0: any free port).")
    parser.add_argument("--topic", action="append", default=[],
                        help="Create this topic (projects/P/topics/T) at start; repeatable.")
    parser.add_argument("--subscription", action="append", default=[],
                        help="Create SUBSCRIPTION=TOPIC at start "
                             "(projects/P/subscriptions/S=projects/P/topics/T); repeatable.")
    args = parser.parse_args(argv)
    emulator = PubSubEmulator(args.host, args.port)
    try:
        emulator.start()
        for topic in args.topic:
            emulator.create_topic(topic)
        for pair in args.subscription:
            name, _, topic = pair.partition("=")
            emulator.create_subscription(name, topic)
    except (_Abort, OSError, RuntimeError, ImportError) as exc:
        print(f"error: {getattr(exc, 'details', exc)}", flush=True)
        emulator.stop()
        return 2
    print(f"Pub/Sub emulator listening on {emulator.host}\n"
          f"export PUBSUB_EMULATOR_HOST={emulator.host}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
