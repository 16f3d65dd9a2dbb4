"""Avro and Protobuf topics through a schema registry, end to end (issue 17 part 1).

The same user events are produced three times: as JSON, as Confluent-framed Avro by
Confluent's own ``AvroSerializer`` (two versions of the schema, the second evolved: a
field removed, one added with a default, ``user_id`` widened to a union), and as
Confluent-framed Protobuf by Confluent's ``ProtobufSerializer``. Each binary topic also
holds three records that do not decode (a wrong magic byte, an unknown schema id, a
truncated record) at known offsets. ``pageviews`` gives every topic the same counts,
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
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import message_factory

from beam_pipelines import pageviews
from tests.transforms.formats.samples import PAGEVIEW_V1, PAGEVIEW_V2, avsc, write_descriptor_set
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
                 proto_topic: str, events: list[dict[str, Any]],
                 bad: dict[str, dict[tuple[int, int], str]]) -> None:
        self.servers = servers
        self.registry = registry
        self.json = json_topic
        self.avro = avro_topic
        self.protobuf = proto_topic
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

    bad = {avro_topic: {at: r for at, r in zip(avro_at, reasons, strict=True) if r},
           proto_topic: {at: r for at, r in zip(proto_at, proto_reasons, strict=True) if r}}
    return Topics(servers, schema_registry, json_topic, avro_topic, proto_topic, events, bad)


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


@pytest.mark.parametrize("mode,engine", [("bounded", "arrow"), ("bounded", "records"),
                                         ("streaming", "arrow"), ("streaming", "records")])
def test_an_evolved_avro_topic_counts_as_the_json_topic(topics, tmp_path, mode, engine):
    flags = (*(BOUNDED if mode == "bounded" else STREAMING), f"--batch_engine={engine}",
             "--format=avro", f"--schema_registry_url={topics.registry}")
    counts, letters = _run(topics, topics.avro, tmp_path, "avro", *flags)
    assert counts == topics.expected
    _check_dead_letters(letters, topics.avro, topics.bad[topics.avro])
    assert all(d["payload_encoding"] == "base64" for d in letters if d["reason_code"] != "bad_magic_byte")


@pytest.mark.parametrize("mode,engine", [("bounded", "arrow"), ("streaming", "records")])
def test_a_protobuf_topic_counts_as_the_json_topic(topics, tmp_path, mode, engine):
    flags = (*(BOUNDED if mode == "bounded" else STREAMING), f"--batch_engine={engine}",
             "--format=protobuf", f"--schema_registry_url={topics.registry}")
    counts, letters = _run(topics, topics.protobuf, tmp_path, "proto", *flags)
    assert counts == topics.expected
    _check_dead_letters(letters, topics.protobuf, topics.bad[topics.protobuf])
