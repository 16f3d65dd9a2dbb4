"""Prometheus metrics for running pipelines, bridged from Beam metrics."""

from beam_pipelines.metrics.exporter import *  # noqa: F401,F403
