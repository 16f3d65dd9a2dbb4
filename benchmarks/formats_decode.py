"""Decode throughput of one poll's payloads: Avro (vectorized and per record) beside JSON.

    python -m benchmarks.formats_decode [--events 200000] [--poll 500]

Every path ends where the pipeline's parse step ends: valid user events (a table on the
vectorized paths, UserEvent tuples on the per-record ones). The input is the same events
(realistic: string and integer user ids, float and ISO timestamps) encoded three ways:
JSON lines, Confluent-framed Avro (a writer schema with unions) decoded against the
contract's reader schema, and the same Avro without a reader schema.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import time
from typing import Any, Callable

import fastavro

from transforms.batches import parse_payloads
from transforms.formats.arrow import user_event_block
from transforms.formats.avro import AvroReader, SchemalessAvroDecoder
from transforms.formats.contracts import user_event_reader_schema
from transforms.parse import parse_user_event
from transforms.validation import InvalidRecord, decode_json_object

WRITER = {"type": "record", "name": "PageView", "namespace": "com.acme", "fields": [
    {"name": "user_id", "type": ["string", "long"]},
    {"name": "action", "type": "string"},
    {"name": "page", "type": "string"},
    {"name": "timestamp", "type": ["long", "double", "string"]},
    {"name": "referrer", "type": ["null", "string"], "default": None},
]}


def events(n: int, seed: int = 7, mixed: bool = False) -> list[dict[str, Any]]:
    """The batch benchmark's shape (string user ids, integer timestamps); ``mixed``:
    half the user ids are integers and 10% of timestamps ISO strings, 20% floats."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts: Any = 1_733_000_000 + rng.randrange(6 * 3600)
        user: Any = f"user_{rng.randrange(10_000)}"
        if mixed:
            if i % 10 == 0:
                ts = f"2024-12-01T00:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
            elif i % 5 == 1:
                ts += rng.random()
            if i % 2:
                user = rng.randrange(10_000)
        out.append({"user_id": user, "action": rng.choice(["page_view", "click", "scroll"]),
                    "page": f"/products/{rng.randrange(40)}", "timestamp": ts,
                    "referrer": None if i % 3 else "https://example.com/"})
    return out


def polls(payloads: list[bytes], size: int) -> list[list[bytes]]:
    return [payloads[i:i + size] for i in range(0, len(payloads), size)]


def rate(label: str, n: int, run: Callable[[], int]) -> float:
    start = time.perf_counter()
    valid = run()
    seconds = time.perf_counter() - start
    print(f"{label:58s} {n / seconds:>12,.0f} records/s   ({valid:,} valid)")
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--poll", type=int, default=500, help="payloads per poll (a RawBatch)")
    parser.add_argument("--mixed", action="store_true",
                        help="integer and string user ids, ISO/float/int timestamps in one poll")
    parser.add_argument("--dirty", type=float, default=0.01, help="fraction of undecodable payloads")
    args = parser.parse_args()
    records = events(args.events, mixed=args.mixed)
    parsed = fastavro.parse_schema(WRITER)

    def avro(record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, record)
        return out.getvalue()

    dirty = set(random.Random(1).sample(range(len(records)), int(len(records) * args.dirty)))
    json_payloads = [json.dumps(r, separators=(",", ":")).encode() for r in records]
    avro_payloads = [avro(r) for r in records]
    for i in dirty:  # truncated messages, as a producer crash would leave them
        json_payloads[i] = json_payloads[i][:-5]
        avro_payloads[i] = avro_payloads[i][:-5]
    json_polls = polls(json_payloads, args.poll)
    avro_polls = polls(avro_payloads, args.poll)
    contract = SchemalessAvroDecoder(WRITER, user_event_reader_schema())
    plain = SchemalessAvroDecoder(WRITER)
    n = len(records)

    def vectorized(decoder_polls, block_of) -> Callable[[], int]:
        return lambda: sum(block_of(p).events.num_rows for p in decoder_polls)

    def per_record(items, decode) -> int:
        valid = 0
        for poll in items:
            for payload in poll:
                try:
                    parse_user_event(decode(payload))
                    valid += 1
                except InvalidRecord:
                    pass
        return valid

    def avro_via_json(poll: list[bytes]) -> Any:
        lines = []
        for payload in poll:
            try:
                lines.append(json.dumps(plain.decode(payload), default=str).encode())
            except InvalidRecord:
                pass  # handed over to the per-record path in a pipeline
        return parse_payloads(lines)

    reader = AvroReader(WRITER)

    def decode_alone() -> int:
        decoded = 0
        for poll in avro_polls:
            for payload in poll:
                try:
                    reader.read(payload)
                    decoded += 1
                except InvalidRecord:
                    pass
        return decoded
    print(f"{n:,} events ({'mixed' if args.mixed else 'uniform'} types, {len(dirty):,} truncated), "
          f"polls of {args.poll}")
    rate("JSON, vectorized (parse_payloads)", n, vectorized(json_polls, parse_payloads))
    rate("JSON, per record (decode_json_object + contract)", n,
         lambda: per_record(json_polls, decode_json_object))
    rate("Avro, vectorized, contract reader schema (user_event_block)", n,
         vectorized(avro_polls, lambda p: user_event_block(p, contract)))
    rate("Avro, vectorized, writer schema only (user_event_block)", n,
         vectorized(avro_polls, lambda p: user_event_block(p, plain)))
    rate("Avro -> JSON lines -> parse_payloads (the alternative)", n,
         vectorized(avro_polls, avro_via_json))
    rate("Avro, per record (decode + contract)", n, lambda: per_record(avro_polls, contract.decode))
    rate("Avro, fastavro decode alone (no contract)", n, decode_alone)


if __name__ == "__main__":
    main()
