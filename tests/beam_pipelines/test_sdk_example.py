"""docs/sdk.md's example pipeline, run as written: a pipeline on the skeleton in ~40 lines.

The code block is taken from the document itself, so the document cannot drift from what
works: batch to JSON lines and Parquet with dead letters, streaming panes and late data,
its own flag, and a second output written beside the main sink.
"""

from __future__ import annotations

import collections
import importlib
import json
import math
import pathlib
import re
import sys

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_stream  # not by name: pytest would collect TestStream

from beam_pipelines.options import parse as parse_flags
from beam_pipelines.skeleton import SourceSpec
from beam_pipelines.testing.collect import collect
from beam_pipelines.testing.files import read_jsonl
from transforms.contracts import USER_EVENTS
from transforms.io.synthetic.events import SyntheticEvents
from transforms.records import RawRecord, utc_iso
from transforms.sinks.files import WriteJsonLines
from transforms.validation import InvalidRecord, decode_json_object

pytestmark = pytest.mark.unit

SDK = pathlib.Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The ``active_users`` module, written from docs/sdk.md and imported once."""
    blocks = re.findall(r"```python\n(.*?)```", SDK.read_text(encoding="utf-8"), re.S)
    code = next(b for b in blocks if "class ActiveUsersPipeline" in b)
    assert len(code.strip().splitlines()) <= 100, "the example should stay short"
    directory = tmp_path_factory.mktemp("sdk")
    (directory / "active_users.py").write_text(code, encoding="utf-8")
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module("active_users")
    finally:
        sys.path.remove(str(directory))


def expected(lines: list[bytes], window: int, minimum: int) -> list[dict]:
    """The example's question answered in plain Python, over the valid lines."""
    users: dict = collections.defaultdict(set)
    for line in lines:
        try:
            event, second = USER_EVENTS.parse(decode_json_object(line))
        except InvalidRecord:
            continue
        start = math.floor(second / window) * window
        users[(start, event.action)].add(event.user_id)
    return sorted(
        ({"window_start": utc_iso(start), "window_end": utc_iso(start + window), "action": action,
          "users": len(found)}
         for (start, action), found in users.items() if len(found) >= minimum),
        key=lambda r: (r["window_start"], r["action"]))


def test_batch_from_a_file_to_json_lines_and_parquet(example, tmp_path, capsys):
    generator = SyntheticEvents(seed=3, rate=2.0, malformed=0.05, users=40)
    lines = list(generator.payloads(600))
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    flags = ["--source=file", f"--input={tmp_path / 'events.jsonl'}", "--window_size=60",
             "--min_users=3", f"--dead_letter={tmp_path / 'dead'}"]
    assert example.main(flags + ["--sink=jsonl", f"--output={tmp_path / 'out'}"]) == 0
    got = [{k: row[k] for k in ("window_start", "window_end", "action", "users")}
           for row in read_jsonl(str(tmp_path / "out" / "active_users-*.jsonl"))]
    want = expected(lines, 60, 3)
    assert want and sorted(got, key=lambda r: (r["window_start"], r["action"])) == want
    dead = read_jsonl(str(tmp_path / "dead" / "dead_letters-*.jsonl"))
    assert len(dead) == sum(1 for e in generator.records(600) if e[0] is None)
    assert {d["pipeline"] for d in dead} == {"active_users"}
    err = capsys.readouterr().err
    assert "active_users: " in err and " rejected; dead letters written to " in err

    assert example.main(flags + ["--sink=parquet", f"--output={tmp_path / 'pq'}"]) == 0
    table = pq.read_table(next((tmp_path / "pq").glob("active_users-*.parquet")))
    assert str(table.schema.field("window_start").type) == "timestamp[us, tz=UTC]"
    assert table.num_rows == len(want)


def test_its_flag_is_in_help_and_a_bad_value_is_one_line(example, capsys):
    with pytest.raises(SystemExit):
        example.main(["--help"])
    assert "--min_users" in capsys.readouterr().out
    assert example.main(["--min_users=many"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --min_users") and "\n" not in err


def test_streaming_panes_late_data_and_a_second_output(example, tmp_path):
    t0 = 1_704_067_200  # a window boundary

    def raw(user, action, seconds):
        line = json.dumps({"user_id": user, "action": action, "page": "/", "timestamp": seconds})
        return RawRecord(line.encode(), {"source": "test"})

    stream = (
        test_stream.TestStream()
        .add_elements([raw(u, "click", t0 + u) for u in range(1, 4)])
        .advance_watermark_to(t0 + 61)  # ON_TIME: 3 users clicked in [t0, t0 + 60)
        .add_elements([raw(9, "click", t0 + 5)])  # later than the allowed lateness (0)
        .advance_watermark_to_infinity()
    )

    class WithBusyWindows(example.ActiveUsersPipeline):
        """The example plus a second output: windows with 3 users or more, to a file."""

        def core(self, inputs, ctx):
            core = super().core(inputs, ctx)
            busy = core.results | "Busy" >> beam.Filter(lambda r: r.users >= 3)
            return core._replace(outputs={"busy": busy})

        def write(self, core, ctx):
            core.outputs["busy"] | "WriteBusy" >> WriteJsonLines(
                str(tmp_path / "busy"), "busy", streaming=ctx.streaming)
            return []

    options = parse_flags(["--streaming", "--window_size=60", "--sink=jsonl",
                           f"--output={tmp_path / 'out'}"], [], prog="test")
    pipeline = beam.Pipeline(options=options)
    results, dead = WithBusyWindows().build(pipeline, options, SourceSpec(stream, False), True)
    got, letters = collect(results), collect(dead)
    pipeline.run().wait_until_finish()

    assert [(r.action, r.users, r.pane_timing) for r in got.items] == [("click", 3, "ON_TIME")]
    assert [(d.reason_code, d.pipeline) for d in letters.items] == [("late", "active_users")]
    assert [row["users"] for row in read_jsonl(str(tmp_path / "busy" / "busy-*.jsonl"))] == [3]
