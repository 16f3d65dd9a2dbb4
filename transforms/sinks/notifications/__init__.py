"""Notification sinks: alerts to Slack, PagerDuty and any webhook, delivered once.

::

    alerts | WriteToPagerDuty("env:PAGERDUTY_ROUTING_KEY", pipeline="error_rate")
    incidents.events | WriteToSlack("file:/run/secrets/slack_webhook",
                                    message={"what": "Error rate above 5%", "where": "key"})
    alerts | WriteToWebhook("https://ops.example.com/hooks/alerts", secret="env:HOOK_SECRET")

Each takes result records or :class:`~transforms.incidents.IncidentEvent` s and returns
``NotificationResult(delivered, dead_letters)``. Modules: ``secrets`` (Secret, redaction),
``http`` (one POST), ``delivery`` (retries, rate limits, delivery threads), ``message``
(what an alert says), ``write`` (the shared DoFn), and one module per endpoint kind.
See docs/alerting.md.
"""

from transforms.sinks.notifications.delivery import DeliverySettings
from transforms.sinks.notifications.message import (
    AlertMessage,
    Notification,
    default_message,
    message_fields,
)
from transforms.sinks.notifications.pagerduty import PAGERDUTY_EVENTS_URL, WriteToPagerDuty
from transforms.sinks.notifications.secrets import Secret
from transforms.sinks.notifications.slack import WriteToSlack
from transforms.sinks.notifications.webhook import WriteToWebhook, sign, verify_signature
from transforms.sinks.notifications.write import NotificationResult

__all__ = [
    "PAGERDUTY_EVENTS_URL",
    "AlertMessage",
    "DeliverySettings",
    "Notification",
    "NotificationResult",
    "Secret",
    "WriteToPagerDuty",
    "WriteToSlack",
    "WriteToWebhook",
    "default_message",
    "message_fields",
    "sign",
    "verify_signature",
]
