"""A truncated archive fails the run with one line naming the file (exit code 1), and the
previous output (result shards and dead letters, JSON lines or Parquet) stays in place."""

import bz2
import gzip
import os

import pytest
import zstandard

from beam_pipelines import pageviews
from beam_pipelines.testing import SyntheticEvents
from beam_pipelines.testing.files import read_jsonl_dir

pytestmark = pytest.mark.unit

COMPRESS = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "zst": lambda data: zstandard.ZstdCompressor().compress(data),
}
LINES = 20_000


def lines(count=LINES, seed=3):
    generator = SyntheticEvents(seed=seed, malformed=0.02)
    return generator, list(generator.payloads(count))


def snapshot(directory):
    return {
        os.path.relpath(os.path.join(root, name), directory):
            open(os.path.join(root, name), "rb").read()
        for root, _dirs, names in os.walk(directory) for name in names
    }


@pytest.mark.parametrize("engine", ["arrow", "records"])
@pytest.mark.parametrize("ext", ["gz", "bz2", "zst"])
def test_half_an_archive_fails_the_run_and_keeps_the_previous_output(tmp_path, capsys, ext, engine):
    generator, payloads = lines()
    data = b"".join(p + b"\n" for p in payloads)
    events = tmp_path / f"events.jsonl.{ext}"
    events.write_bytes(COMPRESS[ext](data))
    out, dead = tmp_path / "out", tmp_path / "dead"
    argv = ["--source=file", f"--input={events}", "--sink=jsonl", f"--output={out}",
            f"--dead_letter={dead}", f"--batch_engine={engine}"]

    assert pageviews.main(argv) == 0
    capsys.readouterr()
    # The intact archive counts exactly: every valid event, every bad line dead-lettered.
    assert sum(row["count"] for row in read_jsonl_dir(str(out))) == sum(
        1 for _ in generator.events(LINES))
    assert len(read_jsonl_dir(str(dead))) == LINES - sum(1 for _ in generator.events(LINES)) > 0
    before = snapshot(out), snapshot(dead)

    compressed = events.read_bytes()
    events.write_bytes(compressed[: len(compressed) // 2])  # a partly uploaded partition
    assert pageviews.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: --input: {events}: truncated"), err[0]
    assert (snapshot(out), snapshot(dead)) == before  # nothing replaced, no beam-temp-* left


def test_half_an_archive_keeps_previous_parquet_shards(tmp_path, capsys):
    generator, payloads = lines(5000)
    events = tmp_path / "events.jsonl.gz"
    compressed = gzip.compress(b"".join(p + b"\n" for p in payloads))
    events.write_bytes(compressed)
    out = tmp_path / "out"
    argv = ["--source=file", f"--input={events}", "--sink=parquet", f"--output={out}"]
    assert pageviews.main(argv) == 0
    capsys.readouterr()
    before = snapshot(out)
    events.write_bytes(compressed[: len(compressed) * 3 // 4])
    assert pageviews.main(argv) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --input: {events}: truncated gzip file"), line
    assert snapshot(out) == before
