"""The vectorized Avro path decides every payload of a poll as the per-record path does."""

from __future__ import annotations

import io

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.batches import user_events
from transforms.formats.arrow import decode_to_table, user_event_block
from transforms.formats.avro import SchemalessAvroDecoder
from transforms.formats.contracts import user_event_reader_schema
from transforms.parse import parse_user_event
from transforms.validation import InvalidRecord

pytestmark = pytest.mark.unit

WRITER = {"type": "record", "name": "PageView", "namespace": "com.acme", "fields": [
    {"name": "user_id", "type": ["string", "long"]},
    {"name": "action", "type": "string"},
    {"name": "page", "type": "string"},
    {"name": "timestamp", "type": ["long", "double", "string"]},
    {"name": "extra", "type": ["null", "string"], "default": None},
]}
PARSED = fastavro.parse_schema(WRITER)

user_ids = st.one_of(st.text(max_size=4), st.integers(-2**63, 2**63 - 1))
texts = st.one_of(st.sampled_from(["", "page_view", "/home", "/p/1"]), st.text(max_size=4))
timestamps = st.one_of(
    st.integers(-2**63, 2**63 - 1),
    st.integers(946_684_790, 946_684_810), st.integers(4_102_444_790, 4_102_444_810),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(1_733_000_000, 1_733_000_100),
    st.sampled_from(["2024-12-01T00:00:00Z", "2024-12-01T00:00:00.5+01:00", "2024-12-01",
                     "yesterday", "", "2024-12-01T00:00:00"]),
)
records = st.fixed_dictionaries({"user_id": user_ids, "action": texts, "page": texts,
                                 "timestamp": timestamps})


def encode(record) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, PARSED, record)
    return out.getvalue()


payloads = st.one_of(
    records.map(encode),
    records.map(lambda r: encode(r)[:-1]),  # truncated
    st.binary(max_size=12),  # garbage
)


def per_record(decoder, payload):
    try:
        return parse_user_event(decoder.decode(payload))
    except InvalidRecord as exc:
        return ("dead letter", exc.code, str(exc))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads, max_size=25), st.booleans())
def test_vectorized_block_equals_per_record(batch, with_contract):
    decoder = SchemalessAvroDecoder(WRITER, user_event_reader_schema() if with_contract else None)
    expected = {i: per_record(decoder, p) for i, p in enumerate(batch)}
    block = user_event_block(batch, decoder)
    got = dict(zip(block.lines.tolist(), user_events(block.events), strict=True))
    for index, payload in block.handed_over:
        assert payload == batch[index]  # handed over with the original bytes
        assert index not in got
        got[index] = per_record(decoder, payload)
    assert got.keys() == expected.keys()
    for index, outcome in expected.items():
        if outcome[0] == "dead letter":
            assert got[index] == outcome
        else:  # the per-record float of a timestamp vs the vectorized one: same second
            event, second = got[index]
            assert (event.user_id, event.action, event.page, second) == (
                outcome[0].user_id, outcome[0].action, outcome[0].page, outcome[1])
            assert event.timestamp == pytest.approx(outcome[0].timestamp, abs=1e-6)


def test_decode_to_table_keeps_every_field_and_the_failures():
    decoder = SchemalessAvroDecoder(WRITER)
    good = encode({"user_id": "u", "action": "a", "page": "/p", "timestamp": 1733000000, "extra": "x"})
    batch = decode_to_table([good, b"\x01", good], decoder)
    assert batch.table.column_names == ["user_id", "action", "page", "timestamp", "extra"]
    assert batch.table.num_rows == 2 and batch.indexes.tolist() == [0, 2]
    assert [i for i, _ in batch.failures] == [1]
