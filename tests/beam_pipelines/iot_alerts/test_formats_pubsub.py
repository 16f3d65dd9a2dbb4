"""iot_alerts through Pub/Sub in Avro: Confluent-framed readings in (its contract reads
the writer's records), Avro alerts out that Confluent's deserializer reads, and a dead
letter per message that does not decode. The Pub/Sub side of issue 17's formats."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.cloud import pubsub_v1

from beam_pipelines import iot_alerts
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.iot import SyntheticReadings, reference_alerts
from beam_pipelines.testing.polling import wait_for
from transforms.formats.wire import frame

pytestmark = pytest.mark.integration

READING = {"type": "record", "name": "Reading", "namespace": "com.acme.iot", "fields": [
    {"name": "DeviceId", "type": "string"}, {"name": "Temperature", "type": "double"},
    {"name": "Humidity", "type": "double"}, {"name": "EventTime", "type": "string"},
    {"name": "firmware", "type": "string", "default": "1.0"}]}


def test_avro_readings_in_avro_alerts_out(pubsub_env, schema_registry, tmp_path):
    lines = list(SyntheticReadings(seed=5, malformed=0.0).payloads(300))
    expected = reference_alerts(lines)
    assert len(expected.alerts) > 5 and not expected.invalid_lines

    client = SchemaRegistryClient({"url": schema_registry})
    topic_name = pubsub_env.topic.rsplit("/", 1)[-1] + uuid.uuid4().hex[:6]
    serialize = AvroSerializer(client, json.dumps(READING))
    ctx = SerializationContext(topic_name, MessageField.VALUE)
    payloads = [serialize({**json.loads(line), "firmware": "2.1"}, ctx) for line in lines]
    bad = {len(payloads): "bad_magic_byte", len(payloads) + 1: "unknown_schema_id"}
    payloads += [lines[0], frame(876_543, payloads[0][5:])]

    project, emulator = pubsub_env.project, pubsub_env.emulator
    alerts_name = f"alerts-{uuid.uuid4().hex[:8]}"
    alerts_topic = f"projects/{project}/topics/{alerts_name}"
    alerts_sub = f"projects/{project}/subscriptions/{alerts_name}"
    emulator.create_topic(alerts_topic)
    emulator.create_subscription(alerts_sub, alerts_topic)
    publisher = pubsub_v1.PublisherClient()
    for future in [publisher.publish(pubsub_env.topic, p, n=str(i)) for i, p in enumerate(payloads)]:
        future.result(timeout=10)

    assert iot_alerts.main([
        "--source=pubsub", f"--subscription={pubsub_env.subscription}",
        f"--pubsub_max_messages={len(payloads)}", f"--pubsub_emulator_host={pubsub_env.host}",
        "--format=avro", f"--schema_registry_url={schema_registry}",
        "--sink=pubsub", f"--output={alerts_topic}", "--sink_format=avro",
        f"--dead_letter={tmp_path / 'dead'}"]) == 0

    deserialize = AvroDeserializer(client)
    out_ctx = SerializationContext(alerts_name, MessageField.VALUE)
    subscriber = pubsub_v1.SubscriberClient()
    alerts: list[dict] = []

    def drained() -> bool:
        response = subscriber.pull(request={"subscription": alerts_sub, "max_messages": 500,
                                            "return_immediately": True})
        alerts.extend(deserialize(m.message.data, out_ctx) for m in response.received_messages)
        if response.received_messages:
            subscriber.acknowledge(subscription=alerts_sub,
                                   ack_ids=[m.ack_id for m in response.received_messages])
        return len(alerts) >= len(expected.alerts)

    wait_for(drained, timeout=20, what=f"{len(expected.alerts)} alerts")
    for alert in alerts:
        assert (alert.pop("pane_timing"), alert.pop("pane_index"), alert.pop("is_final")) == (None,) * 3
    assert sorted(alerts, key=lambda a: (a["WindowStart"], a["DeviceId"])) == expected.alerts
    assert client.get_latest_version(f"{alerts_name}-value").schema.schema_type == "AVRO"

    dead = read_jsonl(str(tmp_path / "dead" / "dead_letters-*.jsonl"))
    assert {int(d["origin"]["attributes"]["n"]): d["reason_code"] for d in dead} == bad
    assert {d["origin"]["source"] for d in dead} == {"pubsub"}
