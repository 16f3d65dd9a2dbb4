"""beam-pipelines: streaming and batch pipelines on Apache Beam, one definition, any runner.

Pipelines are modules with ``run(argv=None)``: ``python -m beam_pipelines.pageviews``,
``python -m beam_pipelines.iot_alerts``. Reusable transforms live in the ``transforms``
package and runner presets in ``runners``.
"""

__version__ = "0.1.0"

# Beam's import-time noise about half-installed Google libraries is filtered by the
# transforms package (transforms/base/quiet_imports.py), which every pipeline imports.
from transforms.base import quiet_imports as _quiet_imports  # noqa: E402

_quiet_imports.install()
