"""Poison records: hostile JSON never crashes a job; each line is one count or one dead letter.

:func:`hostile_line` writes lines an attacker, a broken producer or bit rot could: huge
and tiny numbers in every field (a 400-digit timestamp, ``1e99999999``, 4,301-digit
integers that Python's ``json`` refuses), every JSON type in every field, ``NaN`` and
``Infinity``, deep nesting, odd whitespace and control characters, lone surrogates, raw
invalid UTF-8, byte-order marks, duplicate and escaped keys, truncation and trailing
garbage. Property tests feed them to the pure functions of both engines (the per-record
contract and the vectorized parser); end-to-end tests run a fixed corpus through
``pageviews`` with ``--batch_engine=arrow`` and ``records`` from every file kind
(JSON lines, gzip, bzip2, zstd, xz, Parquet) and the synthetic source. The brokers' sources (Kafka
bounded and streaming, Pub/Sub, Event Hubs) take the same corpus in
``tests/beam_pipelines/pageviews/test_poison_records_brokers.py``.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import json
import lzma
import random
from decimal import Decimal
from typing import Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines import pageviews
from beam_pipelines.metrics import counter_total
from beam_pipelines.testing import SyntheticEvents
from beam_pipelines.testing.files import read_jsonl_dir, window_counts
from tests.transforms.test_batches import assert_same, reference
from transforms.batches import parse_json_block, parse_payloads
from transforms.contracts import USER_EVENTS, parse_reading
from transforms.parse import parse_or_reject, parse_user_event
from transforms.records import DeadLetter
from transforms.validation import InvalidRecord

pytestmark = pytest.mark.unit

T = 1_733_000_000

# ---- the hostile line generator ----------------------------------------------------------

_NUMBERS = [
    "1" + "0" * 399, "-1" + "0" * 399, "9" * 20, "1" + "0" * 4299, "1" + "0" * 4300,
    "1e400", "-1e400", "1e99999999", "-1e-99999999", "1e-400", "4.9e-324", "-0", "-0.0", "0",
    "1.7976931348623157e308", "1733000299.9999999", "1733000299.99999999999999999999",
    "946684799.9999999999", "4102444799.9999999", "17330003e2", "1.733e9", "1733000000.5",
    "9223372036854775807", "-9223372036854775808", "18446744073709551616", str(T), str(T + 7),
]
_STRINGS = [
    '""', '" "', '"\\u0000"', '"\\ud800"', '"\\udfff"', '"a\\udc00b"', '"\\ud83d\\ude00"',
    '"caf\\u00e9"', '"café"', '"\\t"', '"\\"\\\\"', '"' + "x" * 10_000 + '"',
    '"2024-11-30T21:53:20+01:00"', '"2024-11-30T20:53:20Z"', '"2024-11-30T20:53:20.1234567Z"',
    '"2024-02-30T00:00:00Z"', '"2024-01-01T24:00:00Z"', '"2024-01-01T00:00:00"',
    '"9999-12-31T23:59:59-23:59"', '"0001-01-01T00:00:00+23:59"', '"20241130T205320Z"',
    '"yesterday"', '"1733000000"', '"NaN"', '"/p"', '"view"', '"u1"',
]
_RAW_STRING_BYTES = [b'"\xff"', b'"\xc3"', b'"\xed\xa0\x80"', b'"a\x01b"', b'"a\tb"', b'"\x7f"',
                     b'"\xef\xbb\xbf"', b'"\xc2\xa0"']
_OTHERS = ["true", "false", "null", "[]", "{}", "[1,[2,[3]]]", '{"a":{"b":[null]}}',
           "NaN", "Infinity", "-Infinity", "nan", "[NaN]", '{"a":1,}', "[1,]", "01", "+1", ".5",
           "1.", "--1", "0x10", "'s'"]
_SPACES = [b"", b"", b"", b" ", b"\t", b"\r", b"\r\n"[:1], b" \t ", b"\x0b", b"\x0c", b"\xc2\xa0",
           b"\x00"]
_VALID = {"user_id": ['"u1"', "42", '"ü"'], "action": ['"view"', '"click"'],
          "page": ['"/p"', '"/caf\\u00e9"', '"/ü"'], "timestamp": [str(T), f"{T}.25",
                                                                   '"2024-11-30T20:53:20Z"']}


def _value(rnd: random.Random) -> bytes:
    kind = rnd.random()
    if kind < 0.3:
        return rnd.choice(_NUMBERS).encode()
    if kind < 0.6:
        return rnd.choice(_STRINGS).encode("utf-8", "surrogatepass")
    if kind < 0.7:
        return rnd.choice(_RAW_STRING_BYTES)
    if kind < 0.8:
        depth = rnd.choice([5, 150, 600, 1500, 5000])
        return b"[" * depth + b"]" * depth
    return rnd.choice(_OTHERS).encode()


def hostile_line(rnd: random.Random) -> bytes:
    """One hostile line (no raw newline); some are valid."""
    fields = []
    for name, valid in _VALID.items():
        if rnd.random() < 0.05:
            continue  # missing
        value = _value(rnd) if rnd.random() < 0.12 else rnd.choice(valid).encode("utf-8")
        key = rnd.choice([name, name, name, name.replace("_", "\\u005f").replace("a", "\\u0061")])
        fields.append((key.encode(), value))
    for _ in range(rnd.choice([0, 0, 1, 2])):
        fields.append((rnd.choice([b"x", b"meta", b"", "ü".encode(), b"\\ud800"]), _value(rnd)))
    if rnd.random() < 0.1 and fields:  # a duplicate key: the last one wins
        key, _ = rnd.choice(fields)
        fields.append((key, _value(rnd)))
    rnd.shuffle(fields)

    def space() -> bytes:
        return rnd.choice(_SPACES) if rnd.random() < 0.05 else b""

    body = b",".join(space() + b'"' + k + b'"' + space() + b":" + space() + v + space()
                     for k, v in fields)
    line = space() + b"{" + body + b"}" + space()
    damage = rnd.random()
    if damage < 0.04:
        line = line[: rnd.randrange(len(line) + 1)]
    elif damage < 0.06:
        line = b"\xef\xbb\xbf" + line
    elif damage < 0.08:
        line += rnd.choice([b"{}", b" x", b",", b"\x00", b"]"])
    elif damage < 0.1:
        line = rnd.choice([b"[" + line + b"]", _value(rnd), b"", b"   ", b"\x00\xff garbage"])
    return line.replace(b"\n", b"\\n")


def hostile_lines(count: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    return [hostile_line(rnd) for _ in range(count)]


hostile = st.randoms(use_true_random=False).map(hostile_line)


# ---- pure functions: never an exception, the same decision on both engines -------------

def _check_one(line: bytes) -> None:
    decided = parse_or_reject(parse_user_event, line)
    if isinstance(decided, InvalidRecord):
        assert decided.code != "parse_failed", (line[:200], str(decided))
        letter = DeadLetter.of("pageviews", "parse", str(decided), line, {"source": "test"},
                               decided.code)
        json.dumps(letter.to_json_dict(), ensure_ascii=False).encode("utf-8")  # writable
        assert len(str(decided)) < 1_000
    else:
        event, second = decided
        for text in (event.user_id, event.action, event.page):
            text.encode("utf-8")  # every sink can write what was accepted
        assert 946_684_800 <= second < 4_102_444_800
    reading = parse_or_reject(parse_reading, line)
    assert not isinstance(reading, InvalidRecord) or reading.code != "parse_failed"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile, min_size=1, max_size=30))
def test_hostile_lines_are_decided_without_an_exception_on_both_engines(lines):
    for line in lines:
        _check_one(line)
    assert_same(b"\n".join(lines) + b"\n")  # the vectorized path decides as the reference
    parsed = parse_payloads(lines)
    assert parsed.events.num_rows + len(parsed.handed_over) + parsed.blank == len(lines)


@pytest.mark.parametrize("line", [
    b'{"user_id":"u","action":"a","page":"/p","timestamp":1' + b"0" * 399 + b"}",
    b'{"user_id":"u","action":"a","page":"/p","timestamp":1e99999999}',
    b'{"user_id":"u","action":"a","page":"/p","timestamp":-1e-99999999}',
    b'{"user_id":"u","action":"a","page":"/\\ud800","timestamp":1733000000}',
    b'{"DeviceId":"d","Temperature":1' + b"0" * 400 + b',"Humidity":1,"EventTime":"2024-01-01T00:00:00Z"}',
], ids=["400-digit-timestamp", "huge-exponent", "tiny-exponent", "lone-surrogate", "iot-huge-number"])
def test_the_poison_records_of_issue_20_are_dead_letters(line):
    _check_one(line)
    decided = parse_or_reject(parse_user_event, line)
    assert isinstance(decided, InvalidRecord)
    assert decided.code in {"out_of_range", "invalid_text", "missing_field"}
    assert_same(line)


@pytest.mark.parametrize("timestamp", ['"' + "a" * 10_000 + '"', '"2024-01-01T00:00:00' + "0" * 10_000 + 'Z"',
                                       '"1.' + "1" * 10_000 + '"'], ids=["text", "iso", "digits"])
def test_a_huge_timestamp_string_keeps_its_reason_short(timestamp):
    """Found by the property test: the reason repeated a 10,000-character value."""
    line = ('{"user_id":"u","action":"a","page":"/p","timestamp":' + timestamp + "}").encode()
    _check_one(line)
    assert "(10" in str(parse_or_reject(parse_user_event, line))  # its length, not the value
    assert_same(line)


def test_a_parse_function_that_raises_gives_a_parse_failed_dead_letter():
    def buggy(obj):
        return 1 / 0

    decided = parse_or_reject(buggy, b'{"a": 1}')
    assert isinstance(decided, InvalidRecord) and decided.code == "parse_failed"
    assert str(decided) == "the parse step failed on this record: ZeroDivisionError: division by zero"


def test_exact_decimal_floors_are_kept_for_huge_exponents():
    decided = parse_or_reject(parse_user_event, b'{"user_id":"u","action":"a","page":"/p",'
                                                b'"timestamp":1733000299.99999999999999999999}')
    assert not isinstance(decided, InvalidRecord) and decided[1] == 1733000299
    assert Decimal("1e99999999") > 4_102_444_800  # the comparison the range check makes


# ---- end to end: every file kind and the synthetic source, both engines ------------------

CORPUS = hostile_lines(600, seed=20)


def _expected(lines: list[bytes]) -> tuple[int, int]:
    """(valid, rejected) as the per-record contract decides ``lines`` (blanks skipped)."""
    decided = [reference(line) for line in lines]
    return (sum(1 for d in decided if d not in (None, "blank")),
            sum(1 for d in decided if d is None))


def _letters(directory) -> list[str]:
    return sorted(json.dumps({k: v for k, v in row.items() if k != "rejected_at"}, sort_keys=True)
                  for row in read_jsonl_dir(str(directory)))


def _run_pageviews(flags: list[str], out, dead, engine: Optional[str]):
    engine_flag = [f"--batch_engine={engine}"] if engine else []  # files and Kafka only
    result = pageviews.run([*flags, "--sink=jsonl", f"--output={out}", f"--dead_letter={dead}",
                            *engine_flag, "--window_size=60"])
    counts = window_counts(read_jsonl_dir(str(out)))
    return result, counts, _letters(dead)


def _write(path, lines: list[bytes]) -> None:
    data = b"\n".join(lines) + b"\n"
    opener = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
              ".zst": zstandard.ZstdCompressor().compress}.get(path.suffix, lambda d: d)
    path.write_bytes(opener(data))


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz", "events.jsonl.bz2",
                                  "events.jsonl.zst", "events.jsonl.xz"])
def test_hostile_files_give_one_count_or_one_dead_letter_per_line_on_both_engines(tmp_path, name):
    path = tmp_path / name
    _write(path, CORPUS)
    valid, rejected = _expected(CORPUS)
    assert valid > 50 and rejected > 200
    seen = {}
    for engine in ("arrow", "records"):
        result, counts, letters = _run_pageviews(
            ["--source=file", f"--input={path}"], tmp_path / f"out-{engine}",
            tmp_path / f"dead-{engine}", engine)
        assert sum(counts.values()) == valid
        assert len(letters) == rejected
        assert counter_total(result, "pageviews", "events_dead_lettered") == rejected
        assert all(json.loads(letter)["reason_code"] != "parse_failed" for letter in letters)
        seen[engine] = (counts, letters)
    assert seen["arrow"] == seen["records"]


def _hostile_parquet_batches() -> Iterator[pa.Table]:
    rnd = random.Random(5)
    strings = [s.encode("utf-8", "surrogatepass") for s in _STRINGS] + _RAW_STRING_BYTES
    n = 200

    def pick(options):
        return [rnd.choice(options) for _ in range(n)]

    floats = [1.7e9, float("nan"), float("inf"), -float("inf"), 1e300, -0.0, 5e-324, T + 0.5,
              4102444799.9999995, 946684799.9999999, None]
    yield pa.table({"user_id": pa.array(pick([b"u", b"", b"\xff", None, b"\xed\xa0\x80"]), pa.binary()),
                    "action": pick(["view", "", None]), "page": pick(["/p", "/ü", "", None]),
                    "timestamp": pa.array(pick(floats), pa.float64())})
    yield pa.table({"user_id": pa.array(pick([2**63 - 1, -(2**63), 0, None]), pa.int64()),
                    "action": pick(["view"]), "page": pick(["/p"]),
                    "timestamp": pa.array(pick([2**63 - 1, -(2**63), T, 0, None]), pa.int64())})
    yield pa.table({"user_id": pick(["u"]), "action": pick(["view"]), "page": pick(["/p"]),
                    "timestamp": pa.array(pick(strings + [None]), pa.binary())})
    yield pa.table({"user_id": pick(["u"]), "action": pick(["view"]), "page": pick(["/p"]),
                    "timestamp": pa.array(pick([-(2**62), 0, T * 1_000_000, 2**62, None]),
                                          pa.timestamp("us", tz="UTC"))})
    yield pa.table({"user_id": pick(["u"]), "action": pa.array(pick([[1, 2], [], None]),
                                                               pa.list_(pa.int64())),
                    "page": pa.array(pick([{"a": 1}, None]), pa.struct([("a", pa.int64())])),
                    "timestamp": pick([T])})


@pytest.mark.parametrize("index", range(5))
def test_hostile_parquet_rows_give_one_count_or_one_dead_letter_per_row(tmp_path, index):
    from transforms.io.files import parquet_row_payload, parquet_rows

    table = list(_hostile_parquet_batches())[index]
    path = tmp_path / "events.parquet"
    pq.write_table(table, path)
    valid, rejected = _expected([parquet_row_payload(row) for row in parquet_rows(table)])
    seen = {}
    for engine in ("arrow", "records"):
        _, counts, letters = _run_pageviews(["--source=file", f"--input={path}"],
                                            tmp_path / f"out-{engine}", tmp_path / f"dead-{engine}",
                                            engine)
        assert (sum(counts.values()), len(letters)) == (valid, rejected)
        seen[engine] = (counts, letters)
    assert seen["arrow"] == seen["records"]


class HostileEvents(SyntheticEvents):
    """The synthetic source, emitting the hostile corpus."""

    def payloads(self, n: int, first: int = 0):
        for i in range(first, first + n):
            yield CORPUS[i % len(CORPUS)]


def test_hostile_synthetic_events_give_one_count_or_one_dead_letter_each(tmp_path, monkeypatch):
    monkeypatch.setattr(pageviews.PAGEVIEWS, "contract",
                        dataclasses.replace(USER_EVENTS, generator=HostileEvents))
    valid, rejected = _expected(CORPUS)
    # The synthetic source is parsed record by record: --batch_engine does not apply to it.
    result, counts, letters = _run_pageviews(
        ["--source=synthetic", f"--synthetic_events={len(CORPUS)}"], tmp_path / "out",
        tmp_path / "dead", None)
    assert (sum(counts.values()), len(letters)) == (valid, rejected)


def test_a_hostile_block_parses_as_one_block_and_as_payloads_alike():
    block = parse_json_block(b"\n".join(CORPUS))
    payloads = parse_payloads(CORPUS)
    assert block.lines.tolist() == payloads.lines.tolist()
    assert block.events.equals(payloads.events)


@pytest.mark.parametrize("engine", ["arrow", "records"])
def test_the_poison_timestamp_of_issue_20_in_a_file_is_one_dead_letter(tmp_path, engine):
    """Issue 20.1 as it was found, in a file: a 400-digit integer timestamp between 2,001
    good lines crashed the run (OverflowError); it is one dead letter, the rest counted."""
    def good(i: int) -> bytes:
        return json.dumps({"user_id": i, "action": "view", "page": f"/p{i % 3}",
                           "timestamp": T + i % 5}).encode()

    poison = b'{"user_id": 1, "action": "view", "page": "/p0", "timestamp": 1' + b"0" * 400 + b"}"
    path = tmp_path / "events.jsonl"
    _write(path, [good(i) for i in range(1000)] + [poison] + [good(i) for i in range(1000, 2001)])
    result, counts, letters = _run_pageviews(["--source=file", f"--input={path}"],
                                             tmp_path / "out", tmp_path / "dead", engine)
    assert sum(counts.values()) == 2001
    [letter] = [json.loads(letter) for letter in letters]
    assert letter["reason_code"] == "out_of_range" and letter["origin"]["line"] == 1001, letter
    assert counter_total(result, "pageviews", "events_dead_lettered") == 1
