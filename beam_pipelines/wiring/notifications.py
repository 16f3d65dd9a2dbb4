"""Notifications from the flags: ``--sink=slack|pagerduty|webhook`` and ``--notify``.

A pipeline says what its alerts are with its ``alerts`` hook (an :class:`Alerts`); this
module turns the flags into the notification sinks of ``transforms.sinks.notifications``
and, with ``--notify_on=incidents``, puts ``transforms.incidents.TrackIncidents`` in
front of them. Their dead letters (a notification refused, or not delivered within
``--notify_retry_budget``: the last status and body, never a secret) join the
pipeline's other dead letters in ``--dead_letter``.

Secrets. Every secret flag takes the value, ``env:NAME`` or ``file:PATH``.
``options.notifications.seal_secret_flags`` runs while the flags are parsed: a value given literally is
moved into an environment variable of this process and the flag then reads
``env:<that variable>``, so the options and the pickled pipeline carry the variable's
name, never the value. Runners whose workers are other machines cannot see that
variable: there :func:`prepare` asks for ``env:NAME`` or ``file:PATH`` instead.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms.window import GlobalWindows

from beam_pipelines.options import IOOptions
from beam_pipelines.options.notifications import (
    CHANNELS,
    ENV_FALLBACKS,
    SEALED_PREFIX,
    NotificationOptions,
)
from runners import runner_key
from transforms.base.errors import ConfigError
from transforms.incidents import TrackIncidents
from transforms.sinks.notifications import (
    Secret,
    WriteToPagerDuty,
    WriteToSlack,
    WriteToWebhook,
)
from transforms.sinks.notifications.message import MessageSpec
from transforms.sinks.notifications.write import http_url

__all__ = ["Alerts", "NOTIFICATION_SINKS", "channels", "prepare", "write_notifications"]

NOTIFICATION_SINKS = CHANNELS
# Runners whose workers run in this process or in processes it starts (and which inherit
# its environment); any other runner's workers cannot read a sealed secret.
_LOCAL_RUNNERS = ("direct", "switchingdirect", "localstreaming", "bundlebaseddirect", "fnapi",
                  "testdirect")


class Alerts(NamedTuple):
    """What a pipeline notifies about; its ``alerts(core, ctx)`` hook returns one.

    ``records`` are the alerts themselves: with ``--notify_on=alerts`` each is one
    notification (one per pane of a windowed alert). With ``--notify_on=incidents``
    ``TrackIncidents`` reads ``windows`` (default ``records``) per ``incident_key``:
    a trigger when a key first breaches (``breaching``; None: every result breaches),
    a resolve when a later window of the key does not (or after ``--resolve_after``).
    ``message`` says how a record reads (``transforms.sinks.notifications.message_fields``).
    """

    records: beam.PCollection
    message: MessageSpec = None
    incident_key: Optional[Callable[[Any], Any]] = None  # None: no incidents (alerts only)
    windows: Optional[beam.PCollection] = None
    breaching: Optional[Callable[[Any], bool]] = None


# ---- the flags ------------------------------------------------------------------------

def channels(options: PipelineOptions) -> list[str]:
    """The notification channels of a run: ``--sink`` when it is one, then ``--notify``."""
    sink = options.view_as(IOOptions).sink
    chosen = [sink] if sink in NOTIFICATION_SINKS else []
    for group in options.view_as(NotificationOptions).notify or []:
        for name in group:
            if name in chosen:
                raise ConfigError.from_message(
                    f"--notify: {name} is named twice (--sink={sink}, --notify=...): each channel "
                    "once; several endpoints of one kind need several runs")
            chosen.append(name)
    return chosen


# ---- checked before anything starts -------------------------------------------------

class _Endpoints(NamedTuple):
    """Every channel's resolved endpoint and secrets."""

    slack_url: Optional[Secret]
    webhook_url: Optional[Secret]
    webhook_secret: Optional[Secret]
    webhook_headers: dict[str, Secret]
    pagerduty_key: Optional[Secret]
    pagerduty_url: Secret


def prepare(options: PipelineOptions, *, pipeline: str, has_alerts: bool) -> list[str]:
    """Check every notification flag of a run before anything starts, and return its
    channels (empty when it sends none). ``has_alerts``: the pipeline defines alerts.

    One line naming the flag for: a pipeline without alerts, a missing or unreadable
    endpoint or secret, a malformed URL or routing key, flags of a channel not in use, a
    literal secret on a runner whose workers cannot see this process's environment."""
    chosen = channels(options)
    flags = options.view_as(NotificationOptions)
    io = options.view_as(IOOptions)
    if not chosen:
        _refuse_unused(flags, "--notify or a notification --sink (slack|pagerduty|webhook)")
        return chosen
    if not has_alerts:
        flag = "--sink" if io.sink in NOTIFICATION_SINKS else "--notify"
        raise ConfigError.from_message(
            f"{flag}: {pipeline} emits no alerts to notify about (slack, pagerduty and webhook "
            "take the alerts of iot_alerts, error_rate and fraud)")
    if io.sink == "pagerduty" and io.output:
        raise ConfigError.from_message(
            "--output: not used by --sink=pagerduty (its endpoint is --pagerduty_url, its key "
            "--pagerduty_routing_key)")
    endpoints = _endpoints(options, chosen)
    if flags.notify_on == "alerts" and flags.resolve_after is not None:
        raise ConfigError.from_message(
            "--resolve_after: applies to --notify_on=incidents only")
    _refuse_remote_sealed(options, endpoints)
    return chosen


def _refuse_unused(flags: NotificationOptions, needs: str) -> None:
    for dest in ("notify_on", "resolve_after", "slack_url", "webhook_url", "webhook_secret",
                 "webhook_header", "pagerduty_routing_key"):
        if getattr(flags, dest) is not None:
            raise ConfigError.from_message(f"--{dest}: no notifications are sent without {needs}")


def _endpoints(options: PipelineOptions, chosen: list[str]) -> _Endpoints:
    flags = options.view_as(NotificationOptions)
    io = options.view_as(IOOptions)

    def url_of(channel: str, dest: str) -> Optional[Secret]:
        if channel not in chosen:
            if getattr(flags, dest) is not None:
                raise ConfigError.from_message(
                    f"--{dest}: {channel} is not a channel of this run (add --notify={channel})")
            return None
        if io.sink == channel:
            flag = "--output"
            value = io.output if io.output else getattr(flags, dest)
        else:
            flag, value = f"--{dest}", getattr(flags, dest)
        env = ENV_FALLBACKS.get(dest)
        if value is None and not (env and os.environ.get(env)):
            where = " or ".join([f"--{dest}"] + ([f"${env}"] if env else []))
            if io.sink == channel:
                where = "--output, " + where
            raise ConfigError(flag, f"the {channel} URL from {where} (the URL, env:NAME or "
                              "file:PATH)")
        return http_url(Secret.resolve(value, env=env, what=flag), flag)

    slack = url_of("slack", "slack_url")
    webhook = url_of("webhook", "webhook_url")
    secret: Optional[Secret] = None
    headers: dict[str, Secret] = {}
    if webhook is not None:
        if flags.webhook_secret is not None or os.environ.get(ENV_FALLBACKS["webhook_secret"]):
            secret = Secret.resolve(flags.webhook_secret, env=ENV_FALLBACKS["webhook_secret"],
                                    what="--webhook_secret")
        for name, value in flags.webhook_header or []:
            headers[name] = Secret.of(value, what=f"--webhook_header {name}")
    else:
        for dest in ("webhook_secret", "webhook_header"):
            if getattr(flags, dest) is not None:
                raise ConfigError.from_message(
                    f"--{dest}: webhook is not a channel of this run (add --notify=webhook)")
    key: Optional[Secret] = None
    if "pagerduty" in chosen:
        key = Secret.resolve(flags.pagerduty_routing_key, env=ENV_FALLBACKS["pagerduty_routing_key"],
                             what="--pagerduty_routing_key")
    elif flags.pagerduty_routing_key is not None:
        raise ConfigError.from_message(
            "--pagerduty_routing_key: pagerduty is not a channel of this run (add --notify=pagerduty)")
    pager_url = http_url(flags.pagerduty_url, "--pagerduty_url")
    endpoints = _Endpoints(slack, webhook, secret, headers, key, pager_url)
    _sinks(endpoints, chosen, options, pipeline="check", message=None)  # their own checks
    return endpoints


def _refuse_remote_sealed(options: PipelineOptions, endpoints: _Endpoints) -> None:
    standard = options.view_as(StandardOptions)
    key = runner_key(standard.runner)
    local = key in _LOCAL_RUNNERS or (standard.runner or "").startswith("runners.") or (
        key == "dask" and not _dask_address(options))
    if local:
        return
    named = {"--slack_url / --output": endpoints.slack_url,
             "--webhook_url / --output": endpoints.webhook_url,
             "--webhook_secret": endpoints.webhook_secret,
             "--pagerduty_routing_key": endpoints.pagerduty_key,
             **{f"--webhook_header {h}": s for h, s in endpoints.webhook_headers.items()}}
    for flag, secret in named.items():
        if secret is not None and secret.source.startswith("env:" + SEALED_PREFIX):
            raise ConfigError.from_message(
                f"{flag}: with --runner={standard.runner} pass env:NAME or file:PATH (set on the "
                "workers); a value given on the command line would travel with the job")


def _dask_address(options: PipelineOptions) -> Optional[str]:
    flags = options.get_all_options(retain_unknown_options=True)
    return flags.get("dask_client_address") or flags.get("dask_scheduler_file")


# ---- the graph ------------------------------------------------------------------------

def _delivery(options: PipelineOptions) -> dict[str, Any]:
    flags = options.view_as(NotificationOptions)
    return {"max_attempts": flags.notify_attempts, "retry_budget": flags.notify_retry_budget,
            "timeout": flags.notify_timeout}


_FLAG_OF = {"slack": "--slack_url", "pagerduty": "--pagerduty_routing_key",
            "webhook": "--webhook_url"}


def _sink(channel: str, endpoints: _Endpoints, delivery: dict[str, Any], *, pipeline: str,
          message: MessageSpec) -> beam.PTransform:
    if channel == "slack":
        assert endpoints.slack_url is not None
        return WriteToSlack(endpoints.slack_url, message=message, pipeline=pipeline, **delivery)
    if channel == "pagerduty":
        assert endpoints.pagerduty_key is not None
        return WriteToPagerDuty(endpoints.pagerduty_key, url=endpoints.pagerduty_url.reveal(),
                                message=message, pipeline=pipeline, **delivery)
    assert endpoints.webhook_url is not None
    return WriteToWebhook(endpoints.webhook_url, secret=endpoints.webhook_secret,
                          headers=endpoints.webhook_headers, message=message,
                          pipeline=pipeline, **delivery)


def _sinks(endpoints: _Endpoints, chosen: list[str], options: PipelineOptions, *,
           pipeline: str, message: MessageSpec) -> dict[str, beam.PTransform]:
    """channel -> its sink; a ConfigError of a sink names the channel's flag (the library
    names its own argument, and never the value)."""
    delivery = _delivery(options)
    sinks: dict[str, beam.PTransform] = {}
    for channel in chosen:
        try:
            sinks[channel] = _sink(channel, endpoints, delivery, pipeline=pipeline,
                                   message=message)
        except ConfigError as exc:
            raise ConfigError(_FLAG_OF[channel], exc.expected) from None
    return sinks


def write_notifications(alerts: Alerts, options: PipelineOptions, *, pipeline: str,
                        streaming: bool) -> list[beam.PCollection]:
    """Send ``alerts`` to every channel of the run; returns their dead letters (and those
    of incident tracking), in the global window like every other step's."""
    chosen = channels(options)
    if not chosen:
        return []
    flags = options.view_as(NotificationOptions)
    mode = flags.notify_on or ("incidents" if alerts.incident_key is not None else "alerts")
    dead: list[beam.PCollection] = []
    if mode == "incidents":
        if alerts.incident_key is None:
            raise ConfigError("--notify_on", f"alerts: {pipeline} defines no incidents", "incidents")
        windows = alerts.windows if alerts.windows is not None else alerts.records
        tracked = windows | "TrackIncidents" >> TrackIncidents(
            alerts.incident_key, alerts.breaching, quiet_period=flags.resolve_after,
            streaming=streaming, pipeline=pipeline)
        notifications, dead = tracked.events, [tracked.dead_letters]
    else:
        if flags.resolve_after is not None:  # a flag that would do nothing is refused
            raise ConfigError.from_message(
                f"--resolve_after: applies to incidents only, and {pipeline} notifies alerts "
                "(--notify_on=alerts)")
        notifications = alerts.records
    endpoints = _endpoints(options, chosen)
    for channel, sink in _sinks(endpoints, chosen, options, pipeline=pipeline,
                                message=alerts.message).items():
        title = channel.capitalize()
        sent = notifications | f"NotifyBy{title}" >> sink
        dead.append(sent.dead_letters)
    return [letters | f"NotificationDeadLetters{i}ToGlobalWindow" >> beam.WindowInto(GlobalWindows())
            for i, letters in enumerate(dead)]
