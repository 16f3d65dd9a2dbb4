"""The vectorized (Arrow) batch path decides exactly as the per-record contract does.

The per-record parser is the reference: for random dirty inputs, every line the
vectorized path accepts must be valid with the same values, and every line it hands over
is decided by the reference itself. End to end, ``--batch_engine=arrow`` and
``--batch_engine=records`` give the same counts and the same dead letters.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines import pageviews
from beam_pipelines.testing import SyntheticEvents
from beam_pipelines.testing.files import read_jsonl_dir, window_counts
from transforms.batches import BlockParser, parse_parquet_batch, parse_payloads, split_lines
from transforms.io.files import parquet_row_payload
from transforms.parse import is_blank, parse_user_event
from transforms.validation import InvalidRecord, decode_json_object

pytestmark = pytest.mark.unit


def reference(line: bytes):
    """(user_id, action, page, timestamp, event_second) or None (rejected) or "blank"."""
    if is_blank(line):
        return "blank"
    try:
        event, second = parse_user_event(decode_json_object(line))
    except InvalidRecord:
        return None
    return (event.user_id, event.action, event.page, event.timestamp, second)


def decisions(block: bytes, parser: BlockParser | None = None) -> dict[int, object]:
    """line index -> what the vectorized path (plus the reference for handed-over lines)
    decided; a line neither a row nor handed over was skipped as blank."""
    parser = parser or BlockParser(threads=1)
    out: dict[int, object] = {}
    for first, parsed in parser.parse(block):
        for line, row in zip(parsed.lines.tolist(), parsed.events.to_pylist(), strict=True):
            out[first + line] = (row["user_id"], row["action"], row["page"], row["timestamp"],
                                 row["event_second"])
        for line, payload in parsed.handed_over:
            out[first + line] = reference(payload)
        skipped = [first + i for i in range(parsed.line_count) if first + i not in out]
        assert len(skipped) == parsed.blank
        out.update(dict.fromkeys(skipped, "blank"))
    return out


def expected(block: bytes) -> dict[int, object]:
    """line index -> the reference's decision, for every non-empty line (empty lines are
    skipped by both paths, never decided)."""
    split = split_lines(block)
    pairs = zip(split.starts.tolist(), split.ends.tolist(), strict=True)
    return {i: reference(block[start:end]) for i, (start, end) in enumerate(pairs) if end > start}


def assert_same(block: bytes, parser: BlockParser | None = None) -> None:
    got, want = decisions(block, parser), expected(block)
    # Empty lines are skipped by both paths and never decided.
    assert all(got[i] == "blank" for i in set(got) - set(want)), set(got) - set(want)
    assert set(want) <= set(got), set(want) - set(got)
    for i, decided in want.items():
        fast = got[i]
        if decided is None or decided == "blank" or fast is None or fast == "blank":
            assert fast == decided, (i, block.split(b"\n")[i], fast, decided)
        else:  # the float seconds may differ in the last bit between parsers; the second may not
            assert fast[:3] == decided[:3] and fast[4] == decided[4], (i, fast, decided)
            assert math.isclose(fast[3], decided[3], rel_tol=1e-15, abs_tol=1e-6)


# ---- random dirty JSON lines ----------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)
json_string = st.builds(lambda s, ascii_: json.dumps(s, ensure_ascii=ascii_), text, st.booleans())
in_range = st.integers(946_684_800, 4_102_444_799)
number_text = st.one_of(
    st.integers(-10, 5_000_000_000).map(str),
    st.builds(lambda s, f: f"{s}.{f}", in_range, st.text("0123456789", min_size=1, max_size=9)),
    in_range.map(lambda s: f"{s - 1}.9999999"),  # a float64 rounds it up across the second
    in_range.map(lambda s: f"{s - 1}.99999999999"),
    in_range.map(lambda s: f"{s / 1e9!r}e9"),
    st.sampled_from(["1e400", "-0", "0.0", "12345678901234567890", "NaN", "Infinity", "-Inf"]),
)
iso_text = st.builds(
    lambda d, frac, off: json.dumps(d.strftime("%Y-%m-%dT%H:%M:%S") + frac + off),
    st.datetimes(dt.datetime(1999, 12, 31), dt.datetime(2100, 1, 2)),
    st.sampled_from(["", ".5", ".123456", ".1234567"]),
    st.sampled_from(["Z", "+01:00", "-05:30", "", "z", "+0100", "+24:00"]),
)
value = st.one_of(
    json_string,
    number_text,
    iso_text,
    st.sampled_from(["true", "false", "null", "[]", "{}", '{"timestamp": "x"}', '[1, {"a": NaN}]',
                     '"2024-02-30T00:00:00Z"', '"yesterday"', '""', '" "']),
)
plain_event = st.fixed_dictionaries(
    {
        "user_id": st.one_of(json_string, st.integers(-5, 10**20).map(str), st.just("true")),
        "action": st.one_of(json_string, st.just('"page_view"')),
        "page": st.one_of(json_string, st.sampled_from(['"/a"', '"/b"'])),
        "timestamp": st.one_of(number_text, iso_text, in_range.map(str)),
    }
)


@st.composite
def json_line(draw) -> bytes:
    fields = dict(draw(plain_event))
    for name in list(fields):
        if draw(st.integers(0, 12)) == 0:
            fields[name] = draw(value)  # any value at all
        if draw(st.integers(0, 25)) == 0:
            del fields[name]
    pairs = [(json.dumps(k), v) for k, v in fields.items()]
    if draw(st.booleans()):
        pairs.append((json.dumps(draw(st.sampled_from(["x", "meta", "timestamp", "page"]))), draw(value)))
    if draw(st.integers(0, 20)) == 0:
        pairs.append(('"user\\u005fid"', draw(value)))  # an escaped key equal to user_id
    pairs = draw(st.permutations(pairs))
    colon, comma = draw(st.sampled_from([(":", ","), (": ", ", "), (" : ", " ,"), (":\t", ",")]))
    line = "{" + comma.join(f"{k}{colon}{v}" for k, v in pairs) + "}"
    raw = line.encode("utf-8")
    corruption = draw(st.integers(0, 30))
    if corruption == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif corruption == 1:
        raw = b"\xef\xbb\xbf" + raw
    elif corruption == 2:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\r", b"\x00", b"\t", b"\xc3"])) + raw[at:]
    elif corruption == 3:
        raw = raw + draw(st.sampled_from([b"{}", b' {"a":1}', b" ", b"[]", b" 5"]))
    elif corruption == 4:
        raw = draw(st.sampled_from([b"", b"   ", b"\t", b"[1,2]", b"5", b'"s"', b"null", b"\x00garbage\xff"]))
    return raw


blocks = st.lists(json_line(), min_size=1, max_size=40).map(lambda lines: b"\n".join(lines))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks, st.sampled_from([b"", b"\n", b"\r\n"]))
def test_random_dirty_lines_are_decided_as_the_record_contract_decides(block, end):
    assert_same(block + end)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(blocks, min_size=2, max_size=5))
def test_consecutive_blocks_are_decided_as_the_record_contract_decides(pieces):
    parser = BlockParser(threads=1)
    for block in pieces:
        assert_same(block + b"\n", parser)


def test_float_timestamps_floor_exactly():
    lines = [
        b'{"user_id":"u","action":"a","page":"/p","timestamp":1733000299.9999999}',  # 1733000299
        b'{"user_id":"u","action":"a","page":"/p","timestamp":1733000300.0}',
        b'{"user_id":"u","action":"a","page":"/p","timestamp":1.7330003e9}',
        b'{"user_id":"u","action":"a","page":"/p","timestamp":1733000299.5}',
    ]
    got = decisions(b"\n".join(lines))
    assert [got[i][4] for i in range(4)] == [1733000299, 1733000300, 1733000300, 1733000299]


def test_many_pieces_on_threads_keep_line_numbers():
    gen = SyntheticEvents(seed=3, rate=50.0, malformed=0.05)
    block = b"\n".join(gen.payloads(60_000)) + b"\n"
    assert len(block) > 3 * (1 << 20)  # several pieces, parsed on the pool
    parser = BlockParser(threads=2)
    try:
        assert decisions(block, parser) == decisions(block, BlockParser(threads=1))
    finally:
        parser.close()
    assert_same(block[: 400_000].rsplit(b"\n", 1)[0])


# ---- Parquet --------------------------------------------------------------------------

def test_parquet_batches_decide_as_the_per_row_path():
    batch = pa.RecordBatch.from_pydict(
        {
            "user_id": pa.array([1, None, 3, 4, 5, 6], pa.int64()),
            "action": ["a", "a", "", "a", "a", None],
            "page": ["/p", "/p", "/p", "/q", "/q", "/q"],
            "timestamp": pa.array(
                [dt.datetime(2024, 1, 1, 0, 4, 59, 999999), dt.datetime(2024, 1, 1),
                 dt.datetime(2024, 1, 1), dt.datetime(1999, 1, 1), dt.datetime(2024, 6, 1, 12),
                 dt.datetime(2024, 1, 1)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    floats = batch.set_column(3, "timestamp", pa.array([1.7e9, float("nan"), 1.7e9, 5.0, 1704067199.99, 2e9]))
    strings = batch.set_column(
        3, "timestamp", pa.array(["2024-01-01T00:00:00Z", "x", None, "2024-01-01T00:00:00", "2024-01-01T01:00:00+01:00", ""])
    )
    missing = batch.drop_columns(["page"])
    bools = batch.set_column(0, "user_id", pa.array([True, False, True, True, False, True]))
    for b in (batch, floats, strings, missing, bools):
        parsed = parse_parquet_batch(b)
        rows = b.to_pylist()
        fast = dict(zip(parsed.lines.tolist(), parsed.events.to_pylist(), strict=True))
        handed = dict(parsed.handed_over)
        assert set(fast) | set(handed) == set(range(len(rows))) and not set(fast) & set(handed)
        for i, row in enumerate(rows):
            want = reference(parquet_row_payload(row))
            if i in handed:
                assert handed[i] == parquet_row_payload(row)
                continue
            got = fast[i]
            assert want is not None and want != "blank", (i, row)
            assert (got["user_id"], got["action"], got["page"], got["event_second"]) == (
                want[0], want[1], want[2], want[4])


# ---- end to end: the two engines give the same answer --------------------------------

def _dead_letters(directory):
    return sorted(
        json.dumps({k: v for k, v in row.items() if k != "rejected_at"}, sort_keys=True)
        for row in read_jsonl_dir(directory)
    )


@pytest.mark.parametrize(
    "flags",
    [[], ["--window_size=600", "--window_period=120"], ["--action=click", "--window_size=60"]],
    ids=["tumbling", "sliding", "one-action"],
)
def test_arrow_and_records_engines_give_the_same_counts_and_dead_letters(tmp_path, flags):
    gen = SyntheticEvents(seed=9, rate=5.0, malformed=0.08)
    payloads = list(gen.payloads(6000))
    payloads[10:10] = [b"", b"  ", b'{"user_id": 7, "action": "click", "page": "/x", "timestamp": 1704067499.99999999}',
                       b'{"user_id":"u","action":"click","page":"/x","timestamp":NaN}', b'{"a":1}{"b":2}']
    path = tmp_path / "events.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"\r\n".join(payloads))
    results = {}
    for engine in ("arrow", "records"):
        out, dead = tmp_path / f"out-{engine}", tmp_path / f"dead-{engine}"
        pageviews.run([f"--input={path}", "--source=file", "--sink=jsonl", f"--output={out}",
                       f"--dead_letter={dead}", f"--batch_engine={engine}", *flags])
        results[engine] = (window_counts(read_jsonl_dir(str(out))), _dead_letters(str(dead)))
    assert results["arrow"] == results["records"]
    assert results["arrow"][0] and results["arrow"][1]


def test_bad_batch_engine_is_a_one_line_error(capsys):
    assert pageviews.main(["--batch_engine=fast"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --batch_engine: expected one of arrow|records, got 'fast'"
    )



@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30),
    crlf=st.booleans(),
    trailing_newline=st.booleans(),
    size=st.integers(min_value=1, max_value=64),
    compressed=st.booleans(),
)
def test_blocks_and_pieces_cover_the_file_exactly_with_line_numbers(
    tmp_path_factory, lines, crlf, trailing_newline, size, compressed
):
    """iter_blocks (blocks end after a newline, a line longer than a block included) and
    piece_bounds (the pool's pieces of a block) lose, repeat and renumber nothing."""
    from transforms.batches import piece_bounds
    from transforms.io.files import iter_blocks, iter_lines

    ending = b"\r\n" if crlf else b"\n"
    data = ending.join(lines) + (ending if trailing_newline and lines else b"")
    path = tmp_path_factory.mktemp("blocks") / ("events.jsonl.gz" if compressed else "events.jsonl")
    path.write_bytes(gzip.compress(data) if compressed else data)
    blocks = list(iter_blocks(str(path), size=size))
    assert b"".join(b.data for b in blocks) == data
    assert all(b.data.endswith(b"\n") for b in blocks[:-1])
    line = 1
    for block in blocks:
        assert block.first_line == line
        line += block.data.count(b"\n")
        bounds = piece_bounds(block.data, size)
        assert b"".join(block.data[a:b] for a, b in bounds) == block.data
        assert all(block.data[b - 1 : b] == b"\n" for _, b in bounds[:-1])
    expected = data.split(b"\n")
    if data.endswith(b"\n") or not data:
        expected.pop()
    expected = [e[:-1] if e.endswith(b"\r") else e for e in expected]
    assert list(iter_lines(str(path))) == list(enumerate(expected, start=1))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=300), st.booleans())
def test_count_values_matches_numpy_unique(values, sparse):
    from transforms.windowing import _count_values

    array = np.asarray(values, np.int64) * (10**6 if sparse else 1)
    found, counts = _count_values(array)
    want_found, want_counts = np.unique(array, return_counts=True)
    assert found.tolist() == want_found.tolist() and counts.tolist() == want_counts.tolist()


def test_a_byte_order_mark_is_refused_as_json_loads_refuses_it():
    with pytest.raises(ValueError) as refused:
        json.loads("\ufeff{}")
    with pytest.raises(InvalidRecord) as exc:
        decode_json_object(b"\xef\xbb\xbf{}")
    assert str(exc.value) == f"invalid JSON: {refused.value}"
    assert exc.value.code == "invalid_json"




# ---- realistic mixes: every accepted form is read vectorized ----------------------------

def _iso(seconds: int, fraction: str, offset: str, shift: int) -> str:
    moment = dt.datetime.fromtimestamp(seconds + shift, dt.timezone.utc)
    return json.dumps(moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + offset)


realistic_time = st.one_of(
    in_range.map(str),
    st.builds(lambda s, f: f"{s}.{f}", in_range, st.text("0123456789", min_size=1, max_size=6)),
    st.builds(
        lambda s, fraction, zone: _iso(s, fraction, *zone), in_range,
        st.sampled_from(["", ".5", ".123", ".123456"]),
        st.sampled_from([("Z", 0), ("+00:00", 0), ("+01:00", 3600), ("-05:00", -18000),
                         ("+05:30", 19800)])),
)
realistic_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
                         max_size=8)
extra_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), realistic_text,
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(realistic_text, inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def realistic_line(draw) -> bytes:
    """A valid event in any form the contract accepts: string or integer ids, integer,
    float or ISO-8601 times, unicode (raw or escaped), extra nested fields, any layout."""
    ascii_ = draw(st.booleans())
    uid = draw(st.one_of(st.integers(-10**18, 10**18).map(str),
                         realistic_text.map(lambda t: json.dumps(t, ensure_ascii=ascii_))))
    pairs = [('"user_id"', uid),
             ('"action"', json.dumps(draw(realistic_text), ensure_ascii=ascii_)),
             ('"page"', json.dumps("/" + draw(realistic_text), ensure_ascii=ascii_)),
             ('"timestamp"', draw(realistic_time))]
    for key, extra in draw(st.dictionaries(st.sampled_from(["meta", "ctx", "tags", "ref", "ü"]),
                                           extra_value, max_size=2)).items():
        pairs.append((json.dumps(key, ensure_ascii=ascii_), json.dumps(extra, ensure_ascii=ascii_)))
    pairs = draw(st.permutations(pairs))
    colon, comma = draw(st.sampled_from([(":", ","), (": ", ", "), (" : ", " , ")]))
    return ("{" + comma.join(f"{k}{colon}{v}" for k, v in pairs) + "}").encode("utf-8")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(realistic_line(), min_size=1, max_size=50), st.lists(json_line(), max_size=20),
       st.randoms(use_true_random=False), st.sampled_from([b"\n", b"\r\n"]))
def test_realistic_mixes_are_decided_as_the_record_contract_decides(realistic, dirty, rnd, end):
    lines = realistic + dirty
    rnd.shuffle(lines)
    block = end.join(lines) + end
    assert_same(block)
    # Every form the realistic lines use is read vectorized: none of them is handed over.
    handed = {line for _, parsed in BlockParser().parse(block) for _, line in parsed.handed_over}
    assert not handed & set(realistic)


def test_the_realistic_benchmark_profile_hands_over_only_invalid_lines(tmp_path):
    from benchmarks import datagen

    path = tmp_path / "events.jsonl"
    meta = datagen.generate(str(path), 20_000, seed=3, profile="realistic")
    block = path.read_bytes()
    valid = handed = 0
    for _, parsed in BlockParser().parse(block):
        valid += parsed.events.num_rows
        handed += len(parsed.handed_over)
        assert all(reference(line) is None for _, line in parsed.handed_over)
    assert valid == meta["events"] - meta["malformed"]
    assert handed == meta["malformed"]
    assert meta["integer_user_ids"] and meta["float_timestamps"] and meta["iso_timestamps"]
    assert_same(block[:300_000].rsplit(b"\n", 1)[0])


@pytest.mark.parametrize("line", [
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000,"page":"/q"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000,"pag\\u0065":"/q"}',
    b'{"user\\u005fid":"b","user_id":"a","action":"x","page":"/p","timestamp":1733000000}',
    b'{"user_id":null,"action":"x","page":"/p","timestamp":1733000000,"user_id":"a"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000,"user_id":null}',
    b'{"user_id":"a","action":"x","page":"/p\\ud800","timestamp":1733000000}',
    b'{"user_id":"\\udfff","action":"x","page":"/p","timestamp":1733000000}',
    b'{"user_id":"a","action":"x","page":"\\ud83d\\ude00","timestamp":1733000000}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000,"x":"\xff"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000,"x":"\xed\xa0\x80"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000,"x":1' + b"0" * 5000 + b"}",
    b'{"user_id":1' + b"0" * 5000 + b',"action":"x","page":"/p","timestamp":1733000000}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000,"x":' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000,"x":' + b"[" * 150 + b"]" * 150 + b"}",
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1' + b"0" * 400 + b"}",
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1e99999999}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":-1e-99999999}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000299.99999999999999999999}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":946684799.9999999999}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":17330003e2}',
    b'{"user_id":"a","action":"x","page":"/\\u00e0","timestamp":1733000300.0}',
    b'{"user_id":"a","action":"x","page":"/p","times\\u0074amp":1733000299.99999999,"c":{"timestamp":5}}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":5,"timestamp":1733000299.99999999}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":"2024-02-30T00:00:00Z","t":"2024-02-29T00:00:00Z"}',
    b'{"user_id":18446744073709551616,"action":"x","page":"/p","timestamp":1733000000}',
    b'{"user_id":-9223372036854775808,"action":"x","page":"/p","timestamp":1733000000}',
    b'{"user_id":-0,"action":"x","page":"/p","timestamp":1733000000}',
    b'{"user_id":1.0,"action":"x","page":"/p","timestamp":1733000000}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":"2024-02-30T00:00:00Z"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":"2024-12-31T23:59:60Z"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":"2024-12-31T23:59:59.9999999Z"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":"2024-12-31 23:59:59+01:00"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":"2024-12-31T23:59:59z"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":"2099-12-31T23:59:59-01:00"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":"2024\\u002d12-31T23:59:59Z"}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000,}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":NaN}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000,"x":-Infinity}',
    b'\xef\xbb\xbf{"user_id":"a","action":"x","page":"/p","timestamp":1733000000}',
    b'\x0c{"user_id":"a","action":"x","page":"/p","timestamp":1733000000}',
    b'\t {"user_id":"a","action":"x","page":"/p","timestamp":1733000000}\r\r \t',
    b'{"user_id":"a","action":"x","page":"/p\x7f\\u0000","timestamp":1733000000}',
    b'{"user_id":"a","action":"x","page":"/p\x1f","timestamp":1733000000}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000}{}',
    b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000} 5',
    b'[{"user_id":"a","action":"x","page":"/p","timestamp":1733000000}]',
    b"\x0b",
    b" \x0c ",
], ids=lambda line: line[:60].decode("utf-8", "replace"))
def test_where_msgspec_and_pythons_json_could_differ_the_contract_decides(line):
    assert_same(line + b"\n")
    assert_same(b"\n".join([line] * 3))
    parsed = parse_payloads([line])
    got = reference(line)
    if got is None:
        assert parsed.handed_over == [(0, line)]
    elif got == "blank":
        assert parsed.blank == 1


def test_a_vectorized_parser_failure_hands_every_line_over(monkeypatch, caplog):
    import transforms.batches as batches

    def broken(lines):
        raise RuntimeError("a bug")

    monkeypatch.setattr(batches, "_parse_lines", broken)
    lines = [b'{"user_id":"a","action":"x","page":"/p","timestamp":1733000000}', b"", b"x"]
    parsed = batches.parse_lines(lines)
    assert parsed.events.num_rows == 0 and parsed.blank == 1
    assert parsed.handed_over == [(0, lines[0]), (2, lines[2])]
    assert "the per-record contract decides each of them" in caplog.text


def test_a_vectorized_parquet_failure_hands_every_row_over(monkeypatch):
    import transforms.batches as batches

    def broken(*columns):
        raise RuntimeError("a bug")

    monkeypatch.setattr(batches, "_check_columns", broken)
    batch = pa.RecordBatch.from_pydict({"user_id": ["u", "v"], "action": ["a", "a"],
                                        "page": ["/p", "/q"], "timestamp": [1733000000, 1]})
    parsed = batches.parse_parquet_batch(batch)
    assert parsed.events.num_rows == 0
    assert [i for i, _ in parsed.handed_over] == [0, 1]
