"""Alerts to any HTTP endpoint as signed JSON (a generic webhook).

The body is a JSON object with the alert record's fields at the top level, plus:

* ``event_action``: ``trigger`` or ``resolve``;
* ``dedup_key``: stable per incident (the same for an incident's trigger and resolve,
  and for every pane of one window's alert);
* ``event_id``: unique per thing delivered once (``<dedup_key>:trigger``,
  ``<dedup_key>:pane2``...);
* ``incident``: ``{incident_id, reason, opened_at, at}`` for incident events.

These four names win over record fields of the same name.

Headers:

* ``Idempotency-Key``: the ``event_id`` (or ``sha256:<hex>`` of it when it is not
  printable ASCII): the same on every retry and on a re-delivered bundle, so a receiver
  that remembers keys it processed recognises a repeat.
* ``X-Signature-256: sha256=<hex>``: HMAC-SHA256 of the raw body bytes with the shared
  secret, GitHub-style. A receiver verifies it over the bytes it received, before
  parsing (:func:`verify_signature` does it; ``docs/alerting.md`` has the snippet).

Retries send the very same bytes (body, signature, key). There is no timestamp header:
replay protection comes from the signed ``event_id`` a receiver deduplicates on.
Without a ``secret`` the request is sent unsigned.

2xx is delivered; 408, 429 and 5xx are retried; any other status is a refusal.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Mapping, Optional, Union

from transforms.base.errors import ConfigError
from transforms.sinks.notifications.http import HttpRequest
from transforms.sinks.notifications.message import MessageSpec, Notification
from transforms.sinks.notifications.secrets import Secret, SecretLike
from transforms.sinks.notifications.write import Channel, WriteNotifications, http_url, json_bytes

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "WriteToWebhook",
    "idempotency_key",
    "sign",
    "verify_signature",
    "webhook_body",
]

SIGNATURE_HEADER = "X-Signature-256"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_RESERVED_HEADERS = {"content-type", "content-length", "host", SIGNATURE_HEADER.lower(),
                     IDEMPOTENCY_HEADER.lower()}


def _key_bytes(secret: Union[str, bytes]) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: Union[str, bytes], body: bytes) -> str:
    """The ``X-Signature-256`` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(_key_bytes(secret), body, hashlib.sha256).hexdigest()


def verify_signature(secret: Union[str, bytes], body: bytes, header: Optional[str]) -> bool:
    """Whether ``header`` is the signature of the raw ``body`` (constant-time compare)."""
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body).encode("ascii"), header.strip().encode("utf-8"))


def idempotency_key(event_id: str) -> str:
    """The Idempotency-Key header value for an event id."""
    if event_id.isascii() and event_id.isprintable() and len(event_id) <= 512:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()


def webhook_body(note: Notification) -> dict[str, Any]:
    """The JSON body: the record's fields at the top level plus the event's identity."""
    body = dict(note.fields)
    body.update(event_action=note.action, dedup_key=note.dedup_key, event_id=note.event_id)
    if note.incident:
        body["incident"] = note.incident
    return body


class _WebhookChannel(Channel):
    name = "webhook"
    title = "Webhook"

    def __init__(self, url: Secret, secret: Optional[Secret], headers: dict[str, Secret],
                 rate_limit: Optional[float], burst: int) -> None:
        super().__init__(url, rate_limit, burst)
        self._secret = secret
        self._headers = headers

    def secrets(self) -> list[Secret]:
        return [self._url, *self._headers.values()] + ([self._secret] if self._secret else [])

    def request(self, note: Notification) -> HttpRequest:
        body = json_bytes(webhook_body(note))
        headers = {name: value.reveal() for name, value in self._headers.items()}
        headers.update({"Content-Type": "application/json",
                        IDEMPOTENCY_HEADER: idempotency_key(note.event_id)})
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret.reveal(), body)
        return HttpRequest(self.url(), body, headers)


class WriteToWebhook(WriteNotifications):
    """Alerts (result records or IncidentEvents) -> signed JSON POSTs to ``url``.

    Returns ``NotificationResult(delivered, dead_letters)``.
    """

    def __init__(
        self,
        url: SecretLike,
        *,
        secret: Optional[SecretLike] = None,
        headers: Optional[Mapping[str, SecretLike]] = None,
        message: MessageSpec = None,
        rate_limit: Optional[float] = None,
        burst: int = 1,
        pipeline: str = "beam_pipelines",
        step: str = "notify_webhook",
        **delivery: Any,
    ) -> None:
        """
        :param url: the endpoint (treated as a secret, since webhook URLs often carry a
            token): the URL, a :class:`Secret`, ``env:NAME`` or ``file:PATH``.
        :param secret: the shared HMAC-SHA256 key for ``X-Signature-256`` (a value,
            Secret, ``env:NAME`` or ``file:PATH``); None sends unsigned requests.
        :param headers: extra headers for every request (e.g. an ``Authorization``);
            their values are treated as secrets too.
        :param message: how a record reads, for the dedup key's ``where`` and window
            (the body carries the record's own fields): a function returning an
            AlertMessage, a field mapping or None to guess.
        :param rate_limit: requests per second to this URL; None (default) for no limit.
        :param burst: requests that may go out back to back before ``rate_limit`` spaces them.
        :param pipeline: names the dedup keys, dead letters and metrics.
        :param step: the dead letters' step name.
        :param delivery: timeout, max_attempts, retry_budget, initial_backoff,
            max_backoff, concurrency, queue_size, remember (see DeliverySettings).
        """
        extra: dict[str, Secret] = {}
        for name, value in (headers or {}).items():
            if not isinstance(name, str) or not name or name.lower() in _RESERVED_HEADERS:
                raise ConfigError("headers", "header names other than Content-Type, "
                                  f"{IDEMPOTENCY_HEADER} and {SIGNATURE_HEADER}", name)
            extra[name] = Secret.of(value, what=f"headers[{name!r}]")
        key = None if secret is None else Secret.of(secret, what="secret")
        channel = _WebhookChannel(http_url(url, "url"), key, extra, rate_limit, burst)
        super().__init__(channel, message=message, pipeline=pipeline, step=step, delivery=delivery)
