"""Runner presets: one small function per runner that checks and fills options.

``prepare(options)`` dispatches on ``--runner`` and returns the options to run with,
raising :class:`~transforms.base.errors.ConfigError` (one line, naming the missing flag)
when something a runner needs is missing. The presets are in :mod:`runners.presets`;
the local streaming runner (``--runner=LocalStreamingRunner``, and what
``--runner=DirectRunner --streaming`` runs on) is :mod:`runners.local_streaming`.
See docs/runners.md for the table of runners and their commands.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from runners.offline import install_download_guard
from runners.presets import PRESETS
from transforms.base.errors import ConfigError

__all__ = ["KNOWN", "prepare", "runner_key"]

KNOWN = (
    "DirectRunner", "LocalStreamingRunner", "PrismRunner", "PortableRunner", "FlinkRunner",
    "DataflowRunner", "DaskRunner",
)
# Beam runners we pass through without a preset.
_PASS_THROUGH = ("bundlebaseddirect", "fnapi", "interactive", "spark", "kafkastreams",
                 "testdirect", "testdataflow")


def runner_key(name: str | None) -> str:
    """``DirectRunner`` / ``direct`` / ``directrunner`` -> ``direct``."""
    key = (name or "DirectRunner").strip().lower()
    return key[: -len("runner")] if key.endswith("runner") else key


def prepare(options: PipelineOptions) -> PipelineOptions:
    """Apply the preset for ``--runner``: validate, fill defaults, pick the runner class."""
    install_download_guard()  # whatever the runner: no jar downloads at run time
    name = options.view_as(StandardOptions).runner
    if name and "." in name:
        return options  # a fully qualified runner class: the user knows what they run
    key = runner_key(name)
    preset = PRESETS.get(key)
    if preset is not None:
        return preset(options)
    if key in _PASS_THROUGH:
        return options
    raise ConfigError("--runner", f"one of {', '.join(KNOWN)} (or a module.Class path)", name)
