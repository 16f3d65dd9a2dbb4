"""Real-time recommendations: for each click, the pages to show the user next.

A model trained by ``train_recommender`` serves every click of a stream (or of a replayed
file) through Beam's ``RunInference``::

    python -m beam_pipelines.train_recommender --source=file --input='events/*.jsonl' \\
        --output=models/                                   # writes models/v1, LATEST
    python -m beam_pipelines.recommendations --model=models/ --source=kafka \\
        --topic=user_events --sink=kafka --output=recommendations   # keyed by user_id

Per user the stream keeps a bounded profile of recent pages with exponential decay
(``--profile_size``, ``--profile_half_life``), forgotten ``--profile_ttl`` seconds after
the user's last click. For each click it emits the ``--top_k`` pages the model scores
highest, leaving out the current page and the ``--exclude_recent`` pages seen before
it. A user with no history (no page the model knows) gets the model's popular pages:
the most viewed pages of the last ``--popularity_window`` of its training data.

``--model=DIR`` follows ``DIR/LATEST``: a version the trainer writes while the stream
runs is loaded without a restart (checked every ``--model_poll_interval`` seconds), and
each record carries the ``model_version`` that decided it (metrics: ``model_version``
gauge, ``model_swaps`` counter). ``--model=DIR/v3`` pins one version. With
``--sink=postgres`` the table holds each user's latest recommendations (upsert by
``user_id``). docs/recommendations.md has the design and the measurements.
"""

from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines import options as opts
from beam_pipelines.skeleton import Context, Core, Inputs, Pipeline, ResultSpec, SourceSpec
from beam_pipelines.skeleton.user_events import read_user_events
from transforms.base.errors import ConfigError
from transforms.base.extras import require
from transforms.batches import user_events
from transforms.contracts import USER_EVENTS
from transforms.io.synthetic.read import ReadSynthetic
from transforms.recommend.generate import PlantedEvents
from transforms.recommend.handler import MODEL_FORMATS
from transforms.recommend.profile import DEFAULT_PROFILE, ProfileConfig
from transforms.recommend.records import Recommendation
from transforms.recommend.serve import ModelSource, Recommend
from transforms.recommend.store import model_file_exists, resolve
from transforms.session_windows import event_timestamp

__all__ = ["DEFAULT_FORMAT", "PIPELINE", "ProfileOptions", "RECOMMENDATIONS", "RESULTS",
           "Recommendations", "RecommendationsOptions", "main", "planted_source",
           "profile_config", "read_events", "refuse_window_flags", "require_ml", "run"]

PIPELINE = "recommendations"
DESCRIPTION = (__doc__ or "").splitlines()[0]
# The faster of the two measured here (docs/recommendations.md: benchmarks/recommendations.py).
DEFAULT_FORMAT = "sklearn"


class ProfileOptions(PipelineOptions):
    """Users' profiles: decay, size, expiry, what is left out (stream and trainer)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--profile_size", type=opts.positive_int, default=DEFAULT_PROFILE.max_pages,
            help=f"Pages kept per user profile (the heaviest). Default {DEFAULT_PROFILE.max_pages}.")
        parser.add_argument(
            "--profile_half_life", type=opts.positive_float, default=DEFAULT_PROFILE.half_life,
            help="Seconds of event time for a viewed page's weight in the profile to halve. "
            f"Default {DEFAULT_PROFILE.half_life:g}.")
        parser.add_argument(
            "--profile_ttl", type=opts.positive_float, default=DEFAULT_PROFILE.ttl,
            help="Seconds after a user's last click when their profile is forgotten. "
            f"Default {DEFAULT_PROFILE.ttl:g}.")
        parser.add_argument(
            "--exclude_recent", type=opts.seconds(0), default=DEFAULT_PROFILE.exclude_recent,
            metavar="N",
            help="Never recommend the current page nor the N distinct pages the user saw "
            f"before it. Default {DEFAULT_PROFILE.exclude_recent}.")


def profile_config(options: PipelineOptions) -> ProfileConfig:
    o = options.view_as(ProfileOptions)
    return ProfileConfig(o.profile_half_life, o.profile_size, o.profile_ttl,
                         o.exclude_recent).validated()


class RecommendationsOptions(PipelineOptions):
    """recommendations: which model serves, how many pages per click."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--model", default=None,
            help="The model directory train_recommender writes (follows its LATEST while "
            "streaming), or one version directory DIR/vN (pinned). Required.")
        parser.add_argument(
            "--model_format", type=opts.choice(*MODEL_FORMATS), default=DEFAULT_FORMAT,
            help=f"Which file of the version scores: sklearn (model.joblib) or onnx "
            f"(model.onnx, ONNX Runtime). Default {DEFAULT_FORMAT} (the faster, measured).")
        parser.add_argument(
            "--top_k", type=opts.positive_int, default=5,
            help="Pages recommended per click. Default 5.")
        parser.add_argument(
            "--model_poll_interval", type=float, default=10.0,
            help="Streaming: seconds between two checks of the model directory's LATEST "
            "for a new version; 0 keeps the version current at start. Default 10.")


RESULTS = ResultSpec.of(
    Recommendation,
    name=PIPELINE,
    key=["user_id"],
    title="recommendations per click",
    table="recommendations",
    # An upsert never replaces a user's row with an older click's recommendations.
    never_decrease="event_timestamp",
    message_key="user_id",
)

# Beam's RunInference logs "Resource module is not available" at every model load when
# its optional model manager cannot be imported (it imports torch); the memory it would
# measure is only a metric, so the warning says nothing to our users.
logging.getLogger().addFilter(
    lambda record: not str(record.msg).startswith("Resource module is not available"))


def refuse_window_flags(options: PipelineOptions, pipeline: str) -> None:
    """The window flags every pipeline takes mean nothing here: refuse them, naming the
    flag, instead of ignoring them."""
    w = options.view_as(opts.WindowOptions)
    for flag in ("window_size", "window_period", "early_firing", "allowed_lateness"):
        if getattr(w, flag):
            raise ConfigError.from_message(
                f"--{flag}: {pipeline} has no event-time windows, so it takes no --{flag} "
                "(profiles expire after --profile_ttl, sessions end at --session_gap)")


def require_ml(model_format: str) -> None:
    """The [ml] extra for ``model_format``, or one line naming it."""
    for module in ("scipy.sparse", "sklearn", "joblib"):
        require("ml", module)
    if model_format == "onnx":
        require("ml", "onnxruntime")
        require("ml", "onnx")


def _timestamped_events(table):
    """An Arrow table of valid events (the vectorized parse) -> its UserEvents, each
    timestamped by its own event time (the table carries its earliest)."""
    for event, _ in user_events(table):
        yield TimestampedValue(event, event_timestamp(event.timestamp))


def read_events(pipeline: beam.Pipeline, source: SourceSpec, ctx: Context) -> Inputs:
    """UserEvents read the fast way where the source allows (``--batch_engine=arrow``:
    files in blocks, Kafka one batch per poll, parsed as Arrow tables), then one element
    per event for the per-user steps; dead letters worded as the per-record parser's."""
    inputs = read_user_events(pipeline, source, ctx)
    if inputs.form == "records":
        return inputs
    events = inputs.records | "EventsOfTables" >> beam.FlatMap(_timestamped_events)
    return Inputs(events, inputs.dead_letters)


def planted_source(options: PipelineOptions) -> SourceSpec:
    """``--source=synthetic`` (batch) for the recommender: user events with planted "A then
    B" structure (:class:`~transforms.recommend.generate.PlantedEvents`), so the default
    runs of the trainer and of the recommendations show what they learn."""
    io = options.view_as(opts.IOOptions)
    users = max(1, io.synthetic_events // 14)  # about 14 events per user
    generator = PlantedEvents(seed=io.synthetic_seed, users=users, malformed=io.synthetic_malformed)
    return SourceSpec(ReadSynthetic(io.synthetic_events, generator), bounded=True)  # type: ignore[arg-type]


class Recommendations(Pipeline):
    """For each click, the pages to show the user next (see the module docstring)."""

    name = PIPELINE
    description = DESCRIPTION
    contract = USER_EVENTS
    results = RESULTS
    flags = (RecommendationsOptions, ProfileOptions, opts.BatchEngineOptions)

    def check(self, options: PipelineOptions) -> None:
        o = options.view_as(RecommendationsOptions)
        if not o.model:
            raise ConfigError("--model", "the model directory written by train_recommender")
        if o.model_poll_interval < 0:
            raise ConfigError("--model_poll_interval", "a number of seconds >= 0 (0: never)",
                              o.model_poll_interval)
        refuse_window_flags(options, PIPELINE)
        require_ml(o.model_format)
        version = resolve(o.model).current()
        if not model_file_exists(version, o.model_format):
            raise ConfigError("--model_format", f"a format {version} was written in (train "
                              "with --model_formats=sklearn,onnx for onnx)", o.model_format)
        profile_config(options)
        super().check(options)

    def read(self, pipeline: beam.Pipeline, source: SourceSpec, ctx: Context) -> Inputs:
        return read_events(pipeline, source, ctx)

    def synthetic_source(self, options: PipelineOptions) -> SourceSpec:
        if opts.is_streaming(options):
            return super().synthetic_source(options)
        return planted_source(options)

    def core(self, inputs: Inputs, ctx: Context) -> Core:
        o = ctx.flags(RecommendationsOptions)
        model = ModelSource(o.model, o.model_format, o.model_poll_interval or None)
        recommended = inputs.records | "Recommend" >> Recommend(
            model, top_k=o.top_k, profile=profile_config(ctx.options), streaming=ctx.streaming,
            metrics_namespace=PIPELINE)
        return Core(recommended)


RECOMMENDATIONS = Recommendations()
run = RECOMMENDATIONS.run
main = RECOMMENDATIONS.main


if __name__ == "__main__":
    raise SystemExit(main())

