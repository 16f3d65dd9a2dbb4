"""``WriteToKafka``: one producer per DoFn instance (``acks=all``), flushed at the end of each
bundle; records that cannot be serialized or that the broker rejects go to the
``dead_letters`` output, transient errors fail the bundle so the runner retries it."""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from transforms import delivery
from transforms.base.errors import ConfigError, SinkError
from transforms.base.extras import require
from transforms.io.kafka import client, rules
from transforms.io.kafka.client import NoClientsPickled, first_line, servers
from transforms.io.kafka.discovery import check_topics
from transforms.io.kafka.records import DEAD_LETTERS, NAMESPACE, WRITTEN
from transforms.io.kafka.serde import as_bytes, to_json_bytes
from transforms.io.kafka.transactions import ExactlyOnce, Transactions
from transforms.io.results import WriteResult
from transforms.records import DeadLetter
from transforms.sinks import as_dict

__all__ = ["KafkaWriteResult", "WriteToKafka"]


PRODUCER_DEFAULTS = {"acks": "all", "linger_ms": 5, "max_block_ms": 30000,
                     "bootstrap_timeout_ms": 10000}


class _Pending(NamedTuple):
    future: Any
    element: Any
    payload: bytes
    timestamp: Any
    window: Any


def _nothing() -> None:
    pass


class _WriteFn(NoClientsPickled, beam.DoFn):
    _CLIENTS = ("_producer", "_errors", "_transactions")

    def __init__(self, config, topic, value_fn, key_fn, headers_fn, pipeline, step, on_reject,
                 exactly_once: Optional[ExactlyOnce] = None):
        self._exactly_once = exactly_once
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
        # A value function with a setup (a registry-backed encoder) prepares once per
        # worker: an incompatible schema fails here, in one line, not on the first record.
        getattr(self._value_fn, "setup", _nothing)()
        kafka = require("kafka", "kafka")
        self._errors = kafka.errors
        self._transactions: Optional[Transactions] = None
        if self._exactly_once is not None:  # one shared transactional producer (transactions.py)
            self._transactions = Transactions.acquire(self._config, self._exactly_once,
                                                      self._topic)
            self._producer = self._transactions.producer
            return
        # acks=all last: the delivery guarantee is not configurable.
        settings = client.settings("producer", self._config, defaults=PRODUCER_DEFAULTS,
                                   acks="all")
        try:
            self._producer = client.build("producer", settings)
        except Exception as exc:
            raise SinkError(f"cannot reach Kafka at {servers(settings)} to write to topic "
                            f"{self._topic!r}: {first_line(exc)}") from None

    def start_bundle(self):
        self._pending: list[_Pending] = []
        if self._transactions is not None:
            self._scope = delivery.current()
            if self._scope is None:
                raise SinkError("exactly-once writes to Kafka need the LocalStreamingRunner "
                                "(--delivery=exactly_once)")
            self._transactions.lock.acquire()  # released in finish_bundle or on a failure
            try:
                self._transactions.begin_bundle(self._scope)
            except Exception:
                self._transactions.lock.release()
                raise

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
        if self._transactions is None:
            yield from self._process(element, timestamp, window)
            return
        try:
            yield from self._process(element, timestamp, window)
        except BaseException as exc:
            self._fail(exc)
            raise

    def _fail(self, exc: BaseException) -> None:
        """A bundle of an exactly-once sink failed: the open transaction must never commit
        (the run fails; a restart reads its records again)."""
        assert self._transactions is not None
        self._transactions.fail(f"writing to Kafka topic {self._topic!r} failed: {first_line(exc)}")
        self._transactions.lock.release()

    def _process(self, element, timestamp, window):
        payload = None
        try:
            payload = self._value_fn(element)
            if not isinstance(payload, bytes):
                raise TypeError(f"the value function returned {type(payload).__name__}, not bytes")
            key = as_bytes(self._key_fn(element)) if self._key_fn else None
            headers = [(str(k), as_bytes(v)) for k, v in (self._headers_fn(element) or [])] \
                if self._headers_fn else None
        except Exception as exc:
            yield _unwrap(self._reject(element, payload, f"cannot serialize: {first_line(exc)}",
                                       "serialization", timestamp, window))
            return
        try:
            if self._transactions is not None:
                future = self._transactions.send(payload, key, headers)
            else:
                future = self._producer.send(self._topic, value=payload, key=key, headers=headers)
        except Exception as exc:
            if getattr(exc, "retriable", False) or isinstance(exc, self._errors.KafkaTimeoutError):
                raise SinkError(f"writing to Kafka topic {self._topic!r} at "
                                f"{servers(self._config)} failed: {first_line(exc)}") from None
            yield _unwrap(self._reject(element, payload, f"rejected: {first_line(exc)}",
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
        # In a transaction, what the sink reports as written depends on nothing: the
        # transaction holds what its records derive from until it commits.
        scope = getattr(self, "_scope", None) if self._transactions is not None else None
        for item in pending:
            exc = item.future.exception if item.future.failed() else None
            if exc is None:
                written += 1
                if scope is not None:
                    scope.detached = True
                yield beam.pvalue.TaggedOutput(
                    WRITTEN, WindowedValue(item.element, item.timestamp, [item.window]))
                if scope is not None:
                    scope.detached = False
                continue
            if getattr(exc, "retriable", False) or self._transactions is not None:
                # A transaction cannot leave out a record the broker refused: it fails.
                raise SinkError(f"writing to Kafka topic {self._topic!r} at "
                                f"{servers(self._config)} failed: {first_line(exc)}")
            yield self._reject(item.element, item.payload, f"rejected: {first_line(exc)}",
                               "rejected", item.timestamp, item.window)
        self._written.inc(written)

    def finish_bundle(self):
        if self._transactions is None:
            yield from self._drain()
            return
        try:
            yield from self._drain()
            self._transactions.end_bundle(self._scope)
        except BaseException as exc:
            self._fail(exc)
            raise
        self._transactions.lock.release()

    def teardown(self):
        transactions = getattr(self, "_transactions", None)
        if transactions is not None:
            self._transactions = None
            self._producer = None
            transactions.release()
            return
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


# What WriteToKafka returns: the records written and the dead letters of those refused.
KafkaWriteResult = WriteResult


class WriteToKafka(beam.PTransform):
    """Records -> ``topic``; returns ``KafkaWriteResult(written, dead_letters)``.

    ``value_fn`` turns a record into bytes (default: JSON of a NamedTuple/dict, bytes and
    str as they are); ``key_fn`` / ``headers_fn`` give the key (bytes/str/None) and headers
    ([(name, bytes|str)]). ``on_reject="raise"`` fails the bundle instead of
    dead-lettering (used for the dead-letter topic itself: nothing is dropped silently).

    :param bootstrap_servers: ``HOST:PORT[,HOST:PORT...]``.
    :param topic: the topic to write to (checked at construction when ``validate``).
    :param value_fn: record -> the message value (bytes); a
        :class:`transforms.formats.RecordEncoder` writes Avro/Protobuf/JSON Schema, and
        its ``setup()`` is called in the worker's ``setup``.
    :param key_fn: record -> the key (bytes, str or None); None: no key.
    :param headers_fn: record -> ``[(name, bytes|str)]``; None: no headers.
    :param config: any other kafka-python setting (``acks`` is always ``all``).
    :param pipeline: the pipeline name dead letters carry.
    :param step: the step name dead letters carry.
    :param on_reject: ``dead_letter`` (refused records to ``dead_letters``) or ``raise``.
    :param validate: check at construction that the topic exists.
    :param flag: the flag errors name (``--output``, ``--dead_letter``).
    :param exactly_once: write in transactions that also commit the reader's offsets of
        its consumer group (:class:`~transforms.io.kafka.transactions.ExactlyOnce`; the
        LocalStreamingRunner only; read such topics with ``isolation_level=read_committed``).
        Default: at least once.
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
        exactly_once: Optional[ExactlyOnce] = None,
    ) -> None:
        super().__init__()
        self._exactly_once = exactly_once
        try:
            servers = rules.bootstrap_servers(bootstrap_servers or "")
        except Exception:
            raise ConfigError("--bootstrap_servers", "HOST:PORT[,HOST:PORT...]", bootstrap_servers) from None
        if not isinstance(topic, str) or not rules.is_topic_name(topic):
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
            self._pipeline, self._step, self._on_reject, self._exactly_once,
        )).with_outputs(DEAD_LETTERS, WRITTEN)
        return KafkaWriteResult(outputs[WRITTEN], outputs[DEAD_LETTERS])
