"""Every pipeline of the project, and the runner matrix: which bounded source, unbounded
source, sink and pipeline runs on which runner, and what a runner says when it cannot.

:data:`PIPELINES` lists the pipelines (name and module); :func:`load` gives a pipeline's
skeleton object. ``tests/runners/test_matrix.py`` iterates this module's data, so a
pipeline registered here runs through every pipeline cell of the matrix with no test of
its own, and a cell added here is a test. ``python -m beam_pipelines.registry`` prints the
matrix as the Markdown tables of docs/runners.md; a test keeps the committed ones current.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from typing import Optional

from beam_pipelines.skeleton import Pipeline

__all__ = ["BATCH_RUNNERS", "BOUNDED_SOURCES", "PIPELINES", "PIPELINE_REFUSALS", "REFUSALS",
           "Registered", "SINK_CELLS", "STREAMING_RUNNERS", "STREAMING_TESTS",
           "UNBOUNDED_SOURCES", "load", "matrix_markdown", "names", "sink_of"]


@dataclasses.dataclass(frozen=True)
class Registered:
    """A pipeline: its name (``--help``, metrics, file names) and its ``python -m`` module,
    which holds exactly one skeleton ``Pipeline`` object."""

    name: str
    module: str
    # What the pipeline writes to --output: "results" (rows to --sink) or "model" (a
    # model directory; --sink shows the version written).
    writes: str = "results"

    def load(self) -> Pipeline:
        module = importlib.import_module(self.module)
        found = [value for value in vars(module).values()
                 if isinstance(value, Pipeline) and value.name == self.name]
        if len(found) != 1:
            raise LookupError(f"{self.module} should hold one Pipeline named {self.name!r}, "
                              f"holds {len(found)}")
        return found[0]


PIPELINES: tuple[Registered, ...] = (
    Registered("pageviews", "beam_pipelines.pageviews"),
    Registered("iot_alerts", "beam_pipelines.iot_alerts"),
    Registered("error_rate", "beam_pipelines.error_rate"),
    Registered("sessions", "beam_pipelines.sessions"),
    Registered("fraud", "beam_pipelines.fraud"),
    Registered("train_recommender", "beam_pipelines.train_recommender", writes="model"),
    Registered("recommendations", "beam_pipelines.recommendations"),
)


def names() -> list[str]:
    return [p.name for p in PIPELINES]


def load(name: str) -> Pipeline:
    """The skeleton object of the registered pipeline ``name``."""
    for registered in PIPELINES:
        if registered.name == name:
            return registered.load()
    raise LookupError(f"no registered pipeline {name!r} (registered: {', '.join(names())})")


# ---- the runner matrix ---------------------------------------------------------------

BATCH_RUNNERS = ("DirectRunner", "PortableRunner", "DaskRunner")
# PortableRunner here is Beam's in-process job service (no --job_endpoint): what runs
# offline. With --job_endpoint of a Flink or Prism job service it streams.
STREAMING_RUNNERS = ("LocalStreamingRunner", "PortableRunner", "DaskRunner")

# Bounded sources: cell name -> how it is read (pageviews, small messy inputs).
BOUNDED_SOURCES: dict[str, str] = {
    "jsonl": "`--source=file`, JSON lines",
    "parquet": "`--source=file`, Parquet",
    "gzip": "`--source=file`, `.jsonl.gz`",
    "kafka": "`--source=kafka --stop_at=end` (an offset range of 3 partitions)",
    "pubsub": "`--source=pubsub --pubsub_max_messages=N`",
    "eventhubs": "`--source=eventhubs --eventhubs_stop_at=end` (3 partitions)",
    "synthetic": "`--source=synthetic` (bounded: `--synthetic_events`)",
}

# Unbounded sources: cell name -> how it is read.
UNBOUNDED_SOURCES: dict[str, str] = {
    "kafka": "`--source=kafka`",
    "pubsub": "`--source=pubsub`",
    "eventhubs": "`--source=eventhubs`",
    "synthetic": "`--source=synthetic --streaming`",
}

# The tests that stream each unbounded source on the LocalStreamingRunner (elsewhere in
# the suite; the matrix test checks that they exist).
STREAMING_TESTS: dict[str, str] = {
    "kafka": "tests/transforms/io/kafka/test_integration.py::"
             "test_streaming_pageviews_from_kafka_in_batches_equals_one_by_one",
    "pubsub": "tests/beam_pipelines/iot_alerts/test_pubsub_e2e.py::"
              "test_iot_alerts_streams_from_pubsub_until_cancelled",
    "eventhubs": "tests/transforms/io/eventhubs/test_connector.py::"
                 "test_unbounded_read_on_the_local_streaming_runner",
    "synthetic": "tests/runners/test_local_streaming.py::"
                 "test_pageviews_streaming_cli_prints_panes_as_they_fire",
}

# What a runner says (the start of its one line, exit code 2) when it cannot run a
# streaming pipeline.
REFUSALS: dict[str, str] = {
    "PortableRunner": "--runner: PortableRunner without --job_endpoint runs Beam's in-process "
                      "job service, which runs bounded (batch) pipelines only",
    "DaskRunner": "--runner: DaskRunner runs bounded (batch) pipelines only",
}

# Every sink, and the bounded-source cell (runner, source) that writes it; the other
# cells write JSON lines. Each is read back and compared with the DirectRunner's rows.
SINK_CELLS: dict[str, tuple[str, str]] = {
    "jsonl": ("PortableRunner", "jsonl"),
    "parquet": ("DaskRunner", "parquet"),
    "console": ("PortableRunner", "gzip"),
    "kafka": ("PortableRunner", "kafka"),
    "postgres": ("DaskRunner", "kafka"),
    "pubsub": ("DaskRunner", "pubsub"),
    "eventhubs": ("DaskRunner", "eventhubs"),
    "iceberg": ("PortableRunner", "synthetic"),
}

# (pipeline, runner) -> why the runner refuses it at submission (none today: every
# registered pipeline runs on every batch runner from a file).
PIPELINE_REFUSALS: dict[tuple[str, str], str] = {}


def sink_of(runner: str, source: str) -> str:
    """The sink the bounded cell (runner, source) writes."""
    for sink, cell in SINK_CELLS.items():
        if cell == (runner, source):
            return sink
    return "jsonl"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def matrix_markdown() -> str:
    """The matrix as the Markdown of docs/runners.md's "The runner matrix" section body."""
    lines = [
        "Bounded sources (pageviews over a few hundred messy events, dead letters kept): each",
        "cell gives the DirectRunner's counts and dead letters, and writes the sink named.",
        "",
        *_table(["bounded source", "read as", *BATCH_RUNNERS], [
            [name, how, *(("reference" if runner == "DirectRunner" else "same")
                          + f", `--sink={sink_of(runner, name)}`" for runner in BATCH_RUNNERS)]
            for name, how in BOUNDED_SOURCES.items()]),
        "",
        "Unbounded sources: streamed by the test named, or refused at submission, before",
        "anything is read, in one line (exit code 2) that starts as shown below the table.",
        "",
        *_table(["unbounded source", "read as", *STREAMING_RUNNERS], [
            [name, how, f"streams: `{STREAMING_TESTS[name]}`",
             *(f"refused ({runner})" for runner in STREAMING_RUNNERS[1:])]
            for name, how in UNBOUNDED_SOURCES.items()]),
        "",
        *(f"- refused ({runner}): `error: {line} ...`" for runner, line in REFUSALS.items()),
        "",
        "Pipelines (each from a file of its own contract's messy inputs, through the",
        "skeleton): each cell gives the DirectRunner's results and dead letters.",
        "",
        *_table(["pipeline", "module", *BATCH_RUNNERS], [
            [p.name, f"`{p.module}`", *(
                "reference" if runner == "DirectRunner"
                else f"refused: {PIPELINE_REFUSALS[(p.name, runner)]}"
                if (p.name, runner) in PIPELINE_REFUSALS else "same"
                for runner in BATCH_RUNNERS)]
            for p in PIPELINES]),
    ]
    return "\n".join(lines) + "\n"


def _main(argv: Optional[list[str]] = None) -> int:
    sys.stdout.write(matrix_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
