"""``generate --to kafka://TOPIC``: every record on the topic, the same lines as a file."""

from __future__ import annotations

import pytest

from beam_pipelines.generate import records
from beam_pipelines.generate.cli import run
from beam_pipelines.testing.kafka import read_topic

pytestmark = pytest.mark.integration


def test_records_go_to_a_new_topic(kafka_broker):
    topic = "generated_readings_test"
    run(["readings", "--count", "200", "--dirty", "0.1", "--partitions", "2",
         "--to", f"kafka://{topic}", "--bootstrap_servers", kafka_broker.bootstrap_servers,
         "--start", "1704067200"])
    expected = [payload for _, payload in records("readings", 200, dirty=0.1, start=1704067200)]
    assert sorted(read_topic(kafka_broker.bootstrap_servers, topic)) == sorted(expected)
