"""Runner flags that Beam's Python SDK does not define itself.

Most runner flags are Beam's own and are accepted as they are (``--flink_master``,
``--flink_job_server_jar``, ``--parallelism``, ``--job_endpoint``, ``--environment_type``,
``--prism_location``, ``--project``, ``--region``, ``--temp_location``,
``--staging_location``, ``--dry_run``, ``--dask_client_address`` ...). Beam defines its
Dask flags in its Dask runner module, whose import costs about a second (dask and
distributed); :func:`register_dask_options` imports it only for a run that mentions Dask.
"""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

__all__ = ["RunnerPresetOptions", "positive_int", "register_dask_options"]


def positive_int(text: str) -> int:
    """A whole number > 0: the one such flag type (``beam_pipelines.options.values``
    re-exports it; it lives here because the runners layer sits below the application)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, got {text!r}")
    return value


def register_dask_options(flags: list[str]) -> None:
    """Register Beam's DaskOptions (``--dask_client_address`` ...) when ``flags`` mention
    Dask or ask for help, so the strict parser knows them."""
    if not any("dask" in flag.lower() for flag in flags) and "--help" not in flags:
        return
    try:
        from apache_beam.runners.dask import dask_runner  # noqa: F401
    except ImportError:  # without the [dask] extra the DaskRunner preset says what to install
        pass


class RunnerPresetOptions(PipelineOptions):
    """Runner presets: settings Beam's Python SDK has no flag for."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--checkpointing_interval",
            type=positive_int,
            default=None,
            help="FlinkRunner: milliseconds between Flink checkpoints (passed to Flink's "
            "checkpointingInterval). Streaming default: 60000.",
        )
        parser.add_argument(
            "--dask_local_workers",
            type=positive_int,
            default=None,
            help="DaskRunner without --dask_client_address: worker processes of the local "
            "dask.distributed cluster started for the run. Default 2.",
        )
        parser.add_argument(
            "--job_service_startup_timeout",
            type=positive_int,
            default=10,
            help="PortableRunner/FlinkRunner: seconds to wait for --job_endpoint to accept "
            "connections before failing. Default 10.",
        )
