"""Raw Protobuf with a local descriptor set: built with descriptor_pb2 here, and compiled
from .proto text by protoc (grpcio-tools, in-process) to check a real .desc file."""

from __future__ import annotations

import pickle

import pytest

from tests.transforms.formats.samples import PAGEVIEW_RECORD, write_descriptor_set
from transforms.base.errors import ConfigError
from transforms.formats import DecodeError, EncodeError, decoder_for, encoder_for
from transforms.formats.errors import NOT_A_RECORD, TRUNCATED, UNDECODABLE
from transforms.formats.protobuf import load_descriptor_set, message_descriptor, message_indexes
from transforms.parse import parse_user_event

pytestmark = pytest.mark.unit


@pytest.fixture
def desc(tmp_path) -> str:
    return write_descriptor_set(str(tmp_path / "pageview.desc"))


def test_raw_protobuf_round_trip_keeps_integers_and_proto_names(desc):
    encoder = encoder_for("protobuf", value_schema=desc, message_name="shop.v1.PageView")
    decoder = decoder_for("protobuf", value_schema=desc, message_name="shop.v1.PageView")
    record = decoder.decode(encoder.encode(PAGEVIEW_RECORD))
    assert record["timestamp"] == 1733000000 and isinstance(record["timestamp"], int)
    assert record["ids"] == [1, 9007199254740993]  # int64 beyond 2**53 stays exact
    assert record["kind"] == "HUMAN" and record["tags"] == {"ab": "b"}
    assert record["seen_at"] == "2024-11-30T20:53:20Z" and record["device"] == {"model": "x1"}
    assert "referrer" not in record  # proto3 optional, unset: absent
    event, second = parse_user_event(record)
    assert (event.user_id, event.page, second) == ("u-1", "/home", 1733000000)
    assert pickle.loads(pickle.dumps(decoder)).decode(encoder.encode(PAGEVIEW_RECORD)) == record


def test_unset_proto3_scalars_are_present_with_defaults(desc):
    decoder = decoder_for("protobuf", value_schema=desc, message_name="shop.v1.PageView")
    encoder = encoder_for("protobuf", value_schema=desc, message_name="shop.v1.PageView")
    record = decoder.decode(encoder.encode({"user_id": "u", "page": "/p"}))
    assert record["action"] == "" and record["timestamp"] == 0 and record["kind"] == "KIND_UNSPECIFIED"


@pytest.mark.parametrize("payload, reason", [
    (b"", NOT_A_RECORD),
    (b"\x0a\x05ab", TRUNCATED),  # field 1, length 5, two bytes
    (b"\x0f\x01\x02", UNDECODABLE),  # wire type 7 does not exist
    (b"\xff\xff\xff\xff", TRUNCATED),  # a varint cut short
])
def test_raw_protobuf_that_does_not_parse(desc, payload, reason):
    decoder = decoder_for("protobuf", value_schema=desc, message_name="shop.v1.PageView")
    with pytest.raises(DecodeError) as caught:
        decoder.decode(payload)
    assert caught.value.reason == reason, str(caught.value)


def test_descriptor_set_errors_name_the_flag(tmp_path, desc):
    with pytest.raises(ConfigError, match="--message_name"):
        decoder_for("protobuf", value_schema=desc, message_name="shop.v1.Nope")
    with pytest.raises(ConfigError, match="--message_name"):
        decoder_for("protobuf", value_schema=desc)
    no_imports = write_descriptor_set(str(tmp_path / "bare.desc"), include_imports=False)
    # google/protobuf/*.proto are compiled into protobuf: a set without them still loads
    assert decoder_for("protobuf", value_schema=no_imports, message_name="shop.v1.PageView")
    garbage = tmp_path / "garbage.desc"
    garbage.write_bytes(b"\xff\xfe not a descriptor set")
    with pytest.raises(ConfigError, match="--value_schema"):
        decoder_for("protobuf", value_schema=str(garbage), message_name="shop.v1.PageView")


def test_encoding_a_record_that_does_not_fit(desc):
    encoder = encoder_for("protobuf", value_schema=desc, message_name="shop.v1.PageView")
    with pytest.raises(EncodeError, match="shop.v1.PageView"):
        encoder.encode({"timestamp": "soon"})


def test_message_indexes_of_nested_messages(desc):
    pool = load_descriptor_set(desc)
    assert message_indexes(message_descriptor(pool, "shop.v1.Heartbeat")) == [0]
    assert message_indexes(message_descriptor(pool, "shop.v1.PageView")) == [1]
    assert message_indexes(message_descriptor(pool, "shop.v1.PageView.Device")) == [1, 1]


PROTO = """
syntax = "proto3";
package clicks.v1;
import "google/protobuf/timestamp.proto";
message Click {
  int64 user_id = 1;
  string action = 2;
  string page = 3;
  double timestamp = 4;
  google.protobuf.Timestamp at = 5;
}
"""


def test_a_descriptor_set_compiled_by_protoc(tmp_path):
    from grpc_tools import protoc

    (tmp_path / "click.proto").write_text(PROTO)
    out = tmp_path / "click.desc"
    include = protoc._get_resource_file_name("grpc_tools", "_proto")
    assert protoc.main(["protoc", f"-I{tmp_path}", f"-I{include}", "--include_imports",
                        f"--descriptor_set_out={out}", str(tmp_path / "click.proto")]) == 0
    encoder = encoder_for("protobuf", value_schema=str(out), message_name="clicks.v1.Click")
    decoder = decoder_for("protobuf", value_schema=str(out), message_name="clicks.v1.Click")
    record = {"user_id": 42, "action": "click", "page": "/a", "timestamp": 1733000000.5}
    decoded = decoder.decode(encoder.encode(record))
    assert decoded == record  # 'at' unset: a message field has presence, so it is absent
    assert parse_user_event(decoded)[0].user_id == "42"
