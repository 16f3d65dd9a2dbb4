"""Reusable Beam transforms: parsing and validation, windowed aggregation, sinks, I/O."""
