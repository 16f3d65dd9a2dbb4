"""``--format`` / ``--sink_format``: the decoders and encoders of the message connectors.

A source's :class:`~transforms.formats.Decoder` travels in its
:class:`~beam_pipelines.wiring.source_spec.SourceSpec` to the parse step (JSON: no
decoder, the parse step's default); a sink's :class:`~transforms.formats.Encoder` becomes
its writer's value function. Everything a format needs is checked here, before the
pipeline starts: the ``[formats]`` extra, the flags that go together, the schema files,
and for a sink the registry's answer to its schema (an incompatible schema is one line
naming the subject, at start). docs/formats.md lists the flags.
"""

from __future__ import annotations

import os
from typing import Optional

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import schemas
from beam_pipelines.options.formats import FormatOptions
from transforms.base.errors import ConfigError
from transforms.base.extras import require
from transforms.contracts import InputContract
from transforms.formats import Decoder, Encoder, RecordEncoder, decoder_for, encoder_for
from transforms.formats.registry import ENV_PREFIX, TOPIC_NAME, RegistryConfig, SchemaRegistry

__all__ = ["MESSAGE_SINKS", "MESSAGE_SOURCES", "check_extras", "check_sink", "decoder_from_options", "encoder_from_options",
           "record_encoder", "registry_from_options"]

# The sources whose payloads a --format applies to (files are JSON lines or Parquet), and
# the sinks that write a --sink_format.
MESSAGE_SOURCES = ("kafka", "pubsub", "eventhubs")
MESSAGE_SINKS = ("kafka", "pubsub", "eventhubs")
# What each format imports; the registry client comes on top with a registry.
_MODULES = {"avro": ("fastavro",), "protobuf": ("google.protobuf",),
            "jsonschema": ("jsonschema",)}
_REGISTRY_MODULE = "confluent_kafka.schema_registry"
_SOURCE_ONLY = ("value_schema", "message_name", "reader_schema")
_SINK_ONLY = ("sink_value_schema", "sink_message_name", "subject_name_strategy")
_REGISTRY = ("schema_registry_url", "schema_registry_basic_auth_file",
             "schema_registry_bearer_token_file", "schema_registry_logical_cluster",
             "schema_registry_ca")


def check_extras(fmt: str, registry: bool) -> None:
    """Import what ``fmt`` needs now: a missing ``[formats]`` extra is one line at start,
    not a worker's failure on the first record."""
    for module in _MODULES.get(fmt, ()) + ((_REGISTRY_MODULE,) if registry else ()):
        require("formats", module)


def _flag(name: str) -> str:
    return f"--{name}"


def registry_from_options(options: PipelineOptions) -> Optional[SchemaRegistry]:
    """The registry of ``--schema_registry_url`` (or ``$SCHEMA_REGISTRY_URL``) with its
    credentials from files or the environment; None when no URL is given."""
    o = options.view_as(FormatOptions)
    url = o.schema_registry_url or os.environ.get(ENV_PREFIX + "URL")
    if not url:
        for name in _REGISTRY[1:]:
            if getattr(o, name):
                raise ConfigError(_flag(name), "--schema_registry_url (or SCHEMA_REGISTRY_URL) "
                                  "with it")
        return None
    config = RegistryConfig.resolve(
        url, basic_auth_file=o.schema_registry_basic_auth_file,
        bearer_token_file=o.schema_registry_bearer_token_file,
        logical_cluster=o.schema_registry_logical_cluster, ca_location=o.schema_registry_ca)
    return SchemaRegistry(config)


def decoder_from_options(options: PipelineOptions, source: str,
                         contract: Optional[InputContract] = None) -> Optional[Decoder]:
    """The decoder of ``--format`` for ``source``; None for JSON (the parse step's default).

    Avro records resolve to ``--reader_schema``, by default the contract's reader schema
    (:attr:`InputContract.reader_schema`), so two versions of a topic's schema read as the
    same events. ``--value_schema`` reads payloads without a registry header.
    """
    o = options.view_as(FormatOptions)
    fmt = o.format or "json"
    if fmt == "json":
        for name in _SOURCE_ONLY:
            if getattr(o, name):
                raise ConfigError(_flag(name), "--format=avro|protobuf|jsonschema with it")
        if (o.sink_format or "json") == "json":
            for name in _REGISTRY:
                if getattr(o, name):
                    raise ConfigError(_flag(name), "--format or --sink_format="
                                      "avro|protobuf|jsonschema with it (JSON needs no registry)")
        return None
    if source not in MESSAGE_SOURCES:
        raise ConfigError("--format", f"json with --source={source} (formats apply to the "
                          f"{', '.join(MESSAGE_SOURCES)} sources; files are JSON lines or "
                          "Parquet)", fmt)
    if o.message_name and fmt != "protobuf":
        raise ConfigError("--message_name", "only with --format=protobuf --value_schema=FILE.desc")
    # A local schema reads without a registry, even when SCHEMA_REGISTRY_URL is set for
    # the sink: only an explicit --schema_registry_url beside it is a contradiction.
    registry = None
    if not o.value_schema or o.schema_registry_url:
        registry = registry_from_options(options)
    check_extras(fmt, registry is not None)
    reader = o.reader_schema
    if fmt == "avro" and reader is None and contract is not None:
        reader = contract.reader_schema
    return decoder_for(fmt, registry, o.value_schema, o.message_name, reader)


def encoder_from_options(options: PipelineOptions, *, topic: str,
                         record: Optional[type]) -> Optional[Encoder]:
    """The encoder of ``--sink_format`` for a sink writing ``record`` s to ``topic``; None
    for JSON (the sinks' default).

    The writer's schema is derived from the result record (``beam_pipelines.schemas``:
    Avro or JSON Schema), or read from ``--sink_value_schema`` (Protobuf needs one: a
    ``.desc`` and ``--sink_message_name``). With a registry the schema is registered (or,
    with ``--no_auto_register_schemas``, looked up) under its subject *now*, so a schema
    the subject's compatibility rule refuses stops the run at start, in one line.
    """
    o = options.view_as(FormatOptions)
    fmt = o.sink_format or "json"
    if fmt == "json":
        for name in (*_SINK_ONLY, "no_auto_register_schemas"):
            if getattr(o, name):
                raise ConfigError(_flag(name), "--sink_format=avro|protobuf|jsonschema with it")
        return None
    registry = registry_from_options(options)
    check_extras(fmt, registry is not None)
    schema: object = o.sink_value_schema
    if schema is None:
        if fmt == "protobuf" or record is None:
            raise ConfigError("--sink_value_schema", f"the sink's schema with --sink_format={fmt}"
                              + (" (FILE.desc with --sink_message_name)" if fmt == "protobuf" else ""))
        schema = schemas.avro_schema(record) if fmt == "avro" else schemas.json_schema(record)
    if o.sink_message_name and fmt != "protobuf":
        raise ConfigError("--sink_message_name", "only with --sink_format=protobuf")
    if o.no_auto_register_schemas and registry is None:
        raise ConfigError("--no_auto_register_schemas", "a registry (--schema_registry_url)")
    encoder = encoder_for(fmt, registry, schema, o.sink_message_name, topic=topic,
                          subject_name_strategy=o.subject_name_strategy or TOPIC_NAME,
                          auto_register=not o.no_auto_register_schemas)
    RecordEncoder(encoder).setup()  # the registry's verdict on the schema, before the run
    return encoder


def check_sink(options: PipelineOptions, sink: str) -> None:
    """Refuse ``--sink_format`` (and its flags) for a sink that does not write messages."""
    if sink in MESSAGE_SINKS:
        return
    o = options.view_as(FormatOptions)
    if (o.sink_format or "json") != "json":
        raise ConfigError("--sink_format", f"json with --sink={sink} (formats apply to the "
                          f"{', '.join(MESSAGE_SINKS)} sinks)", o.sink_format)
    for name in (*_SINK_ONLY, "no_auto_register_schemas"):
        if getattr(o, name):
            raise ConfigError(_flag(name), f"a message sink ({'|'.join(MESSAGE_SINKS)}) with "
                              "--sink_format=avro|protobuf|jsonschema")


def record_encoder(options: PipelineOptions, *, topic: str,
                   record: Optional[type]) -> Optional[RecordEncoder]:
    """:func:`encoder_from_options` as a writer's value function (None for JSON)."""
    encoder = encoder_from_options(options, topic=topic, record=record)
    return None if encoder is None else RecordEncoder(encoder)
