"""Flags of the Prometheus metrics bridge (:mod:`beam_pipelines.metrics`).

Kept in their own module (registered by ``beam_pipelines.options``) so every pipeline
accepts them without listing a class, and so they cannot collide with Beam's flags.
"""

from __future__ import annotations

import argparse
import re

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options.values import positive_float, seconds
from transforms.base.extras import require

__all__ = ["gateway_url", "MetricsOptions", "port"]

_GATEWAY = re.compile(r"^(https?://)?[A-Za-z0-9_.\-\[\]:]+(:\d+)?(/.*)?$")


def _needs_client() -> None:
    # Checked while parsing, so a missing extra stops the job before it runs, not after.
    require("metrics", "prometheus_client")


def port(text: str) -> int:
    """A TCP port; 0 asks the OS for a free one (handy in tests, logged at start)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a TCP port between 0 and 65535 (0 = any free port), got {text!r}"
        )
    _needs_client()
    return value


def gateway_url(text: str) -> str:
    if not text.strip() or not _GATEWAY.match(text.strip()):
        raise argparse.ArgumentTypeError(
            f"expected a Pushgateway address such as http://pushgateway:9091, got {text!r}"
        )
    _needs_client()
    return text.strip()


class MetricsOptions(PipelineOptions):
    """Prometheus metrics: a scrape endpoint while the job runs, a Pushgateway for batch."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--metrics_port",
            type=port,
            default=None,
            help="Serve Prometheus metrics on this port while the pipeline runs (0 = any free "
            "port). Unset: no endpoint.",
        )
        parser.add_argument(
            "--metrics_address",
            default="0.0.0.0",
            help="Address the metrics endpoint listens on. Default 0.0.0.0 (all interfaces); "
            "127.0.0.1 keeps it local.",
        )
        parser.add_argument(
            "--metrics_poll_interval",
            type=positive_float,
            default=5.0,
            help="Seconds between two reads of the runner's Beam metrics (the scrape endpoint "
            "serves the latest read). Default 5.",
        )
        parser.add_argument(
            "--metrics_linger",
            type=seconds(0),
            default=0,
            help="After the run ends, keep the endpoint up until it has been scraped once more "
            "or this many seconds passed, so short batch runs are seen by Prometheus. Default 0.",
        )
        parser.add_argument(
            "--pushgateway",
            type=gateway_url,
            default=None,
            help="Push the final metrics of a batch run to this Prometheus Pushgateway "
            "(http://HOST:9091), job = the pipeline's name.",
        )
