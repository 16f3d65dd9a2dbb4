"""Notifications through the command line against the local receiver, with endpoints that
fail: 500s, 429 + Retry-After, slow answers, answers that never come (timeouts) and a dead
endpoint. Every alert is delivered exactly once per pane, or dead-lettered after the retry
budget with its last status; a stuck endpoint holds up nothing else."""

from __future__ import annotations

import json
import threading

import pytest

from beam_pipelines import iot_alerts
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.iot import SyntheticReadings, edge_case_lines, reference_alerts
from beam_pipelines.testing.polling import wait_for

from .support import ROUTING_KEY

pytestmark = pytest.mark.integration

HMAC = "delivery-test-hmac"


@pytest.fixture(scope="module")
def readings(tmp_path_factory):
    lines = [line for line in list(SyntheticReadings(seed=5).payloads(100)) + edge_case_lines()
             if line.strip()]
    path = tmp_path_factory.mktemp("readings") / "readings.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    alerts = reference_alerts(lines).alerts
    assert 5 <= len(alerts) <= 12  # enough to spread over the delivery threads, and quick
    return path, alerts


def event_ids(alerts) -> set[str]:
    return {f"iot_alerts:{a['DeviceId']}:{a['WindowStart']}" for a in alerts}


def start(argv: list[str]) -> tuple[threading.Thread, list]:
    done: list = []
    thread = threading.Thread(target=lambda: done.append(iot_alerts.main(argv)), daemon=True)
    thread.start()
    return thread, done


def test_retries_once_each_dead_endpoint_dead_lettered_slow_one_blocks_nothing(
        readings, http_receiver, tmp_path):
    path, alerts = readings
    hook = http_receiver.webhook(HMAC)
    hook.fail(500).rate_limit(retry_after="1").fail(502, body="bad gateway").slow(0.3)
    slack = http_receiver.slack()
    slack.hold()  # the first Slack message waits until released
    pager = http_receiver.pagerduty(ROUTING_KEY)
    pager.fail(503, times=1000, body='{"status": "unavailable", "message": "try later"}')

    thread, done = start([
        "--source=file", f"--input={path}", "--sink=jsonl", f"--output={tmp_path / 'out'}",
        f"--dead_letter={tmp_path / 'dead'}", "--notify_on=alerts",
        "--notify=webhook,slack,pagerduty", f"--webhook_url={hook.url}",
        f"--webhook_secret={HMAC}", f"--slack_url={slack.url}",
        f"--pagerduty_routing_key={ROUTING_KEY}", f"--pagerduty_url={pager.url}",
        "--notify_attempts=4", "--notify_retry_budget=20", "--notify_timeout=60",
    ])
    try:
        # While Slack's first request hangs, the webhook delivers every alert and
        # PagerDuty's failures run their course.
        wait_for(lambda: len(hook.deliveries) == len(alerts), timeout=60,
                 what="every alert delivered to the webhook while Slack hangs")
        assert slack.requests and slack.requests[0].status is None  # still held
    finally:
        slack.release()
    thread.join(timeout=120)
    assert done == [0]

    # Webhook: each alert once, retried with the same bytes, signed.
    assert hook.problems == []
    assert {d["event_id"] for d in hook.deliveries} == event_ids(alerts)
    assert len(hook.deliveries) == len(alerts)
    bodies: dict[str, set[bytes]] = {}
    for request in hook.requests:
        bodies.setdefault(request.header("Idempotency-Key"), set()).add(request.body)
    assert all(len(variants) == 1 for variants in bodies.values())
    assert len(hook.requests) == len(alerts) + 3  # 500, 429, 502 were retried
    # Slack: one message per alert, whatever waited.
    assert slack.problems == [] and len(slack.messages) == len(alerts)
    # PagerDuty: dead, so every alert is a dead letter with the last status and body.
    dead = read_jsonl(str(tmp_path / "dead" / "dead_letters-*.jsonl"))
    paged = [d for d in dead if d["origin"].get("sink") == "pagerduty"]
    assert len(paged) == len(alerts) == len(dead) - len(reference_alerts(
        path.read_bytes().splitlines()).invalid_lines)
    assert {d["origin"]["event_id"] for d in paged} == event_ids(alerts)
    for letter in paged:
        assert letter["reason_code"] == "notification_failed"
        assert letter["origin"]["status"] == 503 and "try later" in letter["origin"]["body"]
        assert letter["origin"]["endpoint"] == http_receiver.base_url
        assert json.loads(letter["payload"])["DeviceId"]  # the alert, ready to replay
    # The alerts in flight when the endpoint failed used their attempts; the rest were not
    # tried (the endpoint was down), each with the failure that marked it down.
    tried = [d for d in paged if d["origin"]["attempts"]]
    assert tried and {d["origin"]["attempts"] for d in tried} == {4}
    assert len(pager.requests) == 4 * len(tried) and pager.accepted == []
    # The usual sink has every alert.
    written = read_jsonl(str(tmp_path / "out" / "iot_alerts-*.jsonl"))
    assert sorted((a["DeviceId"], a["WindowStart"]) for a in written) == sorted(
        (a["DeviceId"], a["WindowStart"]) for a in alerts)


def test_timeouts_are_retried_and_an_endpoint_that_never_answers_is_dead_lettered(
        readings, http_receiver, tmp_path):
    path, alerts = readings
    hook = http_receiver.webhook()
    hook.hold(times=2)  # two requests get no answer: the client times out and retries
    slack = http_receiver.slack("/services/T1/B1/NEVERANSWERS")
    slack.hold(times=1000)

    assert iot_alerts.main([
        "--source=file", f"--input={path}", "--sink=webhook", f"--output={hook.url}",
        "--notify=slack", f"--slack_url={slack.url}", "--notify_on=alerts",
        f"--dead_letter={tmp_path / 'dead'}", "--notify_timeout=0.5", "--notify_attempts=2",
    ]) == 0

    assert hook.problems == []
    assert {d["event_id"] for d in hook.deliveries} == event_ids(alerts)
    assert len(hook.deliveries) == len(alerts)  # the held requests' retries, once each
    assert sum(1 for r in hook.requests if r.scripted) == 2
    letters = [d for d in read_jsonl(str(tmp_path / "dead" / "dead_letters-*.jsonl"))
               if d["origin"].get("sink") == "slack"]
    assert {d["origin"]["event_id"] for d in letters} == event_ids(alerts)
    for letter in letters:
        assert letter["origin"]["status"] == 0 and "no response within 0.5s" in letter["origin"]["error"]
        assert "NEVERANSWERS" not in json.dumps(letter)
