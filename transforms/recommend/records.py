"""The records of the recommender: what the stream emits and what the trainer reports.

A :class:`Recommendation`'s ``recommendations`` are plain dicts ``{"page": str, "score":
float}`` at run time (what the sinks write as JSON objects); :class:`ScoredPage` gives
their schema (JSON Schema, Avro, Parquet ``list<struct>``, PostgreSQL ``jsonb``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from transforms.records import UtcTime

__all__ = ["Recommendation", "ScoredPage", "TrainedModel"]


class ScoredPage(NamedTuple):
    """One recommended page and the model's score for it (higher is better)."""

    page: str
    score: float


class Recommendation(NamedTuple):
    """The pages to show a user next, decided for one of their clicks."""

    user_id: str
    recommendations: list[ScoredPage]  # best first; dicts {"page", "score"} at run time
    model_version: int  # the N of the model directory's vN/ that decided
    event_timestamp: UtcTime  # the click's event time
    decided_at: UtcTime  # when the recommendation was made (processing time)


class TrainedModel(NamedTuple):
    """One model version written by ``train_recommender``: where, from what, how good."""

    version: int
    path: str
    events: int
    users: int
    sessions: int
    items: int  # pages in the model's vocabulary
    first_event: Optional[UtcTime]
    last_event: Optional[UtcTime]
    k: int
    precision_at_k: Optional[float]  # on the held-out split; None without held-out clicks
    baseline_precision_at_k: Optional[float]  # the most-popular baseline, same clicks
    evaluated_clicks: int
