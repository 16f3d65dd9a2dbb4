"""The dead-letter CLI over real dead letters of a pageviews run, and the replay read back."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys

import pytest

from beam_pipelines import dead_letters as cli
from beam_pipelines import pageviews
from beam_pipelines.testing.files import read_jsonl
from transforms.base.errors import ConfigError, SourceError
from transforms.records import DeadLetter
from transforms.sinks.dead_letter_sink import dead_letter_to_json

T0 = 1_700_000_000
FIX = '''
def add_action(payload, letter):
    if letter["reason_code"] != "missing_field" or not isinstance(payload, dict):
        return None
    return {**payload, "action": "page_view"}
'''


def read_output(directory) -> list[dict]:
    return read_jsonl(str(directory / "pageviews-*.jsonl"))


@pytest.fixture(scope="module")
def rejected(tmp_path_factory):
    """A pageviews backfill whose input has 3 missing-action, 2 invalid-JSON, 1 binary lines."""
    tmp = tmp_path_factory.mktemp("dlq")
    lines = [json.dumps({"user_id": 1, "action": "page_view", "page": "/a", "timestamp": T0 + i})
             for i in range(10)]
    lines += [json.dumps({"user_id": 2, "page": "/b", "timestamp": T0 + i}) for i in range(3)]
    lines += ["{broken", "[1, 2"]
    data = ("\n".join(lines) + "\n").encode() + b"\xff\xfe not utf-8\n"
    (tmp / "events.jsonl").write_bytes(data)
    pageviews.run([f"--input={tmp / 'events.jsonl'}", "--source=file", "--sink=jsonl",
                   f"--output={tmp / 'out'}", f"--dead_letter={tmp / 'dl'}"])
    return tmp


def cli_run(*argv: str) -> str:
    out = io.StringIO()
    assert cli.run(list(argv), out=out) == 0
    return out.getvalue()


@pytest.mark.unit
def test_inspect_counts_reasons_and_shows_samples(rejected):
    text = cli_run("inspect", str(rejected / "dl"), "--samples", "1")
    assert f"{rejected / 'dl'}: 6 dead letters in 1 file(s)" in text
    assert "missing_field        3  pageviews/parse" in text
    assert "invalid_json         2" in text
    assert "invalid_utf8         1" in text
    # A sample says where the record came from and why it was rejected.
    assert f"[{rejected / 'events.jsonl'}:11] missing field 'action'" in text
    as_json = json.loads(cli_run("inspect", str(rejected / "dl"), "--json",
                                 "--reason", "invalid_json"))
    assert as_json == {"invalid_json": 2}


@pytest.mark.unit
def test_replay_with_a_fix_feeds_the_pipeline_again(rejected):
    (rejected / "fixes.py").write_text(FIX)
    replayed = rejected / "replay" / "fixed.jsonl"
    text = cli_run("replay", str(rejected / "dl"), "--output", str(replayed),
                   "--only-reason", "missing_field", "--fix", f"{rejected / 'fixes.py'}:add_action")
    assert f"replayed 3 record(s) to {replayed}; 3 with other reasons left out" in text
    assert "still fail" not in text
    assert [json.loads(x)["action"] for x in replayed.read_text().splitlines()] == ["page_view"] * 3
    # The replay file is a valid pipeline input: 3 more page views of /b, nothing rejected.
    pageviews.run([f"--input={replayed}", "--source=file", "--sink=jsonl",
                   f"--output={rejected / 'out2'}", f"--dead_letter={rejected / 'dl2'}"])
    assert [(r["page"], r["count"]) for r in read_output(rejected / "out2")] == [("/b", 3)]
    assert not list((rejected / "dl2").glob("*.jsonl")) or all(
        p.stat().st_size == 0 for p in (rejected / "dl2").glob("*.jsonl"))


@pytest.mark.unit
def test_replay_without_fix_warns_about_records_that_still_fail(rejected):
    replayed = rejected / "raw.jsonl"
    text = cli_run("replay", str(rejected / "dl"), "--output", str(replayed))
    assert "replayed 6 record(s)" in text
    assert "6 record(s) still fail the input contract" in text
    assert "invalid_json=2" in text and "missing_field=3" in text and "invalid_utf8=1" in text
    # Payloads go back byte for byte, invalid UTF-8 included.
    assert b"\xff\xfe not utf-8" in replayed.read_bytes()
    text = cli_run("replay", str(rejected / "dl"), "--output", str(replayed), "--drop-invalid")
    assert "replayed 0 record(s)" in text and "left out" in text


@pytest.mark.unit
def test_reads_compressed_files_and_reports_lines_that_are_not_dead_letters(tmp_path):
    letter = DeadLetter.of("pageviews", "window", "late: ...", json.dumps(
        {"user_id": "1", "action": "a", "page": "/p", "timestamp": T0}), {"source": "window"},
        "late")
    with gzip.open(tmp_path / "dead_letters-0.jsonl.gz", "wt") as handle:
        handle.write(dead_letter_to_json(letter) + "\n" + "not a dead letter\n")
    text = cli_run("inspect", str(tmp_path))
    assert "1 dead letters in 1 file(s)" in text and "late" in text
    assert "warning: 1 line(s) are not dead letters" in text
    text = cli_run("replay", str(tmp_path / "*.gz"), "--output", str(tmp_path / "late.jsonl"))
    assert "replayed 1 record(s)" in text and "still fail" not in text


@pytest.mark.integration
def test_user_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(SourceError, match="LOCATION: no dead-letter files at"):
        cli.run(["inspect", str(tmp_path / "nothing")])
    with pytest.raises(ConfigError, match="reading dead letters from postgresql:// is not"):
        cli.run(["inspect", "postgresql://db/rejected"])
    with pytest.raises(ConfigError, match="--output: expected a different place"):
        cli.run(["replay", "kafka://rejected", "--output", "kafka://rejected"])
    with pytest.raises(ConfigError, match="--samples: expected a whole number >= 0, got '-1'"):
        cli.run(["inspect", str(tmp_path), "--samples", "-1"])
    (tmp_path / "dead_letters-0.jsonl").write_text("")
    with pytest.raises(ConfigError, match="--fix: expected FILE.py"):
        cli.run(["replay", str(tmp_path), "--output", str(tmp_path / "o.jsonl"),
                 "--fix", str(tmp_path / "missing.py")])
    with pytest.raises(ConfigError, match="--contract: expected one of auto|none"):
        cli.run(["replay", str(tmp_path), "--output", "o.jsonl", "--contract", "spark"])
    done = subprocess.run([sys.executable, "-m", "beam_pipelines.dead_letters", "inspect",
                           str(tmp_path / "nothing")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: LOCATION: no dead-letter files")
    assert "Traceback" not in done.stderr


@pytest.mark.unit
@pytest.mark.parametrize("streaming", [False, True], ids=["batch", "streaming"])
def test_dead_letter_batches_are_written_and_counted_one_letter_each(tmp_path, streaming):
    """The vectorized steps send a block's dead letters as one DeadLetterBatch; the
    sink writes one JSON line and counts one metric per letter, as for single letters."""

    import apache_beam as beam
    from apache_beam.metrics import MetricsFilter
    from apache_beam.testing.test_stream import TestStream

    from runners.local_streaming.runner import LocalStreamingRunner
    from transforms.records import DeadLetterBatch
    from transforms.sinks.dead_letter_sink import WriteDeadLetters

    def letter(i: int, code: str) -> DeadLetter:
        return DeadLetter.of("pv", "parse", f"bad {i}", b'{"x": %d}' % i,
                             {"source": "file", "line": i}, code)

    elements = [DeadLetterBatch([letter(1, "invalid_json"), letter(2, "wrong_type")]),
                letter(3, "invalid_json"), DeadLetterBatch([letter(4, "invalid_json")])]
    out = tmp_path / "dead"
    if streaming:
        pipeline = beam.Pipeline(runner=LocalStreamingRunner(),
                                 options=beam.options.pipeline_options.PipelineOptions(["--streaming"]))
        source = pipeline | TestStream().add_elements(elements).advance_watermark_to_infinity()
    else:
        pipeline = beam.Pipeline()
        source = pipeline | beam.Create(elements)
    source | WriteDeadLetters(str(out), pipeline="pv", streaming=streaming)
    result = pipeline.run()
    result.wait_until_finish()
    lines = read_jsonl(str(out / "dead_letters-*.jsonl"))
    assert sorted(row["origin"]["line"] for row in lines) == [1, 2, 3, 4]
    assert all(row["reason"] == f"bad {row['origin']['line']}" for row in lines)
    counters = result.metrics().query(MetricsFilter().with_namespace("pv"))["counters"]
    written = {c.key.metric.name: c.committed for c in counters}
    assert written == {"dead_letters_written.invalid_json": 3, "dead_letters_written.wrong_type": 1}
