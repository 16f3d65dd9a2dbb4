"""``python -m beam_pipelines.generate``: files of every kind, what --dirty means, the flags."""

from __future__ import annotations

import gzip
import io
import json

import pytest

from beam_pipelines.generate import KINDS, records
from beam_pipelines.generate.cli import main, parser, run
from beam_pipelines.generate.progress import Progress, bar_line
from transforms.base.errors import ConfigError

pytestmark = pytest.mark.unit


def _lines(path) -> list[bytes]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as handle:
        return handle.read().splitlines()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_kind_writes_count_lines_and_the_same_bytes_for_the_same_arguments(kind, tmp_path):
    first, second = tmp_path / "a" / f"{kind}.jsonl.gz", tmp_path / f"{kind}.jsonl.gz"
    run([kind, "--count", "300", "--seed", "3", str(first)])
    run([kind, "--count", "300", "--seed", "3", str(second)])
    assert first.read_bytes() == second.read_bytes()  # gzip without a changing mtime
    lines = _lines(first)
    assert len(lines) == 300
    valid = [json.loads(line) for line in lines if _valid(kind, line)]
    assert set(KINDS[kind].contract.replace(" and/or ", ", ").split(", ")) & set(valid[0])


def _valid(kind: str, line: bytes) -> bool:
    return any(payload == line for record, payload in records(kind, 300, seed=3, dirty=0.01)
               if record is not None)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_dirty_is_the_share_of_malformed_lines_and_they_are_of_several_kinds(kind):
    produced = list(records(kind, 4000, dirty=0.1))
    bad = [payload for record, payload in produced if record is None]
    assert 300 < len(bad) < 500
    assert not [r for r, _ in records(kind, 500, dirty=0.0) if r is None]
    # A realistic mix: bad JSON and lines that parse but break the contract.
    parsed = 0
    for payload in bad:
        try:
            json.loads(payload)
            parsed += 1
        except ValueError:
            pass
    assert 0 < parsed < len(bad)


def test_start_moves_event_time_and_a_file_default_is_fixed():
    (record, _), = records("events", 1, start=1_733_011_200)
    assert record["timestamp"] == 1_733_011_200
    (default, _), = records("events", 1)
    assert default["timestamp"] == KINDS["events"].start


def test_plain_file_and_standard_output(tmp_path, capsysbinary):
    target = tmp_path / "events.jsonl"
    run(["events", "--count", "5", "--dirty", "0", "--start", "2024-12-01T00:00:00Z", str(target)])
    assert [json.loads(line)["timestamp"] for line in _lines(target)][0] == 1_733_011_200
    run(["events", "--count", "5", "--dirty", "0", "--start", "2024-12-01T00:00:00Z", "-"])
    assert capsysbinary.readouterr().out == target.read_bytes()


def test_the_summary_line_names_the_file_and_the_malformed_lines(tmp_path, capsys):
    run(["readings", "--count", "200", "--dirty", "0.5", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert err.startswith("wrote 200 readings to ") and "malformed on purpose" in err
    assert "beam_pipelines.iot_alerts" in err


@pytest.mark.parametrize("argv, flag", [
    (["events", "--count", "0", "x"], "--count"),
    (["events", "--dirty", "1.5", "x"], "--dirty"),
    (["events", "--rate", "10", "x"], "--rate"),
    (["events", "--bootstrap_servers", "h:1", "x"], "--bootstrap_servers"),
    (["events", "--partitions", "3", "x"], "--partitions"),
    (["events"], "OUT"),
    (["events", "--to", "kafka://t", "x"], "OUT"),
    (["events", "--to", "t"], "--to"),
    (["events", "--to", "kafka://t", "--rate", "0"], "--rate"),
    (["events", "--start", "yesterday", "x"], "--start"),
    (["events", "gs://bucket/x.jsonl"], "OUT"),
    (["events", "out.jsonl.zst"], "OUT"),
    (["event", "x"], "KIND"),
])
def test_a_flag_that_does_nothing_or_a_bad_value_is_one_error_naming_it(argv, flag, tmp_path,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        run(argv)
    assert str(caught.value).startswith(f"{flag}: ")
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_main_turns_a_bad_flag_into_one_line_and_exit_code_2(capsys):
    assert main(["events", "--count", "-1", "x"]) == 2
    assert capsys.readouterr().err.strip() == "error: --count: expected a whole number >= 1, got -1"


def test_help_explains_every_argument():
    text = parser().format_help()
    for name in ("KIND", "OUT", "--count", "--dirty", "--seed", "--start", "--to", "--rate",
                 "--bootstrap_servers", "--partitions"):
        assert name in text
    for kind in KINDS:
        assert kind in text
    assert "python -m beam_pipelines.generate" in text


def test_an_interrupted_write_leaves_no_file(tmp_path):
    from beam_pipelines.generate.files import write_lines

    def broken():
        yield b"{}"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_lines(str(tmp_path / "x.jsonl.gz"), broken())
    assert list(tmp_path.iterdir()) == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_and_nothing_when_piped():
    ticks = iter(range(100))
    shown = Progress(10, stream=_Terminal(), every=0.0, clock=lambda: float(next(ticks)))
    for _ in range(10):
        shown.update()
    shown.close()
    text = shown.stream.getvalue()
    assert "[" in text and "10/10 lines" in text and text.endswith("\r\x1b[K")
    piped = Progress(10, stream=io.StringIO(), every=0.0)
    for _ in range(10):
        piped.update()
    piped.close()
    assert piped.stream.getvalue() == ""


def test_bar_line_shows_share_rate_and_eta():
    assert bar_line(25, 100, 1.0) == f"[{'#' * 6}{'.' * 18}]  25% 25/100 lines, 25/s, ETA 0:03"

