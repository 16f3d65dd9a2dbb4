"""iot_alerts through Event Hubs in Avro: Confluent-framed readings in (a dead letter per
event that does not decode), and Avro alerts out to a hub, read back with Confluent's
deserializer. The Event Hubs side of issue 17's formats."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from beam_pipelines import iot_alerts
from beam_pipelines.testing.collect import collect
from beam_pipelines.testing.emulators.eventhubs import send_events
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.iot import SyntheticReadings, reference_alerts
from tests.beam_pipelines.iot_alerts.test_formats_pubsub import READING
from transforms.formats.wire import frame
from transforms.io.eventhubs import ReadFromEventHubs

pytestmark = pytest.mark.integration


def test_avro_readings_in(eventhubs_emulator, eventhub, schema_registry, tmp_path):
    conn = eventhubs_emulator.connection_string
    hub = eventhub(partitions=2, prefix="fmt-in")
    lines = list(SyntheticReadings(seed=6, malformed=0.0).payloads(200))
    expected = reference_alerts(lines)
    assert expected.alerts and not expected.invalid_lines
    client = SchemaRegistryClient({"url": schema_registry})
    serialize = AvroSerializer(client, json.dumps(READING))
    ctx = SerializationContext(hub, MessageField.VALUE)
    bodies = [serialize(json.loads(line), ctx) for line in lines]
    bodies += [lines[0], frame(765_432, bodies[0][5:])]
    send_events(conn, hub, bodies, partitions=2)

    assert iot_alerts.main([
        "--source=eventhubs", f"--eventhubs_connection_string={conn}", f"--eventhub={hub}",
        "--eventhubs_stop_at=end", "--format=avro", f"--schema_registry_url={schema_registry}",
        "--sink=jsonl", f"--output={tmp_path / 'out'}", f"--dead_letter={tmp_path / 'dead'}"]) == 0
    alerts = read_jsonl(str(tmp_path / "out" / "iot_alerts-*.jsonl"))
    for alert in alerts:
        assert (alert.pop("pane_timing"), alert.pop("pane_index"), alert.pop("is_final")) == (None,) * 3
    assert sorted(alerts, key=lambda a: (a["WindowStart"], a["DeviceId"])) == expected.alerts
    dead = read_jsonl(str(tmp_path / "dead" / "dead_letters-*.jsonl"))
    assert sorted(d["reason_code"] for d in dead) == ["bad_magic_byte", "unknown_schema_id"]
    assert {d["origin"]["source"] for d in dead} == {"eventhubs"}


def test_avro_alerts_out(eventhubs_emulator, eventhub, schema_registry):
    conn = eventhubs_emulator.connection_string
    out_hub = eventhub(partitions=1, prefix="fmt-out")
    # the synthetic source's readings (--synthetic_* flags): what the reference expects
    lines = list(SyntheticReadings(seed=6, rate=4.0, malformed=0.0).payloads(200))
    expected = reference_alerts(lines)
    assert expected.alerts
    assert iot_alerts.main([
        "--synthetic_events=200", "--synthetic_seed=6", "--synthetic_malformed=0",
        "--sink=eventhubs", f"--eventhubs_connection_string={conn}", f"--eventhub={out_hub}",
        "--sink_format=avro", f"--schema_registry_url={schema_registry}"]) == 0

    # what the sink wrote, read back by our reader and Confluent's deserializer
    with beam.Pipeline() as pipeline:
        written = collect((pipeline | ReadFromEventHubs(conn, out_hub, stop_at="end")).records)
    client = SchemaRegistryClient({"url": schema_registry})
    deserialize = AvroDeserializer(client)
    out_ctx = SerializationContext(out_hub, MessageField.VALUE)
    alerts = [deserialize(record.payload, out_ctx) for record in written.items]
    for alert in alerts:
        assert (alert.pop("pane_timing"), alert.pop("pane_index"), alert.pop("is_final")) == (None,) * 3
    assert sorted(alerts, key=lambda a: (a["WindowStart"], a["DeviceId"])) == expected.alerts
    assert client.get_latest_version(f"{out_hub}-value").schema.schema_type == "AVRO"
