"""Every notification sink against the local HTTP receiver: formats, retries, dead letters,
exactly-once per pane, endpoints that do not block each other, secrets that never leak."""

import json
import logging
import threading
import uuid

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as Stream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.testing.collect import collect
from beam_pipelines.testing.polling import wait_for
from beam_pipelines.testing.servers import free_port
from transforms.records import IoTAlert
from transforms.sinks.notifications import (
    WriteToPagerDuty,
    WriteToSlack,
    WriteToWebhook,
)
from transforms.sinks.notifications.write import DEAD_LETTERS, DELIVERED, _DeliverFn

pytestmark = pytest.mark.integration

ROUTING_KEY = "R0UTINGKEY0123456789abcdefABCDEF"
HOOK_SECRET = "hmac-shared-secret-for-tests"
# Small backoffs keep retries quick; the timeout is generous so a loaded machine never
# turns a normal answer into a retry (the timeout test sets its own).
FAST = {"initial_backoff": 0.01, "max_backoff": 0.05, "timeout": 30.0}


def alerts(n=3, pane_index=0):
    return [IoTAlert(f"dev-{i}", 30.5 + i, 70.0, "2024-01-01T00:01:00Z", "2024-01-01T00:00:00Z",
                     "ON_TIME", pane_index, True) for i in range(n)]


def run_sink(records, sink):
    pipeline = beam.Pipeline()
    result = pipeline | beam.Create(records) | sink
    delivered, dead = collect(result.delivered), collect(result.dead_letters)
    pipeline.run().wait_until_finish()
    return delivered.items, dead.items


def test_every_sink_delivers_each_alert_in_its_real_format(http_receiver):
    slack, pager, hook = (http_receiver.slack(), http_receiver.pagerduty(ROUTING_KEY),
                          http_receiver.webhook(HOOK_SECRET))
    records = alerts(3)
    pipeline = beam.Pipeline()
    source = pipeline | beam.Create(records)
    results = [
        source | "Slack" >> WriteToSlack(slack.url, rate_limit=None, pipeline="iot", **FAST),
        source | "PD" >> WriteToPagerDuty(ROUTING_KEY, url=pager.url, pipeline="iot", **FAST),
        source | "Hook" >> WriteToWebhook(hook.url, secret=HOOK_SECRET, pipeline="iot", **FAST),
    ]
    collected = [(collect(r.delivered, f"d{i}"), collect(r.dead_letters, f"x{i}"))
                 for i, r in enumerate(results)]
    pipeline.run().wait_until_finish()

    for delivered, dead in collected:
        assert sorted(delivered.items) == sorted(records) and dead.items == []
    for route in (slack, pager, hook):
        assert route.problems == [] and len(route.requests) == 3 and len(route.accepted) == 3
    assert sorted(m["blocks"][1]["fields"][0]["text"] for m in slack.messages) == [
        "*Where*\ndev-0", "*Where*\ndev-1", "*Where*\ndev-2"]
    assert pager.actions() == {f"iot:dev-{i}:2024-01-01T00:00:00Z": ["trigger"] for i in range(3)}
    assert sorted(d["DeviceId"] for d in hook.deliveries) == ["dev-0", "dev-1", "dev-2"]


def test_429_waits_for_retry_after_then_delivers(http_receiver):
    hook = http_receiver.webhook(HOOK_SECRET).rate_limit(retry_after="1")
    delivered, dead = run_sink(alerts(1), WriteToWebhook(hook.url, secret=HOOK_SECRET, **FAST))
    assert len(delivered) == 1 and dead == []
    first, second = hook.requests
    assert (first.status, second.status) == (429, 200)
    # A lower bound only (a busy machine makes the gap longer, never shorter): the
    # backoff alone would have waited at most 0.05 s.
    assert second.received_at - first.received_at >= 1.0
    assert first.body == second.body and first.header("Idempotency-Key") == second.header("Idempotency-Key")


def test_slack_429_pauses_and_500s_are_retried(http_receiver):
    slack = http_receiver.slack().rate_limit(retry_after="1").fail(500, times=2, body="rollup_error")
    delivered, dead = run_sink(alerts(1), WriteToSlack(slack.url, **FAST))
    assert len(delivered) == 1 and dead == []
    assert [r.status for r in slack.requests] == [429, 500, 500, 200]
    assert slack.problems == []


def test_pagerduty_500s_then_success_is_one_alert(http_receiver):
    pager = http_receiver.pagerduty(ROUTING_KEY).fail(500, times=2).fail(502)
    delivered, dead = run_sink(alerts(1), WriteToPagerDuty(ROUTING_KEY, url=pager.url, **FAST))
    assert len(delivered) == 1 and dead == []
    assert [r.status for r in pager.requests] == [500, 500, 502, 202]
    assert len({r.json["dedup_key"] for r in pager.requests}) == 1
    assert pager.problems == []


def test_timeouts_are_retried_with_the_same_idempotency_key(http_receiver):
    hook = http_receiver.webhook(HOOK_SECRET).hold(times=2)
    sink = WriteToWebhook(hook.url, secret=HOOK_SECRET, **{**FAST, "timeout": 0.5})
    delivered, dead = run_sink(alerts(1), sink)
    assert len(delivered) == 1 and dead == []
    requests = hook.requests
    assert len(requests) >= 3 and [r.status for r in requests[:2]] == [None, None]  # never answered
    assert len({r.header("Idempotency-Key") for r in requests}) == 1
    assert len(hook.accepted) == 1 and hook.problems == []


def test_budget_exhausted_is_a_dead_letter_with_the_last_status_and_body(http_receiver):
    pager = http_receiver.pagerduty(ROUTING_KEY).fail(503, times=10, body="upstream unavailable")
    sink = WriteToPagerDuty(ROUTING_KEY, url=pager.url, max_attempts=3, pipeline="iot", **FAST)
    delivered, dead = run_sink(alerts(1), sink)
    assert delivered == [] and len(pager.requests) == 3
    [letter] = dead
    assert letter.reason_code == "notification_failed" and letter.step == "notify_pagerduty"
    assert "after 3 attempt(s)" in letter.reason and "HTTP 503" in letter.reason
    assert letter.origin["status"] == 503 and letter.origin["body"] == "upstream unavailable"
    assert letter.origin["endpoint"] == http_receiver.base_url
    assert json.loads(letter.payload)["DeviceId"] == "dev-0"  # the alert, ready to replay


def test_retry_after_beyond_the_budget_gives_up_at_once(http_receiver):
    slack = http_receiver.slack().rate_limit(retry_after="3600")
    delivered, dead = run_sink(alerts(1), WriteToSlack(slack.url, retry_budget=30, **FAST))
    assert delivered == [] and len(slack.requests) == 1
    assert "Retry-After (3600.0s) exceeds" in dead[0].reason and dead[0].origin["status"] == 429


def test_400_is_dead_lettered_without_a_retry(http_receiver):
    pager = http_receiver.pagerduty(ROUTING_KEY)
    other_key = "0THERKEY0123456789abcdefABCDEF00"
    delivered, dead = run_sink(alerts(2), WriteToPagerDuty(other_key, url=pager.url, **FAST))
    assert delivered == [] and len(pager.requests) == 2  # one request per alert, no retry
    assert {letter.reason_code for letter in dead} == {"notification_refused"}
    assert all(letter.origin["status"] == 400 and "Invalid routing key" in letter.origin["body"]
               for letter in dead)


def test_unreachable_endpoint_is_dead_lettered_after_its_budget():
    url = f"http://127.0.0.1:{free_port()}/hooks/alerts"  # nothing listens there
    delivered, dead = run_sink(alerts(1), WriteToWebhook(url, max_attempts=2, **FAST))
    assert delivered == []
    assert dead[0].origin["status"] == 0 and "refused" in dead[0].origin["error"]


def test_a_slow_endpoint_does_not_hold_up_another_endpoints_deliveries(http_receiver):
    slack = http_receiver.slack().hold(times=3)  # Slack answers nothing until released
    hook = http_receiver.webhook(HOOK_SECRET)
    pipeline = beam.Pipeline()
    source = pipeline | beam.Create(alerts(3))
    to_slack = source | "Slack" >> WriteToSlack(slack.url, rate_limit=None, **FAST)
    to_hook = source | "Hook" >> WriteToWebhook(hook.url, secret=HOOK_SECRET, **FAST)
    slack_done, hook_done = collect(to_slack.delivered), collect(to_hook.delivered)
    failures = []

    def run():
        try:
            pipeline.run().wait_until_finish()
        except Exception as exc:  # surfaced by the assertion below
            failures.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    try:
        wait_for(lambda: len(hook.accepted) == 3, what="the webhook's three alerts")
        assert [r.status for r in slack.requests] == [None] * len(slack.requests)  # still held
    finally:
        slack.release()
        runner.join(120)
    assert failures == [] and len(slack_done.items) == 3 and len(hook_done.items) == 3


class _FailFirstFinish(_DeliverFn):
    """Delivers, then fails the bundle once, as a worker lost after sending would."""

    failed: set = set()

    def __init__(self, token, *args):
        super().__init__(*args)
        self._token = token

    def finish_bundle(self):
        outputs = list(super().finish_bundle())
        if self._token not in _FailFirstFinish.failed:
            _FailFirstFinish.failed.add(self._token)
            raise RuntimeError("lost after delivering (test)")
        yield from outputs


def test_a_retried_bundle_sends_nothing_twice(http_receiver):
    hook = http_receiver.webhook(HOOK_SECRET)
    sink = WriteToWebhook(hook.url, secret=HOOK_SECRET, pipeline="iot", **FAST)
    fn = _FailFirstFinish(uuid.uuid4().hex, sink._channel, sink._message_fn, sink._settings,
                          "iot", "notify_webhook")
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True  # the DirectRunner retries bundles here
    pipeline = beam.Pipeline(options=options)
    records = alerts(3) + alerts(3, pane_index=1)  # two panes of each window: 6 alerts
    stream = Stream().add_elements([TimestampedValue(r, 1_704_067_259) for r in records])
    outputs = (pipeline | stream.advance_watermark_to_infinity()
               | beam.ParDo(fn).with_outputs(DEAD_LETTERS, DELIVERED))
    delivered, dead = collect(outputs[DELIVERED]), collect(outputs[DEAD_LETTERS])
    pipeline.run().wait_until_finish()

    assert _FailFirstFinish.failed  # the first attempt of the bundle did fail
    assert len(hook.requests) == 6 and not any(r.duplicate for r in hook.requests)
    assert len({r.header("Idempotency-Key") for r in hook.requests}) == 6
    assert sorted(delivered.items) == sorted(records) and dead.items == []


def test_no_secret_appears_in_logs_errors_or_dead_letters(http_receiver, caplog, capfd, monkeypatch):
    slack_token = "T0SECRET/B0SECRET/slackTokenValue1234567890"
    hook_token = "hookTokenInThePath-987654321"
    monkeypatch.setenv("NOTIFY_TEST_ROUTING_KEY", "SECRETR0UTINGKEYabcdef0123456789")
    secrets = [slack_token, "slackTokenValue1234567890", hook_token, HOOK_SECRET,
               "SECRETR0UTINGKEYabcdef0123456789", "Bearer-auth-secret-value"]
    slack = http_receiver.slack(path=f"/services/{slack_token}").fail(500, times=100, body="rollup_error")
    pager = http_receiver.pagerduty(ROUTING_KEY)  # a different key: 400 Invalid routing key
    refused_port = free_port()
    pipeline = beam.Pipeline()
    source = pipeline | beam.Create(alerts(2))
    results = [
        source | "Slack" >> WriteToSlack(slack.url, max_attempts=2, rate_limit=None, **FAST),
        source | "PD" >> WriteToPagerDuty("env:NOTIFY_TEST_ROUTING_KEY", url=pager.url, **FAST),
        source | "Hook" >> WriteToWebhook(
            f"http://127.0.0.1:{refused_port}/hooks/{hook_token}", secret=HOOK_SECRET,
            headers={"Authorization": "Bearer-auth-secret-value"}, max_attempts=2, **FAST),
    ]
    dead = [collect(r.dead_letters, f"dead{i}") for i, r in enumerate(results)]
    with caplog.at_level(logging.DEBUG):
        result = pipeline.run()
        result.wait_until_finish()
    letters = [letter for d in dead for letter in d.items]
    assert len(letters) == 6 and all(letter.reason for letter in letters)
    metric_names = [str(m.key) for m in result.metrics().query()["counters"]]
    assert any("notifications_dead_lettered" in name for name in metric_names)
    out, err = capfd.readouterr()
    everything = "\n".join([caplog.text, out, err, *metric_names,
                            *(json.dumps(letter._asdict()) for letter in letters)])
    for secret in secrets:
        assert secret not in everything, f"a secret leaked: {secret[:4]}..."
    assert "***" in everything or http_receiver.base_url in everything


def test_a_dead_endpoint_holds_the_bundle_for_one_budget_not_one_per_alert(http_receiver):
    hook = http_receiver.webhook(HOOK_SECRET).hold(times=1000)  # never answers
    sink = WriteToWebhook(hook.url, secret=HOOK_SECRET, concurrency=1, max_attempts=2,
                          **{**FAST, "timeout": 0.5})
    delivered, dead = run_sink(alerts(10), sink)
    assert delivered == [] and len(dead) == 10
    # The first alert used its two attempts; the nine queued behind it were not tried.
    assert len(hook.requests) == 2
    assert sorted(letter.origin["attempts"] for letter in dead) == [0] * 9 + [2]
    assert sum("not tried" in letter.reason for letter in dead) == 9
