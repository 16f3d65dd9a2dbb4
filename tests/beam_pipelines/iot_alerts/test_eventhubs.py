"""iot_alerts reading an Event Hub (the Stream Analytics job's usual input) via the emulator."""

from __future__ import annotations

import pytest
from azure.eventhub import EventData, EventHubProducerClient

from beam_pipelines import iot_alerts
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.iot import SyntheticReadings, edge_case_lines, reference_alerts

pytestmark = pytest.mark.integration


def send(connection_string: str, hub: str, bodies: list[bytes]) -> None:
    with EventHubProducerClient.from_connection_string(connection_string, eventhub_name=hub) as producer:
        batch = producer.create_batch()
        for body in bodies:
            try:
                batch.add(EventData(body))
            except ValueError:  # the batch is full
                producer.send_batch(batch)
                batch = producer.create_batch()
                batch.add(EventData(body))
        producer.send_batch(batch)




def test_eventhubs_readings_give_the_reference_alerts(eventhubs_emulator, eventhub, tmp_path):
    hub = eventhub(partitions=2, prefix="iot")
    lines = [line for line in
             list(SyntheticReadings(seed=5, malformed=0.03).payloads(400)) + edge_case_lines()
             if line.strip()]
    send(eventhubs_emulator.connection_string, hub, lines)
    expected = reference_alerts(lines)

    assert iot_alerts.main([
        "--source=eventhubs", f"--eventhubs_connection_string={eventhubs_emulator.connection_string}",
        f"--eventhub={hub}", "--eventhubs_stop_at=end", "--sink=jsonl",
        f"--output={tmp_path / 'out'}", f"--dead_letter={tmp_path / 'dead'}",
    ]) == 0

    got = read_jsonl(str(tmp_path / "out" / "iot_alerts-*.jsonl"))
    for alert in got:
        del alert["pane_timing"], alert["pane_index"], alert["is_final"]
    assert sorted(got, key=lambda a: (a["WindowStart"], a["DeviceId"])) == expected.alerts
    assert len(read_jsonl(str(tmp_path / "dead" / "dead_letters-*.jsonl"))) == len(expected.invalid_lines)
