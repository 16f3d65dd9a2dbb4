"""The optional extras a run needs, checked before anything runs.

A source or sink imports its client library when it is built, which can be after the
whole graph was parsed (``WriteToPostgres`` connects on a worker) and then fails with a
traceback. :func:`check_extras` imports each one the chosen ``--source``, ``--sink`` and
``--dead_letter`` need at start instead, and a missing one is one line naming the flag and
the extra::

    --sink=postgres: psycopg is not installed: --sink=postgres needs the [postgres] extra
    (pip install 'beam-pipelines[postgres]')

The other extras are checked where their flags are read: ``--metrics_port`` and
``--pushgateway`` while parsing (options/metrics.py), ``--format`` in wiring/formats.py,
``--runner=DaskRunner`` in runners/presets.py, the [ml] extra by the recommender.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import IOOptions
from beam_pipelines.options.eventhubs import EventHubsOptions
from transforms.base.extras import require

__all__ = ["EXTRAS", "check_extras"]

# connector (a --source, --sink or --dead_letter scheme) -> (extra, module to import)
EXTRAS: dict[str, tuple[str, str]] = {
    "kafka": ("kafka", "kafka"),
    "pubsub": ("pubsub", "google.cloud.pubsub_v1"),
    "eventhubs": ("eventhubs", "azure.eventhub"),
    "postgres": ("postgres", "psycopg"),
    "iceberg": ("iceberg", "pyiceberg"),
}


def check_extras(options: PipelineOptions, *, default_source: str) -> None:
    """Import what the run's source, sink and dead-letter target need, or raise
    MissingExtraError naming the flag and the extra to install."""
    io = options.view_as(IOOptions)
    wanted = [("--source", io.source or default_source), ("--sink", io.sink or "console")]
    target = io.dead_letter or ""
    if "://" in target:
        wanted.append(("--dead_letter", target.split("://", 1)[0]))
    for flag, connector in wanted:
        if connector in EXTRAS:
            extra, module = EXTRAS[connector]
            shown = f"{flag}={connector}://..." if flag == "--dead_letter" else f"{flag}={connector}"
            require(extra, module, shown)
    eh = options.view_as(EventHubsOptions)
    if eh.eventhubs_checkpoint_store and (io.source == "eventhubs"):
        require("eventhubs", "azure.eventhub.extensions.checkpointstoreblob",
                "--eventhubs_checkpoint_store")
