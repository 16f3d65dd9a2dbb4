"""Reusable Beam transforms: parsing and validation, windowed aggregation, sinks, I/O."""

from transforms.base import quiet_imports as _quiet_imports

# Before Beam is imported: its import-time noise about optional Google libraries.
_quiet_imports.install()
