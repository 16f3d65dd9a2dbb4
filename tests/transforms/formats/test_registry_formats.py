"""Our decoders and encoders against a registry, and against Confluent's own serializers:
bytes we write are read by theirs and bytes they write are read by ours."""

from __future__ import annotations

import json
import pickle

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import message_factory

from tests.transforms.formats.samples import (
    EVENTS,
    NO_PAGE,
    PAGEVIEW_RECORD,
    PAGEVIEW_V1,
    PAGEVIEW_V2,
    avsc,
    write_descriptor_set,
)
from transforms.formats import (
    DecodeError,
    EncodeError,
    IncompatibleSchemaError,
    RegistryConfig,
    SchemaRegistry,
    SchemaRegistryError,
    decoder_for,
    encoder_for,
)
from transforms.formats.arrow import user_event_block
from transforms.formats.contracts import user_event_json_schema
from transforms.formats.errors import (
    INCOMPATIBLE_SCHEMA,
    SCHEMA_VIOLATION,
    UNDECODABLE,
    UNKNOWN_SCHEMA_ID,
    WRONG_SCHEMA_TYPE,
)
from transforms.formats.protobuf import load_descriptor_set
from transforms.formats.wire import frame
from transforms.parse import parse_user_event

pytestmark = pytest.mark.integration


@pytest.fixture
def client(schema_registry):
    return SchemaRegistryClient({"url": schema_registry})


def ctx(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def test_avro_both_ways_with_the_official_serde(schema_registry, client, schema_topic):
    ours = encoder_for("avro", schema_registry, PAGEVIEW_V1, topic=schema_topic)
    theirs = AvroDeserializer(client)
    assert theirs(ours.encode(EVENTS[0]), ctx(schema_topic)) == EVENTS[0]
    written = AvroSerializer(client, avsc(PAGEVIEW_V1))(EVENTS[1], ctx(schema_topic))
    assert written[1:5] == ours.encode(EVENTS[1])[1:5]  # one schema, one id
    assert decoder_for("avro", schema_registry).decode(written) == EVENTS[1]
    assert client.get_latest_version(f"{schema_topic}-value").schema_id == ours.schema_id
    shipped = pickle.loads(pickle.dumps(ours))  # as Beam ships it to a worker
    assert shipped.encode(EVENTS[0]) == ours.encode(EVENTS[0])


def test_avro_with_a_reference_to_another_subject(schema_registry, client, schema_topic):
    from confluent_kafka.schema_registry import SchemaReference as ConfluentReference

    from transforms.formats.registry import SchemaReference

    money = {"type": "record", "name": "Money", "namespace": "com.acme", "fields": [
        {"name": "cents", "type": "long"}]}
    client.register_schema(f"{schema_topic}-money", Schema(avsc(money), "AVRO"))
    order = {"type": "record", "name": "Order", "namespace": "com.acme", "fields": [
        {"name": "id", "type": "string"}, {"name": "total", "type": "com.acme.Money"}]}
    from transforms.formats.avro import AvroEncoder

    encoder = AvroEncoder(SchemaRegistry(schema_registry), order, topic=schema_topic,
                          references=[SchemaReference("com.acme.Money", f"{schema_topic}-money", 1)])
    payload = encoder.encode({"id": "o1", "total": {"cents": 250}})
    assert decoder_for("avro", schema_registry).decode(payload) == {"id": "o1", "total": {"cents": 250}}
    theirs = AvroDeserializer(client)(payload, ctx(schema_topic))
    assert theirs == {"id": "o1", "total": {"cents": 250}}
    assert client.get_schema(encoder.schema_id).references == [
        ConfluentReference("com.acme.Money", f"{schema_topic}-money", 1)]


def test_avro_evolution_across_two_versions_reads_as_the_contract(schema_registry, schema_topic):
    v1 = encoder_for("avro", schema_registry, PAGEVIEW_V1, topic=schema_topic)
    v2 = encoder_for("avro", schema_registry, PAGEVIEW_V2, topic=schema_topic)
    newer = {"user_id": "u-9", "action": "page_view", "page": "/home", "timestamp": 1733000000.75,
             "referrer": "https://example.com"}
    payloads = [v1.encode(EVENTS[0]), v2.encode(newer)]
    assert v1.schema_id != v2.schema_id
    decoder = decoder_for("avro", schema_registry, reader_schema="user_events")
    decoded = [decoder.decode(p) for p in payloads]
    assert decoded == [
        {"user_id": 7, "action": "page_view", "page": "/home", "timestamp": 1733000000.25},
        {"user_id": "u-9", "action": "page_view", "page": "/home", "timestamp": 1733000000.75}]
    assert [parse_user_event(d)[1] for d in decoded] == [1733000000, 1733000000]
    block = user_event_block(payloads, decoder)
    assert block.events.num_rows == 2 and not block.handed_over


def test_incompatible_registration_is_one_line_naming_the_subject(schema_registry, schema_topic):
    encoder_for("avro", schema_registry, PAGEVIEW_V1, topic=schema_topic).encode(EVENTS[0])
    breaking = {**PAGEVIEW_V1, "fields": [*PAGEVIEW_V1["fields"], {"name": "country", "type": "string"}]}
    encoder = encoder_for("avro", schema_registry, breaking, topic=schema_topic)
    with pytest.raises(IncompatibleSchemaError) as caught:
        encoder.encode({**EVENTS[0], "country": "NL"})
    message = str(caught.value)
    assert "\n" not in message and f"'{schema_topic}-value'" in message and "country" in message
    assert caught.value.status == 409


def test_lookup_only_encoders_fail_clearly_when_the_schema_is_missing(schema_registry, schema_topic):
    encoder = encoder_for("avro", schema_registry, PAGEVIEW_V1, topic=schema_topic, auto_register=False)
    with pytest.raises(SchemaRegistryError, match="not registered under subject"):
        encoder.encode(EVENTS[0])
    encoder_for("avro", schema_registry, PAGEVIEW_V1, topic=schema_topic).encode(EVENTS[0])
    assert encoder.encode(EVENTS[0])[:1] == b"\x00"


def test_every_undecodable_case_has_its_reason(schema_registry, client, schema_topic):
    avro_id = encoder_for("avro", schema_registry, PAGEVIEW_V1, topic=schema_topic).schema_id
    json_id = client.register_schema(f"{schema_topic}-json", Schema(json.dumps(user_event_json_schema()), "JSON"))
    no_page_id = client.register_schema(f"{schema_topic}-click", Schema(avsc(NO_PAGE), "AVRO"))
    decoder = decoder_for("avro", schema_registry, reader_schema="user_events")
    cases = {
        UNKNOWN_SCHEMA_ID: frame(999_999, b"\x02"),
        WRONG_SCHEMA_TYPE: frame(json_id, b"{}"),
        INCOMPATIBLE_SCHEMA: frame(no_page_id, b"\x02a\x02b\x02"),
        UNDECODABLE: frame(avro_id, b"\x02\x04ab" + b"\x00" * 30),
        "bad_magic_byte": b'{"user_id": 1}',
        "truncated": b"\x00\x00\x01",
    }
    for reason, payload in cases.items():
        with pytest.raises(DecodeError) as caught:
            decoder.decode(payload)
        assert caught.value.reason == reason == caught.value.code, (reason, str(caught.value))
    # the parse step's existing except InvalidRecord turns these into dead letters
    from transforms.validation import InvalidRecord

    assert isinstance(caught.value, InvalidRecord)


def test_unknown_ids_are_asked_once_and_ids_are_cached(schema_registry_emulator, schema_topic):
    url = schema_registry_emulator.url
    payload = encoder_for("avro", url, PAGEVIEW_V1, topic=schema_topic).encode(EVENTS[0])
    decoder = decoder_for("avro", url, reader_schema="user_events")
    before = len(schema_registry_emulator.requests)
    for _ in range(50):
        decoder.decode(payload)
        with pytest.raises(DecodeError):
            decoder.decode(frame(888_888, b""))
    asked = schema_registry_emulator.requests[before:]
    assert len(asked) == 2, asked  # one GET per id, however many records


def test_a_registry_outage_is_a_runtime_error_not_a_dead_letter(schema_topic):
    from beam_pipelines.testing.emulators.schema_registry import SchemaRegistryEmulator

    with SchemaRegistryEmulator() as registry:
        url = registry.url
        payload = encoder_for("avro", url, PAGEVIEW_V1, topic=schema_topic).encode(EVENTS[0])
    config = RegistryConfig(url, timeout=2)
    decoder = decoder_for("avro", SchemaRegistry(config, lambda conf: SchemaRegistryClient(
        {**conf, "max.retries": 0})))
    with pytest.raises(SchemaRegistryError) as caught:
        decoder.decode(payload)
    assert not isinstance(caught.value, DecodeError) and "unreachable" in str(caught.value)


def test_credentials_reach_the_registry_and_stay_out_of_messages(schema_topic):
    from beam_pipelines.testing.emulators.schema_registry import SchemaRegistryEmulator

    with SchemaRegistryEmulator(users={"KEY": "s3cret"}) as registry:
        good = RegistryConfig.resolve(registry.url, basic_auth="KEY:s3cret", env={})
        encoder = encoder_for("avro", good, PAGEVIEW_V1, topic=schema_topic)
        assert decoder_for("avro", good).decode(encoder.encode(EVENTS[0])) == EVENTS[0]
        wrong = RegistryConfig.resolve(registry.url, basic_auth="KEY:wrong-pass", env={})
        with pytest.raises(SchemaRegistryError) as caught:
            decoder_for("avro", wrong).decode(frame(1, b""))
        assert caught.value.status == 401 and "wrong-pass" not in str(caught.value)
        decoder = pickle.loads(pickle.dumps(decoder_for("avro", good)))
        assert "s3cret" not in repr(decoder)


def test_protobuf_both_ways_with_the_official_serde(schema_registry, client, schema_topic, tmp_path):
    desc = write_descriptor_set(str(tmp_path / "pv.desc"))
    ours = encoder_for("protobuf", schema_registry, desc, "shop.v1.PageView", topic=schema_topic)
    cls = message_factory.GetMessageClass(load_descriptor_set(desc).FindMessageTypeByName("shop.v1.PageView"))
    payload = ours.encode(PAGEVIEW_RECORD)
    theirs = ProtobufDeserializer(cls, {"use.deprecated.format": False})(payload, ctx(schema_topic))
    assert theirs.page == "/home" and theirs.timestamp == 1733000000 and list(theirs.ids)[1] == 9007199254740993
    message = cls(user_id="u-2", action="click", page="/cart", timestamp=1733000100)
    written = ProtobufSerializer(cls, client, {"use.deprecated.format": False})(message, ctx(f"{schema_topic}b"))
    decoded = decoder_for("protobuf", schema_registry).decode(written)
    assert parse_user_event(decoded)[0].page == "/cart" and decoded["timestamp"] == 1733000100
    assert decoder_for("protobuf", schema_registry).decode(payload)["kind"] == "HUMAN"
    heartbeat = encoder_for("protobuf", schema_registry, desc, "shop.v1.Heartbeat", topic=f"{schema_topic}c")
    assert decoder_for("protobuf", schema_registry).decode(heartbeat.encode({"device": "d"})) == {"device": "d"}


def test_protobuf_garbage_under_a_real_id_is_undecodable(schema_registry, schema_topic, tmp_path):
    desc = write_descriptor_set(str(tmp_path / "pv.desc"))
    schema_id = encoder_for("protobuf", schema_registry, desc, "shop.v1.PageView", topic=schema_topic).schema_id
    decoder = decoder_for("protobuf", schema_registry)
    with pytest.raises(DecodeError) as caught:  # field 99 (varint) is no field of PageView
        decoder.decode(frame(schema_id, b"\x98\x06\x01", [1]))
    assert caught.value.reason == UNDECODABLE and "does not define" in str(caught.value)
    with pytest.raises(DecodeError) as caught:
        decoder.decode(frame(schema_id, b"", [5]))
    assert caught.value.reason == UNDECODABLE and "[5]" in str(caught.value)


def test_json_schema_both_ways_with_the_official_serde(schema_registry, client, schema_topic):
    schema = user_event_json_schema()
    ours = encoder_for("jsonschema", schema_registry, schema, topic=schema_topic)
    record = {"user_id": 5, "action": "click", "page": "/a", "timestamp": 1733000000}
    theirs = JSONDeserializer(json.dumps(schema), schema_registry_client=client)
    assert theirs(ours.encode(record), ctx(schema_topic)) == record
    written = JSONSerializer(json.dumps(schema), client)(record, ctx(schema_topic))
    decoder = decoder_for("jsonschema", schema_registry)
    assert decoder.decode(written) == record
    with pytest.raises(EncodeError, match="page"):
        ours.encode({**record, "page": ""})
    invalid = frame(ours.schema_id, b'{"user_id": true, "action": "a", "page": "/p", "timestamp": 1}')
    with pytest.raises(DecodeError) as caught:
        decoder.decode(invalid)
    assert caught.value.reason == SCHEMA_VIOLATION and "user_id" in str(caught.value)
    with pytest.raises(DecodeError) as caught:
        decoder.decode(frame(ours.schema_id, b'{"user_id": '))
    assert caught.value.reason == "invalid_json"
