"""Apache Iceberg tables as a sink (pyiceberg; the ``[iceberg]`` extra).

* :class:`WriteToIceberg` - the PTransform: replace partitions in batch, append once per
  bundle in streaming (``write.py``).
* ``catalog.py`` - catalog URIs and properties, table creation and schema checks.
* ``partitioning.py`` - partition specs as ``day(window_start)``.
* ``commit.py`` - the commits: replace, idempotent append, retries on conflicts.
* ``read.py`` - reading a table back, and the latest pane per window.

See ``docs/iceberg.md``.
"""

from transforms.sinks.iceberg.partitioning import default_partitioning, parse_partitioning
from transforms.sinks.iceberg.read import latest_panes, load_table, read_table
from transforms.sinks.iceberg.write import MODES, WriteToIceberg

__all__ = [
    "MODES",
    "WriteToIceberg",
    "default_partitioning",
    "latest_panes",
    "load_table",
    "parse_partitioning",
    "read_table",
]
