"""Notification flags: ``--sink=slack|pagerduty|webhook`` and ``--notify`` beside any sink.

A pipeline that emits alerts (iot_alerts, error_rate, fraud decisions) sends them to
Slack, PagerDuty or a webhook either as its ``--sink`` or, with ``--notify``, in addition
to the sink that keeps its results (``--sink=postgres --notify=pagerduty``). Each
channel has its own endpoint flags, so several can be used at once:

* slack: ``--output=URL`` when it is the sink, else ``--slack_url`` (or
  ``$SLACK_WEBHOOK_URL``);
* pagerduty: ``--pagerduty_routing_key`` (or ``$PAGERDUTY_ROUTING_KEY``) and
  ``--pagerduty_url`` (default PagerDuty's US endpoint);
* webhook: ``--output=URL`` when it is the sink, else ``--webhook_url``;
  ``--webhook_secret`` (or ``$WEBHOOK_SECRET``) signs the body, ``--webhook_header``
  adds headers.

Every secret flag (URLs included: a Slack URL *is* its credential) takes the value,
``env:NAME`` or ``file:PATH``. Values are checked by ``beam_pipelines.wiring.notifications``
when the run starts, and no message here or there ever repeats a secret's value.

A value given literally does not stay in the flags: :func:`seal_secret_flags` (called by
``beam_pipelines.options.parse``) moves it into an environment variable of this process
(``BEAM_PIPELINES_SECRET_<n>_<FLAG>``) and the flag then reads ``env:<that variable>``,
so neither the options nor the pickled pipeline carry the value.
"""

from __future__ import annotations

import argparse
import itertools
import os
from typing import Optional, Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options.values import choice, positive_int, positive_seconds
from transforms.sinks.notifications import PAGERDUTY_EVENTS_URL

__all__ = ["CHANNELS", "ENV_FALLBACKS", "NOTIFY_ON", "SEALED_PREFIX", "NotificationOptions",
           "channel_list", "header", "seal_secret_flags"]

CHANNELS = ("slack", "pagerduty", "webhook")
NOTIFY_ON = ("alerts", "incidents")
# flag destination -> the environment variable read when the flag is not given
ENV_FALLBACKS = {
    "slack_url": "SLACK_WEBHOOK_URL",
    "pagerduty_routing_key": "PAGERDUTY_ROUTING_KEY",
    "webhook_secret": "WEBHOOK_SECRET",
}

SEALED_PREFIX = "BEAM_PIPELINES_SECRET_"
_SEALED = itertools.count(1)
# Flags whose values are secrets (--output too, when --sink is slack or webhook).
_SECRET_FLAGS = ("--slack_url", "--webhook_url", "--webhook_secret", "--pagerduty_routing_key")
_HEADER_FLAG = "--webhook_header"


def channel_list(text: str) -> list[str]:
    """``slack,pagerduty``: one or more channels, comma-separated."""
    names = [part.strip() for part in text.split(",")]
    bad = [name for name in names if name not in CHANNELS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected channels among {'|'.join(CHANNELS)}, comma-separated, got {text!r}")
    return names


def header(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` (the value may be env:NAME or file:PATH). The value is a secret: a
    malformed flag is refused without repeating it."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name or not value or any(c in name for c in " :\r\n\t"):
        raise argparse.ArgumentTypeError("expected NAME=VALUE (e.g. Authorization=env:HOOK_TOKEN); "
                                         "the value given is not repeated here")
    return name, value


class NotificationOptions(PipelineOptions):
    """Notifications: Slack, PagerDuty and webhooks, as --sink or beside it (--notify)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--notify", type=channel_list, action="append", default=None,
            help="Also send the pipeline's alerts to slack, pagerduty and/or webhook, beside "
            "--sink (repeat the flag or comma-separate): --sink=postgres --notify=pagerduty.",
        )
        parser.add_argument(
            "--notify_on", type=choice(*NOTIFY_ON), default=None,
            help="What a notification is: 'incidents' (one trigger when a key starts "
            "breaching, one resolve when it recovers; the default where the pipeline defines "
            "incidents) or 'alerts' (one per alert record, i.e. per qualifying pane).",
        )
        parser.add_argument(
            "--resolve_after", type=positive_seconds, default=None,
            help="Incidents: also resolve after this many seconds of event time with no new "
            "result for the key (a device or service that went quiet). Default: only a clean "
            "window resolves (silence is not recovery).",
        )
        parser.add_argument(
            "--slack_url", default=None,
            help="Slack incoming-webhook URL for --notify=slack (with --sink=slack: --output). "
            "A secret: the URL, env:NAME or file:PATH; default $SLACK_WEBHOOK_URL.",
        )
        parser.add_argument(
            "--webhook_url", default=None,
            help="Endpoint for --notify=webhook (with --sink=webhook: --output); the URL, "
            "env:NAME or file:PATH.",
        )
        parser.add_argument(
            "--webhook_secret", default=None,
            help="Shared secret of the webhook's X-Signature-256 HMAC-SHA256 header: the value, "
            "env:NAME or file:PATH; default $WEBHOOK_SECRET; unset: unsigned requests.",
        )
        parser.add_argument(
            "--webhook_header", type=header, action="append", default=None,
            help="An extra webhook header NAME=VALUE (repeatable), e.g. "
            "Authorization=env:HOOK_TOKEN; values are secrets.",
        )
        parser.add_argument(
            "--pagerduty_routing_key", default=None,
            help="The 32-character Events API v2 integration key: the key, env:NAME or "
            "file:PATH; default $PAGERDUTY_ROUTING_KEY.",
        )
        parser.add_argument(
            "--pagerduty_url", default=PAGERDUTY_EVENTS_URL,
            help=f"PagerDuty's enqueue endpoint. Default {PAGERDUTY_EVENTS_URL} (EU: "
            "https://events.eu.pagerduty.com/v2/enqueue).",
        )
        parser.add_argument(
            "--notify_attempts", type=positive_int, default=5,
            help="Attempts per notification (timeouts, 429 and 5xx are retried with "
            "exponential backoff and jitter, honouring Retry-After). Default 5.",
        )
        parser.add_argument(
            "--notify_retry_budget", type=positive_seconds, default=60.0,
            help="Seconds after a notification's first attempt after which no retry starts; "
            "then it is dead-lettered with the last status and body. Default 60.",
        )
        parser.add_argument(
            "--notify_timeout", type=positive_seconds, default=10.0,
            help="Seconds to connect, and to wait for the answer, per attempt. Default 10.",
        )


# ---- secrets never stay in the flags -------------------------------------------------

def seal_secret_flags(flags: Sequence[str]) -> list[str]:
    """``flags`` with every literal secret value moved into an environment variable of
    this process and replaced by ``env:<variable>`` (see the module docstring)."""
    out = list(flags)
    sink = _flag_value(out, "--sink")
    secret_flags = _SECRET_FLAGS + (("--output",) if sink in ("slack", "webhook") else ())
    i = 0
    while i < len(out):
        token = out[i]
        name, eq, value = token.partition("=")
        if name in secret_flags or name == _HEADER_FLAG:
            index = i if eq else i + 1
            if not eq:
                if index >= len(out) or out[index].startswith("--"):
                    i += 1
                    continue  # no value: argparse refuses the flag
                value = out[index]
            sealed = _sealed(name, value)
            out[index] = f"{name}={sealed}" if eq else sealed
            i = index
        i += 1
    return out


def _flag_value(flags: Sequence[str], name: str) -> Optional[str]:
    value = None
    for i, token in enumerate(flags):
        if token.startswith(name + "="):
            value = token.partition("=")[2]
        elif token == name and i + 1 < len(flags):
            value = flags[i + 1]
    return value


def _sealed(flag: str, value: str) -> str:
    header = ""
    if flag == _HEADER_FLAG:  # NAME=VALUE: the value is the secret
        header, sep, value = value.partition("=")
        if not sep:
            return header  # malformed: the flag's own check refuses it (without echoing it)
        header += "="
    if not value or value.startswith(("env:", "file:")):
        return header + value
    name = f"{SEALED_PREFIX}{next(_SEALED)}_{flag.lstrip('-').upper()}"
    os.environ[name] = value
    return f"{header}env:{name}"
