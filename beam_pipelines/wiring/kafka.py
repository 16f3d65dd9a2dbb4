"""Kafka from the flags: ``--source=kafka``, ``--sink=kafka``, ``--dead_letter kafka://TOPIC``.

The connector (``transforms.io.kafka``) takes plain arguments; this module reads them
from the flags of ``beam_pipelines.options.kafka``.
"""

from __future__ import annotations

import argparse
import operator
from typing import Any, Optional, Union

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.options import IOOptions
from beam_pipelines.options.kafka import KafkaOptions, bootstrap_servers
from beam_pipelines.wiring import formats
from beam_pipelines.wiring.source_spec import SourceSpec
from runners.presets import LOCAL_STREAMING, OFFLINE_DIRECT
from transforms.base.errors import ConfigError, SinkError
from transforms.io.kafka import (
    ReadFromKafka,
    WriteToKafka,
    check_topics,
    client_config,
    json_event_time,
    to_json_bytes,
    to_raw_batch,
    to_raw_record,
)
from transforms.io.kafka.discovery import max_message_bytes
from transforms.io.kafka.records import TimestampFn
from transforms.io.kafka.rules import coerce, split_topics
from transforms.io.kafka.transactions import ExactlyOnce
from transforms.io.results import ReadResult

__all__ = ["config_from_options", "dead_letter_limit", "dead_letter_writer",
           "exactly_once_from_options", "read_from_options", "servers_from_options",
           "sink_from_options", "source_from_options", "topic_writer"]


def servers_from_options(options: PipelineOptions) -> str:
    """``--bootstrap_servers`` (Beam's flag, default localhost:9092), validated."""
    text = options.get_all_options().get("bootstrap_servers") or "localhost:9092"
    try:
        return bootstrap_servers(text)
    except argparse.ArgumentTypeError:
        raise ConfigError("--bootstrap_servers", "HOST:PORT[,HOST:PORT...]", text) from None


def config_from_options(options: PipelineOptions) -> dict[str, Any]:
    """The client config from ``--bootstrap_servers``, security flags and ``--kafka_config``."""
    k = options.view_as(KafkaOptions)
    extra: dict[str, Any] = {}
    for pair in k.kafka_config or []:
        key, _, value = pair.partition("=")
        extra[key.strip()] = coerce(value)
    extra.setdefault("isolation_level", k.isolation_level or "read_committed")
    return client_config(
        servers_from_options(options),
        security_protocol=k.security_protocol,
        sasl_mechanism=k.sasl_mechanism,
        sasl_username=k.sasl_username,
        sasl_password=k.sasl_password,
        ssl_cafile=k.ssl_cafile,
        extra=extra,
    )


def _timestamp_policy(options: PipelineOptions) -> Union[str, TimestampFn]:
    policy = options.view_as(KafkaOptions).timestamp_policy or "log_time"
    if policy != "event_time":
        return policy
    decoder = formats.decoder_from_options(options, "kafka")  # None: JSON payloads
    return json_event_time("timestamp", decoder.decode if decoder is not None else None)


def read_from_options(options: PipelineOptions, *, pipeline: str = "kafka",
                      batches: bool = False, start_at: Any = None) -> ReadFromKafka:
    """The read ``--topic`` and friends describe; ``start_at`` (explicit offsets, say)
    replaces ``--start_at``."""
    k = options.view_as(KafkaOptions)
    topics = split_topics(k.topic)
    if not topics:
        raise ConfigError("--topic", "one or more topic names when --source=kafka")
    config = config_from_options(options)
    return ReadFromKafka(
        ",".join(config.pop("bootstrap_servers")),
        topics,
        consumer_group=k.consumer_group,
        start_at=start_at if start_at is not None else (k.start_at or "latest"),
        stop_at=k.stop_at or "never",
        max_records=k.max_records,
        max_read_time=k.max_read_time,
        timestamp_policy=_timestamp_policy(options),
        idle_timeout=k.idle_timeout or 10.0,
        discovery_interval=k.kafka_discovery_interval or 60.0,
        config=config,
        pipeline=pipeline,
        batches=batches,
        # Exactly once: the sink's transactions commit the offsets, the reader does not.
        commit_offsets="transaction" if k.delivery == "exactly_once" else True,
    )


class _ReadAs(beam.PTransform):
    """``read``, each record converted by ``convert`` in a step labelled ``label``."""

    def __init__(self, read: ReadFromKafka, label: str, convert) -> None:
        super().__init__()
        self._read = read
        self._label = label
        self._convert = convert

    def expand(self, pbegin):
        read = pbegin | "ReadFromKafka" >> self._read
        return ReadResult(read.records | self._label >> beam.Map(self._convert),
                          read.dead_letters)


def source_from_options(options: PipelineOptions, *, start_at: Any = None) -> SourceSpec:
    """``--source=kafka``: RawRecords with their topic/partition/offset; bounded unless
    never. The same read as RawBatches (one per poll) for pipelines that take batches.
    ``start_at`` (explicit offsets, say) replaces ``--start_at``."""
    read = read_from_options(options, start_at=start_at)
    return SourceSpec(
        _ReadAs(read, "ToRawRecord", to_raw_record), bounded=read.bounded,
        batches=_ReadAs(read_from_options(options, batches=True, start_at=start_at),
                        "ToRawBatch", to_raw_batch),
    )


def _writer_config(options: PipelineOptions) -> tuple[str, dict[str, Any]]:
    config = config_from_options(options)
    return ",".join(config.pop("bootstrap_servers")), config


def sink_from_options(options: PipelineOptions, *, pipeline: str, streaming: bool,
                      key_field: Optional[str] = None,
                      record: Optional[type] = None) -> WriteToKafka:
    """``--sink=kafka``: every result to the ``--output`` topic, as a JSON object or in
    ``--sink_format`` (the schema derived from ``record``, the result record), keyed by
    its ``key_field`` when the pipeline names one (fraud: ``tx_id``)."""
    topic = options.view_as(IOOptions).output
    if not topic:
        raise ConfigError("--output", "the topic to write results to when --sink=kafka")
    return topic_writer(options, topic, pipeline=pipeline, key_field=key_field, record=record,
                        flag="--output",
                        exactly_once=exactly_once_from_options(options, pipeline=pipeline))


def topic_writer(options: PipelineOptions, topic: str, *, pipeline: str,
                 key_field: Optional[str] = None, record: Optional[type] = None,
                 step: str = "write_results", flag: str = "--output",
                 exactly_once: Optional[ExactlyOnce] = None) -> WriteToKafka:
    """Records as JSON objects to ``topic`` of the ``--bootstrap_servers`` cluster, keyed by
    the record's ``key_field`` (none: no key); ``flag`` is what errors about the topic name;
    ``exactly_once``: write in transactions (``--delivery=exactly_once``, the results sink)."""
    servers, config = _writer_config(options)
    key_fn = operator.attrgetter(key_field) if key_field else None
    encode = formats.record_encoder(options, topic=topic, record=record)
    return WriteToKafka(servers, topic, value_fn=encode or to_json_bytes, config=config,
                        key_fn=key_fn, pipeline=pipeline, step=step, flag=flag,
                        exactly_once=exactly_once)


def exactly_once_from_options(options: PipelineOptions, *,
                              pipeline: str) -> Optional[ExactlyOnce]:
    """``--delivery=exactly_once``: what the Kafka sink's transactions need, or one line
    saying why this run cannot have them. None for the default, at least once."""
    k = options.view_as(KafkaOptions)
    if k.delivery != "exactly_once":
        return None
    io = options.view_as(IOOptions)
    if io.source != "kafka" or io.sink != "kafka":
        raise ConfigError.from_message(
            "--delivery: exactly_once is for --source=kafka --sink=kafka (the offsets read and "
            f"the results written commit in one transaction), not --source={io.source} "
            f"--sink={io.sink}")
    if not k.consumer_group:
        raise ConfigError.from_message(
            "--delivery: exactly_once needs --consumer_group (whose offsets the transactions "
            "commit)")
    standard = options.view_as(StandardOptions)
    if standard.runner != LOCAL_STREAMING or not standard.streaming:
        raise ConfigError.from_message(
            f"--delivery: exactly_once needs a streaming run on LocalStreamingRunner, where a "
            f"Kafka transaction follows what every result derives from; "
            f"{_runner_name(standard.runner)} cannot give it (use at_least_once and consumers "
            f"that keep the last result per key)")
    return ExactlyOnce(k.consumer_group, k.transactional_id or
                       f"beam-pipelines.{pipeline}.{k.consumer_group}.{io.output}")


def _runner_name(runner: Any) -> str:
    name = runner if isinstance(runner, str) else getattr(runner, "__name__", str(runner))
    if name in (LOCAL_STREAMING, OFFLINE_DIRECT, None, "DirectRunner"):
        return "a batch run"
    return name.rsplit(".", 1)[-1]


def _dead_letter_topic(target: str) -> str:
    return target.split("://", 1)[1].strip("/") if "://" in target else target


def dead_letter_writer(target: str, options: Optional[PipelineOptions]) -> WriteToKafka:
    """``--dead_letter kafka://TOPIC``: DeadLetter records as JSON, keyed by pipeline."""
    topic = _dead_letter_topic(target)
    if options is None:
        raise ConfigError("--dead_letter", "kafka://TOPIC together with --bootstrap_servers", target)
    servers, config = _writer_config(options)
    return WriteToKafka(
        servers, topic, config=config, key_fn=lambda letter: letter.pipeline,
        headers_fn=lambda letter: [("reason_code", letter.reason_code)],
        step="write_dead_letters", on_reject="raise", flag="--dead_letter",
    )


def dead_letter_limit(target: str, options: PipelineOptions) -> int:
    """The largest dead letter (JSON bytes) ``--dead_letter kafka://TOPIC`` takes: the
    producer's ``max_request_size`` and the topic's ``max.message.bytes``, less room for
    the record's key (the pipeline), header (reason_code) and framing."""
    topic = _dead_letter_topic(target)
    servers, config = _writer_config(options)
    reachable = {**config, "bootstrap_servers": servers.split(",")}
    # An unreachable broker or a missing topic: the writer's own one-line error, in seconds.
    check_topics(reachable, [topic], error=SinkError, flag="--dead_letter")
    return max_message_bytes(reachable, topic) - 1024
