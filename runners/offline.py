"""No jar downloads at run time: Beam's jar fetches fail at once, saying what to pass.

Beam downloads Java jars from Maven Central when a pipeline needs one it does not have:
an expansion service for a cross-language transform, a job server for Flink, Spark or
Kafka Streams. Offline (or behind a firewall that drops connections) that fails late or
hangs. ``runners.prepare`` installs :func:`install_download_guard`, which replaces the
download with a one-line :class:`~transforms.base.errors.NotAvailableError` naming the
jar and the ways to provide it. Jars given as local paths, service endpoints, or already
in Beam's cache are used as before.
"""

from __future__ import annotations

import os

from transforms.base.errors import NotAvailableError

__all__ = ["install_download_guard", "refusal"]


# A job server jar -> the runner that runs on it and the flag that gives a local copy.
_JOB_SERVERS = (("flink", "FlinkRunner", "--flink_job_server_jar"),
                ("spark", "SparkRunner", "--spark_job_server_jar"))


def refusal(download_url: str, cached_jar_path: str) -> str:
    """The one line of a refused download, naming the flags of the jar's kind: a runner's
    job server (its own jar flag, or --job_endpoint) or an expansion service."""
    jar = os.path.basename(download_url)
    for word, runner, flag in _JOB_SERVERS:
        if word in jar and "job-server" in jar:
            return (f"{flag}: {runner} needs its job server {jar}, which Beam would download "
                    f"from {download_url}; there are no downloads at run time. Pass "
                    f"{flag}=PATH to a local copy, --job_endpoint=HOST:PORT of a running job "
                    f"server, or put the jar at {cached_jar_path}")
    return (f"--beam_services: Beam needs {jar}, which it would download from {download_url}; "
            "there are no downloads at run time. Pass --beam_services='{\"GRADLE_TARGET\": "
            "\"/path/to/" + jar + "\"}' (or HOST:PORT of a running expansion service), or put "
            f"the jar at {cached_jar_path}")


def _refuse_download(cls, download_url, cached_jar_path, user_agent=None):
    raise NotAvailableError(refusal(download_url, cached_jar_path))


def install_download_guard() -> None:
    """Make Beam's jar downloads fail fast. Idempotent."""
    from apache_beam.utils.subprocess_server import JavaJarServer

    current = JavaJarServer.__dict__.get("_download_jar_to_cache")
    if getattr(getattr(current, "__func__", None), "_beam_pipelines_guard", False):
        return
    _refuse_download._beam_pipelines_guard = True  # type: ignore[attr-defined]
    JavaJarServer._download_jar_to_cache = classmethod(_refuse_download)  # type: ignore[method-assign,assignment]
