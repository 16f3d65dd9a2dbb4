"""From profiles to ranked pages with one model version: vectors in, top-k out.

A :class:`Scorer` holds a model version's vocabulary (page -> column) and its scoring
function (the estimator's ``predict`` or an ONNX Runtime session): it turns
:class:`~transforms.recommend.profile.Query` s into profile vectors in *its own*
vocabulary, scores them in one call, and picks each row's top k, leaving out the pages
the user just saw. Keeping the vocabulary with the model is what makes a model swap
safe: a new version may know other pages, in another order.

:func:`precision_at_k` and :func:`evaluation_cases` are the held-out evaluation the
trainer reports (docs/recommendations.md), on the same profiles the stream builds.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from transforms.recommend.profile import (
    DEFAULT_PROFILE,
    ProfileConfig,
    Query,
    query_of,
    update_profile,
)

__all__ = ["Scorer", "evaluation_cases", "precision_at_k"]

Predict = Callable[[np.ndarray], np.ndarray]


class Scorer:
    """One model version's vocabulary and scoring function.

    :param pages: the vocabulary, in the model's column order.
    :param predict: (B, n) float32 profile vectors -> (B, n) scores.
    """

    def __init__(self, pages: Sequence[str], predict: Predict) -> None:
        self.pages = list(pages)
        self.index = {page: i for i, page in enumerate(self.pages)}
        self.predict = predict

    def vectors(self, queries: Sequence[Query]) -> np.ndarray:
        """(B, n) float32 profile vectors; pages outside the vocabulary are left out."""
        x = np.zeros((len(queries), len(self.pages)), dtype=np.float32)
        index = self.index
        for row, query in enumerate(queries):
            for page, weight in zip(query.pages, query.weights, strict=True):
                column = index.get(page)
                if column is not None:
                    x[row, column] = weight
        return x

    def top_k(self, scores: np.ndarray, exclude: Iterable[str], k: int) -> list[tuple[str, float]]:
        """The k best (page, score) of one row, best first, without ``exclude`` and
        without pages scored <= 0 (no evidence at all). Ties: the earlier column."""
        row = np.array(scores, dtype=np.float32, copy=True)
        for page in exclude:
            column = self.index.get(page)
            if column is not None:
                row[column] = -np.inf
        if k < len(row):
            candidates = np.argpartition(-row, k - 1)[:k]
        else:
            candidates = np.arange(len(row))
        order = candidates[np.lexsort((candidates, -row[candidates]))]
        return [(self.pages[c], float(row[c])) for c in order if row[c] > 0][:k]

    def recommend(self, queries: Sequence[Query], k: int) -> list[list[tuple[str, float]]]:
        """Each query's top k (see :meth:`top_k`), scored in one call."""
        if not queries:
            return []
        scores = self.predict(self.vectors(queries))
        return [self.top_k(scores[i], q.exclude, k) for i, q in enumerate(queries)]


def evaluation_cases(clicks: Sequence[tuple[float, str, int]],
                     config: ProfileConfig = DEFAULT_PROFILE) -> Iterator[tuple[Query, set[str]]]:
    """One user's held-out clicks ``(time, page, session number)`` in time order ->
    (the query after each click, the pages the user went on to see in that session and
    had not just seen). Clicks with nothing left to find are skipped."""
    profile = None
    for i, (timestamp, page, session) in enumerate(clicks):
        profile = update_profile(profile, page, timestamp, config)
        later = {p for _, p, s in clicks[i + 1:] if s == session}
        query = query_of(profile)
        relevant = later - set(query.exclude)
        if relevant:
            yield query, relevant


def precision_at_k(ranked: Sequence[Sequence[tuple[str, float]]],
                   relevant: Sequence[set[str]], k: int) -> Optional[float]:
    """Mean over cases of |top k ∩ relevant| / k (None without cases)."""
    if not ranked:
        return None
    hits = sum(len({page for page, _ in top[:k]} & rel) for top, rel in zip(ranked, relevant, strict=True))
    return hits / (k * len(ranked))
