"""iot_alerts end to end through a real Kafka-protocol broker: readings topic -> alerts topic."""

from __future__ import annotations

import json
import time

import pytest

from beam_pipelines import iot_alerts
from beam_pipelines.produce import send
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.iot import SyntheticReadings, edge_case_lines, reference_alerts
from transforms.io.kafka import client_config

pytestmark = pytest.mark.integration


def consume_all(servers: str, topic: str) -> list[bytes]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        end = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} back in 30 s"
            for batch in consumer.poll(timeout_ms=500).values():
                values += [record.value for record in batch]
        return values
    finally:
        consumer.close()


def test_kafka_readings_to_kafka_alerts_match_the_reference(kafka_broker, kafka_topic, tmp_path):
    servers = kafka_broker.bootstrap_servers
    readings, alerts_topic = kafka_topic(2, "iot_readings"), kafka_topic(1, "iot_alerts")
    lines = [line for line in
             list(SyntheticReadings(seed=11, malformed=0.03).payloads(600)) + edge_case_lines()
             if line.strip()]
    send(client_config(servers), readings, lines, progress=False)
    expected = reference_alerts(lines)

    assert iot_alerts.main([
        "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={readings}",
        "--start_at=earliest", "--stop_at=end", "--sink=kafka", f"--output={alerts_topic}",
        f"--dead_letter={tmp_path / 'dead'}",
    ]) == 0

    got = [json.loads(value) for value in consume_all(servers, alerts_topic)]
    for alert in got:
        assert alert.pop("pane_timing") is None and alert.pop("is_final") is None
        alert.pop("pane_index")
    assert sorted(got, key=lambda a: (a["WindowStart"], a["DeviceId"])) == expected.alerts
    dead = read_jsonl(str(tmp_path / "dead" / "dead_letters-*.jsonl"))
    assert len(dead) == len(expected.invalid_lines)
    assert {d["origin"]["topic"] for d in dead} == {readings}
