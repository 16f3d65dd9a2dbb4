"""Decoders and encoders from plain arguments: what the ``--format`` flags map to.

============  ===========================================  ==============================
``format``    with ``registry``                            without (local schema)
============  ===========================================  ==============================
json          plain JSON (the registry is not used)        plain JSON
avro          Confluent-framed Avro, writer schema by id   ``value_schema=FILE.avsc``:
                                                           schemaless Avro
protobuf      Confluent-framed Protobuf                    ``value_schema=FILE.desc`` +
                                                           ``message_name``: raw Protobuf
jsonschema    Confluent-framed JSON, validated             (needs a registry)
============  ===========================================  ==============================

``reader_schema`` (Avro) is the schema records are resolved to: a path, JSON text, an
Avro value, or the name of an input contract (``user_events``).
"""

from __future__ import annotations

from typing import Any, Optional

from transforms.base.errors import ConfigError
from transforms.formats.avro import (
    AvroDecoder,
    AvroEncoder,
    SchemalessAvroDecoder,
    SchemalessAvroEncoder,
)
from transforms.formats.base import Decoder, Encoder, JsonDecoder, JsonEncoder
from transforms.formats.contracts import CONTRACTS
from transforms.formats.jsonschema import JsonSchemaDecoder, JsonSchemaEncoder
from transforms.formats.protobuf import (
    ProtobufDecoder,
    ProtobufEncoder,
    RawProtobufDecoder,
    RawProtobufEncoder,
)
from transforms.formats.registry import TOPIC_NAME, RegistryConfig, SchemaRegistry

__all__ = ["FORMATS", "decoder_for", "encoder_for", "registry_for"]

FORMATS = ("json", "avro", "protobuf", "jsonschema")


def registry_for(registry: Any) -> Optional[SchemaRegistry]:
    """A SchemaRegistry from a SchemaRegistry, a RegistryConfig, a URL, or None."""
    if registry is None or isinstance(registry, SchemaRegistry):
        return registry
    if isinstance(registry, (RegistryConfig, str)):
        return SchemaRegistry(registry)
    raise ConfigError("--schema_registry_url", "a URL", type(registry).__name__)


def _check_format(format: str) -> None:
    if format not in FORMATS:
        raise ConfigError("--format", "|".join(FORMATS), format)


def _reader_schema(reader_schema: Any) -> Any:
    if isinstance(reader_schema, str):

        if reader_schema in CONTRACTS:
            return CONTRACTS[reader_schema]()
    return reader_schema


def decoder_for(format: str = "json", registry: Any = None, value_schema: Optional[str] = None,
                message_name: Optional[str] = None, reader_schema: Any = None) -> Decoder:
    """The decoder a reader uses for ``--format``.

    Args:
      format: json | avro | protobuf | jsonschema.
      registry: a SchemaRegistry, RegistryConfig or URL (Confluent-framed payloads).
      value_schema: a local schema for payloads without a header: ``FILE.avsc``
        (schemaless Avro) or ``FILE.desc`` (raw Protobuf, with ``message_name``).
      message_name: the Protobuf message of a ``.desc`` file (full name).
      reader_schema: Avro only: the schema records resolve to (path, JSON, value or a
        contract name such as ``user_events``).
    """
    _check_format(format)
    client = registry_for(registry)
    if format == "json":
        if value_schema:
            raise ConfigError("--value_schema", "no local schema with --format=json")
        return JsonDecoder()
    if client is not None and value_schema and format != "avro":
        raise ConfigError("--value_schema", "a local schema or --schema_registry_url, not both")
    if format == "avro":

        if client is not None:
            if value_schema:
                raise ConfigError("--value_schema", "a local schema or --schema_registry_url, "
                                  "not both (the registry gives each record's writer schema)")
            return AvroDecoder(client, _reader_schema(reader_schema))
        if not value_schema:
            raise ConfigError("--schema_registry_url", "a registry URL, or --value_schema=FILE.avsc "
                              "for schemaless Avro, with --format=avro")
        return SchemalessAvroDecoder(value_schema, _reader_schema(reader_schema))
    if reader_schema is not None:
        raise ConfigError("--reader_schema", "only with --format=avro")
    if format == "protobuf":

        if client is not None:
            return ProtobufDecoder(client)
        if not value_schema:
            raise ConfigError("--schema_registry_url", "a registry URL, or --value_schema=FILE.desc "
                              "--message_name=NAME for raw Protobuf, with --format=protobuf")
        return RawProtobufDecoder(value_schema, message_name or "")

    if client is None:
        raise ConfigError("--schema_registry_url", "a registry URL with --format=jsonschema")
    return JsonSchemaDecoder(client)


def encoder_for(format: str = "json", registry: Any = None, value_schema: Any = None,
                message_name: Optional[str] = None, *, topic: Optional[str] = None,
                subject: Optional[str] = None, subject_name_strategy: str = TOPIC_NAME,
                auto_register: bool = True) -> Encoder:
    """The encoder a writer uses for ``--format``.

    Args:
      format: json | avro | protobuf | jsonschema.
      registry: a SchemaRegistry, RegistryConfig or URL; None writes without a header
        (schemaless Avro, raw Protobuf).
      value_schema: the writer's schema: ``.avsc`` path/JSON/value (avro), ``.desc``
        (protobuf, with ``message_name``), JSON Schema path/JSON/dict (jsonschema).
      message_name: the Protobuf message to write (full name).
      topic: the topic written to: the subject is ``<topic>-value`` by default.
      subject: an explicit subject, overriding ``subject_name_strategy``.
      subject_name_strategy: topic_name | record_name | topic_record_name.
      auto_register: register the schema when the subject lacks it (default), or only
        look it up.
    """
    _check_format(format)
    client = registry_for(registry)
    if format == "json":
        return JsonEncoder()
    if value_schema is None:
        raise ConfigError("--value_schema", f"the writer's schema with --format={format}")
    naming: dict[str, Any] = {"topic": topic, "subject": subject, "subject_name_strategy": subject_name_strategy,
              "auto_register": auto_register}
    if format == "avro":

        if client is None:
            return SchemalessAvroEncoder(value_schema)
        return AvroEncoder(client, value_schema, **naming)
    if format == "protobuf":

        if client is None:
            return RawProtobufEncoder(value_schema, message_name or "")
        return ProtobufEncoder(client, value_schema, message_name or "", **naming)

    if client is None:
        raise ConfigError("--schema_registry_url", "a registry URL with --format=jsonschema")
    return JsonSchemaEncoder(client, value_schema, **naming)
