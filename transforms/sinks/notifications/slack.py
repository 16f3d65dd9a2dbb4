"""Alerts to a Slack channel through an incoming webhook.

One message per alert: a ``text`` fallback (what notifications and screen readers show)
and Block Kit ``blocks``: a ``section`` with the headline (triggered or resolved, what),
a ``section`` of ``fields`` (where, the window, the numbers; at most 10, Slack's limit)
and a ``context`` line (pipeline, severity, incident or dedup key, pane). Text is
escaped for mrkdwn (``&``, ``<``, ``>``) and cut to Slack's limits (3000 characters a
section, 2000 a field).

Slack allows about one message per second per webhook, with short bursts: requests are
spaced by a limiter shared by every thread of the process writing to the same webhook
(``rate_limit``, ``burst``), and a 429's ``Retry-After`` pauses them all. Slack answers
``200 ok``; 400 ``invalid_payload``, 403 ``action_prohibited``, 404
``channel_not_found``/``no_service`` and 410 ``channel_is_archived`` are refusals (dead
letter at once); 5xx are retried. The webhook URL is the secret: it never appears in
logs or dead letters (they show ``https://hooks.slack.com`` only).
"""

from __future__ import annotations

from typing import Any, Optional

from transforms.sinks.notifications.http import HttpRequest
from transforms.sinks.notifications.message import (
    TRIGGER,
    MessageSpec,
    Notification,
    format_number,
    headline,
)
from transforms.sinks.notifications.secrets import SecretLike
from transforms.sinks.notifications.write import Channel, WriteNotifications, http_url, json_bytes

__all__ = ["WriteToSlack", "slack_message"]

MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_FIELDS = 10
_REASONS = {"recovered": "back within limits", "quiet_period": "no data for the quiet period"}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _window(note: Notification) -> Optional[str]:
    m = note.message
    if not m.window_start and not m.window_end:
        return None
    return f"{m.window_start or '?'} → {m.window_end or '?'}"


def slack_message(note: Notification) -> dict[str, Any]:
    """The incoming-webhook JSON for one notification."""
    m = note.message
    triggered = note.action == TRIGGER
    state = "Triggered" if triggered else "Resolved"
    icon = ":rotating_light:" if triggered else ":white_check_mark:"
    title = f"{icon} *{state}: {_escape(m.what)}*"
    if not triggered and note.incident:
        why = note.incident.get("reason", "")
        title += f"\n{_escape(_REASONS.get(why, why))}, open since {note.incident.get('opened_at')}"
    facts = [("Where", m.where)]
    window = _window(note)
    if window:
        facts.append(("Window", window))
    facts += [(name, format_number(value)) for name, value in m.numbers.items()]
    shown, hidden = facts[:MAX_FIELDS], len(facts) - MAX_FIELDS
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*{_escape(name)}*\n{_escape(str(value))}", MAX_FIELD_TEXT)}
        for name, value in shown
    ]
    context = [f"pipeline `{_escape(note.pipeline)}`", f"severity {m.severity}",
               f"{'incident' if note.incident else 'alert'} `{_escape(note.dedup_key)}`"]
    if note.pane:
        context.append(_escape(note.pane))
    if hidden > 0:
        context.append(f"{hidden} more value(s) in the record")
    numbers = ", ".join(f"{k}={format_number(v)}" for k, v in m.numbers.items())
    text = f"{state}: {headline(m)}" + (f" ({numbers})" if numbers else "") + (
        f", window {window}" if window else "")
    return {
        "text": _cut(_escape(text), MAX_SECTION_TEXT),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(title, MAX_SECTION_TEXT)}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": _cut(" · ".join(context), MAX_FIELD_TEXT)}]},
        ],
    }


class _SlackChannel(Channel):
    name = "slack"
    title = "Slack"

    def request(self, note: Notification) -> HttpRequest:
        return HttpRequest(self.url(), json_bytes(slack_message(note)),
                           {"Content-Type": "application/json; charset=utf-8"})


class WriteToSlack(WriteNotifications):
    """Alerts (result records or IncidentEvents) -> Slack messages, one per alert.

    Returns ``NotificationResult(delivered, dead_letters)``.
    """

    def __init__(
        self,
        webhook_url: SecretLike,
        *,
        message: MessageSpec = None,
        rate_limit: Optional[float] = 1.0,
        burst: int = 1,
        pipeline: str = "beam_pipelines",
        step: str = "notify_slack",
        **delivery: Any,
    ) -> None:
        """
        :param webhook_url: the incoming webhook's URL (a secret): the URL itself, a
            :class:`Secret`, ``env:NAME`` or ``file:PATH``.
        :param message: how a result record reads: a function returning an
            AlertMessage, a field mapping (see :func:`message_fields`) or None to guess.
        :param rate_limit: messages per second to this webhook, shared by the process's
            threads (Slack allows about 1); None for no limit.
        :param burst: messages that may go out back to back before ``rate_limit`` spaces them.
        :param pipeline: names the alerts' dedup keys, dead letters and metrics.
        :param step: the dead letters' step name.
        :param delivery: timeout, max_attempts, retry_budget, initial_backoff,
            max_backoff, concurrency, queue_size, remember (see DeliverySettings).
        """
        channel = _SlackChannel(http_url(webhook_url, "webhook_url"), rate_limit, burst)
        super().__init__(channel, message=message, pipeline=pipeline, step=step, delivery=delivery)
