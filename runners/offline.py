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

__all__ = ["install_download_guard"]


def _refuse_download(cls, download_url, cached_jar_path, user_agent=None):
    jar = os.path.basename(download_url)
    raise NotAvailableError(
        f"--beam_services: Beam needs {jar}, which it would download from {download_url}; "
        "there are no downloads at run time. Pass --beam_services='{\"GRADLE_TARGET\": "
        "\"/path/to/" + jar + "\"}' (or HOST:PORT of a running expansion service), "
        "--flink_job_server_jar=PATH / --job_endpoint=HOST:PORT for a job server, or put "
        f"the jar at {cached_jar_path}"
    )


def install_download_guard() -> None:
    """Make Beam's jar downloads fail fast. Idempotent."""
    from apache_beam.utils.subprocess_server import JavaJarServer

    current = JavaJarServer.__dict__.get("_download_jar_to_cache")
    if getattr(getattr(current, "__func__", None), "_beam_pipelines_guard", False):
        return
    _refuse_download._beam_pipelines_guard = True  # type: ignore[attr-defined]
    JavaJarServer._download_jar_to_cache = classmethod(_refuse_download)  # type: ignore[method-assign,assignment]
