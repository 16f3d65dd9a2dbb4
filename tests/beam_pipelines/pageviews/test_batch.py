"""Batch runs of the pageviews pipeline over dirty files, checked against a reference."""

import base64
import datetime as dt
import gzip
import json
import math
import os

import pytest

from beam_pipelines import pageviews
from beam_pipelines.testing import SyntheticEvents
from beam_pipelines.testing.files import read_jsonl_dir, read_parquet_dir, window_counts

pytestmark = pytest.mark.unit

# Hand-written edge cases: (line bytes, is it valid?)
EDGE_CASES = [
    (b'{"user_id": 1, "action": "click", "page": "/a", "timestamp": 1733000299.9999999}', True),
    (b'{"user_id": "u", "action": "v", "page": "/a", "timestamp": 1733000300}', True),
    (b'{"user_id": "u", "action": "v", "page": "/a", "timestamp": "2024-11-30T21:55:00-02:00"}', True),
    (b'{"user_id": "u", "action": "v", "page": "/b", "timestamp": "2024-11-30T23:55:00Z", "x": 1}', True),
    (b"", None),  # blank: skipped, neither counted nor dead-lettered
    (b"   ", None),
    (b'{"user_id": true, "action": "v", "page": "/a", "timestamp": 1733000000}', False),
    (b'{"user_id": "u", "action": "v", "page": "/a", "timestamp": "2024-11-30T23:55:00"}', False),
    (b'{"user_id": "u", "action": "v", "page": "", "timestamp": 1733000000}', False),
    (b'{"user_id": "u", "action": null, "page": "/a", "timestamp": 1733000000}', False),
    (b'{"user_id": "u", "action": "v", "page": "/a", "timestamp": 4102444800}', False),
    (b"[1, 2, 3]", False),
    (b'{"user_id": "u", "act', False),
    (b"\x00garbage\xff\xfe", False),
    (b'{"user_id": "u", "action": "v", "page": "/a", "timestamp": "1733000000"}', False),
]


def reference(lines, size=300):
    """An independent reading of the input contract: counts and the bad line numbers."""
    counts, bad = {}, []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"), parse_float=lambda s: __import__("decimal").Decimal(s))
            uid, action, page, ts = obj["user_id"], obj["action"], obj["page"], obj["timestamp"]
            assert isinstance(obj, dict)
            assert (isinstance(uid, str) and uid) or (type(uid) is int)
            assert isinstance(action, str) and action and isinstance(page, str) and page
            if isinstance(ts, str):
                moment = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
                assert moment.tzinfo is not None
                whole = math.floor(moment.timestamp())
            else:
                assert not isinstance(ts, bool)
                whole = math.floor(ts)
            assert 946_684_800 <= whole < 4_102_444_800
        except Exception:
            bad.append(number)
            continue
        start = whole - whole % size
        key = (dt.datetime.fromtimestamp(start, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), page)
        counts[key] = counts.get(key, 0) + 1
    return counts, bad


@pytest.fixture(scope="module")
def dirty_lines():
    generator = SyntheticEvents(seed=3, rate=1.0, out_of_order=0.1, max_delay=400, malformed=0.05)
    lines = list(generator.payloads(3000))
    for index, (line, _) in enumerate(EDGE_CASES):
        lines.insert(index * 150, line)
    lines[10] = lines[10] + b"\r"  # a CRLF line ending is not part of the payload
    return lines


def write_lines(path, lines, compress=False):
    data = b"\n".join(lines) + b"\n"
    with (gzip.open if compress else open)(path, "wb") as handle:
        handle.write(data)


def test_backfill_counts_and_dead_letters_match_the_reference(tmp_path, dirty_lines):
    write_lines(tmp_path / "part-1.jsonl", dirty_lines[:1500])
    write_lines(tmp_path / "part-2.jsonl.gz", dirty_lines[1500:], compress=True)
    out, dead = tmp_path / "out", tmp_path / "dead"
    argv = [
        "--source=file", f"--input={tmp_path}/part-*", "--sink=jsonl", f"--output={out}",
        f"--dead_letter={dead}",
    ]
    pageviews.run(argv)

    expected_counts, bad_1 = reference(dirty_lines[:1500])
    counts_2, bad_2 = reference(dirty_lines[1500:])
    for key, value in counts_2.items():
        expected_counts[key] = expected_counts.get(key, 0) + value
    assert window_counts(read_jsonl_dir(str(out), "pageviews")) == expected_counts

    letters = read_jsonl_dir(str(dead), "dead_letters")
    got_bad = sorted((os.path.basename(d["origin"]["file"]), d["origin"]["line"]) for d in letters)
    assert got_bad == sorted(
        [("part-1.jsonl", n) for n in bad_1] + [("part-2.jsonl.gz", n) for n in bad_2]
    )
    assert all(d["reason"] and d["step"] == "parse" and d["pipeline"] == "pageviews" for d in letters)
    # The original payload comes back byte for byte (base64 when it is not UTF-8).
    by_line = {(os.path.basename(d["origin"]["file"]), d["origin"]["line"]): d for d in letters}
    for number in bad_1:
        letter = by_line[("part-1.jsonl", number)]
        payload = (
            base64.b64decode(letter["payload"])
            if letter["payload_encoding"] == "base64"
            else letter["payload"].encode()
        )
        assert payload == dirty_lines[number - 1].rstrip(b"\r")

    # Re-running the backfill replaces its output: same rows, no duplicates.
    pageviews.run(argv)
    assert window_counts(read_jsonl_dir(str(out), "pageviews")) == expected_counts
    assert len(read_jsonl_dir(str(out), "pageviews")) == len(expected_counts)
    assert len(read_jsonl_dir(str(dead), "dead_letters")) == len(bad_1) + len(bad_2)


def test_parquet_in_parquet_out_and_rerun_replaces_stale_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    events = list(SyntheticEvents(seed=5, rate=0.5).events(400))
    events.append({"user_id": "u", "action": "v", "page": None, "timestamp": 1_704_067_200})
    pq.write_table(pa.Table.from_pylist(events), tmp_path / "events.parquet")
    out = tmp_path / "out"
    os.makedirs(out)
    stale = out / "pageviews-00000-of-00007.parquet"
    stale.write_bytes(b"left over from an older run")
    argv = ["--source=file", f"--input={tmp_path}/events.parquet", "--sink=parquet", f"--output={out}",
            f"--dead_letter={tmp_path}/dead"]
    pageviews.run(argv)

    rows = read_parquet_dir(str(out), "pageviews")
    assert not stale.exists()
    assert sum(r["count"] for r in rows) == 400
    assert len({(r["window_start"], r["page"]) for r in rows}) == len(rows)
    assert rows[0]["window_start"].tzinfo is not None
    [letter] = read_jsonl_dir(str(tmp_path / "dead"))
    assert letter["origin"]["row"] == 401 and "page" in letter["reason"]


def test_without_dead_letter_flag_rejections_are_reported(tmp_path, capsys):
    write_lines(tmp_path / "in.jsonl", [line for line, _ in EDGE_CASES])
    pageviews.run(["--source=file", f"--input={tmp_path}/in.jsonl"])
    captured = capsys.readouterr()
    assert "page views per window" in captured.out
    assert "4 valid records, 9 rejected" in captured.err
    assert "--dead_letter" in captured.err
