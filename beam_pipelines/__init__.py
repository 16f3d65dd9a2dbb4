"""beam-pipelines: streaming and batch pipelines on Apache Beam, one definition, any runner.

Pipelines are modules with ``run(argv=None)``: ``python -m beam_pipelines.pageviews``,
``python -m beam_pipelines.iot_alerts``. Reusable transforms live in the ``transforms``
package and runner presets in ``runners``.
"""

import logging as _logging

__version__ = "0.1.0"


class _QuietOptionalImports(_logging.Filter):
    """Beam logs these at import when optional Google libraries are half-installed.

    They are harmless for every path this project supports and would be the first thing
    a newcomer sees, so they are filtered; everything else is logged as usual.
    """

    _NOISE = ("Failed to import GCSFileSystem", "apitools not found")

    def filter(self, record: _logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(message.startswith(n) for n in self._NOISE)


# Filters on a logger only see records logged to it directly, so attach to the loggers
# Beam uses for these messages (and to Python's last-resort handler, active at import).
for _name in ("", "apache_beam.io.filesystems", "apache_beam.io.gcp.gcsfilesystem"):
    _logging.getLogger(_name).addFilter(_QuietOptionalImports())
if _logging.lastResort is not None:
    _logging.lastResort.addFilter(_QuietOptionalImports())
