"""iot_alerts end to end through the Pub/Sub emulator: readings in, alerts out.

One batch run on the DirectRunner checks alerts and dead letters against the reference
query; a second reader fails before its bundles are committed, and its restart on the
PortableRunner (Beam's job service in this process, LOOPBACK workers) gets every reading
again, so nothing was lost to the failure.
"""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from google.cloud import pubsub_v1

from beam_pipelines import iot_alerts
from beam_pipelines.skeleton import SourceSpec
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.iot import SyntheticReadings, edge_case_lines, reference_alerts
from beam_pipelines.testing.polling import wait_for
from transforms.io.pubsub import ReadFromPubSub

pytestmark = [pytest.mark.integration, pytest.mark.slow]




def drain(subscription, expected, timeout=20.0):
    subscriber = pubsub_v1.SubscriberClient()
    rows = []

    def more():
        response = subscriber.pull(request={"subscription": subscription, "max_messages": 500,
                                            "return_immediately": True})
        rows.extend(json.loads(m.message.data) for m in response.received_messages)
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription,
                                   ack_ids=[m.ack_id for m in response.received_messages])
        return len(rows) >= expected

    wait_for(more, timeout=timeout, what=f"{expected} alerts")
    extra = subscriber.pull(request={"subscription": subscription, "max_messages": 500,
                                     "return_immediately": True}).received_messages
    assert not extra, "more alerts than the query defines"
    return rows


def normalized(alerts):
    out = []
    for alert in alerts:
        alert = dict(alert)
        assert (alert.pop("pane_timing"), alert.pop("pane_index"), alert.pop("is_final")) == (None,) * 3
        out.append(alert)
    return sorted(out, key=lambda a: (a["WindowStart"], a["DeviceId"]))


def test_iot_alerts_through_pubsub_direct_then_portable_after_a_failure(
    pubsub_env, tmp_path, capfd
):
    lines = [line for line in
             list(SyntheticReadings(seed=11, malformed=0.05).payloads(600)) + edge_case_lines()
             if line]  # Pub/Sub has no empty messages
    expected = reference_alerts(lines)
    assert len(expected.alerts) > 10 and len(expected.invalid_lines) > 10

    emulator, project = pubsub_env.emulator, pubsub_env.project
    second = f"projects/{project}/subscriptions/second-reader"
    emulator.create_subscription(second, pubsub_env.topic)
    alerts_topic = f"projects/{project}/topics/alerts"
    alerts_sub = f"projects/{project}/subscriptions/alerts"
    emulator.create_topic(alerts_topic)
    emulator.create_subscription(alerts_sub, alerts_topic)
    publisher = pubsub_v1.PublisherClient()
    for future in [publisher.publish(pubsub_env.topic, line, n=str(i))
                   for i, line in enumerate(lines)]:
        future.result(timeout=10)

    common = [f"--pubsub_max_messages={len(lines)}", f"--pubsub_emulator_host={pubsub_env.host}",
              "--sink=pubsub", f"--output={alerts_topic}"]

    # 1. DirectRunner: alerts and dead letters as the query defines them.
    assert iot_alerts.main(["--source=pubsub", f"--subscription={pubsub_env.subscription}",
                            f"--dead_letter={tmp_path / 'dead'}", *common]) == 0
    assert normalized(drain(alerts_sub, len(expected.alerts))) == expected.alerts
    dead = read_jsonl(str(tmp_path / "dead" / "dead_letters-*.jsonl"))
    assert sorted(int(d["origin"]["attributes"]["n"]) + 1 for d in dead) == expected.invalid_lines
    assert {d["origin"]["source"] for d in dead} == {"pubsub"}
    err = capfd.readouterr().err
    assert f"{expected.valid} valid records, {len(expected.invalid_lines)} rejected" in err
    assert emulator.backlog(pubsub_env.subscription) == (0, 0)

    # 2. A reader of the second subscription fails before its first bundle is committed...
    class FailingRead(beam.PTransform):
        def expand(self, pbegin):
            def explode(record):
                if record.origin["attributes"]["n"] == "250":
                    raise RuntimeError("worker lost")
                return record

            read = pbegin | ReadFromPubSub(second, max_messages=len(lines), batch_size=1000)
            return read.records | beam.Map(explode)

    options = PipelineOptions(["--sink=pubsub", f"--output={alerts_topic}"])
    with pytest.raises(Exception, match="worker lost"):
        iot_alerts.IOT_ALERTS.launch(options, source=SourceSpec(FailingRead(), True)) \
            .result.wait_until_finish()
    wait_for(lambda: emulator.backlog(second) == (len(lines), 0),
             what="every unacknowledged reading to be pending again")

    # 3. ...and its restart on the PortableRunner gets every reading: the same alerts.
    assert iot_alerts.main(["--runner=PortableRunner", "--environment_type=LOOPBACK",
                            "--source=pubsub",
                            f"--subscription={second}", *common]) == 0
    assert normalized(drain(alerts_sub, len(expected.alerts))) == expected.alerts
    err = capfd.readouterr().err
    assert f"{expected.valid} valid records, {len(expected.invalid_lines)} rejected" in err
    assert emulator.backlog(second) == (0, 0)


def test_iot_alerts_streams_from_pubsub_until_cancelled(pubsub_env, tmp_path):
    """Unbounded read on the local streaming runner, event time from an attribute."""
    from beam_pipelines import options as opts
    from beam_pipelines.testing.iot import DEFAULT_START, iso_with_offset

    emulator, project = pubsub_env.emulator, pubsub_env.project
    alerts_topic = f"projects/{project}/topics/alerts"
    alerts_sub = f"projects/{project}/subscriptions/alerts"
    emulator.create_topic(alerts_topic)
    emulator.create_subscription(alerts_sub, alerts_topic)
    flags = ["--streaming", "--source=pubsub", f"--subscription={pubsub_env.subscription}",
             "--timestamp_attribute=ts", "--sink=pubsub", f"--output={alerts_topic}",
             f"--dead_letter={tmp_path / 'dead'}"]
    options = opts.parse(flags, [opts.IOOptions, opts.WindowOptions,
                                 iot_alerts.IotAlertsOptions], prog="test")
    source = iot_alerts.IOT_ALERTS.source(options)
    assert not source.bounded
    result = iot_alerts.IOT_ALERTS.launch(options, source=source).result
    try:
        def reading(device, temperature, humidity, offset):
            seconds = DEFAULT_START + offset
            return (json.dumps({"DeviceId": device, "Temperature": temperature,
                                "Humidity": humidity, "EventTime": iso_with_offset(seconds)}
                               ).encode(), str(seconds * 1000))

        publisher = pubsub_v1.PublisherClient()
        for data, ts in [reading("hot", 40, 10, 5), reading("hot", 35, 10, 20),
                         reading("cold", 10, 10, 30), reading("humid", 10, 90, 70),
                         (b"not json", str(DEFAULT_START * 1000)),
                         reading("later", 10, 10, 600)]:  # moves event time past both windows
            publisher.publish(pubsub_env.topic, data, ts=ts).result(timeout=10)
        alerts = sorted(drain(alerts_sub, 2, timeout=60), key=lambda a: a["WindowStart"])
        assert [(a["DeviceId"], a["WindowStart"], a["AvgTemp"], a["MaxHumidity"], a["pane_timing"])
                for a in alerts] == [
            ("hot", "2024-01-01T00:00:00Z", 37.5, 10.0, "ON_TIME"),
            ("humid", "2024-01-01T00:01:00Z", 10.0, 90.0, "ON_TIME"),
        ]

        dead = wait_for(lambda: read_jsonl(str(tmp_path / "dead" / "**" / "*.jsonl")),
                        what="the bad reading's dead letter")
        assert [d["payload"] for d in dead] == ["not json"]
        assert dead[0]["origin"]["source"] == "pubsub"
        # Acknowledged once every output derived from it is written (docs/recovery.md): all
        # but "later", whose window is still open, so it stays leased, not redelivered.
        wait_for(lambda: emulator.backlog(pubsub_env.subscription) == (0, 1),
                 what="every reading acknowledged but the one in the open window")
    finally:
        result.cancel()
