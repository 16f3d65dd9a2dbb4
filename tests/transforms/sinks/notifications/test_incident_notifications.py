"""A scripted incident through TrackIncidents to PagerDuty, Slack and a webhook: one
trigger and one resolve per incident, with the same dedup key."""

import apache_beam as beam
import pytest
import requests
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as Stream
from apache_beam.transforms.window import TimestampedValue

from transforms.incidents import TrackIncidents
from transforms.sinks.notifications import (
    WriteToPagerDuty,
    WriteToSlack,
    WriteToWebhook,
    message_fields,
)
from transforms.windowing import WindowedResult

pytestmark = pytest.mark.integration

ROUTING_KEY = "R0UTINGKEY0123456789abcdefABCDEF"
T0 = 1_704_067_200
FAST = {"initial_backoff": 0.01, "max_backoff": 0.05, "timeout": 30.0}


def window(service, index, ratio, pane_timing="ON_TIME", pane_index=0):
    start = T0 + 60 * index
    result = WindowedResult(service, float(start), float(start + 60),
                            {"errors": int(ratio * 100), "ratio": ratio}, pane_timing, pane_index,
                            pane_timing != "EARLY")
    return TimestampedValue(result, start + 60 - 0.000001)


def test_errors_rise_then_fall_one_trigger_and_one_resolve_everywhere(http_receiver):
    pager, slack, hook = (http_receiver.pagerduty(ROUTING_KEY), http_receiver.slack(),
                          http_receiver.webhook("s3cret-for-hmac"))
    stream = (
        Stream()
        .advance_watermark_to(T0)
        .add_elements([window("checkout", 0, 0.01), window("search", 0, 0.0)])
        .advance_watermark_to(T0 + 60)
        .add_elements([window("checkout", 1, 0.30, "EARLY", 0)])  # errors rise: early pane
        .add_elements([window("checkout", 1, 0.40, "ON_TIME", 1)])  # same window: no 2nd trigger
        .advance_watermark_to(T0 + 120)
        .add_elements([window("checkout", 2, 0.35)])  # still breaching: nothing
        .advance_watermark_to(T0 + 180)
        .add_elements([window("checkout", 3, 0.02)])  # recovered: resolve
        .advance_watermark_to_infinity()
    )
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    message = message_fields(what="Error ratio above 10%", where="key", numbers=["ratio", "errors"],
                             severity="critical")
    with beam.Pipeline(options=options) as pipeline:
        incidents = pipeline | stream | TrackIncidents(
            lambda r: r.key, lambda r: r.value["ratio"] > 0.1, streaming=True, pipeline="error_rate")
        events = incidents.events
        events | "PD" >> WriteToPagerDuty(ROUTING_KEY, url=pager.url, message=message,
                                          pipeline="error_rate", **FAST)
        events | "Slack" >> WriteToSlack(slack.url, message=message, rate_limit=None,
                                         pipeline="error_rate", **FAST)
        events | "Hook" >> WriteToWebhook(hook.url, secret="s3cret-for-hmac", message=message,
                                          pipeline="error_rate", **FAST)

    incident = "error_rate:checkout:2024-01-01T00:01:00Z"
    assert pager.actions() == {incident: ["trigger", "resolve"]}
    trigger = pager.events[0]["payload"]
    assert trigger["severity"] == "critical" and trigger["source"] == "checkout"
    assert trigger["summary"].startswith("Error ratio above 10% on checkout: ratio=0.3")
    assert [m["blocks"][0]["text"]["text"].split(":", 2)[1] for m in slack.messages] == [
        "rotating_light", "white_check_mark"]
    assert [(d["event_action"], d["dedup_key"], d["key"]) for d in hook.deliveries] == [
        ("trigger", incident, "checkout"), ("resolve", incident, "checkout")]
    assert hook.deliveries[1]["incident"]["reason"] == "recovered"
    for route in (pager, slack, hook):
        assert route.problems == [] and len(route.requests) == 2


def test_the_receiver_answers_malformed_requests_like_the_real_services(http_receiver):
    pager, slack, hook = (http_receiver.pagerduty(ROUTING_KEY), http_receiver.slack(),
                          http_receiver.webhook("s3cret"))
    answer = requests.post(pager.url, json={"routing_key": ROUTING_KEY, "event_action": "trigger",
                                            "payload": {"summary": "x", "source": "y",
                                                        "severity": "fatal"}}, timeout=30)
    assert answer.status_code == 400 and answer.json()["status"] == "invalid event"
    assert any("severity" in error for error in answer.json()["errors"])
    answer = requests.post(slack.url, json={"text": ""}, timeout=30)
    assert (answer.status_code, answer.text) == (400, "no_text")
    answer = requests.post(slack.url, json={"text": "x", "blocks": [{"type": "section"}]}, timeout=30)
    assert (answer.status_code, answer.text) == (400, "invalid_blocks")
    answer = requests.post(hook.url, json={"event_action": "trigger", "dedup_key": "k"},
                           headers={"Idempotency-Key": "k:1", "X-Signature-256": "sha256=00"},
                           timeout=30)
    assert answer.status_code == 401
    answer = requests.post(http_receiver.base_url + "/services/unknown", json={"text": "x"}, timeout=30)
    assert (answer.status_code, answer.text) == (404, "no_service")
    assert [len(route.requests) for route in (pager, slack, hook)] == [1, 2, 1]
    assert all(route.accepted == [] for route in (pager, slack, hook))
