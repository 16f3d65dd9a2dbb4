"""Command-line options shared by the pipelines, and strict parsing of them.

Beam's own parser ignores unknown flags with a log line and prints a usage block plus a
traceback-like message for bad values. Our users get one line instead:
``--window_size: expected a whole number of seconds > 0, got '-5'``. :func:`parse`
checks every flag (ours and Beam's runner flags) before Beam sees them.

Connector flags live in their own modules (``options/kafka.py`` ...); importing this
package registers them all, so ``--help`` and validation know every flag. The value
types are in ``options/values.py``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Iterable, Optional, Sequence, Type

from apache_beam.options.pipeline_options import (
    PipelineOptions,
    StandardOptions,
    _BeamArgumentParser,
)

# Every option module is imported here, so --help and strict parsing know every flag.
from beam_pipelines.options import (  # noqa: F401
    eventhubs,
    formats,
    iceberg,
    kafka,
    metrics,
    notifications,
    pubsub,
    quality,
)
from beam_pipelines.options.notifications import seal_secret_flags
from beam_pipelines.options.values import (  # noqa: F401  (the flag types, for pipelines)
    choice,
    fraction,
    from_rule,
    non_empty,
    non_negative_seconds,
    positive_float,
    positive_int,
    positive_seconds,
    seconds,
)
from runners import options as runner_options  # noqa: F401  (RunnerPresetOptions)
from runners.options import register_dask_options
from transforms.base.errors import ConfigError

__all__ = ["BATCH_ENGINES", "BatchEngineOptions", "IOOptions", "RunOptions", "SINKS", "SOURCES",
           "WindowOptions", "all_option_classes", "choice", "fraction", "from_rule", "is_streaming", "non_empty",
           "non_negative_seconds", "parse", "positive_float", "positive_int", "positive_seconds",
           "seconds"]

SOURCES = ("synthetic", "file", "kafka", "pubsub", "eventhubs")
SINKS = ("console", "jsonl", "parquet", "postgres", "iceberg", "kafka", "pubsub", "eventhubs",
         "slack", "pagerduty", "webhook")
BATCH_ENGINES = ("arrow", "records")


# ---- the shared option groups -----------------------------------------------------

class IOOptions(PipelineOptions):
    """Where records come from and where results and rejected records go."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--source",
            type=choice(*SOURCES),
            default=None,
            help="Where events come from: synthetic (built-in generator, the default), file "
            "(--input), kafka, pubsub or eventhubs. Bounded sources run as batch.",
        )
        parser.add_argument(
            "--input",
            type=non_empty("a file path or glob"),
            default=None,
            help="Files to read; given without --source it means --source=file (with "
            "another --source it is refused). JSON lines (optionally .gz/.bz2/.zst) or "
            ".parquet with the same fields; any Beam filesystem path (gs://, s3://, ...). A "
            "glob ('*' within a folder, '**' across folders), one file, or a directory: every "
            "file under it, subfolders included, except names starting with '.' or '_'.",
        )
        parser.add_argument(
            "--sink",
            type=choice(*SINKS),
            default="console",
            help="Where results go: console (default), jsonl, parquet, postgres or iceberg "
            "(an Apache Iceberg table); kafka, pubsub and eventhubs with their connectors; "
            "slack, pagerduty or webhook send the pipeline's alerts or incidents instead "
            "(see --notify to do both).",
        )
        parser.add_argument(
            "--output",
            default=None,
            help="Directory for --sink=jsonl/parquet, or a PostgreSQL DSN for "
            "--sink=postgres (postgresql://USER@HOST:PORT/DB), NAMESPACE.TABLE for "
            "--sink=iceberg, a topic for message sinks, or the URL of --sink=slack/webhook "
            "(a secret: the URL, env:NAME or file:PATH).",
        )
        parser.add_argument(
            "--output_table",
            default=None,
            help="Table for --sink=postgres (created if missing). Default: the pipeline's name.",
        )
        parser.add_argument(
            "--sink_retry_seconds",
            type=non_negative_seconds,
            default=120.0,
            help="How long a sink keeps retrying transient failures (a database restart or "
            "failover, a lost connection, a serialization failure) before the run fails with "
            "one line; backoff doubles from 0.2 s to 5 s, jittered. 0 retries nothing. "
            "Default 120 (outlasts a 30 s database restart). PostgreSQL sink.",
        )
        parser.add_argument(
            "--dead_letter",
            default=None,
            help="Where rejected records go: a directory (JSON lines) or kafka://TOPIC. "
            "Without it rejected records are counted and reported at the end of the run.",
        )
        parser.add_argument(
            "--synthetic_events",
            type=positive_int,
            default=5000,
            help="How many events the synthetic source generates (bounded run). Default 5000.",
        )
        parser.add_argument(
            "--synthetic_seed",
            type=int,
            default=42,
            help="Seed of the synthetic source; the same seed gives the same events.",
        )
        parser.add_argument(
            "--synthetic_rate",
            type=positive_float,
            default=4.0,
            help="Synthetic events per second (of event time in batch, of wall-clock time "
            "when streaming). Default 4.",
        )
        parser.add_argument(
            "--synthetic_malformed",
            type=fraction,
            default=0.01,
            help="Fraction of synthetic inputs that are malformed, to show dead letters. "
            "Default 0.01.",
        )


class WindowOptions(PipelineOptions):
    """Event-time windows and triggers; each pipeline has its own default size."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--window_size",
            type=seconds(1),
            default=None,
            help="Window length in seconds (pageviews: 300, iot_alerts: 60). Windows are "
            "aligned to the epoch.",
        )
        parser.add_argument(
            "--window_period",
            type=seconds(1),
            default=None,
            help="Sliding windows: start a window every this many seconds (<= --window_size). "
            "Unset: tumbling windows.",
        )
        parser.add_argument(
            "--allow_many_windows",
            action="store_true",
            default=False,
            help="Run sliding windows that put each event in more than 1000 windows "
            "(--window_size / --window_period); refused without it, as that much work per "
            "event is rarely meant.",
        )
        parser.add_argument(
            "--allowed_lateness",
            type=seconds(0),
            default=0,
            help="Streaming: seconds after a window's end during which late events still "
            "update it (a LATE pane); later events are dead-lettered and counted. Default 0.",
        )
        parser.add_argument(
            "--early_firing",
            type=positive_seconds,
            default=None,
            help="Streaming: emit EARLY panes with the running (accumulating) count every this "
            "many seconds of processing time, like Spark's 'update' output mode; fractions "
            "such as 0.1 for sub-second updates.",
        )


class BatchEngineOptions(PipelineOptions):
    """How user events from files and Kafka are parsed: vectorized or one by one."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--batch_engine",
            type=choice(*BATCH_ENGINES),
            default="arrow",
            help="How records from files (batch) and Kafka (batch and streaming) are parsed "
            "(pageviews: and counted): arrow (vectorized record batches, the default) or "
            "records (one record at a time, the reference). Same results either way; other "
            "sources always use records.",
        )


# ---- strict parsing ----------------------------------------------------------------

class _StrictParser(_BeamArgumentParser):
    def error(self, message: str):  # argparse calls this and expects no return
        raise ConfigError.from_message(message)


def all_option_classes() -> list[Type[PipelineOptions]]:
    """Every PipelineOptions class imported so far, once each."""
    return list({cls.__name__ + cls.__module__: cls for cls in PipelineOptions.__subclasses__()}.values())


# --help group titles: what each group is for, at a glance (the class docstring follows).
_TITLES = {
    "IOOptions": "Input and output (--source, --sink, --dead_letter)",
    "WindowOptions": "Event-time windows",
    "BatchEngineOptions": "Parsing engine",
    "QualityOptions": "Data quality",
    "KafkaOptions": "Kafka (--source=kafka, --sink=kafka, --dead_letter=kafka://TOPIC)",
    "PubSubOptions": "Pub/Sub (--source=pubsub, --sink=pubsub, --dead_letter=pubsub://...)",
    "EventHubsOptions": "Event Hubs (--source=eventhubs, --sink=eventhubs)",
    "IcebergOptions": "Iceberg (--sink=iceberg)",
    "FormatOptions": "Message formats (Kafka, Pub/Sub, Event Hubs payloads)",
    "NotificationOptions": "Notifications (--sink=slack|pagerduty|webhook, --notify)",
    "MetricsOptions": "Metrics (Prometheus)",
    "RunnerPresetOptions": "Runner presets",
}
# The connector groups in --help order, after the pipeline's own flags.
_CONNECTOR_ORDER = ("KafkaOptions", "PubSubOptions", "EventHubsOptions", "IcebergOptions",
                    "FormatOptions", "NotificationOptions", "MetricsOptions",
                    "RunnerPresetOptions")


def _help(prog: str, classes: Sequence[Type[PipelineOptions]], description: str,
          exclude: Sequence[Type[PipelineOptions]] = ()) -> str:
    """Every flag the pipeline takes, grouped: its own classes first (``classes``), then
    each connector's, then the runner; ``exclude`` (other pipelines' flags) left out."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, add_help=True, conflict_handler="resolve",
        usage=f"{prog} [--flag=value ...]  (every flag below; Beam's runner flags too)",
    )
    ours = ("beam_pipelines.", "transforms.", "runners.")
    connectors = [
        cls for cls in all_option_classes()
        if cls.__module__.startswith(ours) and cls not in classes and cls not in exclude
        and "_add_argparse_args" in cls.__dict__
    ]
    rank = {name: i for i, name in enumerate(_CONNECTOR_ORDER)}
    connectors.sort(key=lambda c: (rank.get(c.__name__, len(rank)), c.__module__))
    for cls in [*classes, *connectors]:
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None
        group = parser.add_argument_group(_TITLES.get(cls.__name__, cls.__name__), doc)
        cls._add_argparse_args(group)  # type: ignore[arg-type]  # groups take add_argument too
        if cls is kafka.KafkaOptions:  # Beam defines the flag; it belongs here for a reader
            group.add_argument("--bootstrap_servers", metavar="HOST:PORT[,HOST:PORT...]",
                               help="The Kafka cluster of every Kafka source, sink and "
                               "dead-letter topic (and fraud's kafka:// blocklists). "
                               "Default localhost:9092.")
    group = parser.add_argument_group("Runner", "Any Beam runner flag is accepted as well.")
    group.add_argument("--runner", help="DirectRunner (default), PortableRunner, FlinkRunner, "
                       "DataflowRunner, DaskRunner, ... (see the README's runner table)")
    group.add_argument("--streaming", action="store_true",
                       help="Run as a stream (implied by unbounded sources).")
    return parser.format_help()


class RunOptions(PipelineOptions):
    """The options of one run: PipelineOptions that make each view once.

    Beam asks for a view (``view_as``) several times for every transform it applies and
    for every type check, and each view builds an argparse parser over the flags (about
    2 ms): a file backfill of pageviews asked for some 400, about 0.7 s of every run.
    Views of one options object share one dict of values, so one view per class serves
    every caller alike; a view set through (``view_as(StandardOptions).streaming = True``)
    is seen by all. Adds no flags. Pickles without its views."""

    def view_as(self, cls):  # type: ignore[no-untyped-def]  # Beam's signature
        views = self.__dict__.get("_views")
        if views is None:
            views = {}
            object.__setattr__(self, "_views", views)  # PipelineOptions refuses unknown names
        view = views.get(cls)
        if view is None:
            view = views[cls] = super().view_as(cls)
        return view

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state


def parse(
    argv: Optional[Iterable[str]],
    classes: Sequence[Type[PipelineOptions]],
    *,
    prog: str,
    description: str = "",
    exclude: Sequence[Type[PipelineOptions]] = (),
) -> PipelineOptions:
    """Validate ``argv`` strictly and return PipelineOptions over it.

    ``--help`` prints the pipeline's own flags, then every connector's, grouped, and
    exits; ``exclude`` are option classes --help leaves out (other pipelines'). Unknown flags and bad values
    raise ConfigError naming the flag and the expected form.
    """
    flags = list(sys.argv[1:] if argv is None else argv)
    register_dask_options(["--help"] if "-h" in flags else flags)
    if "-h" in flags or "--help" in flags:
        print(_help(prog, classes, description, exclude))
        raise SystemExit(0)
    parser = _StrictParser(allow_abbrev=False, add_help=False)
    for cls in all_option_classes():
        cls._add_argparse_args(parser)
    _refuse_empty_values(flags)
    _, unknown = parser.parse_known_args(flags)
    if unknown:
        first = next((u for u in unknown if u.startswith("-")), unknown[0])
        name = first.split("=", 1)[0]
        if name.startswith("-"):
            raise ConfigError.from_message(
                f"{name}: unknown flag (see {prog} --help for the flags it takes)"
            )
        raise ConfigError("arguments", "--flag=value pairs only", first)
    # Literal secrets (notification keys and URLs) leave the flags before anything keeps them.
    return RunOptions(seal_secret_flags(flags))


def _refuse_empty_values(flags: Sequence[str]) -> None:
    """``--action=`` (or ``--action ""``) is a mistake, not "no filter": an empty value
    would count everything or mean a default silently. No flag takes an empty value."""
    for i, token in enumerate(flags):
        if not token.startswith("--"):
            continue
        name, eq, value = token.partition("=")
        empty = (eq and not value.strip()) or (
            not eq and i + 1 < len(flags) and flags[i + 1] == "")
        if empty:
            raise ConfigError.from_message(f"{name}: expected a value, got an empty one")


def is_streaming(options: PipelineOptions) -> bool:
    return bool(options.view_as(StandardOptions).streaming)
