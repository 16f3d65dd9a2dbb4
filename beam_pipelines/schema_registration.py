"""Publish the pipelines' own record schemas to a schema registry.

What ``python -m beam_pipelines.schemas --register`` will call (the flag is wired there)::

    register_schemas("avro", "http://localhost:8081", topic="pageview-counts",
                     names=["PageViewCount"])   # -> {"pageview-counts-value": 3}

The schemas are those :mod:`beam_pipelines.schemas` exports (derived from the records
in :mod:`transforms.records`), so a registry-backed consumer of a sink topic sees the
same fields the JSON sinks write. With ``topic`` the subject is ``<topic>-value``
(TopicNameStrategy, one schema per topic); without it, each record's full name
(RecordNameStrategy). The registry's compatibility rule applies: a changed record that
breaks it fails with IncompatibleSchemaError naming the subject.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from beam_pipelines import schemas
from transforms.base.errors import ConfigError
from transforms.formats.factory import registry_for
from transforms.formats.registry import (
    AVRO,
    JSON,
    RECORD_NAME,
    TOPIC_NAME,
    RegistrySchema,
    subject_name,
)

__all__ = ["REGISTRY_FORMATS", "register_schemas"]

REGISTRY_FORMATS = {"avro": AVRO, "jsonschema": JSON}


def _full_name(name: str, fmt: str) -> str:
    if fmt == "avro":
        schema = schemas.avro_schema(name)
        return f"{schema['namespace']}.{schema['name']}"
    return name


def register_schemas(fmt: str, registry: Any, *, names: Optional[Sequence[str]] = None,
                     topic: Optional[str] = None) -> dict[str, int]:
    """Register record schemas; returns {subject: schema id}.

    Args:
      fmt: ``avro`` or ``jsonschema``.
      registry: a SchemaRegistry, RegistryConfig or URL.
      names: record names (``PageViewCount``...); default every record.
      topic: the topic the records are written to: the subject is ``<topic>-value``
        (then exactly one name is expected).
    """
    if fmt not in REGISTRY_FORMATS:
        raise ConfigError("--format", f"{'|'.join(REGISTRY_FORMATS)} with --register", fmt)
    client = registry_for(registry)
    if client is None:
        raise ConfigError("--schema_registry_url", "the registry to --register the schemas with")
    chosen = list(names) if names else schemas.schema_names()
    if topic is not None and len(chosen) != 1:
        raise ConfigError("--schema", "one record name with --topic (one schema per topic subject)",
                          ",".join(chosen))
    out: dict[str, int] = {}
    for name in chosen:
        document = schemas.avro_schema(name) if fmt == "avro" else schemas.json_schema(name)
        strategy = TOPIC_NAME if topic is not None else RECORD_NAME
        subject = subject_name(strategy, topic or "", _full_name(name, fmt))
        out[subject] = client.register(subject, RegistrySchema(json.dumps(document),
                                                               REGISTRY_FORMATS[fmt]))
    return out
