"""The recommender model: item-item co-visitation, as a scikit-learn compatible estimator.

``CoVisitationRecommender.fit(C, item_counts=..., popularity=...)`` takes the directed
co-visitation counts of the training sessions (``C[a, b]``: how often page ``b``
followed page ``a`` within a few steps of one session), normalises them
(``similarity``: ``cosine`` = ``C[a, b] / sqrt(n_a * n_b)``, ``lift`` =
``C[a, b] * N / (n_a * n_b)``, ``conditional`` = ``C[a, b] / n_a``, or ``count``), and
keeps each page's ``neighbours`` best successors. ``predict(X)`` maps profile vectors
(one row per click: the decayed weight of each page of the vocabulary) to a score per
page: ``X @ S + popularity_weight * popularity`` (popularity max-normalised to 1). The
popularity term blends in what most users view next anyway (measured: it lifts held-out
precision), orders the pages the profile says nothing about, and is all a user without
history (a zero row) gets: the popular pages.

It follows scikit-learn's estimator API (``get_params``/``set_params``, ``fit``,
``predict``) without importing scikit-learn, so the pickled model needs only numpy and
scipy to load; Beam's ``SklearnModelHandlerNumpy`` loaders read it (joblib or pickle).
:func:`to_onnx` writes the same function as an ONNX graph (a MatMul and an Add) for
``OnnxModelHandlerNumpy`` and ONNX Runtime. docs/recommendations.md has the measurements
that chose conditional co-visitation and the default format.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from transforms.base.errors import ConfigError
from transforms.base.extras import require

__all__ = ["SIMILARITIES", "CoVisitationRecommender", "to_onnx"]

SIMILARITIES = ("cosine", "lift", "conditional", "count")


class CoVisitationRecommender:
    """Profile vectors -> a score per page, from normalised co-visitation counts.

    :param similarity: how counts are normalised: cosine, lift, conditional or count.
    :param neighbours: successors kept per page (the best by normalised score).
    :param popularity_weight: weight of the (max-normalised) popularity term.
    """

    def __init__(self, similarity: str = "conditional", neighbours: int = 50,
                 popularity_weight: float = 0.1) -> None:
        self.similarity = similarity
        self.neighbours = neighbours
        self.popularity_weight = popularity_weight

    # ---- scikit-learn's estimator API -----------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"similarity": self.similarity, "neighbours": self.neighbours,
                "popularity_weight": self.popularity_weight}

    def set_params(self, **params: Any) -> CoVisitationRecommender:
        for name, value in params.items():
            if name not in self.get_params():
                raise ValueError(f"invalid parameter {name!r} for CoVisitationRecommender")
            setattr(self, name, value)
        return self

    def fit(self, X: Any, y: Any = None, *, item_counts: Optional[np.ndarray] = None,
            popularity: Optional[np.ndarray] = None,
            sessions: Optional[int] = None) -> CoVisitationRecommender:
        """Learn from directed co-visitation counts.

        :param X: (n, n) counts, scipy sparse or dense; ``X[a, b]``: b followed a.
        :param item_counts: (n,) sessions containing each page (default: row sums).
        :param popularity: (n,) recent views per page, for the cold-start term (default:
            ``item_counts``).
        :param sessions: how many sessions were counted (``lift``; default: the largest
            item count).
        """
        sparse = require("ml", "scipy.sparse")
        if self.similarity not in SIMILARITIES:
            raise ConfigError("--similarity", "|".join(SIMILARITIES), self.similarity)
        if isinstance(self.neighbours, bool) or not isinstance(self.neighbours, int) \
                or self.neighbours < 1:
            raise ConfigError("--neighbours", "a whole number >= 1", self.neighbours)
        counts = sparse.csr_matrix(X, dtype=np.float64)
        n = counts.shape[0]
        if counts.shape != (n, n):
            raise ValueError(f"X must be square (pages x pages), got shape {counts.shape}")
        counts.setdiag(0)
        counts.eliminate_zeros()
        totals = (np.asarray(item_counts, dtype=np.float64) if item_counts is not None
                  else np.asarray(counts.sum(axis=1)).ravel())
        totals = np.maximum(totals, 1.0)
        entries = counts.tocoo()
        rows, cols, values = entries.row, entries.col, entries.data
        if self.similarity == "cosine":
            values = values / np.sqrt(totals[rows] * totals[cols])
        elif self.similarity == "lift":
            total = float(sessions or totals.max())
            values = values * total / (totals[rows] * totals[cols])
        elif self.similarity == "conditional":
            values = values / totals[rows]
        scores = sparse.csr_matrix((values, (rows, cols)), shape=(n, n))
        self.similarity_ = _top_per_row(scores, self.neighbours).astype(np.float32)
        pop = np.asarray(popularity if popularity is not None else totals, dtype=np.float64)
        self.popularity_ = (pop / pop.max() if pop.size and pop.max() > 0
                            else np.zeros(n)).astype(np.float32)
        self.n_features_in_ = n
        return self

    def predict(self, X: Any) -> np.ndarray:
        """(B, n) profile vectors -> (B, n) float32 scores."""
        scores = np.asarray(X @ self.similarity_, dtype=np.float32)
        if self.popularity_weight:
            scores += np.float32(self.popularity_weight) * self.popularity_
        return scores

    def dense_similarity(self) -> np.ndarray:
        return self.similarity_.toarray()


def _top_per_row(matrix: Any, keep: int) -> Any:
    """The ``keep`` largest entries of each row of a CSR matrix (ties: lower column)."""
    sparse = require("ml", "scipy.sparse")
    matrix = matrix.tocsr()
    matrix.sort_indices()
    rows, cols, vals = [], [], []
    for r in range(matrix.shape[0]):
        start, end = matrix.indptr[r], matrix.indptr[r + 1]
        if start == end:
            continue
        c, v = matrix.indices[start:end], matrix.data[start:end]
        if end - start > keep:
            order = np.lexsort((c, -v))[:keep]
            c, v = c[order], v[order]
        rows.append(np.full(len(c), r))
        cols.append(c)
        vals.append(v)
    if not rows:
        return sparse.csr_matrix(matrix.shape)
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=matrix.shape)


def to_onnx(model: CoVisitationRecommender) -> bytes:
    """The model's ``predict`` as an ONNX graph: ``scores = X @ S + w * popularity``
    (S dense: n * n float32, so meant for vocabularies of a few thousand pages)."""
    onnx = require("ml", "onnx")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    n = model.n_features_in_
    similarity = numpy_helper.from_array(model.dense_similarity().astype(np.float32), "S")
    prior = numpy_helper.from_array(
        (np.float32(model.popularity_weight) * model.popularity_).astype(np.float32), "P")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "S"], ["XS"]),
         helper.make_node("Add", ["XS", "P"], ["scores"])],
        "covisitation",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [None, n])],
        [similarity, prior],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="beam-pipelines")
    proto.ir_version = 8  # read by every ONNX Runtime since 1.10
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
