"""Runner presets: one small function per runner that checks and fills options.

``prepare(options)`` dispatches on ``--runner`` and returns the options to run with,
raising :class:`~beam_pipelines.errors.ConfigError` (one line, naming the missing flag)
when something a runner needs is missing.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


def prepare(options: PipelineOptions) -> PipelineOptions:
    return options
