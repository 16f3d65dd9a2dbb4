"""``python -m beam_pipelines.testing.emulators.eventhubs --port P --hub NAME:N``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from azure.eventhub import EventHubProducerClient

from beam_pipelines.testing.servers import free_port, wait_for_port

pytestmark = pytest.mark.integration


def test_emulator_runs_from_the_command_line():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "beam_pipelines.testing.emulators.eventhubs", "--port", str(port),
         "--hub", "cli-hub:3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port("127.0.0.1", port, timeout=30, process=process)
        conn = (f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=k;SharedAccessKey=v;"
                "UseDevelopmentEmulator=true")
        with EventHubProducerClient.from_connection_string(conn, eventhub_name="cli-hub") as producer:
            assert producer.get_eventhub_properties()["partition_ids"] == ["0", "1", "2"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    assert "UseDevelopmentEmulator=true" in output
