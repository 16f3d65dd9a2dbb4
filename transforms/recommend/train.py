"""Training the recommender in batch: user events -> a new model version, evaluated.

``events | TrainRecommender(output_dir, TrainConfig(...))`` (events: valid
:class:`~transforms.records.UserEvent` s) writes ``output_dir/vN/`` and moves
``output_dir/LATEST`` to it (:mod:`transforms.recommend.store`), and returns one
:class:`~transforms.recommend.records.TrainedModel`. The steps:

1. **Sessions.** Each user's events, cut where two events are ``session_gap`` seconds or
   more apart (:class:`~transforms.session_windows.SessionWindowedAggregate`, the
   definition of the ``sessions`` pipeline).
2. **The split** (temporal): sessions that start in the last ``holdout`` fraction of the
   data's time range are held out; the rest train. Nothing from the held-out period
   leaks into the model that is evaluated.
3. **Counts**, in parallel (combiners): for each session, every page ``b`` within
   ``pair_window`` steps after a page ``a`` adds ``1 / distance`` to ``C[a, b]``
   (repeated views in a row count once); per page the sessions that contain it; and
   views per page over the training split (the most-popular baseline) and over the last
   ``popularity_window`` seconds of each model's data (its cold-start popularity).
4. **Fit** two :class:`~transforms.recommend.estimator.CoVisitationRecommender` s on one
   vocabulary (the ``max_items`` pages in most sessions): one on the training split, one
   on every session. The first is evaluated, the second is served.
5. **Evaluate** on the held-out split, per user, replaying their clicks through the same
   profile the stream keeps (:func:`~transforms.recommend.scoring.evaluation_cases`):
   precision@k of the model and of the most-popular baseline, on the same clicks.
6. **Write** the version: the served model (joblib, and ONNX when asked), the vocabulary,
   and the metadata (data range, counts, split, parameters, metrics); then ``LATEST``.
"""

from __future__ import annotations

import io
import json
import math
from typing import Any, Iterable, NamedTuple, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import TimestampedValue

from transforms.base.errors import ConfigError, SourceError
from transforms.base.extras import require
from transforms.recommend import store
from transforms.recommend.estimator import SIMILARITIES, CoVisitationRecommender, to_onnx
from transforms.recommend.profile import DEFAULT_PROFILE, ProfileConfig
from transforms.recommend.records import TrainedModel
from transforms.recommend.scoring import Scorer, evaluation_cases
from transforms.records import utc_iso, utc_now_iso
from transforms.session_windows import SessionConfig, SessionWindowedAggregate, event_timestamp

__all__ = ["FORMATS", "Fitted", "TrainConfig", "TrainRecommender", "co_visits", "fit_models",
           "session_pages", "train_in_memory"]

FORMATS = ("sklearn", "onnx")


class TrainConfig(NamedTuple):
    """How the trainer learns and evaluates (flags of ``train_recommender``)."""

    session_gap: int = 1800  # seconds between two events that start a new session
    pair_window: int = 3  # pages after a page that count as its successors
    similarity: str = "conditional"
    neighbours: int = 50  # successors kept per page
    popularity_weight: float = 0.1  # the popularity blend (estimator.py)
    holdout: float = 0.2  # fraction of the time range held out (the latest)
    max_items: int = 10_000  # vocabulary size cap (pages in most sessions)
    popularity_window: float = 86_400.0  # seconds: "popular" for users without history
    k: int = 5  # precision@k
    profile: ProfileConfig = DEFAULT_PROFILE  # as the stream will keep it
    formats: tuple[str, ...] = ("sklearn",)  # model files written (onnx: opt in)

    def validated(self) -> TrainConfig:
        def whole(flag: str, value: Any, least: int) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(flag, f"a whole number >= {least}", value)

        whole("--session_gap", self.session_gap, 1)
        whole("--pair_window", self.pair_window, 1)
        whole("--neighbours", self.neighbours, 1)
        whole("--max_items", self.max_items, 1)
        whole("--eval_k", self.k, 1)
        if self.similarity not in SIMILARITIES:
            raise ConfigError("--similarity", "|".join(SIMILARITIES), self.similarity)
        if isinstance(self.holdout, bool) or not isinstance(self.holdout, (int, float)) \
                or not 0.0 <= self.holdout < 1.0:
            raise ConfigError("--holdout", "a fraction in [0, 1)", self.holdout)
        if isinstance(self.popularity_weight, bool) or not isinstance(
                self.popularity_weight, (int, float)) or not self.popularity_weight >= 0:
            raise ConfigError("--popularity_weight", "a number >= 0", self.popularity_weight)
        if not isinstance(self.popularity_window, (int, float)) or not self.popularity_window > 0:
            raise ConfigError("--popularity_window", "a number of seconds > 0",
                              self.popularity_window)
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ConfigError("--model_formats", ",".join(FORMATS), ",".join(self.formats))
        self.profile.validated()
        return self


# ---- pure functions --------------------------------------------------------------------

def session_pages(clicks: Sequence[tuple[float, str]]) -> list[str]:
    """A session's pages in time order, repeated views in a row counted once."""
    pages: list[str] = []
    for _, page in clicks:
        if not pages or pages[-1] != page:
            pages.append(page)
    return pages


def co_visits(pages: Sequence[str], window: int) -> dict[tuple[str, str], float]:
    """Directed co-visits of one session: ``b`` within ``window`` steps after ``a`` adds
    ``1 / steps`` to ``(a, b)``."""
    out: dict[tuple[str, str], float] = {}
    for i, a in enumerate(pages):
        for step in range(1, window + 1):
            if i + step >= len(pages):
                break
            b = pages[i + step]
            if b != a:
                out[(a, b)] = out.get((a, b), 0.0) + 1.0 / step
    return out


class Fitted(NamedTuple):
    """The models of one training run, on one vocabulary."""

    pages: list[str]
    evaluated: CoVisitationRecommender  # fit on the training split
    served: CoVisitationRecommender  # fit on every session
    baseline: np.ndarray  # most-popular scores over the training split (views per page)


def _vocabulary(item_counts: Iterable[tuple[str, tuple[float, float]]], cap: int) -> list[str]:
    counted = sorted(((-all_, page) for page, (_, all_) in item_counts if all_ > 0))
    return [page for _, page in counted[:cap]]


def fit_models(pairs: Iterable[tuple[tuple[str, str], tuple[float, float]]],
               items: Iterable[tuple[str, tuple[float, float]]],
               popularity: Iterable[tuple[str, tuple[float, float, float]]],
               config: TrainConfig) -> Fitted:
    """The evaluated and served models from the counts (see the module docstring)."""
    sparse = require("ml", "scipy.sparse")
    items = list(items)
    pages = _vocabulary(items, config.max_items)
    index = {p: i for i, p in enumerate(pages)}
    n = len(pages)
    rows, cols, train_w, all_w = [], [], [], []
    for (a, b), (w_train, w_all) in pairs:
        ia, ib = index.get(a), index.get(b)
        if ia is not None and ib is not None:
            rows.append(ia)
            cols.append(ib)
            train_w.append(w_train)
            all_w.append(w_all)
    sessions = np.zeros((2, n))
    for page, (train_sessions, all_sessions) in items:
        if page in index:
            sessions[:, index[page]] = (train_sessions, all_sessions)
    views = np.zeros((3, n))
    for page, counts in popularity:
        if page in index:
            views[:, index[page]] = counts
    models = []
    for split, weights in enumerate((train_w, all_w)):
        counts = sparse.csr_matrix((weights, (rows, cols)), shape=(n, n))
        model = CoVisitationRecommender(config.similarity, config.neighbours,
                                        config.popularity_weight)
        models.append(model.fit(counts, item_counts=sessions[split],
                                popularity=views[1 + split], sessions=int(sessions[split].max(
                                    initial=0))))
    return Fitted(pages, models[0], models[1], views[0].astype(np.float32))


# ---- Beam steps ------------------------------------------------------------------------

class _SessionClicks(beam.CombineFn):
    """Events -> the session's (time, page) in time order (ties: page)."""

    def create_accumulator(self) -> list:
        return []

    def add_input(self, accumulator: list, event) -> list:
        accumulator.append((float(event.timestamp), event.page))
        return accumulator

    def merge_accumulators(self, accumulators) -> list:
        merged: list = []
        for accumulator in accumulators:
            merged.extend(accumulator)
        return merged

    def extract_output(self, accumulator: list) -> list:
        return sorted(accumulator)


class _Bounds(beam.CombineFn):
    """Events -> (count, first time, last time)."""

    def create_accumulator(self):
        return (0, math.inf, -math.inf)

    def add_input(self, accumulator, event):
        count, low, high = accumulator
        t = float(event.timestamp)
        return (count + 1, min(low, t), max(high, t))

    def merge_accumulators(self, accumulators):
        count, low, high = 0, math.inf, -math.inf
        for c, lo, hi in accumulators:
            count, low, high = count + c, min(low, lo), max(high, hi)
        return (count, low, high)

    def extract_output(self, accumulator):
        return accumulator


class _SumTuples(beam.CombineFn):
    """Element-wise sums of equal-length tuples (``size`` long; zeros when empty)."""

    def __init__(self, size: int) -> None:
        self._size = size

    def create_accumulator(self):
        return (0.0,) * self._size

    def add_input(self, accumulator, value):
        return tuple(a + v for a, v in zip(accumulator, value, strict=True))

    def merge_accumulators(self, accumulators):
        total = (0.0,) * self._size
        for accumulator in accumulators:
            total = tuple(t + a for t, a in zip(total, accumulator, strict=True))
        return total

    def extract_output(self, accumulator):
        return accumulator


class Session(NamedTuple):
    user: str
    clicks: list  # (time, page), time order
    held_out: bool


def _cutoff(bounds, holdout: float) -> float:
    _, first, last = bounds
    return first + (1.0 - holdout) * (last - first) if holdout else math.inf


def _split(result, bounds, holdout: float) -> Session:
    return Session(result.key, result.value, result.window_start >= _cutoff(bounds, holdout)
                   and holdout > 0)


def _pair_counts(session: Session, window: int):
    train = 0.0 if session.held_out else 1.0
    for pair, weight in co_visits(session_pages(session.clicks), window).items():
        yield pair, (train * weight, weight)


def _item_counts(session: Session):
    train = 0.0 if session.held_out else 1.0
    for page in {page for _, page in session.clicks}:
        yield page, (train, 1.0)


def _views(event, bounds, holdout: float, window: float):
    """(page, (train views, recent train views, recent views)) of one event."""
    t = float(event.timestamp)
    cutoff = _cutoff(bounds, holdout)
    train = 1.0 if t < cutoff else 0.0
    recent_train = 1.0 if cutoff - window <= t < cutoff or (
        math.isinf(cutoff) and t >= bounds[2] - window) else 0.0
    recent = 1.0 if t >= bounds[2] - window else 0.0
    return event.page, (train, recent_train, recent)


class _Evaluate(beam.DoFn):
    """One user's held-out sessions -> (model hits, baseline hits, cases)."""

    def __init__(self, config: TrainConfig) -> None:
        self._config = config

    def process(self, element, fitted: Fitted):
        _, sessions = element
        clicks = [(t, page, number) for number, s in enumerate(sorted(
            sessions, key=lambda s: s.clicks[0])) for t, page in s.clicks]
        cases = list(evaluation_cases(clicks, self._config.profile))
        if not cases:
            return
        queries = [q for q, _ in cases]
        k = self._config.k
        model = Scorer(fitted.pages, fitted.evaluated.predict)
        baseline = Scorer(fitted.pages, lambda x: np.broadcast_to(fitted.baseline, x.shape))
        hits = [0, 0]
        for which, scorer in enumerate((model, baseline)):
            for top, (_, relevant) in zip(scorer.recommend(queries, k), cases, strict=True):
                hits[which] += len({page for page, _ in top} & relevant)
        yield (float(hits[0]), float(hits[1]), float(len(cases)))


class _WriteVersion(beam.DoFn):
    """The fitted models and the counts -> the version directory, LATEST, the record."""

    def __init__(self, output_dir: str, config: TrainConfig) -> None:
        self._output_dir = output_dir
        self._config = config

    def process(self, _, fitted: Fitted, metrics, bounds, users: int, sessions: int):
        events, first, last = bounds
        if not events or not fitted.pages:
            raise SourceError("train_recommender: the input has no valid events, so no model "
                              "was written")
        model_hits, baseline_hits, cases = metrics
        k = self._config.k
        precision = round(model_hits / (k * cases), 4) if cases else None
        baseline = round(baseline_hits / (k * cases), 4) if cases else None
        version, path = store.reserve_version(self._output_dir)
        files = {store.ITEMS: _json_bytes(fitted.pages)}
        if "sklearn" in self._config.formats:
            joblib = require("ml", "joblib")
            buffer = io.BytesIO()
            joblib.dump(fitted.served, buffer)
            files[store.MODEL_FILES["sklearn"]] = buffer.getvalue()
        if "onnx" in self._config.formats:
            files[store.MODEL_FILES["onnx"]] = to_onnx(fitted.served)
        cutoff = _cutoff(bounds, self._config.holdout)
        metadata = {
            "version": version,
            "created_at": utc_now_iso(),
            "formats": {f: store.MODEL_FILES[f] for f in self._config.formats},
            "model": {"kind": "item-item co-visitation",
                      "class": "transforms.recommend.estimator.CoVisitationRecommender",
                      **fitted.served.get_params()},
            "data": {"first_event": utc_iso(first), "last_event": utc_iso(last),
                     "events": int(events), "users": int(users), "sessions": int(sessions),
                     "items": len(fitted.pages)},
            "split": {"method": "temporal: sessions starting in the last "
                      f"{self._config.holdout:g} of the data's time range are held out; the "
                      "evaluated model is fit on the sessions before, the served model on all "
                      "sessions; each held-out user's clicks are replayed through the "
                      "stream's profile",
                      "holdout": self._config.holdout,
                      "cutoff": utc_iso(cutoff) if math.isfinite(cutoff) else None},
            "metrics": {"k": k, "precision_at_k": precision,
                        "baseline": "most popular pages of the training split",
                        "baseline_precision_at_k": baseline, "evaluated_clicks": int(cases),
                        "lift_over_baseline": (precision / baseline
                                               if precision is not None and baseline else None)},
            "training": {"session_gap": self._config.session_gap,
                         "pair_window": self._config.pair_window,
                         "max_items": self._config.max_items,
                         "popularity_window": self._config.popularity_window,
                         "profile": self._config.profile._asdict()},
        }
        store.write_version(path, files, metadata)
        store.publish(self._output_dir, version)
        yield TrainedModel(version, path, int(events), int(users), int(sessions),
                           len(fitted.pages), utc_iso(first), utc_iso(last), k, precision,
                           baseline, int(cases))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def _key_by_user(event) -> TimestampedValue:
    return TimestampedValue((str(event.user_id), event), event_timestamp(event.timestamp))


class TrainRecommender(beam.PTransform):
    """Valid UserEvents (bounded) -> one TrainedModel, the version written under
    ``output_dir`` (see the module docstring).

    :param output_dir: the model directory (versions ``vN/`` and ``LATEST`` inside).
    :param config: sessions, counts, model and evaluation settings.
    """

    def __init__(self, output_dir: str, config: TrainConfig = TrainConfig()) -> None:
        super().__init__()
        if not isinstance(output_dir, str) or not output_dir.strip():
            raise ConfigError("--output", "the model directory to write versions to", output_dir)
        self._output_dir = output_dir
        self._config = config.validated()

    def expand(self, events):
        config = self._config
        bounds = events | "Bounds" >> beam.CombineGlobally(_Bounds())
        users = (events
                 | "UserIds" >> beam.Map(lambda e: str(e.user_id))
                 | "DistinctUsers" >> beam.Distinct()
                 | "CountUsers" >> beam.combiners.Count.Globally())
        found = (events
                 | "KeyByUser" >> beam.Map(_key_by_user)
                 | "Sessions" >> SessionWindowedAggregate(
                     _SessionClicks(), SessionConfig(config.session_gap), streaming=False))
        sessions = found.results | "Split" >> beam.Map(
            _split, beam.pvalue.AsSingleton(bounds), config.holdout)
        pairs = (sessions
                 | "CoVisits" >> beam.FlatMap(_pair_counts, config.pair_window)
                 | "SumCoVisits" >> beam.CombinePerKey(_SumTuples(2)))
        items = (sessions
                 | "PagesPerSession" >> beam.FlatMap(_item_counts)
                 | "SumSessions" >> beam.CombinePerKey(_SumTuples(2)))
        views = (events
                 | "Views" >> beam.Map(_views, beam.pvalue.AsSingleton(bounds), config.holdout,
                                       config.popularity_window)
                 | "SumViews" >> beam.CombinePerKey(_SumTuples(3)))
        start = events.pipeline | "Start" >> beam.Create([None])
        fitted = start | "Fit" >> beam.Map(
            lambda _, p, i, v: fit_models(p, i, v, config),
            beam.pvalue.AsList(pairs), beam.pvalue.AsList(items), beam.pvalue.AsList(views))
        metrics = (sessions
                   | "HeldOut" >> beam.Filter(lambda s: s.held_out)
                   | "HeldOutByUser" >> beam.Map(lambda s: (s.user, s))
                   | "GroupHeldOut" >> beam.GroupByKey()
                   | "Evaluate" >> beam.ParDo(_Evaluate(config), beam.pvalue.AsSingleton(fitted))
                   | "SumHits" >> beam.CombineGlobally(_SumTuples(3)))
        session_count = sessions | "CountSessions" >> beam.combiners.Count.Globally()
        return start | "Write" >> beam.ParDo(
            _WriteVersion(self._output_dir, config), beam.pvalue.AsSingleton(fitted),
            beam.pvalue.AsSingleton(metrics), beam.pvalue.AsSingleton(bounds),
            beam.pvalue.AsSingleton(users), beam.pvalue.AsSingleton(session_count))


def train_in_memory(events: Iterable[Any], config: TrainConfig = TrainConfig()
                    ) -> tuple[Fitted, Optional[float], Optional[float], int]:
    """The same training and evaluation without Beam, on events in memory (benchmarks,
    notebooks): (fitted, precision@k, baseline precision@k, evaluated clicks)."""
    events = list(events)
    by_user: dict[str, list] = {}
    for e in events:
        by_user.setdefault(str(e.user_id), []).append((float(e.timestamp), e.page))
    if not events:
        raise SourceError("no events to train on")
    first = min(float(e.timestamp) for e in events)
    last = max(float(e.timestamp) for e in events)
    bounds = (len(events), first, last)
    cutoff = _cutoff(bounds, config.holdout)
    sessions: list[Session] = []
    for user, clicks in by_user.items():
        clicks.sort()
        current: list = []
        for click in clicks:
            if current and click[0] - current[-1][0] >= config.session_gap:
                sessions.append(Session(user, current, current[0][0] >= cutoff))
                current = []
            current.append(click)
        sessions.append(Session(user, current, current[0][0] >= cutoff))
    pairs: dict = {}
    items: dict = {}
    for s in sessions:
        for key, value in _pair_counts(s, config.pair_window):
            pairs[key] = tuple(a + b for a, b in zip(pairs.get(key, (0.0, 0.0)), value, strict=True))
        for key, value in _item_counts(s):
            items[key] = tuple(a + b for a, b in zip(items.get(key, (0.0, 0.0)), value, strict=True))
    views: dict = {}
    for e in events:
        key, value = _views(e, bounds, config.holdout, config.popularity_window)
        views[key] = tuple(a + b for a, b in zip(views.get(key, (0.0,) * 3), value, strict=True))
    fitted = fit_models(pairs.items(), items.items(), views.items(), config)
    held: dict[str, list] = {}
    for s in sessions:
        if s.held_out:
            held.setdefault(s.user, []).append(s)
    totals = [0.0, 0.0, 0.0]
    evaluate = _Evaluate(config)
    for user, user_sessions in held.items():
        for hits in evaluate.process((user, user_sessions), fitted):
            totals = [a + b for a, b in zip(totals, hits, strict=True)]
    model_hits, baseline_hits, cases = totals
    k = config.k
    return (fitted, model_hits / (k * cases) if cases else None,
            baseline_hits / (k * cases) if cases else None, int(cases))
