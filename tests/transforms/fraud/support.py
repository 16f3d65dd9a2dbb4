"""Shared helpers of the fraud tests: lines, rules files, and running the engine three ways
(plain Python, a batch pipeline, a TestStream in event-time order)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream

from beam_pipelines.testing.collect import collect
from transforms.fraud import DecideTransactions, Engine, RuleSet, load_rules, parse_transaction
from transforms.records import RawRecord
from transforms.validation import InvalidRecord, decode_json_object

from .reference import Result, parse_line

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
INPUT = "input.jsonl"


class Raw(str):
    """A number written verbatim into a JSON line (``Raw("0.1")`` -> ``0.1``)."""


def tx_line(tx_id: str, card: Any = "card-1", amount: Any = 10, t: Any = T0, *, lat: Any = 0,
            lon: Any = 0, merchant: Any = "m-1", currency: Any = "EUR", country: Any = "DE",
            **extra: Any) -> bytes:
    """One transaction as a JSON line; :class:`Raw` values are written as bare numbers."""
    obj = {"tx_id": tx_id, "card_id": card, "amount": amount, "currency": currency,
           "merchant": merchant, "country": country, "lat": lat, "lon": lon, "timestamp": t,
           **extra}
    text = json.dumps(obj)
    for name, value in obj.items():
        if isinstance(value, Raw):
            text = text.replace(f'"{name}": "{value}"', f'"{name}": {value}')
    return text.encode()


def write_rules(directory: Path, rules: list[dict[str, Any]], name: str = "rules.json") -> str:
    path = directory / name
    path.write_text(json.dumps(rules, indent=1))
    return str(path)


def raw_records(lines: Iterable[bytes]) -> list[RawRecord]:
    return [RawRecord(line, {"source": "file", "file": INPUT, "line": number})
            for number, line in enumerate(lines, start=1)]


def table(decisions) -> dict[str, tuple]:
    """tx_id -> (decision, rules, timestamp, card_id), from Decisions or reference dicts."""
    out = {}
    for d in decisions:
        d = d._asdict() if hasattr(d, "_asdict") else d
        assert d["tx_id"] not in out, f"two decisions for {d['tx_id']}"
        out[d["tx_id"]] = (d["decision"], list(d["rules"]), d["timestamp"], d["card_id"])
    return out


def engine_in_order(lines: list[bytes], rules: RuleSet, **engine_args: Any) -> list:
    """The engine in plain Python on the valid lines sorted by (event time, line)."""
    valid = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            valid.append((parse_transaction(decode_json_object(line))[0], number))
        except InvalidRecord:
            pass
    valid.sort(key=lambda pair: (pair[0].timestamp, pair[1]))
    return list(Engine(rules, **engine_args).decide_in_order(tx for tx, _ in valid))


def run_batch(lines: list[bytes], rules: RuleSet, **args: Any):
    """(decisions, dead letters) of a batch pipeline over the lines in file order."""
    pipeline = beam.Pipeline(options=PipelineOptions())
    result = (pipeline | beam.Create(raw_records(lines), reshuffle=False)
              | DecideTransactions(rules, streaming=False, **args))
    decisions, dead = collect(result.decisions), collect(result.dead_letters)
    pipeline.run().wait_until_finish()
    return decisions.items, dead.items


def event_time_order(lines: list[bytes]) -> list[RawRecord]:
    """The lines as a stream keyed by card would deliver them: valid ones in (event time,
    line) order, each invalid one where it was relative to its predecessor."""
    records = raw_records(lines)
    keyed = []
    last = (-math.inf, 0)
    for record in records:
        tx = parse_line(record.payload) if record.payload.strip() else None
        if tx is not None:
            last = (tx["t"], record.origin["line"])
        keyed.append((last, record.origin["line"], record))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [record for _, _, record in keyed]


def run_stream(records: list[RawRecord], rules: RuleSet, *, chunk: int = 3,
               watermarks: bool = True, **args: Any):
    """(decisions, dead letters) of a streaming pipeline fed ``records`` in this order by a
    TestStream, ``chunk`` at a time; the watermark follows the event times when
    ``watermarks`` (so the state-expiry timers fire along the way)."""
    stream = TestStream()
    watermark = -math.inf
    for start in range(0, len(records), chunk):
        part = records[start:start + chunk]
        if watermarks:
            times = [tx["t"] for r in part if (tx := parse_line(r.payload)) is not None]
            if times and math.floor(min(times)) > watermark:  # TestStream: strictly forward
                watermark = math.floor(min(times))
                stream = stream.advance_watermark_to(watermark)
        stream = stream.add_elements(part)
    stream = stream.advance_watermark_to_infinity()
    pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
    result = pipeline | stream | DecideTransactions(rules, streaming=True, **args)
    decisions, dead = collect(result.decisions), collect(result.dead_letters)
    pipeline.run().wait_until_finish()
    return decisions.items, dead.items


def expected(reference: Result) -> dict[str, tuple]:
    return table(reference.decisions)


__all__ = ["T0", "Raw", "engine_in_order", "event_time_order", "expected", "load_rules", "raw_records",
           "run_batch", "run_stream", "table", "tx_line", "write_rules"]
