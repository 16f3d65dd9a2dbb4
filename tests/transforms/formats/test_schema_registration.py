"""The pipelines' own schemas, published to the registry and used by a Confluent consumer."""

from __future__ import annotations

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from beam_pipelines import schemas
from beam_pipelines.schema_registration import register_schemas
from transforms.base.errors import ConfigError
from transforms.formats import encoder_for

pytestmark = pytest.mark.integration


def test_register_every_record_by_record_name(schema_registry):
    ids = register_schemas("avro", schema_registry)
    assert "beam_pipelines.records.PageViewCount" in ids and len(ids) == len(schemas.SCHEMAS)
    assert register_schemas("avro", schema_registry) == ids  # the same schemas: the same ids
    assert "IoTAlert" in register_schemas("jsonschema", schema_registry)


def test_register_for_a_sink_topic_and_read_it_with_confluents_deserializer(schema_registry, schema_topic):
    ids = register_schemas("avro", schema_registry, names=["PageViewCount"], topic=schema_topic)
    assert list(ids) == [f"{schema_topic}-value"]
    count = {"window_start": "2024-12-01T00:00:00Z", "window_end": "2024-12-01T00:01:00Z",
             "page": "/home", "count": 3, "pane_timing": None, "pane_index": None, "is_final": None}
    encoder = encoder_for("avro", schema_registry, schemas.avro_schema("PageViewCount"),
                          topic=schema_topic, auto_register=False)
    payload = encoder.encode(count)
    assert encoder.schema_id == ids[f"{schema_topic}-value"]
    read = AvroDeserializer(SchemaRegistryClient({"url": schema_registry}))(
        payload, SerializationContext(schema_topic, MessageField.VALUE))
    assert read == count


def test_register_arguments_name_the_flag(schema_registry):
    with pytest.raises(ConfigError, match="--format"):
        register_schemas("protobuf", schema_registry)
    with pytest.raises(ConfigError, match="--schema"):
        register_schemas("avro", schema_registry, topic="t")
