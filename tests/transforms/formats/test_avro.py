"""Avro without a registry: schemaless decoding, evolution, the contract's reader schema,
every way a payload fails, and the static resolution check against fastavro itself."""

from __future__ import annotations

import io
import json
import pickle

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.transforms.formats.samples import EVENTS, NO_PAGE, PAGEVIEW_V1, PAGEVIEW_V2, avsc
from transforms.base.errors import ConfigError
from transforms.formats import DecodeError, EncodeError, decoder_for, encoder_for
from transforms.formats.avro import AvroReader, SchemalessAvroDecoder
from transforms.formats.avro_resolution import resolution_problems
from transforms.formats.contracts import user_event_reader_schema
from transforms.formats.errors import INCOMPATIBLE_SCHEMA, NOT_A_RECORD, TRUNCATED, UNDECODABLE
from transforms.parse import parse_user_event

pytestmark = pytest.mark.unit


def write(schema, record) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def test_schemaless_avro_from_an_avsc_file(tmp_path):
    path = tmp_path / "pageview.avsc"
    path.write_text(avsc(PAGEVIEW_V1))
    decoder = decoder_for("avro", value_schema=str(path))
    assert [decoder.decode(write(PAGEVIEW_V1, e)) for e in EVENTS] == EVENTS
    encoder = encoder_for("avro", value_schema=str(path))
    assert encoder.encode(EVENTS[0]) == write(PAGEVIEW_V1, EVENTS[0])
    assert pickle.loads(pickle.dumps(decoder)).decode(write(PAGEVIEW_V1, EVENTS[1])) == EVENTS[1]


def test_records_of_two_versions_resolve_to_the_contract():
    contract = user_event_reader_schema()
    old = AvroReader(PAGEVIEW_V1, contract)
    new = AvroReader(PAGEVIEW_V2, contract)
    v2_event = {**EVENTS[0], "user_id": "u-7", "referrer": None}
    del v2_event["session"]
    decoded_old = old.read(write(PAGEVIEW_V1, EVENTS[0]))
    decoded_new = new.read(write(PAGEVIEW_V2, v2_event))
    # the writer's record name (com.acme.web.PageView) need not be the contract's
    assert decoded_old == {"user_id": 7, "action": "page_view", "page": "/home", "timestamp": 1733000000.25}
    assert decoded_new == {**decoded_old, "user_id": "u-7"}
    assert parse_user_event(decoded_old)[1] == parse_user_event(decoded_new)[1] == 1733000000


def test_evolution_between_versions_added_with_default_and_removed():
    v2_reading_v1 = AvroReader(PAGEVIEW_V1, PAGEVIEW_V2)
    record = v2_reading_v1.read(write(PAGEVIEW_V1, EVENTS[0]))
    assert record["referrer"] is None and "session" not in record


def test_a_writer_the_contract_cannot_read_is_incompatible_at_once():
    with pytest.raises(DecodeError) as caught:
        AvroReader(NO_PAGE, user_event_reader_schema(), schema_id=12)
    assert caught.value.reason == INCOMPATIBLE_SCHEMA
    assert "schema id 12" in str(caught.value) and "page" in str(caught.value)
    with pytest.raises(ConfigError, match="--value_schema"):
        SchemalessAvroDecoder(NO_PAGE, user_event_reader_schema())


def test_logical_types_reach_the_contract_as_iso_text():
    schema = {"type": "record", "name": "E", "fields": [
        {"name": "user_id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "action", "type": "string"}, {"name": "page", "type": "string"},
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    decoder = SchemalessAvroDecoder(schema, user_event_reader_schema())
    record = decoder.decode(write(schema, {"user_id": "0b5e9a0e-0000-4000-8000-000000000001",
                                           "action": "a", "page": "/p", "timestamp": 1733000000123}))
    assert record["timestamp"] == "2024-11-30T20:53:20.123000+00:00"
    assert parse_user_event(record)[0].timestamp == pytest.approx(1733000000.123)


@pytest.mark.parametrize("mangle, reason", [
    (lambda b: b[:-3], TRUNCATED),
    (lambda b: b + b"\x00\x01", UNDECODABLE),  # bytes after the record
    (lambda b: b.replace(b"page_view", b"\xff\xfeage_view"), UNDECODABLE),  # not UTF-8
    (lambda b: b"\x0e" + b"\xff" * 12, TRUNCATED),  # a length varint running off the end
])
def test_undecodable_payloads_say_why(mangle, reason):
    decoder = SchemalessAvroDecoder(PAGEVIEW_V1)
    with pytest.raises(DecodeError) as caught:
        decoder.decode(mangle(write(PAGEVIEW_V1, EVENTS[0])))
    assert caught.value.reason == reason, str(caught.value)
    assert "the local schema" in str(caught.value)


def test_a_schema_that_is_not_a_record():
    with pytest.raises(DecodeError) as caught:
        SchemalessAvroDecoder({"type": "string"}).decode(write("string", "hello"))
    assert caught.value.reason == NOT_A_RECORD


def test_encoding_a_record_that_does_not_fit_names_the_field():
    encoder = encoder_for("avro", value_schema=PAGEVIEW_V1)
    with pytest.raises(EncodeError) as caught:
        encoder.encode({**EVENTS[0], "page": 3})
    assert "page" in str(caught.value)


# ---- the static check agrees with fastavro reading real data ----------------------------

_TYPES = ["int", "long", "float", "double", "string", "bytes", "boolean",
          ["null", "string"], ["string", "long"], ["long", "double", "string"]]
_VALUES = {"int": st.integers(-2**31, 2**31 - 1), "long": st.integers(-2**63, 2**63 - 1),
           "float": st.floats(width=32, allow_nan=False), "double": st.floats(allow_nan=False),
           "string": st.text(max_size=5), "boolean": st.booleans(),
           # bytes read as string must be UTF-8: the spec allows it, the data decides
           "bytes": st.text(max_size=5).map(str.encode)}


def _field_value(kind):
    if isinstance(kind, list):
        return st.one_of(*[st.none() if k == "null" else _VALUES[k] for k in kind])
    return _VALUES[kind]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_resolution_check_agrees_with_fastavro(data):
    names = ["a", "b", "c"]
    writer_fields = data.draw(st.lists(st.sampled_from(names), unique=True, max_size=3))
    reader_fields = data.draw(st.lists(st.sampled_from(names), unique=True, max_size=3))
    writer = {"type": "record", "name": "R", "fields": [
        {"name": n, "type": data.draw(st.sampled_from(_TYPES))} for n in writer_fields]}
    reader = {"type": "record", "name": "R", "fields": []}
    for n in reader_fields:
        field = {"name": n, "type": data.draw(st.sampled_from(_TYPES))}
        if data.draw(st.booleans()):
            field["default"] = None if isinstance(field["type"], list) and field["type"][0] == "null" else (
                "" if field["type"] in ("string", "bytes") or isinstance(field["type"], list) and field["type"][0] == "string"
                else 0 if field["type"] in ("int", "long", "float", "double") or isinstance(field["type"], list) else False)
        reader["fields"].append(field)
    record = {f["name"]: data.draw(_field_value(f["type"])) for f in writer["fields"]}
    problems = resolution_problems(fastavro.parse_schema(json.loads(json.dumps(writer))),
                                   fastavro.parse_schema(json.loads(json.dumps(reader))))
    payload = write(writer, record)
    try:
        fastavro.schemaless_reader(io.BytesIO(payload), fastavro.parse_schema(writer),
                                   fastavro.parse_schema(reader))
        readable = True
    except Exception:
        readable = False
    if not problems:
        assert readable, (writer, reader, record)
