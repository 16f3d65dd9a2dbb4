"""The recommender's parts: profiles, the estimator and its ONNX twin, top-k, the handler."""

from __future__ import annotations

import io
import json

import joblib
import numpy as np
import pytest
import scipy.sparse as sp

from transforms.base.errors import ConfigError
from transforms.recommend import store
from transforms.recommend.estimator import CoVisitationRecommender, to_onnx
from transforms.recommend.handler import RecommenderModelHandler, load_version
from transforms.recommend.profile import ProfileConfig, Query, query_of, update_profile
from transforms.recommend.scoring import Scorer, evaluation_cases, precision_at_k
from transforms.recommend.train import co_visits, session_pages

pytestmark = pytest.mark.unit

CONFIG = ProfileConfig(half_life=60.0, max_pages=3, ttl=600.0, exclude_recent=1)


def test_a_profile_decays_by_half_life_and_keeps_the_heaviest_pages():
    p = update_profile(None, "/a", 0.0, CONFIG)
    p = update_profile(p, "/b", 60.0, CONFIG)  # /a halves
    assert p.weights == {"/a": 0.5, "/b": 1.0}
    p = update_profile(p, "/c", 120.0, CONFIG)
    p = update_profile(p, "/d", 180.0, CONFIG)  # four pages, three kept: /a is lightest
    assert set(p.weights) == {"/b", "/c", "/d"}
    assert p.weights["/d"] == 1.0 and p.weights["/c"] == 0.5 and p.weights["/b"] == 0.25


def test_a_profile_excludes_the_current_page_and_the_last_n_before_it():
    p = None
    for t, page in enumerate(["/a", "/b", "/a", "/c"]):
        p = update_profile(p, page, float(t), CONFIG)
    assert p.recent == ("/c", "/a")  # current + exclude_recent=1 distinct pages before
    assert query_of(p).exclude == ("/c", "/a")


def test_a_profile_expires_after_its_ttl_and_ignores_time_travel():
    p = update_profile(None, "/a", 1000.0, CONFIG)
    assert update_profile(p, "/b", 1600.0, CONFIG).weights == {"/b": 1.0}  # ttl reached
    late = update_profile(p, "/b", 900.0, CONFIG)  # out of order: no decay, time stays
    assert late.weights == {"/a": 1.0, "/b": 1.0} and late.as_of == 1000.0


def test_profile_settings_are_checked_with_the_flag_named():
    with pytest.raises(ConfigError, match="--profile_size"):
        ProfileConfig(max_pages=0).validated()
    with pytest.raises(ConfigError, match="--profile_half_life"):
        ProfileConfig(half_life=0).validated()


def test_co_visits_count_successors_within_the_window_once_per_row_of_repeats():
    pages = session_pages([(0, "/a"), (1, "/a"), (2, "/b"), (3, "/c")])
    assert pages == ["/a", "/b", "/c"]
    assert co_visits(pages, 2) == {("/a", "/b"): 1.0, ("/a", "/c"): 0.5, ("/b", "/c"): 1.0}


def _fitted(similarity="conditional", neighbours=2, popularity_weight=0.1):
    counts = sp.csr_matrix(np.array([[0, 6, 2, 1], [1, 0, 0, 0], [0, 0, 0, 3], [0, 0, 0, 0]],
                                    dtype=float))
    return CoVisitationRecommender(similarity, neighbours, popularity_weight).fit(
        counts, item_counts=np.array([8, 4, 3, 2]), popularity=np.array([1, 4, 2, 0]))


def test_the_estimator_normalises_keeps_top_neighbours_and_blends_popularity():
    model = _fitted()
    assert model.similarity_.toarray()[0].tolist() == pytest.approx([0, 6 / 8, 2 / 8, 0])
    scores = model.predict(np.array([[1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    assert scores[0] == pytest.approx([0.025, 0.75 + 0.1, 0.25 + 0.05, 0])
    assert scores[1] == pytest.approx([0.025, 0.1, 0.05, 0])  # no history: popularity


def test_the_estimator_follows_scikit_learns_estimator_api():
    from sklearn.base import clone

    model = _fitted("cosine", 5, 0.0)
    copy = clone(model)
    assert copy.get_params() == {"similarity": "cosine", "neighbours": 5,
                                 "popularity_weight": 0.0}
    assert not hasattr(copy, "similarity_")
    with pytest.raises(ValueError):
        copy.set_params(colour="blue")
    with pytest.raises(ConfigError, match="--similarity"):
        CoVisitationRecommender("magic").fit(np.eye(2))


def test_top_k_leaves_out_the_excluded_and_pages_without_evidence():
    scorer = Scorer(["/a", "/b", "/c", "/d"], lambda x: x)
    assert scorer.top_k(np.array([0.5, 0.9, 0.0, 0.5]), ["/b"], 3) == [("/a", 0.5), ("/d", 0.5)]


def test_precision_at_k_over_held_out_clicks():
    clicks = [(0.0, "/a", 0), (10.0, "/b", 0), (20.0, "/c", 0), (30.0, "/z", 1)]
    cases = list(evaluation_cases(clicks, CONFIG))
    assert [rel for _, rel in cases] == [{"/b", "/c"}, {"/c"}]  # session 1 has no future
    assert precision_at_k([[("/b", 1.0), ("/x", 1.0)], [("/y", 1.0)]],
                          [rel for _, rel in cases], 2) == pytest.approx(1 / 4)


@pytest.fixture
def version_dir(tmp_path):
    model = _fitted()
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    path = tmp_path / "models" / "v3"
    path.mkdir(parents=True)
    store.write_version(str(path), {
        store.ITEMS: json.dumps(["/a", "/b", "/c", "/d"]).encode(),
        store.MODEL_FILES["sklearn"]: buffer.getvalue(),
        store.MODEL_FILES["onnx"]: to_onnx(model)}, {"version": 3})
    return str(path)


def test_onnx_scores_equal_the_estimators_and_the_handler_serves_both(version_dir):
    queries = [Query(("/a",), (1.0,), ("/a",)), Query(("/nowhere",), (1.0,), ("/nowhere",))]
    answers = {}
    for model_format in ("sklearn", "onnx"):
        loaded = load_version(version_dir, model_format)
        assert loaded.version == 3
        x = loaded.scorer.vectors(queries)
        assert x.tolist() == [[1, 0, 0, 0], [0, 0, 0, 0]]
        handler = RecommenderModelHandler(version_dir, model_format=model_format, top_k=2)
        results = list(handler.run_inference(queries, handler.load_model()))
        answers[model_format] = [[p for p, _ in r.inference] for r in results]
        assert {r.model_id for r in results} == {version_dir}
    assert answers["sklearn"] == answers["onnx"] == [["/b", "/c"], ["/b", "/c"]]
    sklearn_scores = load_version(version_dir, "sklearn").scorer.predict(x)
    onnx_scores = load_version(version_dir, "onnx").scorer.predict(x)
    assert np.allclose(sklearn_scores, onnx_scores, atol=1e-6)


def test_model_flag_follows_latest_or_pins_a_version(version_dir, tmp_path):
    root = str(tmp_path / "models")
    with pytest.raises(ConfigError, match="--model"):
        store.resolve(root)  # no LATEST yet
    pinned = store.resolve(version_dir)
    assert not pinned.follows_latest and pinned.current() == version_dir
    store.publish(root, 3)
    follow = store.resolve(root)
    assert follow.follows_latest and follow.current() == version_dir
