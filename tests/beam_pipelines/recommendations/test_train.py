"""train_recommender: a backfill writes an evaluated model version; re-runs add versions."""

from __future__ import annotations

import json
import os

import pytest

from beam_pipelines import train_recommender
from beam_pipelines.testing.files import read_jsonl
from tests.beam_pipelines.recommendations.support import write_events
from transforms.parse import parse_user_event
from transforms.recommend import PlantedEvents, store
from transforms.recommend.train import TrainConfig, train_in_memory
from transforms.validation import decode_json_object

pytestmark = pytest.mark.unit


def test_a_backfill_writes_v1_with_model_vocabulary_and_metadata(trained):
    assert open(os.path.join(trained.models, "LATEST")).read() == "v1\n"
    version = os.path.join(trained.models, "v1")
    assert sorted(os.listdir(version)) == ["items.json", "metadata.json", "model.joblib"]
    metadata = json.load(open(os.path.join(version, "metadata.json")))
    events = trained.generator.events()
    data = metadata["data"]
    assert data["events"] == trained.valid == len(events)
    assert data["users"] == len({e["user_id"] for e in events})
    assert data["items"] == len(json.load(open(os.path.join(version, "items.json"))))
    assert data["first_event"].startswith("2024-01-01T") and data["last_event"] > data["first_event"]
    assert metadata["split"]["method"].startswith("temporal")
    assert metadata["split"]["holdout"] == 0.2 and metadata["split"]["cutoff"]
    assert metadata["model"]["similarity"] == "conditional"
    dead = read_jsonl(os.path.join(os.path.dirname(trained.models), "rejected", "*.jsonl"))
    assert len(dead) == trained.dirty
    assert {d["pipeline"] for d in dead} == {"train_recommender"}


def test_the_model_is_at_least_twice_as_precise_as_the_most_popular_pages(trained):
    metrics = json.load(open(os.path.join(trained.models, "v1", "metadata.json")))["metrics"]
    assert metrics["k"] == 5 and metrics["evaluated_clicks"] > 500
    assert metrics["precision_at_k"] >= 2 * metrics["baseline_precision_at_k"] > 0


def test_beam_and_in_memory_training_agree(trained):
    """The Beam trainer and the plain-Python one (benchmarks, notebooks) are one method."""
    events = [parse_user_event(decode_json_object(line))[0]
              for line in open(trained.events, "rb") if line.startswith(b'{"user_id":"')]
    _, precision, baseline, cases = train_in_memory(events, TrainConfig())
    metrics = json.load(open(os.path.join(trained.models, "v1", "metadata.json")))["metrics"]
    assert (round(precision, 4), round(baseline, 4), cases) == (
        metrics["precision_at_k"], metrics["baseline_precision_at_k"],
        metrics["evaluated_clicks"])


def test_a_rerun_writes_the_next_version_and_moves_latest(trained, tmp_path, capsys):
    models = tmp_path / "models"
    write_events(tmp_path / "few.jsonl", PlantedEvents(seed=5, users=60))
    flags = ["--source=file", f"--input={tmp_path / 'few.jsonl'}", f"--output={models}",
             "--holdout=0", "--model_formats=sklearn,onnx"]
    assert train_recommender.main(flags) == 0
    assert train_recommender.main(flags) == 0
    assert store.latest_version(str(models)) == 2
    assert sorted(os.listdir(models / "v2")) == ["items.json", "metadata.json", "model.joblib",
                                                  "model.onnx"]
    metrics = json.load(open(models / "v2" / "metadata.json"))["metrics"]
    assert metrics["precision_at_k"] is None and metrics["evaluated_clicks"] == 0
    err = capsys.readouterr().err
    assert f"{models / 'v2'} is the LATEST model" in err


def test_latest_only_moves_forward(tmp_path):
    root = str(tmp_path)
    assert store.reserve_version(root) == (1, str(tmp_path / "v1"))
    assert store.reserve_version(root) == (2, str(tmp_path / "v2"))
    assert store.publish(root, 2) and store.latest_version(root) == 2
    assert not store.publish(root, 1)  # a slower trainer finishing later
    assert store.latest_version(root) == 2


@pytest.mark.parametrize("flags, named", [
    (["--source=file", "--input=x.jsonl"], "--output"),
    (["--output=m", "--sink=jsonl"], "--sink"),
    (["--output=m", "--streaming"], "--streaming"),
    (["--output=m", "--holdout=1.5"], "--holdout"),
    (["--output=m", "--similarity=magic"], "--similarity"),
    (["--output=m", "--model_formats=pmml"], "--model_formats"),
    (["--output=m", "--profile_ttl=-1"], "--profile_ttl"),
    (["--output=m", "--window_size=60"], "--window_size"),
])
def test_a_bad_flag_is_one_line_naming_it(flags, named, capsys):
    assert train_recommender.main(flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {named}") and "\n" not in err
