"""The command line's logging: warnings of our own, without the libraries' routine noise.

:func:`configure_logging` is what ``main()`` of every pipeline calls before a run (not an
import-time side effect: a program embedding the pipelines keeps its own logging). It
logs at WARNING with one format, and filters, on the loggers that emit them only, the
library messages that say nothing to act on:

* kafka-python's "Task ... is blocking the event loop" (a slow poll under load; the
  connector's own errors say when a broker is really unreachable);
* Beam's "Deleting N existing files in target path" (the documented replace of a batch
  file sink's output: expected, not a warning);
* Dask's INFO lines of a local cluster's start and stop (``DASK_LOGGING__DISTRIBUTED``,
  which its worker processes inherit as well; a setting the user made wins);
* the messages Beam logs at import when optional Google libraries are half installed
  ("apitools not found") are filtered at import already (``transforms/__init__.py``).

Everything else (our warnings, other libraries' errors) is logged as usual.
"""

from __future__ import annotations

import logging
import os

__all__ = ["NOISE", "configure_logging"]

FORMAT = "%(levelname)s %(name)s: %(message)s"
# logger name -> the starts (or parts, for a "*...") of its messages that are noise
NOISE: dict[str, tuple[str, ...]] = {
    "kafka.net.selector": ("*blocking the event loop",),
    "apache_beam.io.filebasedsink": ("Deleting ",),
}


class _DropNoise(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.patterns = patterns

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        for pattern in self.patterns:
            if pattern.startswith("*") and pattern[1:] in message:
                return False
            if not pattern.startswith("*") and message.startswith(pattern):
                return False
        return True


def configure_logging() -> None:
    """WARNING and up, one format, library noise filtered (see the module docstring).

    Adds a handler only where the root logger has none (a test's log capture, an
    embedding program's handlers stay), and installs each filter once."""
    logging.basicConfig(level=logging.WARNING, format=FORMAT)
    for name, patterns in NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise(patterns))
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    if "distributed" in logging.Logger.manager.loggerDict:  # imported already: its level now
        distributed = logging.getLogger("distributed")
        if distributed.level < logging.WARNING:
            distributed.setLevel(logging.WARNING)
