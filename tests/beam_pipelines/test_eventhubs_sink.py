"""The Event Hubs sink writes results to the ``--output`` hub (as the Kafka and Pub/Sub
sinks do), and never back into the hub ``--source=eventhubs`` reads."""

from __future__ import annotations

import pytest

from beam_pipelines import options as opts
from beam_pipelines.wiring.eventhubs import sink_from_options
from transforms.base.errors import ConfigError

pytestmark = pytest.mark.unit

CONN = "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=s;UseDevelopmentEmulator=true"


def _hub(*flags: str) -> str:
    options = opts.parse(["--sink=eventhubs", f"--eventhubs_connection_string={CONN}", *flags],
                         [opts.IOOptions], prog="test")
    return sink_from_options(options, pipeline="p", streaming=False)._eventhub


def test_the_sink_writes_to_output_and_never_back_into_the_hub_it_reads():
    assert _hub("--source=eventhubs", "--eventhub=readings", "--output=alerts") == "alerts"
    assert _hub("--eventhub=alerts") == "alerts"  # a source of another kind: --eventhub
    with pytest.raises(ConfigError, match="^--output: expected the hub to write results to"):
        _hub("--source=eventhubs", "--eventhub=readings")
    with pytest.raises(ConfigError, match="^--output: expected an event hub name"):
        _hub("--output=no/slashes")
