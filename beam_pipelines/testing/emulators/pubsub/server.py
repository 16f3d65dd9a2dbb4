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
import logging
import threading
import time
from concurrent import futures
from typing import Any, Callable

from beam_pipelines.testing.emulators.pubsub.servicer import Abort, PubSubServicer, pubsub_types
from beam_pipelines.testing.emulators.pubsub.state import PubSubState
from transforms.base.extras import require

__all__ = ["PubSubEmulator", "PubSubServicer", "PubSubState", "main"]

_LOG = logging.getLogger(__name__)


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
        except Abort as abort:
            context.abort(abort.code, abort.details)

    return call


def _stream(method: Callable) -> Callable:
    def call(request_iterator, context):
        try:
            yield from method(request_iterator, context)
        except Abort as abort:
            context.abort(abort.code, abort.details)

    return call


def _handlers(servicer: PubSubServicer):
    import grpc

    types = pubsub_types()
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
        self.servicer.CreateTopic(pubsub_types().Topic.pb()(name=topic), None)

    def create_subscription(self, subscription: str, topic: str, **fields: Any) -> None:
        proto = pubsub_types().Subscription.pb()(name=subscription, topic=topic, **fields)
        self.servicer.CreateSubscription(proto, None)

    def pulling(self, subscription: str) -> int:
        """How many Pull calls on ``subscription`` are waiting for messages now (a killed
        client's last one may still be, and takes what becomes deliverable meanwhile)."""
        with self.servicer.state.lock:
            return self.servicer.pulling[subscription]

    def expire(self, subscription: str) -> int:
        """Let every outstanding ack deadline of ``subscription`` pass now (what happens to
        a killed client's messages once their deadlines run out); returns how many."""
        with self.servicer.state.lock:
            found = self.servicer.state.subscriptions[subscription]
            count = len(found.outstanding)
            for delivery in found.outstanding.values():
                delivery.deadline = 0.0
            found.expire(time.monotonic())
            self.servicer.state.changed.notify_all()
            return count

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
    except (Abort, OSError, RuntimeError, ImportError) as exc:
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
