"""Beam logs two messages at import when optional Google libraries are half installed
("Failed to import GCSFileSystem", "apitools not found"). They are harmless for every
path this project supports and would be the first thing a newcomer sees (importing
``transforms.io.pubsub`` in a notebook, say), so they are filtered where they are logged;
everything else is logged as usual. :func:`install` runs when ``transforms`` is imported,
before Beam is."""

from __future__ import annotations

import logging

__all__ = ["QuietOptionalImports", "install"]


class QuietOptionalImports(logging.Filter):
    """Drops Beam's import-time messages about optional Google libraries."""

    NOISE = ("Failed to import GCSFileSystem", "apitools not found")

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(message.startswith(n) for n in self.NOISE)


def install() -> None:
    """Filters on a logger only see records logged to it directly, so attach to the loggers
    Beam uses for these messages, and to Python's last-resort handler (active at import,
    before any handler is configured). Once per process."""
    targets: list = [logging.getLogger(name) for name in
                     ("", "apache_beam.io.filesystems", "apache_beam.io.gcp.gcsfilesystem")]
    if logging.lastResort is not None:
        targets.append(logging.lastResort)
    for target in targets:
        if not any(isinstance(f, QuietOptionalImports) for f in target.filters):
            target.addFilter(QuietOptionalImports())
