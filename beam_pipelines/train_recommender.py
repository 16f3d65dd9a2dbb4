"""Train the recommender: user events -> a new model version in --output, evaluated.

The batch side of the recommendations: a backfill over files or a bounded Kafka range
learns which pages follow which within users' sessions (item-item co-visitation,
normalised), holds out the latest part of the data to measure it, and writes a new
version of the model directory that ``recommendations`` serves::

    python -m beam_pipelines.train_recommender --source=file --input='events/*.jsonl.gz' \\
        --output=models/ --dead_letter=rejected/
    python -m beam_pipelines.train_recommender --source=kafka --topic=user_events \\
        --start_at=2024-06-01T00:00:00Z --stop_at=end --output=models/

Each run writes ``--output/vN/`` (N one more than the last) with the model
(``model.joblib``, a scikit-learn compatible estimator; ``model.onnx``, the same scores
for ONNX Runtime), the vocabulary (``items.json``) and ``metadata.json`` (data range,
events, users, sessions, parameters, precision@k of the model and of the most-popular
baseline on the held-out split, and how the split was made), then points
``--output/LATEST`` at it; a running ``recommendations`` stream picks it up. The console
shows the version written. docs/recommendations.md explains each step.
"""

from __future__ import annotations

import argparse
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from beam_pipelines import options as opts
from beam_pipelines.recommendations import (
    ProfileOptions,
    planted_source,
    profile_config,
    read_events,
    refuse_window_flags,
    require_ml,
)
from beam_pipelines.sessions import SessionsOptions
from beam_pipelines.skeleton import Context, Core, Inputs, Pipeline, ResultSpec, SourceSpec
from transforms.base.errors import ConfigError
from transforms.contracts import USER_EVENTS
from transforms.recommend import store
from transforms.recommend.estimator import SIMILARITIES
from transforms.recommend.records import TrainedModel
from transforms.recommend.train import FORMATS, TrainConfig, TrainRecommender

__all__ = ["PIPELINE", "RESULTS", "TRAIN_RECOMMENDER", "TrainRecommenderOptions",
           "TrainRecommenderPipeline", "main", "run", "train_config"]

PIPELINE = "train_recommender"
DESCRIPTION = (__doc__ or "").splitlines()[0]
_DEFAULTS = TrainConfig()


def _formats(text: str) -> tuple[str, ...]:
    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    if not chosen or any(f not in FORMATS for f in chosen):
        raise argparse.ArgumentTypeError(
            f"expected a comma list of {','.join(FORMATS)}, got {text!r}")
    return chosen


class TrainRecommenderOptions(PipelineOptions):
    """train_recommender: sessions, the model, the held-out evaluation."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--pair_window", type=opts.positive_int, default=_DEFAULTS.pair_window,
            help="How many pages after a page (in one session) count as its successors; the "
            f"n-th counts 1/n. Default {_DEFAULTS.pair_window}.")
        parser.add_argument(
            "--similarity", type=opts.choice(*SIMILARITIES), default=_DEFAULTS.similarity,
            help="How co-visit counts are normalised: conditional (P(b after a), the best "
            "measured), cosine, lift or count. Default conditional.")
        parser.add_argument(
            "--neighbours", type=opts.positive_int, default=_DEFAULTS.neighbours,
            help=f"Successors kept per page. Default {_DEFAULTS.neighbours}.")
        parser.add_argument(
            "--popularity_weight", type=float, default=_DEFAULTS.popularity_weight,
            help="Weight of recent popularity blended into every score (users without "
            f"history get only that). Default {_DEFAULTS.popularity_weight:g}.")
        parser.add_argument(
            "--popularity_window", type=opts.positive_float,
            default=_DEFAULTS.popularity_window,
            help="Seconds before the end of the data whose views make the popular pages. "
            f"Default {_DEFAULTS.popularity_window:g} (a day).")
        parser.add_argument(
            "--holdout", type=opts.fraction, default=_DEFAULTS.holdout,
            help="Fraction of the data's time range, the latest, held out for evaluation "
            f"(0: no evaluation). Default {_DEFAULTS.holdout:g}.")
        parser.add_argument(
            "--max_items", type=opts.positive_int, default=_DEFAULTS.max_items,
            help="Vocabulary cap: the pages in most sessions. Default "
            f"{_DEFAULTS.max_items}.")
        parser.add_argument(
            "--eval_k", type=opts.positive_int, default=_DEFAULTS.k,
            help=f"k of the reported precision@k. Default {_DEFAULTS.k}.")
        parser.add_argument(
            "--model_formats", type=_formats, default=_DEFAULTS.formats,
            help="Model files to write, a comma list: sklearn (model.joblib, the default: "
            "measured faster) and/or onnx (model.onnx for --model_format=onnx; a dense "
            "pages x pages matrix, 4 bytes per cell).")


RESULTS = ResultSpec.of(TrainedModel, name=PIPELINE, key=["version"],
                        title="model version written", table="model_versions")


def train_config(options: PipelineOptions) -> TrainConfig:
    o = options.view_as(TrainRecommenderOptions)
    return TrainConfig(
        session_gap=options.view_as(SessionsOptions).session_gap or _DEFAULTS.session_gap,
        pair_window=o.pair_window,
        similarity=o.similarity, neighbours=o.neighbours, popularity_weight=o.popularity_weight,
        holdout=o.holdout, max_items=o.max_items, popularity_window=o.popularity_window,
        k=o.eval_k, profile=profile_config(options), formats=o.model_formats,
    ).validated()


class TrainRecommenderPipeline(Pipeline):
    """User events -> a new, evaluated model version (see the module docstring)."""

    name = PIPELINE
    description = DESCRIPTION
    contract = USER_EVENTS
    results = RESULTS
    # --session_gap is the sessions pipeline's flag: a session is the same thing in both.
    flags = (TrainRecommenderOptions, SessionsOptions, ProfileOptions, opts.BatchEngineOptions)
    # The model directory: --output applies with the (only) console sink.
    flag_rules = {"output": None}

    def check(self, options: PipelineOptions) -> None:
        io = options.view_as(opts.IOOptions)
        if not io.output:
            raise ConfigError("--output", "the model directory to write the new version to")
        if io.sink != "console":
            raise ConfigError("--sink", "console (the trainer writes its model to --output "
                              "and shows the version written)", io.sink)
        if opts.is_streaming(options):
            raise ConfigError("--streaming", "no --streaming: training reads a bounded input "
                              "(files, or Kafka with --stop_at)")
        refuse_window_flags(options, PIPELINE)
        config = train_config(options)
        for model_format in config.formats:
            require_ml(model_format)
        super().check(options)

    def read(self, pipeline: beam.Pipeline, source: SourceSpec, ctx: Context) -> Inputs:
        return read_events(pipeline, source, ctx)

    def synthetic_source(self, options: PipelineOptions) -> SourceSpec:
        return planted_source(options)

    def core(self, inputs: Inputs, ctx: Context) -> Core:
        if ctx.streaming:
            raise ConfigError("--source", "a bounded input to train on: files, or Kafka with "
                              "--stop_at (a topic range)")
        output = ctx.options.view_as(opts.IOOptions).output
        written = inputs.records | "Train" >> TrainRecommender(output, train_config(ctx.options))
        return Core(written)

    def finish(self, result: PipelineResult, options: PipelineOptions) -> None:
        output = options.view_as(opts.IOOptions).output
        version = store.latest_version(output)
        if version is None:
            return
        path = store.version_path(output, version)
        metrics = store.read_json(f"{path}/{store.METADATA}")["metrics"]
        line = f"{PIPELINE}: {path} is the LATEST model"
        if metrics["precision_at_k"] is not None:
            line += (f"; precision@{metrics['k']} {metrics['precision_at_k']:.4f} vs "
                     f"{metrics['baseline_precision_at_k']:.4f} for the most popular pages "
                     f"on {metrics['evaluated_clicks']} held-out clicks")
        print(line, file=sys.stderr, flush=True)


TRAIN_RECOMMENDER = TrainRecommenderPipeline()
run = TRAIN_RECOMMENDER.run
main = TRAIN_RECOMMENDER.main


if __name__ == "__main__":
    raise SystemExit(main())
