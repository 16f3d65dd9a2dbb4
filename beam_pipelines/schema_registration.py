"""Publish the pipelines' own record schemas to a schema registry.

The function lives in :mod:`beam_pipelines.schemas` (``python -m beam_pipelines.schemas
--register``); this module keeps its first import path::

    register_schemas("avro", "http://localhost:8081", topic="pageview-counts",
                     names=["PageViewCount"])   # -> {"pageview-counts-value": 3}
"""

from __future__ import annotations

from beam_pipelines.schemas import REGISTRY_FORMATS, register_schemas

__all__ = ["REGISTRY_FORMATS", "register_schemas"]
