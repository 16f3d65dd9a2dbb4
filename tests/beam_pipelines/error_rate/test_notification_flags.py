"""The notification flags of every pipeline on the skeleton: --sink=slack|pagerduty|webhook,
--notify beside any sink, one-line errors naming the flag, and secrets that never stay in
the flags, the options, the pickled pipeline or --help."""

from __future__ import annotations

import os
import pickle

import apache_beam as beam
import pytest

from beam_pipelines import error_rate, iot_alerts, pageviews
from beam_pipelines.metrics import to_families
from beam_pipelines.metrics.prometheus import notification_series
from beam_pipelines.metrics.snapshot import Snapshot
from beam_pipelines.options.notifications import NotificationOptions
from beam_pipelines.wiring import notifications
from transforms.base.errors import ConfigError

pytestmark = pytest.mark.unit

KEY = "R0UTINGKEY0123456789abcdefABCDEF"
SLACK = "https://hooks.slack.com/services/T000/B000/SLACKTOKENxyz123"
HOOK = "https://ops.example.com/hooks/HOOKTOKEN987"
HMAC = "hmac-shared-secret-42"


@pytest.fixture(autouse=True)
def no_secret_env(monkeypatch):
    for name in ("PAGERDUTY_ROUTING_KEY", "SLACK_WEBHOOK_URL", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)


def checked(argv, pipeline=iot_alerts.IOT_ALERTS):
    options = pipeline.parse_flags(argv)
    pipeline.check_all(options)
    return options


def error(argv, pipeline=iot_alerts.IOT_ALERTS) -> str:
    with pytest.raises(ConfigError) as info:
        checked(argv, pipeline)
    return str(info.value)


def test_channels_come_from_the_sink_and_notify():
    options = checked(["--sink=slack", f"--output={SLACK}", "--notify=pagerduty,webhook",
                       f"--pagerduty_routing_key={KEY}", f"--webhook_url={HOOK}"])
    assert notifications.channels(options) == ["slack", "pagerduty", "webhook"]
    options = checked(["--sink=jsonl", "--output=/tmp/out", "--notify=pagerduty",
                       "--notify=slack", f"--pagerduty_routing_key={KEY}", f"--slack_url={SLACK}"])
    assert notifications.channels(options) == ["pagerduty", "slack"]
    assert notifications.channels(checked([])) == []


@pytest.mark.parametrize("argv, pipeline, message", [
    (["--sink=slack", f"--output={SLACK}"], pageviews.PAGEVIEWS,
     "--sink: pageviews emits no alerts to notify about"),
    (["--notify=pagerduty", f"--pagerduty_routing_key={KEY}"], pageviews.PAGEVIEWS,
     "--notify: pageviews emits no alerts"),
    (["--sink=pagerduty"], error_rate.ERROR_RATE,
     "--pagerduty_routing_key: expected a value from --pagerduty_routing_key or "
     "$PAGERDUTY_ROUTING_KEY; none was given"),
    (["--sink=slack"], error_rate.ERROR_RATE,
     "--output: expected the slack URL from --output, --slack_url or $SLACK_WEBHOOK_URL"),
    (["--notify=webhook"], error_rate.ERROR_RATE, "--webhook_url: expected the webhook URL from "
     "--webhook_url (the URL, env:NAME or file:PATH)"),
    (["--notify=email"], error_rate.ERROR_RATE,
     "--notify: expected channels among slack|pagerduty|webhook, comma-separated, got 'email'"),
    (["--sink=slack", f"--output={SLACK}", "--notify=slack"], error_rate.ERROR_RATE,
     "--notify: slack is named twice"),
    (["--sink=pagerduty", f"--pagerduty_routing_key={KEY}", "--output=x"], error_rate.ERROR_RATE,
     "--output: not used by --sink=pagerduty"),
    ([f"--slack_url={SLACK}"], error_rate.ERROR_RATE, "--slack_url: no notifications are sent"),
    (["--sink=pagerduty", f"--pagerduty_routing_key={KEY}", f"--webhook_secret={HMAC}"],
     error_rate.ERROR_RATE, "--webhook_secret: webhook is not a channel of this run"),
    (["--sink=pagerduty", f"--pagerduty_routing_key={KEY}", "--notify_on=alerts",
      "--resolve_after=60"], error_rate.ERROR_RATE,
     "--resolve_after: applies to --notify_on=incidents only"),
    (["--sink=pagerduty", f"--pagerduty_routing_key={KEY}", "--pagerduty_url=ftp://x/y"],
     error_rate.ERROR_RATE, "--pagerduty_url: expected an http:// or https:// URL"),
    (["--sink=pagerduty", f"--pagerduty_routing_key={KEY}", "--notify_attempts=0"],
     error_rate.ERROR_RATE, "--notify_attempts: expected a whole number"),
    (["--sink=pagerduty", "--pagerduty_routing_key=file:/nonexistent/pd_key"],
     error_rate.ERROR_RATE, "--pagerduty_routing_key: expected a readable secret file at "
     "/nonexistent/pd_key"),
    (["--sink=pagerduty", "--pagerduty_routing_key=env:NO_SUCH_VARIABLE_HERE"],
     error_rate.ERROR_RATE, "environment variable NO_SUCH_VARIABLE_HERE to be set"),
])
def test_bad_notification_flags_are_one_line_naming_the_flag(argv, pipeline, message):
    text = error(argv, pipeline)
    assert message in text and "\n" not in text


@pytest.mark.parametrize("argv, secret", [
    (["--sink=pagerduty", "--pagerduty_routing_key=short-but-secret-key"], "short-but-secret-key"),
    (["--sink=slack", "--output=ftp://hooks.example.com/SLACKTOKENxyz123"], "SLACKTOKENxyz123"),
    (["--notify=webhook", "--webhook_url=https://h.example.com/x", "--webhook_header",
      "Authorization Bearer-t0ken-value"], "Bearer-t0ken-value"),
    (["--sink=slack", "--output=https://user:pa55w0rd@[::1/x"], "pa55w0rd"),
])
def test_errors_about_a_secret_never_repeat_it(argv, secret):
    text = error(argv, error_rate.ERROR_RATE)
    assert secret not in text and text.startswith("--")


def test_literal_secrets_leave_the_flags_and_the_pickled_pipeline(tmp_path):
    argv = ["--sink=slack", f"--output={SLACK}", "--notify=pagerduty,webhook",
            f"--pagerduty_routing_key={KEY}", "--webhook_url", HOOK, f"--webhook_secret={HMAC}",
            "--webhook_header=Authorization=Bearer-HEADERTOKEN5"]
    options = checked(argv)
    flags = options.view_as(NotificationOptions)
    assert flags.pagerduty_routing_key.startswith("env:BEAM_PIPELINES_SECRET_")
    assert os.environ[flags.pagerduty_routing_key[4:]] == KEY
    assert flags.webhook_header[0][0] == "Authorization"
    secrets = [KEY, "SLACKTOKENxyz123", "HOOKTOKEN987", HMAC, "HEADERTOKEN5"]
    pipeline = beam.Pipeline(options=options)
    iot_alerts.IOT_ALERTS.build(pipeline, options, iot_alerts.IOT_ALERTS.source(options),
                                streaming=False)
    graph = pipeline.to_runner_api().SerializeToString()
    pickled = pickle.dumps(options)
    listed = repr(options.get_all_options(retain_unknown_options=True)).encode()
    for secret in secrets:
        for what, blob in (("graph", graph), ("options", pickled), ("flags", listed)):
            assert secret.encode() not in blob, f"{secret} in the {what}"


def test_env_and_file_secrets_are_read_where_they_are(tmp_path, monkeypatch):
    key_file = tmp_path / "pd_key"
    key_file.write_text(KEY + "\n")
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", KEY)
    monkeypatch.setenv("MY_SLACK", SLACK)
    checked(["--sink=pagerduty"], error_rate.ERROR_RATE)  # from $PAGERDUTY_ROUTING_KEY
    options = checked(["--sink=pagerduty", f"--pagerduty_routing_key=file:{key_file}",
                       "--notify=slack", "--slack_url=env:MY_SLACK"], error_rate.ERROR_RATE)
    flags = options.view_as(NotificationOptions)
    assert (flags.pagerduty_routing_key, flags.slack_url) == (f"file:{key_file}", "env:MY_SLACK")


def test_a_literal_secret_is_refused_where_workers_cannot_read_it(monkeypatch):
    text = error(["--runner=FlinkRunner", "--sink=pagerduty", f"--pagerduty_routing_key={KEY}"],
                 error_rate.ERROR_RATE)
    assert text.startswith("--pagerduty_routing_key: with --runner=FlinkRunner pass env:NAME or "
                           "file:PATH") and KEY not in text
    monkeypatch.setenv("PD", KEY)
    checked(["--runner=FlinkRunner", "--sink=pagerduty", "--pagerduty_routing_key=env:PD"],
            error_rate.ERROR_RATE)


def test_help_lists_the_flags_and_no_secret(monkeypatch, capsys):
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", KEY)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", SLACK)
    with pytest.raises(SystemExit):
        error_rate.ERROR_RATE.parse_flags(["--help", f"--webhook_secret={HMAC}"])
    text = capsys.readouterr().out
    for flag in ("--notify ", "--notify_on", "--resolve_after", "--pagerduty_routing_key",
                 "--slack_url", "--webhook_secret", "--max_error_ratio", "--min_events"):
        assert flag in text
    assert "slack,pagerduty,webhook" in text.replace("|", ",") or "slack, pagerduty" in text
    for secret in (KEY, "SLACKTOKENxyz123", HMAC):
        assert secret not in text


def test_notify_on_defaults_to_incidents_where_the_pipeline_defines_them():
    options = checked(["--sink=pagerduty", f"--pagerduty_routing_key={KEY}"])
    pipeline = beam.Pipeline(options=options)
    iot_alerts.IOT_ALERTS.build(pipeline, options, iot_alerts.IOT_ALERTS.source(options),
                                streaming=False)
    labels = {t.unique_name for t in pipeline.to_runner_api().components.transforms.values()}
    assert any("TrackIncidents" in label for label in labels)
    assert any("NotifyByPagerduty" in label for label in labels)


def test_sliding_windows_by_default_for_error_rate():
    config = error_rate.ERROR_RATE.window_config(error_rate.ERROR_RATE.parse_flags([]))
    assert (config.size, config.period) == (60, 10)
    config = error_rate.ERROR_RATE.window_config(error_rate.ERROR_RATE.parse_flags(
        ["--window_size=5"]))
    assert (config.size, config.period) == (5, 5)
    config = iot_alerts.IOT_ALERTS.window_config(iot_alerts.IOT_ALERTS.parse_flags([]))
    assert config.period is None


def test_notification_families_are_exported_at_zero_from_the_first_scrape():
    empty = Snapshot({}, {}, {}, 0.0)
    families = to_families(empty, "error_rate", zeros=notification_series(["pagerduty", "slack"]))
    got = {(s.name, tuple(sorted(s.labels.items())), s.value) for s in families.series}
    assert ("notifications_sent_total", (("channel", "pagerduty"), ("pipeline", "error_rate")),
            0.0) in got
    assert ("incidents_resolved_total", (("pipeline", "error_rate"), ("reason", "recovered")),
            0.0) in got
    counted = Snapshot({("error_rate", "notifications_delivered.pagerduty"): 3,
                        ("error_rate", "notifications_retries.pagerduty"): 2,
                        ("error_rate", "incidents_triggered"): 1,
                        ("error_rate", "incidents_resolved.quiet_period"): 1}, {}, {}, 0.0)
    series = to_families(counted, "error_rate", zeros=notification_series(["pagerduty"])).series
    values = {(s.name, s.labels.get("channel") or s.labels.get("reason")): s.value for s in series}
    assert values[("notifications_sent_total", "pagerduty")] == 3
    assert values[("notifications_retried_total", "pagerduty")] == 2
    assert values[("notifications_failed_total", "pagerduty")] == 0
    assert values[("incidents_opened_total", None)] == 1
    assert values[("incidents_resolved_total", "quiet_period")] == 1
    assert values[("incidents_resolved_total", "recovered")] == 0
    assert len(series) == len({(s.name, tuple(sorted(s.labels.items()))) for s in series})
    assert notification_series([]) == []
