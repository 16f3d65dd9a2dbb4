"""What each sink sends, checked by the receiver's own format checks (no server)."""

import json

import pytest

from beam_pipelines.testing.http_receiver import (
    PagerDutyRoute,
    ReceivedRequest,
    SlackRoute,
    WebhookRoute,
)
from transforms.base.errors import ConfigError
from transforms.incidents import IncidentEvent
from transforms.records import IoTAlert
from transforms.sinks.notifications import (
    WriteToPagerDuty,
    WriteToSlack,
    WriteToWebhook,
    message_fields,
    sign,
    verify_signature,
)
from transforms.sinks.notifications.message import (
    AlertMessage,
    default_message,
    notification_of,
)
from transforms.sinks.notifications.pagerduty import pagerduty_event
from transforms.sinks.notifications.secrets import Secret
from transforms.sinks.notifications.slack import slack_message
from transforms.sinks.notifications.webhook import _WebhookChannel, idempotency_key
from transforms.windowing import WindowedResult

pytestmark = pytest.mark.unit

KEY = "R0UTINGKEY0123456789abcdefABCDEF"
ALERT = IoTAlert("dev-1", 31.5, 70.0, "2024-01-01T00:01:00Z", "2024-01-01T00:00:00Z", "EARLY", 1, False)
FIELDS = message_fields(what="High temperature on {DeviceId}", where="DeviceId",
                        numbers=["AvgTemp", "MaxHumidity"], window_start="WindowStart",
                        window_end="WindowTime", severity="critical")


def as_request(body: dict, headers=None, raw: bytes | None = None) -> ReceivedRequest:
    data = raw if raw is not None else json.dumps(body).encode()
    head = {"content-type": "application/json"}
    head.update({k.lower(): v for k, v in (headers or {}).items()})
    return ReceivedRequest("/", head, data, json.loads(data), [], 0.0)


def incident(action, record=ALERT, reason="breach"):
    return IncidentEvent("iot:dev-1:2024-01-01T00:00:00Z", action, "dev-1", reason,
                         "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2024-01-01T00:00:00Z",
                         "2024-01-01T00:03:00Z", record, "iot")


def test_identity_of_plain_alerts_and_incident_events():
    early = notification_of(ALERT, FIELDS, "iot")
    on_time = notification_of(ALERT._replace(pane_timing="ON_TIME", pane_index=2), FIELDS, "iot")
    assert early.dedup_key == on_time.dedup_key == "iot:dev-1:2024-01-01T00:00:00Z"
    assert (early.event_id, on_time.event_id) == (early.dedup_key + ":pane1", early.dedup_key + ":pane2")
    assert early.message == AlertMessage("High temperature on dev-1", "dev-1",
                                         {"AvgTemp": 31.5, "MaxHumidity": 70.0},
                                         "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "critical")
    trigger, resolve = notification_of(incident("trigger"), FIELDS, "iot"), notification_of(
        incident("resolve", reason="quiet_period"), FIELDS, "iot")
    assert trigger.dedup_key == resolve.dedup_key == "iot:dev-1:2024-01-01T00:00:00Z"
    assert (trigger.event_id, resolve.event_id) == (trigger.dedup_key + ":trigger",
                                                    trigger.dedup_key + ":resolve")
    assert resolve.incident["reason"] == "quiet_period"


def test_default_message_reads_the_projects_records():
    windowed = WindowedResult("checkout", 1_704_067_200.0, 1_704_067_260.0,
                              {"errors": 12, "ratio": 0.25}, "ON_TIME", 0, True)
    message = default_message(windowed)
    assert (message.where, message.numbers) == ("checkout", {"errors": 12, "ratio": 0.25})
    assert (message.window_start, message.window_end) == ("2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z")
    assert default_message(ALERT).where == "dev-1"
    assert default_message({"service": "api", "n": 3}).numbers == {"n": 3}


def test_slack_message_is_valid_block_kit_with_the_facts():
    note = notification_of(ALERT, FIELDS, "iot")
    body = slack_message(note)
    assert SlackRoute(None, "/").check(as_request(body)) == []
    assert body["text"].startswith("Triggered: High temperature on dev-1 (AvgTemp=31.5")
    texts = [f["text"] for f in body["blocks"][1]["fields"]]
    assert texts[:3] == ["*Where*\ndev-1", "*Window*\n2024-01-01T00:00:00Z → 2024-01-01T00:01:00Z",
                         "*AvgTemp*\n31.5"]
    resolved = slack_message(notification_of(incident("resolve", reason="recovered"), FIELDS, "iot"))
    assert "Resolved" in resolved["blocks"][0]["text"]["text"]
    assert "back within limits" in resolved["blocks"][0]["text"]["text"]


def test_slack_limits_and_escaping():
    many = {f"n{i}": i for i in range(25)}
    message = AlertMessage("<b>&" + "x" * 5000, "svc<1>", many, None, None, "warning")
    note = notification_of({"service": "svc"}, lambda r: message, "p")
    body = slack_message(note)
    assert SlackRoute(None, "/").check(as_request(body)) == []
    assert len(body["blocks"][1]["fields"]) == 10
    assert "&lt;b&gt;&amp;" in body["blocks"][0]["text"]["text"] and "<b>" not in json.dumps(body)
    assert "16 more value(s)" in body["blocks"][2]["elements"][0]["text"]


def test_pagerduty_events_follow_events_api_v2():
    route = PagerDutyRoute(None, "/v2/enqueue", KEY)
    trigger = pagerduty_event(notification_of(ALERT, FIELDS, "iot"), KEY, component="sensors",
                              group="plant-1", event_class="temperature")
    assert route.check(as_request(trigger)) == []
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "dev-1"
    assert trigger["payload"]["class"] == "temperature"
    assert trigger["payload"]["custom_details"]["record"]["DeviceId"] == "dev-1"
    resolve = pagerduty_event(notification_of(incident("resolve"), FIELDS, "iot"), KEY)
    assert route.check(as_request(resolve)) == []
    assert set(resolve) == {"routing_key", "event_action", "dedup_key"}

    long = notification_of({"service": "s" * 400, "ratio": 1.0},
                           message_fields(what="w" * 2000, where="service"), "p")
    event = pagerduty_event(long, KEY)
    assert len(event["payload"]["summary"]) == 1024 and len(event["dedup_key"]) <= 255
    assert route.check(as_request(event)) == []


def test_the_receiver_rejects_what_pagerduty_rejects():
    route = PagerDutyRoute(None, "/v2/enqueue", KEY)
    good = pagerduty_event(notification_of(ALERT, FIELDS, "iot"), KEY)
    broken = [
        ({**good, "routing_key": "short"}, "Length of 'routing_key'"),
        ({**good, "routing_key": "x" * 32}, "Invalid routing key"),
        ({**good, "event_action": "open"}, "event_action"),
        ({**good, "payload": {**good["payload"], "severity": "high"}}, "severity"),
        ({**good, "payload": {**good["payload"], "summary": "x" * 1025}}, "1024"),
        ({k: v for k, v in good.items() if k != "dedup_key"} | {"event_action": "resolve"}, "required"),
    ]
    for body, problem in broken:
        assert any(problem in p for p in route.check(as_request(body))), problem


def test_webhook_signature_and_idempotency_key():
    channel = _WebhookChannel(Secret("http://127.0.0.1/hook"), Secret("shh-secret"), {}, None, 1)
    request = channel.request(notification_of(incident("trigger"), FIELDS, "iot"))
    body = json.loads(request.body)
    assert body["DeviceId"] == "dev-1" and body["event_action"] == "trigger"
    assert body["dedup_key"] == "iot:dev-1:2024-01-01T00:00:00Z" and body["incident"]["reason"] == "breach"
    assert request.headers["Idempotency-Key"] == body["event_id"] == body["dedup_key"] + ":trigger"
    assert request.headers["X-Signature-256"] == sign("shh-secret", request.body)
    assert verify_signature("shh-secret", request.body, request.headers["X-Signature-256"])
    assert not verify_signature("other", request.body, request.headers["X-Signature-256"])
    assert not verify_signature("shh-secret", request.body + b" ", request.headers["X-Signature-256"])
    route = WebhookRoute(None, "/hook", "shh-secret")
    assert route.check(as_request(body, request.headers, raw=request.body)) == []
    assert idempotency_key("gerät:1").startswith("sha256:")


def test_constructors_check_arguments_without_echoing_secrets():
    with pytest.raises(ConfigError, match="routing_key") as error:
        WriteToPagerDuty("not-a-key-but-a-secret-value")
    assert "not-a-key-but-a-secret-value" not in str(error.value)
    with pytest.raises(ConfigError, match="webhook_url") as error:
        WriteToSlack("hooks.slack.com/services/T/B/tokentokentoken")
    assert "tokentokentoken" not in str(error.value)
    with pytest.raises(ConfigError, match="delivery settings"):
        WriteToWebhook("http://127.0.0.1/x", retries=3)
    with pytest.raises(ConfigError, match="message"):
        WriteToWebhook("http://127.0.0.1/x", message={"wat": "x"})
    with pytest.raises(ConfigError, match="message.severity"):
        message_fields(what="x", severity="fatal")
    with pytest.raises(ConfigError, match="burst"):
        WriteToSlack("http://127.0.0.1/x", burst=0)
    with pytest.raises(ConfigError, match="headers"):
        WriteToWebhook("http://127.0.0.1/x", headers={"X-Signature-256": "forged"})
