"""recommendations on a stream (TestStream on the local streaming runner) and in batch.

A scripted user walks through planted pairs: after A, B is recommended; a user with no
history gets the model's popular pages; what a user just saw is never recommended; a
profile whose ttl passed (the watermark says so) is forgotten; a file replay decides the
same as the stream.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from apache_beam.testing import test_stream

from beam_pipelines.recommendations import RECOMMENDATIONS, Recommendations
from beam_pipelines.skeleton import SourceSpec
from beam_pipelines.testing import collect, read_jsonl
from transforms.recommend.handler import load_version
from transforms.records import RawRecord

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0


def raw(user, page, seconds) -> RawRecord:
    line = json.dumps({"user_id": user, "action": "page_view", "page": page, "timestamp": seconds})
    return RawRecord(line.encode(), {"source": "test"})


def run_stream(flags: list[str], stream: test_stream.TestStream) -> tuple[list, list]:
    """The pipeline on ``stream``; (recommendations, dead letters) in output order."""
    handles = {}

    class Collecting(Recommendations):
        def core(self, inputs, ctx):
            core = super().core(inputs, ctx)
            handles["results"] = collect(core.results)
            return core

        def build(self, pipeline, options, source, streaming):
            results, dead = super().build(pipeline, options, source, streaming)
            handles["dead"] = collect(dead)
            return results, dead

    # A TestStream ends; a model watcher (it polls LATEST) would not: no watching here.
    run = Collecting().launch(["--streaming", "--model_poll_interval=0", *flags],
                              source=SourceSpec(stream, bounded=False))
    run.result.wait_until_finish()
    return handles["results"].items, handles["dead"].items


def pages(record) -> list[str]:
    return [r["page"] for r in record.recommendations]


def popular(models: str, k: int = 5) -> list[str]:
    """The model's own answer for a profile it knows nothing of: its popularity order."""
    scorer = load_version(os.path.join(models, "v1")).scorer
    scores = scorer.predict(np.zeros((1, len(scorer.pages)), dtype=np.float32))
    return [p for p, _ in scorer.top_k(scores[0], (), k)]


def test_a_scripted_user_gets_the_planted_successor_of_each_page(trained):
    pairs = trained.generator.pairs[:4]
    clicks = [raw("alice", a, T0 + 60 * i) for i, (a, _) in enumerate(pairs)]
    stream = (test_stream.TestStream().add_elements(clicks[:2]).advance_watermark_to(T0 + 100)
              .add_elements(clicks[2:] + [raw("alice", "not json", 0)])
              .add_elements([RawRecord(b"not json", {"source": "test"})])
              .advance_watermark_to_infinity())
    got, dead = run_stream([f"--model={trained.models}"], stream)
    assert [r.user_id for r in got] == ["alice"] * len(pairs)  # one record per valid click
    earlier: set[str] = set()  # successors of the pages alice saw before (her profile)
    for record, (a, b) in zip(got, pairs, strict=True):
        # The planted successor of the current page comes first, or right after those of
        # the pages just before it (the profile decays, it does not forget at once).
        first_new = next(p for p in pages(record) if p not in earlier)
        assert first_new == b, (a, b, record)
        assert a not in pages(record) and len(pages(record)) == 5
        assert record.model_version == 1
        earlier.add(b)
    assert pages(got[0])[0] == pairs[0][1]
    assert [r.event_timestamp for r in got] == [f"2027-01-15T08:0{i}:00Z" for i in range(4)]
    # What alice just saw: the current page and the 3 before it (--exclude_recent default).
    assert not {a for a, _ in pairs} & {p for r in got for p in pages(r)}
    assert sorted(d.reason_code for d in dead) == ["invalid_json", "out_of_range"]


def test_a_user_without_history_gets_the_popular_pages(trained):
    # An integer user id and an ISO-8601 time with an offset: the contract takes both.
    stream = (test_stream.TestStream()
              .add_elements([raw(42, "/never-seen", "2027-01-15T10:00:00+02:00")])
              .advance_watermark_to_infinity())
    got, _ = run_stream([f"--model={trained.models}/v1", "--top_k=3"], stream)
    assert [(r.user_id, r.event_timestamp) for r in got] == [("42", "2027-01-15T08:00:00Z")]
    assert pages(got[0]) == popular(trained.models, 3)


def test_a_profile_is_forgotten_once_its_ttl_has_passed(trained):
    a, b = trained.generator.pairs[0]
    stream = (test_stream.TestStream().add_elements([raw("bob", a, T0)])
              # The watermark passes T0 + ttl: bob's profile expires (its timer fires)...
              .advance_watermark_to(T0 + 120)
              # ... so a click stamped before that finds no profile to add to.
              .add_elements([raw("bob", "/never-seen", T0 + 5)])
              .advance_watermark_to_infinity())
    got, _ = run_stream([f"--model={trained.models}", "--profile_ttl=60"], stream)
    assert pages(got[0])[0] == b
    assert b not in pages(got[1]) and pages(got[1]) == popular(trained.models)


def test_a_file_replay_decides_what_the_stream_decides(trained, tmp_path):
    sessions = [("carol", trained.generator.pairs[5][0]), ("dave", "/p/0"),
                ("carol", trained.generator.pairs[6][0]), ("dave", trained.generator.pairs[7][0])]
    clicks = [raw(user, page, T0 + 30 * i) for i, (user, page) in enumerate(sessions)]
    (tmp_path / "clicks.jsonl").write_bytes(b"\n".join(c.payload for c in clicks) + b"\n")
    streamed, _ = run_stream([f"--model={trained.models}"],
                             test_stream.TestStream().add_elements(clicks).advance_watermark_to_infinity())
    assert RECOMMENDATIONS.main(["--source=file", f"--input={tmp_path / 'clicks.jsonl'}",
                                 f"--model={trained.models}", "--sink=jsonl",
                                 f"--output={tmp_path / 'out'}"]) == 0
    replayed = read_jsonl(str(tmp_path / "out" / "recommendations-*.jsonl"))

    def decided(records):
        return sorted((r["user_id"], r["event_timestamp"], json.dumps(r["recommendations"]),
                       r["model_version"]) for r in records)

    assert decided(replayed) == decided(r._asdict() for r in streamed)
    assert len(replayed) == len(clicks)


@pytest.mark.parametrize("flags, named", [
    ([], "--model"),
    (["--model=/nowhere/models"], "--model"),
    (["--model={models}", "--model_format=onnx"], "--model_format"),  # v1 has no model.onnx
    (["--model={models}", "--window_size=60"], "--window_size"),
    (["--model={models}", "--model_poll_interval=-1"], "--model_poll_interval"),
    (["--model={models}", "--exclude_recent=-1"], "--exclude_recent"),
])
def test_a_bad_flag_is_one_line_naming_it(trained, flags, named, capsys):
    assert RECOMMENDATIONS.main([f.format(models=trained.models) for f in flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {named}") and "\n" not in err
