"""A scripted incident through Kafka on the local streaming runner: a service's errors
rise, then fall; PagerDuty gets one trigger and one resolve with the same dedup key,
while every window's result also goes to the usual sink (--sink=jsonl --notify=pagerduty)."""

from __future__ import annotations

import json

import pytest

from beam_pipelines import error_rate
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.polling import wait_for
from transforms.base.times import parse_iso
from transforms.records import utc_iso

from .support import ROUTING_KEY, T0, phase

pytestmark = pytest.mark.integration


def produce(servers: str, topic: str, lines: list[bytes]) -> None:
    """Each line with its event time as the Kafka log time (the source's watermark)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
    for line in lines:
        millis = int(parse_iso(json.loads(line)["timestamp"]).timestamp() * 1000)
        producer.send(topic, line, timestamp_ms=millis)
    producer.flush()
    producer.close()


def test_errors_rise_then_fall_one_trigger_and_one_resolve(kafka_broker, kafka_topic, tmp_path,
                                                          http_receiver):
    servers, topic = kafka_broker.bootstrap_servers, kafka_topic(1, "service_logs")
    pager = http_receiver.pagerduty(ROUTING_KEY)
    out = tmp_path / "out"
    run = error_rate.ERROR_RATE.launch([
        "--streaming", "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
        "--start_at=earliest", "--idle_timeout=600", "--early_firing=1",
        "--sink=jsonl", f"--output={out}", f"--dead_letter={tmp_path / 'dead'}",
        "--notify=pagerduty", f"--pagerduty_routing_key={ROUTING_KEY}",
        f"--pagerduty_url={pager.url}", "--notify_retry_budget=20",
    ])
    try:
        # Healthy for a minute, then half of the requests fail for a minute.
        produce(servers, topic, phase("api", T0, 120, step=0.5, every=100)
                + phase("web", T0, 60, every=100)
                + phase("api", T0 + 60, 120, step=0.5, every=2))
        wait_for(lambda: pager.events, timeout=120, what="the trigger")
        # Recovered: two clean minutes.
        produce(servers, topic, phase("api", T0 + 120, 240, step=0.5)
                + phase("web", T0 + 60, 180, every=100))
        wait_for(lambda: len(pager.events) >= 2, timeout=120, what="the resolve")
        # Far ahead in event time: every api window fires ON_TIME; none may page again.
        produce(servers, topic, phase("zz", T0 + 3600, 1))
        last = utc_iso(T0 + 230)  # the last window holding api's lines

        def last_window_on_time():
            rows = read_jsonl(str(out / "error_rate-*.jsonl"))
            return [r for r in rows if (r["service"], r["window_start"], r["pane_timing"])
                    == ("api", last, "ON_TIME")]
        wait_for(last_window_on_time, timeout=120, what="the ON_TIME pane of api's last window")
    finally:
        run.result.cancel()

    assert pager.problems == []
    actions = pager.actions()
    assert list(actions.values()) == [["trigger", "resolve"]]
    [dedup_key] = actions
    assert dedup_key.startswith("error_rate:api:")
    trigger, resolve = pager.events
    assert trigger["payload"]["source"] == "api"
    assert trigger["payload"]["custom_details"]["record"]["breaching"] is True
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": dedup_key}
    rows = read_jsonl(str(out / "error_rate-*.jsonl"))
    assert any(r["breaching"] for r in rows if r["service"] == "api")
    assert not any(r["breaching"] for r in rows if r["service"] == "web")
