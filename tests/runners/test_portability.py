"""Write once, run on any runner: the same pageviews run over the same file gives the
same counts and the same dead letters on DirectRunner, PortableRunner (Beam's Python job
service, LOOPBACK), DaskRunner (a local dask.distributed cluster) and the local
streaming runner (``--streaming``: the final pane of each window is the batch count).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from beam_pipelines import pageviews
from beam_pipelines.testing.files import read_jsonl
from transforms.io.synthetic.events import SyntheticEvents

pytestmark = pytest.mark.integration

EVENTS = 800


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("portability") / "events.jsonl"
    generator = SyntheticEvents(seed=11, rate=2.0, malformed=0.03)
    path.write_bytes(b"\n".join(generator.payloads(EVENTS)) + b"\n")
    return path


def _run(tmp_path: Path, events_file: Path, name: str, *flags: str):
    out, dead = tmp_path / name / "out", tmp_path / name / "dead"
    pageviews.run([
        "--source=file", f"--input={events_file}", "--sink=jsonl", f"--output={out}",
        f"--dead_letter={dead}", "--window_size=60", *flags,
    ])
    leftovers = list(out.glob("beam-temp-*")) + list(dead.glob("beam-temp-*"))
    assert not leftovers, f"{name}: temporary files left behind: {leftovers}"
    rows = read_jsonl(str(out / "*.jsonl"))
    letters = read_jsonl(str(dead / "*.jsonl"))
    return rows, sorted((d["origin"]["line"], d["reason_code"]) for d in letters)


def _counts(rows: list[dict]) -> dict[tuple[str, str], int]:
    return {(r["window_start"], r["page"]): r["count"] for r in rows}


def _final_panes(rows: list[dict]) -> dict[tuple[str, str], int]:
    finals = [r for r in rows if r["is_final"]]
    assert finals and all(r["pane_timing"] == "ON_TIME" for r in finals)
    counts = _counts(finals)
    assert len(counts) == len(finals), "one final pane per window and page"
    return counts


def test_same_answer_on_every_runner(tmp_path, events_file):
    direct_rows, direct_dead = _run(tmp_path, events_file, "direct", "--runner=DirectRunner")
    expected = _counts(direct_rows)
    valid = EVENTS - len(direct_dead)
    assert sum(expected.values()) == valid and direct_dead  # some malformed, all counted

    portable_rows, portable_dead = _run(tmp_path, events_file, "portable", "--runner=PortableRunner")
    assert _counts(portable_rows) == expected
    assert portable_dead == direct_dead

    dask_rows, dask_dead = _run(tmp_path, events_file, "dask", "--runner=DaskRunner",
                                "--dask_local_workers=2")
    assert _counts(dask_rows) == expected
    assert dask_dead == direct_dead

    streaming_rows, streaming_dead = _run(tmp_path, events_file, "streaming", "--streaming")
    assert _final_panes(streaming_rows) == expected
    assert streaming_dead == direct_dead
