"""The model handler Beam's ``RunInference`` serves the recommender with.

Why not ``SklearnModelHandlerNumpy`` or ``OnnxModelHandlerNumpy`` as they are: their
examples are vectors in one fixed vocabulary, and their predictions are score vectors.
Here the vocabulary is part of a model version (a new version may know new pages, in
another order), so the profile -> vector step and the vector -> top pages step must use
the vocabulary of the very version that scores the batch, including across a model swap.
:class:`RecommenderModelHandler` loads a version directory as one unit (vocabulary and
estimator) and does the three steps in ``run_inference``. The estimator itself is loaded
by Beam's own handlers (``SklearnModelHandlerNumpy(..., ModelFileType.JOBLIB)`` or
``OnnxModelHandlerNumpy``), and scored the way they score it (``predict`` on the stacked
batch; an ONNX Runtime session run).

``update_model_path`` takes a version directory: RunInference's model-refresh side input
(``model_metadata_pcoll``, fed by :class:`~transforms.recommend.watch.WatchModelVersions`)
gives it the new version, and every prediction carries the version that made it
(``PredictionResult.model_id``).
"""

from __future__ import annotations

import sys
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from transforms.base.errors import ConfigError
from transforms.base.extras import require
from transforms.recommend import store
from transforms.recommend.profile import Query
from transforms.recommend.scoring import Scorer

__all__ = ["MODEL_FORMATS", "LoadedVersion", "RecommenderModelHandler", "load_version"]

MODEL_FORMATS = ("sklearn", "onnx")


class LoadedVersion:
    """A model version in memory: where it came from and how it scores."""

    def __init__(self, path: str, model_format: str, scorer: Scorer) -> None:
        self.path = path
        self.version = store.version_number(path)
        self.model_format = model_format
        self.scorer = scorer


def _onnx_predict(path: str):
    """An ONNX Runtime session loaded by Beam's handler (one intra-op thread: the
    runner's threads are the parallelism) and its scoring function."""
    ort = require("ml", "onnxruntime")
    onnx_inference = require("ml", "apache_beam.ml.inference.onnx_inference")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnx_inference.OnnxModelHandlerNumpy(
        path, session_options=options, providers=["CPUExecutionProvider"]).load_model()
    name = session.get_inputs()[0].name

    def predict(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return predict


def load_version(path: str, model_format: str = "sklearn") -> LoadedVersion:
    """Load version directory ``path`` (vocabulary and estimator) for ``model_format``."""
    if model_format not in MODEL_FORMATS:
        raise ConfigError("--model_format", "|".join(MODEL_FORMATS), model_format)
    pages = store.read_json(f"{path}/{store.ITEMS}")
    model_file = f"{path}/{store.MODEL_FILES[model_format]}"
    if model_format == "sklearn":
        sklearn_inference = require("ml", "apache_beam.ml.inference.sklearn_inference")
        estimator = sklearn_inference.SklearnModelHandlerNumpy(
            model_file, sklearn_inference.ModelFileType.JOBLIB).load_model()
        predict = estimator.predict
    else:
        predict = _onnx_predict(model_file)
    return LoadedVersion(path, model_format, Scorer(pages, predict))


class RecommenderModelHandler(ModelHandler[Query, PredictionResult, LoadedVersion]):
    """Queries (a profile and the pages to leave out) -> PredictionResults whose
    ``inference`` is the top-k ``[(page, score), ...]`` and ``model_id`` the version
    directory that scored them.

    :param version_dir: the version directory to load first (``DIR/vN``).
    :param model_format: ``sklearn`` (model.joblib) or ``onnx`` (model.onnx).
    :param top_k: pages recommended per query.
    :param max_batch_size: most queries scored in one call (RunInference batches what a
        bundle holds, up to this).
    :param metrics_namespace: namespace of the ``cold_starts`` counter (queries none of
        whose pages the model knows: they get the popular pages).
    """

    def __init__(self, version_dir: str, *, model_format: str = "sklearn", top_k: int = 5,
                 max_batch_size: int = 512, metrics_namespace: str = "recommendations") -> None:
        super().__init__(min_batch_size=1, max_batch_size=max_batch_size)
        if model_format not in MODEL_FORMATS:
            raise ConfigError("--model_format", "|".join(MODEL_FORMATS), model_format)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError("--top_k", "a whole number >= 1", top_k)
        self._version_dir = version_dir
        self._model_format = model_format
        self._top_k = top_k
        self._namespace = metrics_namespace

    def load_model(self) -> LoadedVersion:
        return load_version(self._version_dir, self._model_format)

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        if model_path:
            self._version_dir = model_path

    def run_inference(self, batch: Sequence[Query], model: LoadedVersion,
                      inference_args: Optional[dict[str, Any]] = None
                      ) -> Iterable[PredictionResult]:
        scorer = model.scorer
        vectors = scorer.vectors(batch)
        scores = scorer.predict(vectors)
        cold = len(batch) - int(np.count_nonzero(vectors.any(axis=1)))
        if cold:
            Metrics.counter(self._namespace, "cold_starts").inc(cold)
        ranked = [scorer.top_k(scores[i], q.exclude, self._top_k) for i, q in enumerate(batch)]
        return [PredictionResult(query, top, model.path) for query, top in zip(batch, ranked, strict=True)]

    def get_num_bytes(self, batch: Sequence[Query]) -> int:
        # An estimate for RunInference's byte counter (the default pickles the batch).
        return sum(sys.getsizeof(q.pages) + 8 * len(q.weights) for q in batch)

    def get_metrics_namespace(self) -> str:
        return "recommendations_inference"

    def __repr__(self) -> str:
        return (f"RecommenderModelHandler({self._version_dir!r}, "
                f"model_format={self._model_format!r}, top_k={self._top_k})")
