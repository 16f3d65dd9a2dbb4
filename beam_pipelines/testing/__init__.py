"""Test support for pipelines built on beam-pipelines, in this repo or yours (never imported
by production code): ``collect`` (a PCollection's elements in a list), ``polling.wait_for``
(the one polling helper), ``files`` (what the file sinks wrote), ``servers``/``kafka`` and
``emulators`` (real servers and protocol emulators), ``fixtures`` (pytest fixtures over
them) and ``iot`` (a reference implementation of the IoT alert query).

The seeded generators live with the synthetic source (``transforms.io.synthetic``);
``SyntheticEvents`` is re-exported here for tests written against this package.
"""

from beam_pipelines.testing.collect import collect
from beam_pipelines.testing.files import read_jsonl, read_jsonl_dir
from beam_pipelines.testing.polling import wait_for
from transforms.io.synthetic.events import SyntheticEvents, malformed_payload

__all__ = ["SyntheticEvents", "collect", "malformed_payload", "read_jsonl", "read_jsonl_dir",
           "wait_for"]
