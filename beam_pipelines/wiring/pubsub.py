"""Pub/Sub from the flags: ``--source=pubsub``, ``--sink=pubsub``,
``--dead_letter pubsub://projects/P/topics/T``."""

from __future__ import annotations

from typing import Any, Optional

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import IOOptions
from beam_pipelines.options.pubsub import PubSubOptions
from beam_pipelines.wiring import formats
from beam_pipelines.wiring.source_spec import SourceSpec
from transforms.base.errors import ConfigError
from transforms.io.pubsub import ReadFromPubSub, WriteToPubSub
from transforms.io.pubsub.rules import SUBSCRIPTION_FORM, TOPIC_FORM, TOPIC_RE, refusal
from transforms.io.pubsub.write import ConvertAndWrite, dead_letter_message, json_messages

__all__ = ["dead_letter_writer", "read_from_options", "sink_from_options", "source_from_options"]


def read_from_options(options: PipelineOptions) -> ReadFromPubSub:
    o = options.view_as(PubSubOptions)
    if not o.subscription and not o.pubsub_topic:
        raise ConfigError("--subscription",
                          f"{SUBSCRIPTION_FORM} (or --pubsub_topic={TOPIC_FORM}) "
                          "when --source=pubsub")
    if o.subscription and o.pubsub_topic:
        raise ConfigError.from_message(
            "--pubsub_topic: give either --subscription or --pubsub_topic, not both"
        )
    return ReadFromPubSub(
        o.subscription,
        topic=o.pubsub_topic,
        timestamp_attribute=o.timestamp_attribute,
        id_attribute=o.id_attribute,
        max_messages=o.pubsub_max_messages,
        max_seconds=o.pubsub_max_seconds,
        ack_deadline_seconds=o.pubsub_ack_deadline,
        emulator_host=o.pubsub_emulator_host,
        readers=o.pubsub_readers,
    )


def source_from_options(options: PipelineOptions) -> SourceSpec:
    """``--source=pubsub``: a SourceSpec, bounded when a max messages/seconds is set."""
    read = read_from_options(options)
    return SourceSpec(read, bounded=read.bounded)


def sink_from_options(options: PipelineOptions, *, pipeline: str, streaming: bool,
                      record: Optional[type] = None) -> ConvertAndWrite:
    """``--sink=pubsub --output=projects/P/topics/T``: each record as a JSON message, or
    in ``--sink_format`` (the subject named after the topic's last segment, ``T-value``)."""
    output = options.view_as(IOOptions).output
    o = options.view_as(PubSubOptions)
    if not output:
        raise ConfigError("--output", f"a topic ({TOPIC_FORM}) when --sink=pubsub")
    fields = o.pubsub_attribute_fields.split(",") if o.pubsub_attribute_fields else []
    write = WriteToPubSub(output, ordering=bool(o.pubsub_ordering_key),
                          emulator_host=o.pubsub_emulator_host)
    encoder = formats.encoder_from_options(options, topic=output.rsplit("/", 1)[-1], record=record)
    convert = json_messages(fields, o.pubsub_ordering_key,
                            encoder.encode if encoder is not None else None)
    return ConvertAndWrite(convert, write, pipeline)


def dead_letter_writer(target: str, options: Optional[PipelineOptions] = None) -> ConvertAndWrite:
    """``--dead_letter pubsub://projects/P/topics/T``: each DeadLetter as a JSON message
    (:func:`~transforms.io.pubsub.write.dead_letter_message`)."""
    topic = target.split("://", 1)[1] if "://" in target else target
    if not TOPIC_RE.match(topic):
        raise ConfigError.from_message(f"--dead_letter: {refusal(f'pubsub://{TOPIC_FORM}', target)}")
    host: Any = None
    if options is not None:
        host = options.view_as(PubSubOptions).pubsub_emulator_host
    return ConvertAndWrite(dead_letter_message, WriteToPubSub(topic, emulator_host=host,
                                                              flag="--dead_letter"),
                           "dead_letters")
