"""A missing Kafka topic's error gives a command that creates it and sends nothing."""

import shlex

import pytest

from beam_pipelines import produce
from transforms.base.errors import ConfigError, SinkError
from transforms.io.kafka import client, discovery

pytestmark = pytest.mark.unit


@pytest.fixture
def created(monkeypatch):
    calls: list = []
    monkeypatch.setattr(produce, "ensure_topic",
                        lambda config, topic, partitions: calls.append((topic, partitions)))

    def no_send(*args, **kwargs):
        raise AssertionError("--create_only sent events")

    monkeypatch.setattr(produce, "send", no_send)
    return calls


def test_create_only_creates_the_topic_and_sends_nothing(created, capsys):
    assert produce.run(["--topic=rejected", "--create_only"]) == 0
    assert produce.run(["--topic=out", "--create_only", "--partitions=3"]) == 0
    assert created == [("rejected", 1), ("out", 3)]
    assert "topic out ready at localhost:9092" in capsys.readouterr().err


def test_count_0_points_at_create_only():
    with pytest.raises(ConfigError, match=r"--count: .*--create_only"):
        produce.run(["--topic=t", "--count=0"])
    with pytest.raises(ConfigError, match=r"--input: not used with --create_only"):
        produce.run(["--topic=t", "--create_only", "--input=events.jsonl"])


def test_the_missing_dead_letter_topic_hint_runs_as_written(monkeypatch, created):
    class NoTopics:
        def partitions_for_topic(self, topic):
            return None

        def close(self):
            pass

    monkeypatch.setattr(client, "consumer", lambda config, **kwargs: NoTopics())
    config = {"bootstrap_servers": ["kafka:9092"]}
    with pytest.raises(SinkError) as raised:
        discovery.check_topics(config, ["rejected"], error=SinkError, flag="--dead_letter")
    message = str(raised.value)
    assert "--create_only" in message and "--count" not in message
    command = message.split("(create it: ", 1)[1].split(";", 1)[0].replace("=N", "=2")
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "beam_pipelines.produce"]
    assert produce.run(argv[3:]) == 0
    assert created == [("rejected", 2)]
