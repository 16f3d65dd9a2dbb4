"""Alerts to PagerDuty through the Events API v2.

Each alert is a POST to ``https://events.pagerduty.com/v2/enqueue`` (``url`` points
elsewhere: the EU service ``https://events.eu.pagerduty.com/v2/enqueue``, a proxy, a
test receiver) of::

    {"routing_key": "<32-character integration key>",
     "event_action": "trigger" | "resolve",
     "dedup_key": "<incident id, or pipeline:where:window start>",
     "payload": {"summary": "<= 1024 chars", "source": "<where>",
                 "severity": "critical|error|warning|info", "timestamp": "<ISO-8601>",
                 "component": ..., "group": ..., "class": ..., "custom_details": {...}},
     "client": "beam-pipelines <pipeline>"}

``payload`` is sent with triggers only (a resolve needs the routing and dedup keys).
The dedup key makes PagerDuty fold every pane of one window's alert, and every retry
or re-delivery, into one alert; an :class:`~transforms.incidents.IncidentEvent`'s
resolve closes the alert its trigger opened.

Responses (PagerDuty's documented retry rules): 202 ``{"status": "success", "message":
"Event processed", "dedup_key": ...}`` is delivered; 400 (invalid event) is dead-
lettered at once with PagerDuty's error list; 429 and 5xx are retried within the budget
(PagerDuty limits about 120 events a minute per integration key, hence the default
``rate_limit``). The routing key never appears in logs or dead letters.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from transforms.base.errors import ConfigError
from transforms.sinks.notifications.http import HttpRequest
from transforms.sinks.notifications.message import (
    TRIGGER,
    MessageSpec,
    Notification,
    _json_ready,
    format_number,
    headline,
)
from transforms.sinks.notifications.secrets import Secret, SecretLike
from transforms.sinks.notifications.write import Channel, WriteNotifications, http_url, json_bytes

__all__ = ["PAGERDUTY_EVENTS_URL", "WriteToPagerDuty", "pagerduty_event"]

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
MAX_SUMMARY = 1024
_ROUTING_KEY = re.compile(r"^[A-Za-z0-9]{32}$")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pagerduty_event(
    note: Notification,
    routing_key: str,
    *,
    source: Optional[str] = None,
    component: Optional[str] = None,
    group: Optional[str] = None,
    event_class: Optional[str] = None,
) -> dict[str, Any]:
    """The Events API v2 body for one notification."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": note.action,
        "dedup_key": note.dedup_key,
    }
    if note.action != TRIGGER:
        return event
    m = note.message
    numbers = ", ".join(f"{k}={format_number(v)}" for k, v in m.numbers.items())
    window = f" in window {m.window_start} → {m.window_end}" if m.window_start and m.window_end else ""
    summary = headline(m) + (f": {numbers}" if numbers else "") + window
    details: dict[str, Any] = {**m.numbers, "pipeline": note.pipeline}
    if m.window_start:
        details["window_start"], details["window_end"] = m.window_start, m.window_end
    if note.pane:
        details["pane"] = note.pane
    if note.incident:
        details["incident"] = note.incident
    details["record"] = note.fields
    payload: dict[str, Any] = {
        "summary": _cut(summary, MAX_SUMMARY),
        "source": source or m.where or note.pipeline,
        "severity": m.severity,
        "timestamp": note.timestamp,
        "custom_details": _json_ready(details),
    }
    for name, value in (("component", component), ("group", group), ("class", event_class)):
        if value:
            payload[name] = value
    event["payload"] = payload
    event["client"] = f"beam-pipelines {note.pipeline}"
    return event


class _PagerDutyChannel(Channel):
    name = "pagerduty"
    title = "PagerDuty"

    def __init__(self, routing_key: Secret, url: Secret, options: dict[str, Optional[str]],
                 rate_limit: Optional[float], burst: int) -> None:
        super().__init__(url, rate_limit, burst)
        self._routing_key = routing_key
        self._options = options

    def secrets(self) -> list[Secret]:
        return [self._url, self._routing_key]

    def request(self, note: Notification) -> HttpRequest:
        body = pagerduty_event(note, self._routing_key.reveal(), **self._options)
        return HttpRequest(self.url(), json_bytes(body), {"Content-Type": "application/json"})


class WriteToPagerDuty(WriteNotifications):
    """Alerts (result records or IncidentEvents) -> PagerDuty Events API v2 events.

    Returns ``NotificationResult(delivered, dead_letters)``.
    """

    def __init__(
        self,
        routing_key: SecretLike,
        *,
        url: str = PAGERDUTY_EVENTS_URL,
        message: MessageSpec = None,
        source: Optional[str] = None,
        component: Optional[str] = None,
        group: Optional[str] = None,
        event_class: Optional[str] = None,
        rate_limit: Optional[float] = 2.0,
        burst: int = 4,
        pipeline: str = "beam_pipelines",
        step: str = "notify_pagerduty",
        **delivery: Any,
    ) -> None:
        """
        :param routing_key: the 32-character integration key of an Events API v2
            integration (a secret): the key, a :class:`Secret`, ``env:NAME`` or ``file:PATH``.
        :param url: the enqueue endpoint (default PagerDuty's US service).
        :param message: how a result record reads: a function returning an
            AlertMessage, a field mapping (see :func:`message_fields`) or None to guess.
        :param source: ``payload.source`` for every event; default: the message's where.
        :param component: ``payload.component`` (e.g. ``checkout-api``), optional.
        :param group: ``payload.group`` (e.g. ``prod-eu``), optional.
        :param event_class: ``payload.class`` (e.g. ``error rate``), optional.
        :param rate_limit: events per second to this integration key (PagerDuty allows
            about 2); None for no limit.
        :param burst: events that may go out back to back before ``rate_limit`` spaces them.
        :param pipeline: names the dedup keys, dead letters and metrics.
        :param step: the dead letters' step name.
        :param delivery: timeout, max_attempts, retry_budget, initial_backoff,
            max_backoff, concurrency, queue_size, remember (see DeliverySettings).
        """
        key = Secret.of(routing_key, what="routing_key")
        if not _ROUTING_KEY.match(key.reveal()):
            raise ConfigError("routing_key", "the 32-character integration key of a PagerDuty "
                              f"Events API v2 integration (from {key.source})")
        options = {"source": source, "component": component, "group": group,
                   "event_class": event_class}
        for name, value in options.items():
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(name, "a non-empty string or None", value)
        channel = _PagerDutyChannel(key, http_url(url, "url"), options, rate_limit, burst)
        super().__init__(channel, message=message, pipeline=pipeline, step=step, delivery=delivery)
