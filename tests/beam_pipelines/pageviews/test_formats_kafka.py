"""Avro and Protobuf topics through a schema registry, end to end (issue 17 part 1).

The same user events are produced three times: as JSON, as Confluent-framed Avro by
Confluent's own ``AvroSerializer`` (two versions of the schema, the second evolved: a
field removed, one added with a default, ``user_id`` widened to a union), and as
Confluent-framed Protobuf by Confluent's ``ProtobufSerializer``. Each binary topic also
holds three records that do not decode (a wrong magic byte, an unknown schema id, a
truncated record) at known offsets; a JSON Schema topic (Confluent's ``JSONSerializer``)
holds one that breaks its schema instead of the truncated one. ``pageviews`` gives every topic the same counts,
bounded and streaming, on both ``--batch_engine`` values, and one dead letter per
undecodable record with its reason and its Kafka coordinates.
"""

from __future__ import annotations

import collections
import glob
import json
import time
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import message_factory

from beam_pipelines import pageviews
from beam_pipelines.testing.kafka import read_topic
from tests.transforms.formats.samples import PAGEVIEW_V1, PAGEVIEW_V2, avsc, write_descriptor_set
from transforms.formats.contracts import user_event_json_schema
from transforms.formats.protobuf import load_descriptor_set
from transforms.formats.wire import frame

pytestmark = pytest.mark.integration

PAGES = ("/home", "/cart", "/search", "/checkout")
WINDOW = 60
PARTITIONS = 2
EVENT_COUNT = 120


def _events(now: int) -> list[dict[str, Any]]:
    """Valid user events spread over the last few minutes (windows of WINDOW seconds)."""
    start = now - 300
    return [{"user_id": 1000 + i % 17, "action": "page_view" if i % 3 else "click",
             "page": PAGES[i * 7 % len(PAGES)], "timestamp": start + i * 2}
            for i in range(EVENT_COUNT)]


def _expected_counts(events: list[dict[str, Any]]) -> dict[tuple[int, str], int]:
    counts: collections.Counter = collections.Counter()
    for event in events:
        counts[(event["timestamp"] // WINDOW * WINDOW, event["page"])] += 1
    return dict(counts)


def _produce(servers: str, topic: str, payloads: list[bytes]) -> list[tuple[int, int]]:
    """Send each payload to partition ``i % PARTITIONS``; returns (partition, offset) of each."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    try:
        futures = [producer.send(topic, value=p, partition=i % PARTITIONS)
                   for i, p in enumerate(payloads)]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


class Topics:
    """The three topics and what the test knows about them."""

    def __init__(self, servers: str, registry: str, json_topic: str, avro_topic: str,
                 proto_topic: str, jsonschema_topic: str, events: list[dict[str, Any]],
                 bad: dict[str, dict[tuple[int, int], str]]) -> None:
        self.servers = servers
        self.registry = registry
        self.json = json_topic
        self.avro = avro_topic
        self.protobuf = proto_topic
        self.jsonschema = jsonschema_topic
        self.expected = _expected_counts(events)
        self.bad = bad  # topic -> {(partition, offset): reason_code}


def _with_bad(good: list[bytes], bad: list[tuple[bytes, str]]) -> tuple[list[bytes], list[str]]:
    """``good`` with the ``bad`` payloads mixed in at fixed places; the reason of each
    position ('' for a good one)."""
    payloads, reasons = list(good), [""] * len(good)
    for n, (payload, reason) in enumerate(bad):
        at = 13 + n * 37
        payloads.insert(at, payload)
        reasons.insert(at, reason)
    return payloads, reasons


@pytest.fixture(scope="module")
def topics(kafka_broker, schema_registry, tmp_path_factory) -> Topics:
    servers = kafka_broker.bootstrap_servers
    suffix = str(time.time_ns())[-8:]
    json_topic = kafka_broker.create_topic(f"fmt_json_{suffix}", PARTITIONS)
    avro_topic = kafka_broker.create_topic(f"fmt_avro_{suffix}", PARTITIONS)
    proto_topic = kafka_broker.create_topic(f"fmt_proto_{suffix}", PARTITIONS)
    events = _events(int(time.time()))
    client = SchemaRegistryClient({"url": schema_registry})

    _produce(servers, json_topic, [json.dumps(e).encode() for e in events])

    # Avro: the first half with v1 (has 'session'), the second with v2 (no 'session', a
    # 'referrer' with a default, user_id a union): two versions under one subject.
    avro_ctx = SerializationContext(avro_topic, MessageField.VALUE)
    v1 = AvroSerializer(client, avsc(PAGEVIEW_V1))
    v2 = AvroSerializer(client, avsc(PAGEVIEW_V2))
    half = len(events) // 2
    good = [v1({**e, "timestamp": float(e["timestamp"]), "session": f"s{i}"}, avro_ctx)
            for i, e in enumerate(events[:half])]
    good += [v2({**e, "user_id": f"u{e['user_id']}", "timestamp": float(e["timestamp"]),
                 "referrer": None}, avro_ctx) for e in events[half:]]
    assert good[0][1:5] != good[-1][1:5], "two schema versions, two ids"
    payloads, reasons = _with_bad(good, [
        (json.dumps(events[0]).encode(), "bad_magic_byte"),  # JSON on an Avro topic
        (frame(987_654, good[1][5:]), "unknown_schema_id"),
        (good[2][:-1], "truncated"),
    ])
    avro_at = _produce(servers, avro_topic, payloads)

    # Protobuf with Confluent's serializer and a message class built from a descriptor.
    desc = write_descriptor_set(str(tmp_path_factory.mktemp("proto") / "pageview.desc"))
    cls = message_factory.GetMessageClass(
        load_descriptor_set(desc).FindMessageTypeByName("shop.v1.PageView"))
    proto_ctx = SerializationContext(proto_topic, MessageField.VALUE)
    serialize = ProtobufSerializer(cls, client, {"use.deprecated.format": False})
    good = [serialize(cls(user_id=str(e["user_id"]), action=e["action"], page=e["page"],
                          timestamp=e["timestamp"]), proto_ctx) for e in events]
    payloads, proto_reasons = _with_bad(good, [
        (b"\x01" + good[0][1:], "bad_magic_byte"),
        (frame(987_655, good[1][6:], [0]), "unknown_schema_id"),
        (good[2][:-1], "truncated"),  # cut inside the timestamp's varint
    ])
    proto_at = _produce(servers, proto_topic, payloads)

    # JSON Schema with Confluent's serializer (the contract's schema for writers).
    js_topic = kafka_broker.create_topic(f"fmt_js_{suffix}", PARTITIONS)
    serialize_js = JSONSerializer(json.dumps(user_event_json_schema()), client)
    good = [serialize_js(e, SerializationContext(js_topic, MessageField.VALUE)) for e in events]
    payloads, js_reasons = _with_bad(good, [
        (json.dumps(events[0]).encode(), "bad_magic_byte"),
        (frame(987_656, good[1][5:]), "unknown_schema_id"),
        (frame(int.from_bytes(good[2][1:5], "big"),
               json.dumps({**events[2], "action": ""}).encode()), "schema_violation"),
    ])
    js_at = _produce(servers, js_topic, payloads)

    bad = {avro_topic: {at: r for at, r in zip(avro_at, reasons, strict=True) if r},
           proto_topic: {at: r for at, r in zip(proto_at, proto_reasons, strict=True) if r},
           js_topic: {at: r for at, r in zip(js_at, js_reasons, strict=True) if r}}
    return Topics(servers, schema_registry, json_topic, avro_topic, proto_topic, js_topic,
                  events, bad)


def _rows(directory) -> list[dict[str, Any]]:
    rows = []
    for path in glob.glob(f"{directory}/**/*.jsonl", recursive=True):
        with open(path, encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    return rows


def _final_counts(directory) -> dict[tuple[int, str], int]:
    from transforms.base.times import epoch_seconds, parse_iso

    final: dict[tuple[int, str], int] = {}
    for row in _rows(directory):
        key = (int(epoch_seconds(parse_iso(row["window_start"]))), row["page"])
        final[key] = max(final.get(key, 0), row["count"])
    return final


def _run(topics: Topics, topic: str, tmp_path, name: str, *flags: str) -> tuple[dict, list]:
    out, dead = tmp_path / f"{name}_out", tmp_path / f"{name}_dead"
    pageviews.run(["--source=kafka", f"--bootstrap_servers={topics.servers}", f"--topic={topic}",
                   "--start_at=earliest", f"--window_size={WINDOW}", "--sink=jsonl",
                   f"--output={out}", f"--dead_letter={dead}", *flags])
    return _final_counts(out), _rows(dead)


def _check_dead_letters(letters: list[dict[str, Any]], topic: str,
                        bad: dict[tuple[int, int], str]) -> None:
    found = {(d["origin"]["partition"], d["origin"]["offset"]): d["reason_code"] for d in letters}
    assert found == bad, letters
    assert len(letters) == len(bad)
    assert all(d["origin"]["topic"] == topic and d["origin"]["source"] == "kafka"
               and d["step"] == "parse" for d in letters)


BOUNDED = ("--stop_at=end",)
STREAMING = ("--streaming", "--max_read_time=4", "--idle_timeout=1", "--allowed_lateness=3600")


def test_the_json_topic_counts_what_the_events_hold(topics, tmp_path):
    counts, letters = _run(topics, topics.json, tmp_path, "json", *BOUNDED, "--batch_engine=records")
    assert counts == topics.expected and not letters


@pytest.mark.parametrize("fmt", ["avro", "protobuf"])
@pytest.mark.parametrize("mode,engine", [("bounded", "arrow"), ("bounded", "records"),
                                         ("streaming", "arrow"), ("streaming", "records")])
def test_an_evolved_avro_topic_and_a_protobuf_topic_count_as_the_json_topic(
        topics, tmp_path, fmt, mode, engine):
    topic = topics.avro if fmt == "avro" else topics.protobuf
    flags = (*(BOUNDED if mode == "bounded" else STREAMING), f"--batch_engine={engine}",
             f"--format={fmt}", f"--schema_registry_url={topics.registry}")
    counts, letters = _run(topics, topic, tmp_path, fmt, *flags)
    assert counts == topics.expected
    _check_dead_letters(letters, topic, topics.bad[topic])
    assert all(d["payload_encoding"] == "base64" for d in letters
               if d["reason_code"] != "bad_magic_byte")


def test_a_json_schema_topic_counts_as_the_json_topic(topics, tmp_path):
    counts, letters = _run(topics, topics.jsonschema, tmp_path, "js", *BOUNDED,
                           "--format=jsonschema", f"--schema_registry_url={topics.registry}")
    assert counts == topics.expected
    _check_dead_letters(letters, topics.jsonschema, topics.bad[topics.jsonschema])


# ---- writing: --sink=kafka --sink_format=avro ------------------------------------------

def test_avro_results_read_by_confluents_deserializer(topics, kafka_broker, tmp_path):
    from confluent_kafka.schema_registry.avro import AvroDeserializer

    out = kafka_broker.create_topic(f"fmt_counts_{time.time_ns() % 10**8}", 1)
    pageviews.run(["--source=kafka", f"--bootstrap_servers={topics.servers}",
                   f"--topic={topics.json}", "--start_at=earliest", "--stop_at=end",
                   f"--window_size={WINDOW}", "--sink=kafka", f"--output={out}",
                   "--sink_format=avro", f"--schema_registry_url={topics.registry}"])
    client = SchemaRegistryClient({"url": topics.registry})
    deserialize = AvroDeserializer(client)
    ctx = SerializationContext(out, MessageField.VALUE)
    rows = [deserialize(value, ctx) for value in read_topic(topics.servers, out)]
    from transforms.base.times import epoch_seconds, parse_iso

    assert {(int(epoch_seconds(parse_iso(r["window_start"]))), r["page"]): r["count"]
            for r in rows} == topics.expected
    assert len(rows) == len(topics.expected) and rows[0]["pane_timing"] is None
    registered = client.get_latest_version(f"{out}-value")
    assert json.loads(registered.schema.schema_str)["name"] == "PageViewCount"


def test_an_incompatible_sink_schema_stops_the_run_at_start_in_one_line(topics, kafka_broker,
                                                                       tmp_path, capsys):
    from confluent_kafka.schema_registry import Schema

    out = kafka_broker.create_topic(f"fmt_taken_{time.time_ns() % 10**8}", 1)
    theirs = {"type": "record", "name": "Other", "fields": [{"name": "id", "type": "string"}]}
    SchemaRegistryClient({"url": topics.registry}).register_schema(
        f"{out}-value", Schema(json.dumps(theirs), "AVRO"))
    code = pageviews.main(["--source=kafka", f"--bootstrap_servers={topics.servers}",
                           f"--topic={topics.json}", "--start_at=earliest", "--stop_at=end",
                           "--sink=kafka", f"--output={out}", "--sink_format=avro",
                           f"--schema_registry_url={topics.registry}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: schema registry refused the schema for subject '{out}-value'")
    assert not read_topic(topics.servers, out)


# ---- without a registry: schemaless Avro, raw Protobuf ----------------------------------

def test_schemaless_avro_and_raw_protobuf_from_local_schema_files(topics, kafka_broker,
                                                                  tmp_path):
    import io

    import fastavro

    events = _events(int(time.time()))
    avsc_path = tmp_path / "pageview.avsc"
    avsc_path.write_text(avsc(PAGEVIEW_V1))
    parsed = fastavro.parse_schema(PAGEVIEW_V1)

    def schemaless(event: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, {**event, "timestamp": float(event["timestamp"]),
                                                    "session": "s"})
        return buffer.getvalue()

    avro_good = [schemaless(e) for e in events]
    avro_payloads, avro_reasons = _with_bad(avro_good, [(avro_good[0][:-1], "truncated")])
    avro_topic = kafka_broker.create_topic(f"fmt_plain_avro_{time.time_ns() % 10**8}", PARTITIONS)
    avro_at = _produce(topics.servers, avro_topic, avro_payloads)

    desc = write_descriptor_set(str(tmp_path / "pageview.desc"))
    cls = message_factory.GetMessageClass(
        load_descriptor_set(desc).FindMessageTypeByName("shop.v1.PageView"))
    proto_good = [cls(user_id=str(e["user_id"]), action=e["action"], page=e["page"],
                      timestamp=e["timestamp"]).SerializeToString() for e in events]
    proto_payloads, proto_reasons = _with_bad(proto_good, [(proto_good[0][:-1], "truncated")])
    proto_topic = kafka_broker.create_topic(f"fmt_plain_proto_{time.time_ns() % 10**8}", PARTITIONS)
    proto_at = _produce(topics.servers, proto_topic, proto_payloads)

    counts, letters = _run(topics, avro_topic, tmp_path, "plain_avro", *BOUNDED, "--format=avro",
                           f"--value_schema={avsc_path}")
    assert counts == _expected_counts(events)
    _check_dead_letters(letters, avro_topic,
                        {at: r for at, r in zip(avro_at, avro_reasons, strict=True) if r})
    counts, letters = _run(topics, proto_topic, tmp_path, "plain_proto", *BOUNDED,
                           "--batch_engine=records", "--format=protobuf",
                           f"--value_schema={desc}", "--message_name=shop.v1.PageView")
    assert counts == _expected_counts(events)
    _check_dead_letters(letters, proto_topic,
                        {at: r for at, r in zip(proto_at, proto_reasons, strict=True) if r})


def test_schemas_register_publishes_the_pipelines_schemas(topics, capsys):
    from beam_pipelines import schemas

    assert schemas.main(["--register", f"--schema_registry_url={topics.registry}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    subjects = dict(line.split("\t") for line in lines)
    assert set(subjects) == {f"beam_pipelines.records.{n}" for n in schemas.SCHEMAS}
    client = SchemaRegistryClient({"url": topics.registry})
    latest = client.get_latest_version("beam_pipelines.records.PageViewCount")
    assert str(latest.schema_id) == subjects["beam_pipelines.records.PageViewCount"]
    assert schemas.main(["--register", "--format=jsonschema", "--schema=UserEvent",
                         "--topic=user_events_js", f"--schema_registry_url={topics.registry}"]) == 0
    assert capsys.readouterr().out.startswith("user_events_js-value\t")
    assert client.get_latest_version("user_events_js-value").schema.schema_type == "JSON"


def test_produce_sends_avro_events_the_contract_reads(topics, kafka_broker):
    from beam_pipelines import produce
    from transforms.formats import decoder_for
    from transforms.io.synthetic.events import SyntheticEvents
    from transforms.validation import InvalidRecord

    topic = kafka_broker.create_topic(f"fmt_produced_{time.time_ns() % 10**8}", 1)
    flags = ["--seed=3", "--malformed=0.05", "--start=2024-12-01T00:00:00Z", "--count=200"]
    assert produce.run([f"--bootstrap_servers={topics.servers}", f"--topic={topic}",
                        "--format=avro", f"--schema_registry_url={topics.registry}",
                        "--no_progress", *flags]) == 200
    sent = list(SyntheticEvents(seed=3, rate=20.0, malformed=0.05, start=1733011200.0,
                                out_of_order=0.05, max_delay=5.0).payloads(200))
    decoder = decoder_for("avro", topics.registry, reader_schema="user_events")
    decoded = 0
    for original, payload in zip(sent, read_topic(topics.servers, topic), strict=True):
        try:
            event = json.loads(original)
        except ValueError:
            event = None
        try:
            record = decoder.decode(payload)
        except InvalidRecord:
            assert payload == original  # not an event: sent as it is, a dead letter later
            continue
        decoded += 1
        assert isinstance(event, dict) and {k: event[k] for k in record} == record
    assert 150 < decoded < 200
