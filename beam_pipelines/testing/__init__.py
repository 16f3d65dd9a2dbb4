"""Helpers for testing pipelines built on beam-pipelines, in this repo or yours."""

from beam_pipelines.testing.synthetic import SyntheticEvents, malformed_payload

__all__ = ["SyntheticEvents", "malformed_payload"]
