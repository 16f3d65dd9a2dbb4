"""The progress line of a backfill on a terminal (issue 14: long backfills show progress)."""

from __future__ import annotations

import io
import json

import apache_beam as beam
import pytest

from beam_pipelines.skeleton.progress import input_size, progress_line, shown
from beam_pipelines.testing.polling import wait_for
from transforms.io.files import ReadFileBlocks, ReadLinesWithOrigin
from transforms.io.progress import READ_PROGRESS, ReadSnapshot

pytestmark = pytest.mark.unit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_says_how_much_of_what_how_fast_and_how_long_still():
    line = progress_line(ReadSnapshot(bytes=120_300_000, records=1_310_000, files=1),
                         elapsed=3.0, total_bytes=512_000_000, total_files=4)
    assert line == ("read 120.3 MB of 512.0 MB (23%), 1.31M records, file 2 of 4, 40.1 MB/s, "
                    "ETA 0:09")
    # compressed input: the size of the lines is not known up front, so no share and no ETA
    assert progress_line(ReadSnapshot(2_000, 30, 0), 2.0, None, 1) == \
        "read 2.0 KB, 30 records, 1.0 KB/s"


def test_input_size_counts_plain_files_only(tmp_path):
    (tmp_path / "a.jsonl").write_text("x" * 10)
    (tmp_path / "b.jsonl").write_text("y" * 5)
    assert input_size(str(tmp_path / "*.jsonl")) == (15, 2)
    (tmp_path / "c.jsonl.gz").write_bytes(b"")
    assert input_size(str(tmp_path)) == (None, 3)
    assert input_size(str(tmp_path / "missing*.jsonl")) == (None, 0)


def test_shown_on_a_terminal_while_reading_then_cleared(tmp_path):
    (tmp_path / "in.jsonl").write_text("{}\n" * 4)
    screen = Terminal()
    with shown(str(tmp_path / "in.jsonl"), stream=screen, every=0.01):
        READ_PROGRESS.add(bytes=12, records=4)
        wait_for(lambda: "read 12 B of 12 B (100%), 4 records" in screen.getvalue(),
                 what="the progress line")
        READ_PROGRESS.add(files=1)  # every file read: the line goes
        wait_for(lambda: screen.getvalue().endswith("\r\x1b[K"), what="the line cleared")


def test_nothing_when_piped(tmp_path):
    (tmp_path / "in.jsonl").write_text("{}\n")
    piped = io.StringIO()
    with shown(str(tmp_path / "in.jsonl"), stream=piped, every=0.01):
        READ_PROGRESS.add(bytes=3, records=1, files=1)
    assert piped.getvalue() == ""


@pytest.mark.parametrize("read", [ReadLinesWithOrigin, ReadFileBlocks])
def test_both_file_readers_add_what_they_read(tmp_path, read):
    lines = [json.dumps({"n": i}) for i in range(10_000)]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    READ_PROGRESS.reset()
    READ_PROGRESS.watched = True  # as progress.shown sets it on a terminal
    try:
        with beam.Pipeline() as p:
            _ = p | read(str(tmp_path / "in.jsonl"))
    finally:
        READ_PROGRESS.watched = False
    done = READ_PROGRESS.snapshot()
    assert done == ReadSnapshot(sum(len(line) + 1 for line in lines), 10_000, 1)


def test_readers_count_nothing_when_no_one_watches(tmp_path):
    (tmp_path / "in.jsonl").write_text('{"n": 1}\n')
    READ_PROGRESS.reset()
    with beam.Pipeline() as p:
        _ = p | ReadFileBlocks(str(tmp_path / "in.jsonl"))
    assert READ_PROGRESS.snapshot() == ReadSnapshot(0, 0, 0)
