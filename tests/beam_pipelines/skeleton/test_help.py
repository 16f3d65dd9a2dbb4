"""``--help`` lists every flag a pipeline takes, connectors included, grouped."""

import pytest

from tests.beam_pipelines.skeleton.test_flag_rules import PIPELINES

pytestmark = pytest.mark.unit

CONNECTOR_FLAGS = ["--bootstrap_servers", "--topic", "--subscription", "--pubsub_emulator_host",
                   "--eventhubs_connection_string", "--iceberg_catalog", "--output_table",
                   "--sink_format", "--notify", "--metrics_port", "--dead_letter", "--runner"]
GROUPS = ["Input and output", "Kafka (", "Pub/Sub (", "Event Hubs (", "Iceberg (",
          "Message formats", "Notifications (", "Metrics (", "Runner:"]


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.name)
def test_help_lists_the_connector_flags_grouped(pipeline, capsys):
    with pytest.raises(SystemExit) as exited:
        pipeline.parse_flags(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in CONNECTOR_FLAGS:
        assert f"  {flag} " in text or f"  {flag}\n" in text, flag
    positions = [text.index(f"\n{group}") for group in GROUPS]
    assert positions == sorted(positions)  # the pipeline's own flags first, the runner last
    # Another pipeline's flags are not offered (they would be refused).
    others = {"pageviews": "--action", "iot_alerts": "--temperature_threshold",
              "fraud": "--route_decisions", "error_rate": "--max_error_ratio"}
    for name, flag in others.items():
        if name != pipeline.name:
            assert f"  {flag} " not in text, (name, flag)
