"""Kafka consumer lag measured from the brokers, for the metrics bridge."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import IOOptions
from beam_pipelines.options.kafka import KafkaOptions
from beam_pipelines.wiring.kafka import config_from_options
from transforms.base.errors import ConfigError
from transforms.io.kafka import client
from transforms.io.kafka.offsets import consumer_lag
from transforms.io.kafka.rules import split_topics

__all__ = ["KafkaLagProbe", "lag_probe_for"]


class KafkaLagProbe:
    """Consumer lag of ``--consumer_group`` per partition: end offset minus committed offset.

    Read from the brokers, like ``kafka-consumer-groups --describe``, so it works on every
    runner without help from the reading workers. The connector commits offsets when a
    bundle is finalized, so this lag includes what is read but not yet committed (at most
    one bundle, or one Flink checkpoint interval).
    """

    def __init__(self, options: PipelineOptions) -> None:
        flags = options.view_as(KafkaOptions)
        self.group = flags.consumer_group
        self.topics = split_topics(flags.topic)
        if not self.group or not self.topics:
            raise ConfigError("--consumer_group", "a consumer group (and --topic) to measure "
                              "Kafka consumer lag", self.group)
        self._config = config_from_options(options)
        self._consumer = None

    def _client(self):
        if self._consumer is None:
            self._consumer = client.build("consumer", client.settings(
                "consumer", self._config, group_id=self.group, enable_auto_commit=False,
                client_id="beam-pipelines-lag-probe"))
        return self._consumer

    def __call__(self) -> dict[str, int]:
        """{"TOPIC-PARTITION": lag}; a partition with no committed offset counts from its start."""
        return consumer_lag(self._client(), self.topics)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def lag_probe_for(options: PipelineOptions) -> KafkaLagProbe | None:
    """A lag probe when the pipeline reads Kafka with a consumer group, else None."""
    if options.view_as(IOOptions).source != "kafka":
        return None
    if not options.view_as(KafkaOptions).consumer_group:
        return None
    return KafkaLagProbe(options)
