"""Helpers for testing pipelines built on beam-pipelines, in this repo or yours."""

from transforms.io.synthetic.events import SyntheticEvents, malformed_payload

__all__ = ["SyntheticEvents", "malformed_payload"]
