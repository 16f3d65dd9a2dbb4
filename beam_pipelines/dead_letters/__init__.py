"""Inspect and replay dead letters: ``python -m beam_pipelines.dead_letters inspect|replay``."""

from beam_pipelines.dead_letters.cli import *  # noqa: F401,F403
from beam_pipelines.dead_letters.cli import main, run  # noqa: F401
