"""iot_alerts end to end through the Event Hubs emulator, on DirectRunner then on
PortableRunner (LOOPBACK), the second run resuming from the first one's checkpoints."""

from __future__ import annotations

import pytest

from beam_pipelines import iot_alerts
from beam_pipelines.testing.emulators.eventhubs import send_events
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.iot import SyntheticReadings, edge_case_lines, reference_alerts

pytestmark = pytest.mark.integration




def alerts(directory) -> list[dict]:
    got = read_jsonl(str(directory / "iot_alerts-*.jsonl"))
    for alert in got:
        for pane_field in ("pane_timing", "pane_index", "is_final"):
            alert.pop(pane_field, None)
    return sorted(got, key=lambda a: (a["WindowStart"], a["DeviceId"]))


def test_iot_alerts_direct_then_portable_resumes_from_checkpoint(
        eventhubs_emulator, eventhub, azurite, tmp_path):
    conn = eventhubs_emulator.connection_string
    hub = eventhub(partitions=2, prefix="iot-e2e")
    # Two disjoint days of readings, so each run's windows are complete on their own.
    first = [line for line in list(SyntheticReadings(seed=8, malformed=0.04).payloads(300))
             + edge_case_lines() if line.strip()]
    second = [line for line in SyntheticReadings(seed=9, malformed=0.04, start=1_704_067_200 + 86_400)
              .payloads(300) if line.strip()]
    flags = [
        "--source=eventhubs", f"--eventhubs_connection_string={conn}", f"--eventhub={hub}",
        "--eventhubs_stop_at=end", f"--eventhubs_checkpoint_store={azurite}",
        "--eventhubs_checkpoint_container=iot-e2e", "--sink=jsonl",
    ]

    send_events(conn, hub, first, partitions=2)
    assert iot_alerts.main(flags + [f"--output={tmp_path / 'out1'}",
                                    f"--dead_letter={tmp_path / 'dead1'}"]) == 0
    expected = reference_alerts(first)
    assert alerts(tmp_path / "out1") == expected.alerts and expected.alerts
    dead = read_jsonl(str(tmp_path / "dead1" / "dead_letters-*.jsonl"))
    assert len(dead) == len(expected.invalid_lines)
    assert {d["origin"]["source"] for d in dead} == {"eventhubs"}

    # The restarted job, on another runner, reads exactly what arrived since.
    send_events(conn, hub, second, partitions=2)
    assert iot_alerts.main(flags + [
        "--runner=PortableRunner", "--environment_type=LOOPBACK",
        f"--output={tmp_path / 'out2'}", f"--dead_letter={tmp_path / 'dead2'}"]) == 0
    expected = reference_alerts(second)
    assert alerts(tmp_path / "out2") == expected.alerts and expected.alerts
    assert len(read_jsonl(str(tmp_path / "dead2" / "dead_letters-*.jsonl"))) == \
        len(expected.invalid_lines)
