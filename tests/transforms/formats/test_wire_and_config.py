"""The Confluent header, message-index arrays, registry configuration and the factories."""

from __future__ import annotations

import io
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.base.errors import ConfigError
from transforms.formats import DecodeError, RegistryConfig, decoder_for, encoder_for, subject_name
from transforms.formats.errors import BAD_MAGIC_BYTE, TRUNCATED, UNDECODABLE
from transforms.formats.wire import frame, message_indexes_bytes, read_message_indexes, unframe

pytestmark = pytest.mark.unit


def test_frame_and_unframe():
    data = frame(258, b"payload")
    assert data == b"\x00\x00\x00\x01\x02payload"
    schema_id, body = unframe(data)
    assert (schema_id, bytes(body)) == (258, b"payload")


@pytest.mark.parametrize("data, reason, words", [
    (b"", TRUNCATED, "0 bytes"),
    (b"\x00\x00\x01", TRUNCATED, "shorter than the 5-byte"),
    (b'{"user_id": 1}', BAD_MAGIC_BYTE, "looks like JSON"),
    (b"\x01\x00\x00\x00\x01x", BAD_MAGIC_BYTE, "0x01"),
])
def test_unframe_says_why(data, reason, words):
    with pytest.raises(DecodeError) as caught:
        unframe(data)
    assert caught.value.reason == caught.value.code == reason
    assert words in str(caught.value)


@settings(deadline=None)  # the first example imports confluent_kafka's protobuf module
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=6), st.binary(max_size=20))
def test_message_indexes_round_trip_and_match_confluent(indexes, rest):
    from confluent_kafka.schema_registry.protobuf import ProtobufSerializer

    ours = message_indexes_bytes(indexes)
    theirs = io.BytesIO()
    ProtobufSerializer._encode_varints(theirs, indexes)
    assert ours == theirs.getvalue()
    decoded, remainder = read_message_indexes(memoryview(ours + rest))
    assert decoded == indexes and bytes(remainder) == rest


def test_message_indexes_errors():
    with pytest.raises(DecodeError) as caught:
        read_message_indexes(memoryview(b"\x04\x02"))  # two indexes announced, one present
    assert caught.value.reason == TRUNCATED
    with pytest.raises(DecodeError) as caught:
        read_message_indexes(memoryview(b"\xfe\x01"))  # count 127
    assert caught.value.reason == UNDECODABLE


def test_registry_config_from_environment_and_files(tmp_path):
    secret = tmp_path / "sr.secret"
    secret.write_text("KEY:s3cr3t\n")
    config = RegistryConfig.resolve(env={"SCHEMA_REGISTRY_URL": "https://sr.example:8081",
                                         "SCHEMA_REGISTRY_BASIC_AUTH_FILE": str(secret)})
    assert config.url == "https://sr.example:8081" and config.basic_auth == "KEY:s3cr3t"
    assert config.client_config()["basic.auth.user.info"] == "KEY:s3cr3t"
    assert "s3cr3t" not in repr(config) and "s3cr3t" not in str(config)
    # an argument wins over the environment
    token = RegistryConfig.resolve("http://h:1", bearer_token="XyZ-tkn", logical_cluster="lsrc-1",
                                   env={"SCHEMA_REGISTRY_URL": "http://other:2"})
    assert token.url == "http://h:1" and "XyZ-tkn" not in repr(token)
    assert token.client_config()["bearer.auth.credentials.source"] == "STATIC_TOKEN"


def test_credentials_in_the_url_move_out_of_it():
    config = RegistryConfig("https://KEY:p%40ss@psrc-1.confluent.cloud")
    assert config.url == "https://psrc-1.confluent.cloud"
    assert config.basic_auth == "KEY:p@ss"
    assert "p@ss" not in repr(config) and "KEY" not in repr(config)
    assert "p@ss" not in repr(pickle.loads(pickle.dumps(config)))


@pytest.mark.parametrize("kwargs, flag", [
    ({"env": {}}, "--schema_registry_url"),
    ({"url": "sr.example:8081", "env": {}}, "--schema_registry_url"),
    ({"url": "http://h", "basic_auth": "nocolon", "env": {}}, "--schema_registry_basic_auth"),
    ({"url": "http://h", "basic_auth": "a:b", "bearer_token": "t", "env": {}},
     "--schema_registry_bearer_token"),
    ({"url": "http://h", "basic_auth_file": "/nonexistent/file", "env": {}},
     "--schema_registry_basic_auth_file"),
])
def test_bad_registry_settings_name_the_flag(kwargs, flag):
    with pytest.raises(ConfigError) as caught:
        RegistryConfig.resolve(**kwargs)
    assert str(caught.value).startswith(flag)
    assert "nocolon" not in str(caught.value)


def test_subject_name_strategies():
    assert subject_name("topic_name", "orders") == "orders-value"
    assert subject_name("topic_name", "orders", is_key=True) == "orders-key"
    assert subject_name("record_name", "orders", "com.acme.Order") == "com.acme.Order"
    assert subject_name("topic_record_name", "orders", "com.acme.Order") == "orders-com.acme.Order"
    with pytest.raises(ConfigError):
        subject_name("bogus", "orders")


@pytest.mark.parametrize("kwargs, flag", [
    ({"format": "xml"}, "--format"),
    ({"format": "avro"}, "--schema_registry_url"),
    ({"format": "protobuf"}, "--schema_registry_url"),
    ({"format": "jsonschema"}, "--schema_registry_url"),
    ({"format": "json", "value_schema": "x.avsc"}, "--value_schema"),
    ({"format": "avro", "value_schema": "/nonexistent.avsc"}, "--value_schema"),
    ({"format": "avro", "registry": "http://h:1", "value_schema": "{}"}, "--value_schema"),
    ({"format": "protobuf", "value_schema": "/nonexistent.desc", "message_name": "a.B"}, "--value_schema"),
    ({"format": "protobuf", "registry": "http://h:1", "reader_schema": "user_events"}, "--reader_schema"),
])
def test_decoder_for_bad_arguments_name_the_flag(kwargs, flag):
    with pytest.raises(ConfigError) as caught:
        decoder_for(**kwargs)
    assert str(caught.value).startswith(flag)


def test_encoder_for_needs_a_schema_and_a_subject():
    with pytest.raises(ConfigError, match="--value_schema"):
        encoder_for("avro", "http://h:1", topic="t")
    with pytest.raises(ConfigError, match="topic"):
        encoder_for("avro", "http://h:1", value_schema='{"type": "string"}')
    assert encoder_for("json").encode({"a": 1}) == b'{"a":1}'


def test_a_missing_extra_says_what_to_install(monkeypatch):
    import sys

    from transforms.base.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "fastavro", None)  # import fastavro -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'beam-pipelines\[formats\]'"):
        decoder_for("avro", value_schema='{"type": "record", "name": "R", "fields": []}')
