"""One small function per runner: check the options it needs, fill sensible defaults.

Each preset takes the parsed PipelineOptions and returns them ready to run, or raises
:class:`~transforms.base.errors.ConfigError` / :class:`~transforms.base.errors.NotAvailableError`
with one line naming the flag to pass. Nothing here downloads anything: where Beam
would fetch a binary or a jar at run time (Prism, the Flink job server), the preset
fails within seconds unless a local copy is given or already cached.
"""

from __future__ import annotations

import atexit
import glob
import logging
import os
import shutil
import socket
import tempfile
import threading
from typing import Callable
from urllib.parse import urlparse

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PipelineOptions,
    PortableOptions,
    PrismRunnerOptions,
    StandardOptions,
    TestOptions,
)
from apache_beam.runners.runner import PipelineRunner

from runners.options import RunnerPresetOptions
from transforms.base.errors import ConfigError, NotAvailableError
from transforms.base.extras import require

__all__ = [
    "DASK", "dask", "dataflow", "DEFAULT_CHECKPOINTING_MS", "direct", "DRY_RUN", "DryRunRunner",
    "FLEX_TEMPLATE", "flink", "local_dask_cluster", "local_job_endpoint", "LOCAL_STREAMING",
    "local_streaming", "OFFLINE_DIRECT", "portable", "PRESETS", "prism"
]

_LOG = logging.getLogger(__name__)

LOCAL_STREAMING = "runners.local_streaming.LocalStreamingRunner"
OFFLINE_DIRECT = "runners.direct.OfflineDirectRunner"
DASK = "runners.dask.DaskRunner"
DRY_RUN = "runners.presets.DryRunRunner"
FLEX_TEMPLATE = "runners.dataflow.SubmitOnlyDataflowRunner"
DEFAULT_CHECKPOINTING_MS = 60_000

Preset = Callable[[PipelineOptions], PipelineOptions]


def _set_runner(options: PipelineOptions, runner: str) -> None:
    options.view_as(StandardOptions).runner = runner


def _streaming(options: PipelineOptions) -> bool:
    return bool(options.view_as(StandardOptions).streaming)


def _endpoint(flag: str, value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(flag, "HOST:PORT of a running job service", value)
    return host, int(port)


def _check_reachable(flag: str, value: str, timeout: float, what: str) -> None:
    """Fail within ``timeout`` seconds, not after a gRPC retry loop, when nothing listens."""
    host, port = _endpoint(flag, value)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        raise NotAvailableError(
            f"{flag}: nothing accepts connections at {value} ({exc.strerror or exc}); "
            f"{what}"
        ) from None


# ---- DirectRunner and the local streaming runner ---------------------------------------

def direct(options: PipelineOptions) -> PipelineOptions:
    """Batch: Beam's DirectRunner (without its Prism download). Streaming: the local
    streaming runner.

    Beam's DirectRunner in streaming mode would try to download Prism, then run the
    pipeline on the batch FnApiRunner, which reads an unbounded source to its end before
    any window fires. Pass ``--runner=PrismRunner --prism_location=...`` to use Prism.
    """
    if _streaming(options):
        _LOG.info("--streaming on DirectRunner: running on the local streaming runner")
        _set_runner(options, LOCAL_STREAMING)
    elif not options.view_as(PrismRunnerOptions).prism_location and _cached_prism() is None:
        # No local Prism: skip Beam's attempt to download one (no timeout) before it
        # falls back to the FnApiRunner anyway.
        _set_runner(options, OFFLINE_DIRECT)
    return options


def local_streaming(options: PipelineOptions) -> PipelineOptions:
    _set_runner(options, LOCAL_STREAMING)
    return options


# ---- Prism --------------------------------------------------------------------------

def _cached_prism() -> str | None:
    found = sorted(glob.glob(os.path.expanduser("~/.apache_beam/cache/prism/bin/*")))
    return found[-1] if found else None


def prism(options: PipelineOptions) -> PipelineOptions:
    prism_options = options.view_as(PrismRunnerOptions)
    location = prism_options.prism_location
    if not location:
        cached = _cached_prism()
        if cached is None:
            raise ConfigError(
                "--prism_location",
                "the path of a local Prism binary (PrismRunner would download one from "
                "GitHub, which needs the internet; or use --runner=LocalStreamingRunner)",
            )
        prism_options.prism_location = cached
    elif urlparse(location).scheme in ("http", "https"):
        raise ConfigError("--prism_location", "a local file path, not a URL (no downloads)", location)
    elif not os.path.isfile(location):
        raise ConfigError("--prism_location", "the path of an existing Prism binary", location)
    return options


# ---- PortableRunner: a job endpoint, or Beam's Python job service in this process ----

_job_service_lock = threading.Lock()
_job_service: tuple[object, int] | None = None


def local_job_endpoint() -> str:
    """Start (once per process) Beam's Python job service on a free local port.

    The pipeline is then submitted over gRPC exactly as to a remote job service, and
    executed by the job service's FnApiRunner with workers in this process (LOOPBACK).
    """
    global _job_service
    with _job_service_lock:
        if _job_service is None:
            from apache_beam.runners.portability.local_job_service import LocalJobServicer

            servicer = LocalJobServicer()
            port = servicer.start_grpc_server(0)
            atexit.register(servicer.stop)
            _job_service = (servicer, port)
        return f"localhost:{_job_service[1]}"


def portable(options: PipelineOptions) -> PipelineOptions:
    portable_options = options.view_as(PortableOptions)
    timeout = options.view_as(RunnerPresetOptions).job_service_startup_timeout
    if portable_options.job_endpoint and portable_options.job_endpoint != "embed":
        _check_reachable(
            "--job_endpoint", portable_options.job_endpoint, timeout,
            "start the job service there, or omit --job_endpoint to run Beam's Python "
            "job service in this process",
        )
        return options
    if _streaming(options):
        # The in-process job service executes on the batch FnApiRunner: an unbounded
        # source would be read "to its end" and no window would ever fire.
        raise ConfigError.from_message(
            "--runner: PortableRunner without --job_endpoint runs Beam's in-process job "
            "service, which runs bounded (batch) pipelines only, and this one streams "
            "(--streaming, or an unbounded source); pass --job_endpoint=HOST:PORT of a "
            "streaming job service (Flink, Prism), or use --runner=LocalStreamingRunner"
        )
    portable_options.job_endpoint = local_job_endpoint()
    if not portable_options.environment_type:
        # The default environment is DOCKER (pulls an SDK image); the in-process job
        # service runs the workers here.
        portable_options.environment_type = "LOOPBACK"
    return options


# ---- FlinkRunner ----------------------------------------------------------------------

def _cached_flink_jar(flink_version: str) -> str | None:
    """Beam's cached copy of the default Flink job server jar, if it was ever downloaded."""
    try:
        from apache_beam.utils.subprocess_server import JavaJarServer

        url = JavaJarServer.path_to_beam_jar(f":runners:flink:{flink_version}:job-server:shadowJar")
        cached = os.path.join(JavaJarServer.JAR_CACHE, os.path.basename(url))
    except Exception:  # an unknown Flink version: no cached jar to find
        return None
    return cached if os.path.isfile(cached) else None


def flink(options: PipelineOptions) -> PipelineOptions:
    flink_options = options.view_as(FlinkRunnerOptions)
    portable_options = options.view_as(PortableOptions)
    presets = options.view_as(RunnerPresetOptions)
    if flink_options.parallelism is not None and flink_options.parallelism != -1 and (
        flink_options.parallelism <= 0
    ):
        raise ConfigError("--parallelism", "a whole number > 0", flink_options.parallelism)
    if _streaming(options) and presets.checkpointing_interval is None:
        presets.checkpointing_interval = DEFAULT_CHECKPOINTING_MS
    needs = (
        "--flink_master=HOST:PORT (or [local]), --parallelism=N and "
        "--checkpointing_interval=MS"
    )
    if portable_options.job_endpoint:
        _check_reachable(
            "--job_endpoint", portable_options.job_endpoint,
            presets.job_service_startup_timeout,
            "start a Flink job server (apache/beam_flink*_job_server) there, or pass "
            "--flink_job_server_jar=PATH to start one from a local jar",
        )
        return options
    jar = flink_options.flink_job_server_jar
    if jar:
        if urlparse(jar).scheme in ("http", "https"):
            raise ConfigError(
                "--flink_job_server_jar", "a local jar path, not a URL (no downloads)", jar
            )
        if not os.path.isfile(jar):
            raise ConfigError("--flink_job_server_jar", "the path of an existing job server jar", jar)
        return options
    cached = _cached_flink_jar(flink_options.flink_version)
    if cached:
        flink_options.flink_job_server_jar = cached
        return options
    raise ConfigError.from_message(
        "--flink_job_server_jar: FlinkRunner needs the Beam Flink job server jar "
        f"(beam-runners-flink-{flink_options.flink_version}-job-server), which Beam would "
        "download from Maven Central: pass --flink_job_server_jar=PATH to a local copy, or "
        f"--job_endpoint=HOST:PORT of a running Flink job server; with {needs}"
    )


# ---- DataflowRunner -------------------------------------------------------------------

def dataflow(options: PipelineOptions) -> PipelineOptions:
    gcp = options.view_as(GoogleCloudOptions)
    for flag, value in (("--project", gcp.project), ("--region", gcp.region)):
        if not value:
            raise ConfigError(flag, f"a Google Cloud {flag[2:]} for DataflowRunner")
    if not gcp.temp_location:
        raise ConfigError("--temp_location", "a gs://BUCKET/PATH for DataflowRunner's temp files")
    for flag, value in (("--temp_location", gcp.temp_location),
                        ("--staging_location", gcp.staging_location)):
        if value and not value.startswith("gs://"):
            raise ConfigError(flag, "a gs://BUCKET/PATH", value)
    if not gcp.staging_location:
        gcp.staging_location = gcp.temp_location.rstrip("/") + "/staging"
    if not gcp.job_name:
        # Flex templates launch with a job name; a manual run gets a readable one.
        gcp.job_name = "beam-pipelines-" + os.environ.get("USER", "job").lower()[:20]
    if options.view_as(TestOptions).dry_run:
        _set_runner(options, DRY_RUN)
        return options
    _require_gcp()
    if os.environ.get("FLEX_TEMPLATE_PYTHON_PY_FILE"):
        _set_runner(options, FLEX_TEMPLATE)  # the template launcher submits, never waits
    return options


def _require_gcp() -> None:
    try:
        import apitools  # noqa: F401  (apache-beam[gcp])
        from google.cloud import storage  # noqa: F401
    except ImportError:
        raise NotAvailableError(
            "--runner=DataflowRunner needs Beam's Google Cloud client libraries: "
            "pip install 'apache-beam[gcp]' (or pass --dry_run=True to print the job graph)"
        ) from None


class DryRunRunner(PipelineRunner):
    """Prints the job graph a runner would receive, and submits nothing.

    ``--dry_run`` with DataflowRunner: the options are checked as for a real
    submission, then every transform of the portable pipeline is listed.
    """

    def run_pipeline(self, pipeline, options: PipelineOptions):
        from apache_beam.runners.runner import PipelineResult, PipelineState

        proto = pipeline.to_runner_api()
        gcp = options.view_as(GoogleCloudOptions)
        print(f"dry run: DataflowRunner job {gcp.job_name!r} in {gcp.project}/{gcp.region}, "
              f"staging {gcp.staging_location}; not submitted")
        components = proto.components
        for root in proto.root_transform_ids:
            _print_transform(components, root, 0)

        class _Result(PipelineResult):
            def wait_until_finish(self, duration=None):
                return PipelineState.DONE

            def metrics(self):
                raise NotImplementedError("a dry run has no metrics")

        return _Result(PipelineState.DONE)


def _print_transform(components, transform_id: str, depth: int) -> None:
    transform = components.transforms[transform_id]
    urn = transform.spec.urn or "composite"
    print(f"{'  ' * depth}{transform.unique_name or transform_id}  [{urn}]")
    for sub in transform.subtransforms:
        _print_transform(components, sub, depth + 1)


# ---- DaskRunner -----------------------------------------------------------------------

_cluster_lock = threading.Lock()
_cluster = None


def local_dask_cluster(workers: int) -> str:
    """Start (once per process) a local dask.distributed cluster; its scheduler address."""
    global _cluster
    with _cluster_lock:
        if _cluster is None:
            distributed = require("dask", "dask.distributed")
            # The workers' scratch space in a folder of this process, removed at exit
            # (Dask's default, TMP/dask-scratch-space, stays behind after every run).
            scratch = tempfile.mkdtemp(prefix="beam-pipelines-dask-")
            atexit.register(shutil.rmtree, scratch, True)
            try:
                _cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    # Any free port: with None Dask still tries 8787, and warns when
                    # another cluster holds it.
                    dashboard_address=":0", local_directory=scratch,
                )
            except Exception as exc:  # workers that cannot start: one line, not a traceback
                raise NotAvailableError(
                    f"--dask_client_address: could not start a local dask cluster ({exc}); "
                    "pass --dask_client_address=tcp://HOST:8786 of a running scheduler"
                ) from None
            atexit.register(_cluster.close)
        return _cluster.scheduler_address


def dask(options: PipelineOptions) -> PipelineOptions:
    """The local cluster (no ``--dask_client_address``) is started by the runner once it
    has checked the pipeline (``runners.dask_cluster``): a refusal starts nothing."""
    require("dask", "dask.distributed")
    if _streaming(options):
        raise ConfigError.from_message(
            "--runner: DaskRunner runs bounded (batch) pipelines only, and this one streams "
            "(--streaming, or an unbounded source: bound the read, e.g. Kafka --stop_at=end); "
            "for streaming use --runner=FlinkRunner, DataflowRunner or LocalStreamingRunner"
        )
    _set_runner(options, DASK)
    return options


PRESETS: dict[str, Preset] = {
    "direct": direct,
    "switchingdirect": direct,
    "localstreaming": local_streaming,
    "prism": prism,
    "portable": portable,
    "flink": flink,
    "dataflow": dataflow,
    "dask": dask,
}
