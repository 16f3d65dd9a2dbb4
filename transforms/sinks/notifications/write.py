"""The DoFn and PTransform every notification sink shares.

``_DeliverFn`` builds each input's :class:`~.message.Notification` and request in
``process`` and hands it to the endpoint's delivery threads, so a slow endpoint never
holds up ``process``; ``finish_bundle`` waits for the bundle's deliveries, so no input
is acknowledged before it is delivered or dead-lettered. Delivered inputs come out of
``delivered`` unchanged (like ``WriteToKafka``'s ``written``), the others out of
``dead_letters`` as :class:`~transforms.records.DeadLetter` with the last status, body
or error. Nothing that leaves here (dead letters, logs, errors) carries a secret: every
text goes through :func:`~.secrets.redact`.

Metrics (namespace = ``pipeline``, suffix = channel name): ``notifications_delivered``,
``notifications_dead_lettered``, ``notifications_retries`` (attempts after the first),
``notifications_suppressed`` (re-sends of a retried bundle not sent again), and the
distribution ``notification_delivery_ms`` (first attempt to outcome).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Callable, NamedTuple, Optional
from urllib.parse import urlsplit

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from transforms.base.errors import ConfigError, SinkError
from transforms.incidents import IncidentEvent
from transforms.records import DeadLetter
from transforms.sinks import as_dict
from transforms.sinks.notifications.delivery import (
    DeliverySettings,
    Outcome,
    RateLimiter,
    endpoint,
)
from transforms.sinks.notifications.http import HttpRequest
from transforms.sinks.notifications.message import (
    AlertMessage,
    MessageSpec,
    Notification,
    _message_fn,
    notification_of,
)
from transforms.sinks.notifications.secrets import (
    Secret,
    hide_in_http_logs,
    redact,
    safe_endpoint,
)

__all__ = ["DEAD_LETTERS", "DELIVERED", "Channel", "NotificationResult", "WriteNotifications"]

_LOG = logging.getLogger(__name__)

DELIVERED = "delivered"
DEAD_LETTERS = "dead_letters"
# A dead letter keeps the start of the endpoint's answer: enough to see why.
_MAX_BODY_IN_DEAD_LETTER = 1000


class NotificationResult(NamedTuple):
    """What a notification sink returns: the inputs delivered and the dead letters."""

    delivered: beam.PCollection
    dead_letters: beam.PCollection


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, the same bytes on every attempt (signatures depend on it)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def http_url(value: Any, what: str) -> Secret:
    """An http(s) URL as a Secret (webhook URLs carry their token in the path)."""
    secret = Secret.of(value, what=what)
    try:
        parts = urlsplit(secret.reveal())
    except ValueError:  # "Invalid IPv6 URL": a bracket in the host part
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(what, "an http:// or https:// URL (or env:NAME / file:PATH holding one)",
                          safe_endpoint(secret.reveal()))
    return secret


class Channel:
    """One kind of endpoint: how to address it and what its request for a
    :class:`Notification` looks like. Subclasses are small and picklable."""

    name = "webhook"
    title = "Webhook"  # how errors and dead letters name the endpoint kind

    def __init__(self, url: Secret, rate_limit: Optional[float], burst: int) -> None:
        self._url = url
        self.rate_limit = rate_limit
        self.burst = burst

    def url(self) -> str:
        return self._url.reveal()

    def secrets(self) -> list[Secret]:
        """Every secret whose value must never leave the sink (the URL counts as one)."""
        return [self._url]

    def request(self, note: Notification) -> HttpRequest:
        raise NotImplementedError

    def endpoint_label(self) -> str:
        return safe_endpoint(self.url())

    def fingerprint(self) -> str:
        """Identifies the endpoint (URL and keys) without revealing anything."""
        material = "\0".join([self.name, self.url(), *(s.reveal() for s in self.secrets())])
        return hashlib.sha256(material.encode("utf-8")).hexdigest()


class _Pending(NamedTuple):
    future: Any
    element: Any
    note: Notification
    timestamp: Any
    window: Any


class _DeliverFn(beam.DoFn):
    def __init__(self, channel: Channel, message_fn: Callable[[Any], AlertMessage],
                 settings: DeliverySettings, pipeline: str, step: str) -> None:
        self._channel = channel
        self._message_fn = message_fn
        self._settings = settings
        self._pipeline = pipeline
        self._step = step
        self._endpoint: Any = None

    def setup(self):
        channel = self._channel
        hide_in_http_logs(channel.secrets())
        self._endpoint = endpoint(channel.fingerprint(), self._settings, channel.rate_limit,
                                  channel.burst).acquire()
        name, ns = channel.name, self._pipeline
        self._delivered = Metrics.counter(ns, f"notifications_delivered.{name}")
        self._dead = Metrics.counter(ns, f"notifications_dead_lettered.{name}")
        self._retries = Metrics.counter(ns, f"notifications_retries.{name}")
        self._suppressed = Metrics.counter(ns, f"notifications_suppressed.{name}")
        self._latency = Metrics.distribution(ns, f"notification_delivery_ms.{name}")

    def start_bundle(self):
        self._pending: list[_Pending] = []

    def process(self, element, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        try:
            note = notification_of(element, self._message_fn, self._pipeline)
            request = self._channel.request(note)
        except Exception as exc:
            self._dead.inc()
            reason = self._redact(f"cannot build the {self._channel.title} message: "
                                  f"{type(exc).__name__}: {exc}")
            _LOG.warning("%s", reason)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, self._letter(
                element, None, reason, "notification_invalid", {}))
            return
        future = self._endpoint.submit(note.event_id, note.dedup_key, request)
        self._pending.append(_Pending(future, element, note, timestamp, window))

    def finish_bundle(self):
        pending, self._pending = self._pending, []
        for item in pending:  # every delivery of the bundle ends (delivered or given up)
            try:
                outcome: Outcome = item.future.result()
            except Exception as exc:
                raise SinkError(self._redact(
                    f"{self._channel.title} delivery to {self._channel.endpoint_label()} failed "
                    f"unexpectedly: {type(exc).__name__}: {exc}")) from None
            if outcome.delivered:
                self._count_delivered(outcome)
                yield beam.pvalue.TaggedOutput(
                    DELIVERED, WindowedValue(item.element, item.timestamp, [item.window]))
                continue
            self._dead.inc()
            self._retries.inc(max(outcome.attempts - 1, 0))
            letter = self._failed_letter(item, outcome)
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, WindowedValue(letter, item.timestamp, [item.window]))

    def _count_delivered(self, outcome: Outcome) -> None:
        if outcome.suppressed:
            self._suppressed.inc()
            return
        self._delivered.inc()
        self._retries.inc(outcome.attempts - 1)
        self._latency.update(int(outcome.elapsed * 1000))

    def _failed_letter(self, item: _Pending, outcome: Outcome) -> DeadLetter:
        title, note = self._channel.title, item.note
        last = (f"HTTP {outcome.status}: {_shorten(outcome.body, 300)!r}" if outcome.status
                else outcome.error or "no response")
        if outcome.retryable:
            code = "notification_failed"
            reason = (f"{title} delivery to {self._channel.endpoint_label()} failed after "
                      f"{outcome.attempts} attempt(s) in {outcome.elapsed:.1f}s; last: {last}; "
                      f"gave up: {outcome.gave_up}")
        else:
            code = "notification_refused"
            reason = (f"{title} at {self._channel.endpoint_label()} refused the alert "
                      f"(not retried): {last}")
        reason = self._redact(reason)
        _LOG.warning("%s [%s %s]", reason, note.action, self._redact(note.event_id))
        details = {
            "status": outcome.status,
            "attempts": outcome.attempts,
            "body": self._redact(_shorten(outcome.body, _MAX_BODY_IN_DEAD_LETTER)),
            "error": self._redact(outcome.error) if outcome.error else None,
            "event_id": note.event_id,
            "dedup_key": note.dedup_key,
            "event_action": note.action,
        }
        return self._letter(item.element, note, reason, code, details)

    def _letter(self, element: Any, note: Optional[Notification], reason: str, code: str,
                details: dict[str, Any]) -> DeadLetter:
        origin = {"source": "sink", "sink": self._channel.name,
                  "endpoint": self._channel.endpoint_label(), **details}
        return DeadLetter.of(self._pipeline, self._step, reason,
                             self._redact(_payload(element)), origin, code)

    def _redact(self, text: str) -> str:
        return redact(text, self._channel.secrets())

    def teardown(self):
        if self._endpoint is not None:
            self._endpoint.release()
            self._endpoint = None


def _payload(element: Any) -> str:
    """The dead letter's payload: the alert as JSON, so it can be replayed."""
    if isinstance(element, IncidentEvent):
        value: Any = element.to_json_dict()
    else:
        try:
            value = as_dict(element)
        except TypeError:
            value = element if isinstance(element, (str, int, float, list)) else repr(element)
    return json.dumps(value, ensure_ascii=False, default=str)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more chars)"


class WriteNotifications(beam.PTransform):
    """Alerts -> one endpoint's notifications; the base of WriteToSlack, WriteToPagerDuty
    and WriteToWebhook. Returns :class:`NotificationResult` (delivered, dead_letters)."""

    def __init__(self, channel: Channel, *, message: MessageSpec, pipeline: str, step: str,
                 delivery: dict[str, Any]) -> None:
        super().__init__()
        if not isinstance(pipeline, str) or not pipeline:
            raise ConfigError("pipeline", "a non-empty name", pipeline)
        try:
            settings = DeliverySettings(**delivery)
        except TypeError:
            known = sorted(DeliverySettings.__dataclass_fields__)
            raise ConfigError("delivery settings", f"keywords among {known}",
                              sorted(set(delivery) - set(known))) from None
        RateLimiter(channel.rate_limit, channel.burst)  # checks rate_limit and burst now
        self._channel = channel
        self._message_fn = _message_fn(message)
        self._settings = settings
        self._pipeline = pipeline
        self._step = step

    def expand(self, alerts: beam.PCollection) -> NotificationResult:
        outputs = alerts | "Deliver" >> beam.ParDo(_DeliverFn(
            self._channel, self._message_fn, self._settings, self._pipeline, self._step,
        )).with_outputs(DEAD_LETTERS, DELIVERED)
        return NotificationResult(outputs[DELIVERED], outputs[DEAD_LETTERS])
