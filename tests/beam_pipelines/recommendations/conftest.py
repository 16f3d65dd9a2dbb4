"""A model trained once for the recommendations tests, on events with planted structure."""

from __future__ import annotations

import pytest

from beam_pipelines import train_recommender
from tests.beam_pipelines.recommendations.support import DIRTY, GENERATOR, Trained, write_events


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    """``train_recommender`` run once from a file: models/v1 and LATEST."""
    directory = tmp_path_factory.mktemp("recs")
    events = directory / "events.jsonl"
    valid = write_events(events, GENERATOR, DIRTY)
    models = directory / "models"
    code = train_recommender.main(["--source=file", f"--input={events}", f"--output={models}",
                                   f"--dead_letter={directory / 'rejected'}"])
    assert code == 0
    return Trained(str(models), str(events), valid, len(DIRTY), GENERATOR)
