"""Serving: user events -> per-user profiles -> RunInference -> a Recommendation per click.

::

    recommendations = events | Recommend(ModelSource("models/"), streaming=True)

* :class:`Profiles` keeps each user's profile (:mod:`transforms.recommend.profile`) and
  emits, for every click, ``(Click(user, time), Query)``. Streaming: a stateful DoFn per
  user in the global window, clicks in arrival order, the state freed by an event-time
  timer ``ttl`` after the user's last click. Batch (a replay of files): each user's
  clicks grouped and replayed in event-time order through the same function.
* ``RunInference`` with a ``KeyedModelHandler`` around
  :class:`~transforms.recommend.handler.RecommenderModelHandler`: the click key rides
  along, so each output keeps its user and event. When the stream follows a model
  directory, :class:`~transforms.recommend.watch.WatchModelVersions` feeds
  ``model_metadata_pcoll``: a version the trainer publishes is loaded while the stream
  runs, and predictions carry the version that made them.
* :class:`_ToRecommendation` writes the record and the model metrics: ``model_version``
  (gauge: the version serving now), ``model_swaps`` (counter), ``recommendations_emitted``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.base.errors import ConfigError
from transforms.recommend import store
from transforms.recommend.handler import MODEL_FORMATS, RecommenderModelHandler
from transforms.recommend.profile import DEFAULT_PROFILE, ProfileConfig, query_of, update_profile
from transforms.recommend.records import Recommendation
from transforms.recommend.watch import WatchModelVersions
from transforms.records import utc_iso, utc_now_iso
from transforms.session_windows import event_timestamp

__all__ = ["Click", "ModelSource", "Profiles", "Recommend"]


class Click(NamedTuple):
    """The key a query carries through RunInference: whose click, and when."""

    user_id: str
    timestamp: float


class ModelSource(NamedTuple):
    """Which model serves: a directory to follow (``LATEST``) or one pinned version.

    :param path: ``--model``: a model directory or a version directory ``vN``.
    :param model_format: ``sklearn`` or ``onnx``.
    :param poll_interval: seconds between two reads of ``LATEST`` while streaming (None:
        the version current at start serves until the end).
    """

    path: str
    model_format: str = "sklearn"
    poll_interval: Optional[float] = 10.0


class _StreamingProfiles(beam.DoFn):
    PROFILE = ReadModifyWriteStateSpec("profile", coders.PickleCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, config: ProfileConfig) -> None:
        self._config = config

    def process(self, element, profile=beam.DoFn.StateParam(PROFILE),
                expiry=beam.DoFn.TimerParam(EXPIRY)):
        user, event = element
        current = update_profile(profile.read(), event.page, float(event.timestamp), self._config)
        profile.write(current)
        expiry.set(Timestamp.of(current.as_of + self._config.ttl))
        yield Click(user, float(event.timestamp)), query_of(current)

    @on_timer(EXPIRY)
    def expire(self, profile=beam.DoFn.StateParam(PROFILE)):
        profile.clear()


def _replay(element, config: ProfileConfig):
    """Batch: one user's clicks in event-time order through the stream's profile."""
    user, events = element
    current = None
    for event in sorted(events, key=lambda e: (float(e.timestamp), e.page)):
        current = update_profile(current, event.page, float(event.timestamp), config)
        yield TimestampedValue((Click(user, float(event.timestamp)), query_of(current)),
                               event_timestamp(event.timestamp))


class Profiles(beam.PTransform):
    """UserEvents -> ``(Click, Query)`` per click (see the module docstring).

    :param config: decay, size, expiry and exclusion of the profiles.
    :param streaming: a stateful DoFn (arrival order) or a grouped replay (event time).
    """

    def __init__(self, config: ProfileConfig = DEFAULT_PROFILE, *, streaming: bool) -> None:
        super().__init__()
        self._config = config.validated()
        self._streaming = streaming

    def expand(self, events):
        keyed = events | "KeyByUser" >> beam.Map(lambda e: (str(e.user_id), e))
        if not isinstance(events.windowing.windowfn, GlobalWindows):
            # Profiles span windows; a step less when the input is global (every step
            # is a hop between bundles on the local runner).
            keyed = keyed | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
        if self._streaming:
            return keyed | "UpdateProfiles" >> beam.ParDo(_StreamingProfiles(self._config))
        return (keyed
                | "ClicksPerUser" >> beam.GroupByKey()
                | "ReplayProfiles" >> beam.FlatMap(_replay, self._config))


class _ToRecommendation(beam.DoFn):
    def __init__(self, namespace: str) -> None:
        self._namespace = namespace

    def setup(self) -> None:
        self._serving: Optional[str] = None
        self._version = Metrics.gauge(self._namespace, "model_version")
        self._swaps = Metrics.counter(self._namespace, "model_swaps")
        self._emitted = Metrics.counter(self._namespace, "recommendations_emitted")

    def process(self, element):
        click, prediction = element
        model_id = prediction.model_id
        version = store.version_number(model_id)
        if model_id != self._serving:
            if self._serving is not None:
                self._swaps.inc()
            self._serving = model_id
            self._version.set(version)
        self._emitted.inc()
        yield Recommendation(
            click.user_id,
            [{"page": page, "score": round(score, 6)} for page, score in prediction.inference],
            version,
            utc_iso(click.timestamp),
            utc_now_iso(),
        )


class Recommend(beam.PTransform):
    """Valid UserEvents -> one :class:`Recommendation` per event (see the module docstring).

    :param model: which model serves (and whether the stream follows new versions).
    :param top_k: pages recommended per click.
    :param profile: decay, size, expiry and exclusion of the users' profiles.
    :param streaming: stateful profiles in arrival order (True) or a replay per user.
    :param metrics_namespace: namespace of the model and output metrics.
    """

    def __init__(self, model: ModelSource, *, top_k: int = 5,
                 profile: ProfileConfig = DEFAULT_PROFILE, streaming: bool,
                 metrics_namespace: str = "recommendations") -> None:
        super().__init__()
        if model.model_format not in MODEL_FORMATS:
            raise ConfigError("--model_format", "|".join(MODEL_FORMATS), model.model_format)
        self._ref = store.resolve(model.path)
        self._model = model
        self._first = self._ref.current()
        self._handler = RecommenderModelHandler(self._first, model_format=model.model_format,
                                                top_k=top_k, metrics_namespace=metrics_namespace)
        self._profile = profile.validated()
        self._streaming = streaming
        self._namespace = metrics_namespace

    def follows_new_versions(self, events: beam.PCollection) -> bool:
        """Whether a version published while the stream runs is picked up: streaming, over
        an unbounded input (a watcher beside a bounded one would keep the run from ending),
        following ``LATEST`` with a poll interval."""
        return bool(self._streaming and not events.is_bounded and self._ref.follows_latest
                    and self._model.poll_interval)

    def expand(self, events):
        queries = events | "Profiles" >> Profiles(self._profile, streaming=self._streaming)
        versions = None
        if self.follows_new_versions(events):
            assert self._model.poll_interval is not None
            versions = events.pipeline | "WatchModelVersions" >> WatchModelVersions(
                self._ref.root, self._model.poll_interval, model_format=self._model.model_format,
                metrics_namespace=self._namespace)
        predictions = queries | "RunInference" >> RunInference(
            KeyedModelHandler(self._handler), model_metadata_pcoll=versions,
            metrics_namespace=f"{self._namespace}_inference")
        return predictions | "ToRecommendation" >> beam.ParDo(_ToRecommendation(self._namespace))
