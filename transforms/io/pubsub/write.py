"""``WriteToPubSub``: publish messages in batches; a bundle completes only once every
message of it is published, so a failure makes the runner retry it (nothing is dropped).
Also the JSON messages the pipelines publish: results and dead letters."""

from __future__ import annotations

import json
from typing import Any, Callable, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.base.errors import ConfigError, SinkError
from transforms.base.extras import require
from transforms.io.pubsub.client import call, publisher_client
from transforms.io.pubsub.client import emulator_host as host_of
from transforms.io.pubsub.rules import TOPIC_FORM, TOPIC_RE, refusal
from transforms.sinks import as_dict

__all__ = ["ConvertAndWrite", "PubSubMessage", "WriteToPubSub", "dead_letter_message",
           "json_messages"]

_NAMESPACE = "pubsub"


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
    its messages are published. ``ordering=True`` enables ordering keys. Nothing is
    dead-lettered: a failed publish fails the bundle, which the runner retries.

    :param topic: ``projects/P/topics/T``.
    :param ordering: enable ordering keys (messages with one key arrive in order).
    :param emulator_host: HOST:PORT of an emulator (default ``$PUBSUB_EMULATOR_HOST``).
    :param max_batch_messages: messages per publish request (1-1000).
    :param max_batch_bytes: bytes per publish request.
    :param max_latency: seconds a message may wait for its batch to fill.
    :param validate: check at construction that the topic exists.
    :param flag: the flag errors name (``--output``, ``--dead_letter``).
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
            raise ConfigError.from_message(f"{flag}: {refusal(TOPIC_FORM, topic)}")
        if not isinstance(max_batch_messages, int) or not 0 < max_batch_messages <= 1000:
            raise ConfigError("max_batch_messages", "a whole number from 1 to 1000",
                              max_batch_messages)
        if not isinstance(max_batch_bytes, int) or not 0 < max_batch_bytes <= 10_000_000:
            raise ConfigError("max_batch_bytes", "a number of bytes from 1 to 10000000",
                              max_batch_bytes)
        self._topic = topic
        self._ordering = ordering
        self._host = host_of(emulator_host)
        self._batch = (max_batch_messages, max_batch_bytes, max_latency)
        self._validate = validate

    def expand(self, messages):
        if self._validate:
            client = publisher_client(self._host)
            try:
                call(f"topic {self._topic}", SinkError, self._host, client.get_topic,
                 request={"topic": self._topic})
            finally:
                client.stop()
        return messages | "Publish" >> beam.ParDo(
            _Publish(self._topic, self._host, self._ordering, *self._batch)
        )


def json_messages(attribute_fields: list[str], ordering_field: str | None,
                  encode: Callable[[dict[str, Any]], bytes] | None = None):
    """A function making a JSON message of a record: ``attribute_fields`` also as message
    attributes, ``ordering_field``'s value as the ordering key. ``encode`` writes the
    data in another format instead (an Avro/Protobuf/JSON Schema encoder's ``encode``)."""

    def convert(record: Any) -> PubSubMessage:
        row = as_dict(record)
        attributes = {f: _attribute_text(row[f]) for f in attribute_fields
                      if row.get(f) is not None}
        key = row.get(ordering_field) if ordering_field else None
        data = encode(row) if encode is not None else \
            json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")
        return PubSubMessage(data, attributes or None, None if key is None else str(key))

    return convert


def _attribute_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


class ConvertAndWrite(beam.PTransform):
    """Records -> messages (by ``convert``) -> ``write``."""

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


def dead_letter_message(letter: Any) -> PubSubMessage:
    """A DeadLetter as a JSON message with ``pipeline``, ``step`` and ``reason_code`` as
    attributes, so a subscription filter or a consumer can route rejects without parsing
    them."""
    row = as_dict(letter)
    attributes = {k: str(row[k]) for k in ("pipeline", "step", "reason_code") if row.get(k)}
    data = json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")
    return PubSubMessage(data, attributes or None)
