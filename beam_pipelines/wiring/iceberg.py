"""Iceberg from the flags: ``--sink=iceberg --output=NAMESPACE.TABLE``.

The table's schema is the result record's (``ResultSpec.table_schema``: the pane columns
in batch too, null there, so a backfill and a stream can share a table); a batch run
replaces the partitions its rows cover in one commit, a streaming run appends once per
bundle (docs/iceberg.md). :func:`check` runs when the pipeline starts: the extra is
installed, the flags make sense, the catalog opens, and the table exists (created if
missing) with a schema the results fit, or the run stops in one line naming what is wrong.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import IOOptions
from beam_pipelines.options.iceberg import IcebergOptions
from beam_pipelines.skeleton.results import ResultSpec
from transforms.base.documents import read_document
from transforms.base.errors import ConfigError
from transforms.sinks.iceberg import WriteToIceberg
from transforms.sinks.iceberg.catalog import CatalogConfig, uri_properties, validate_identifier

__all__ = ["catalog_from_options", "check", "partition_fields", "sink_from_options"]

_DOCUMENTS = (".json", ".yaml", ".yml")
_CATALOG_FORMS = (
    "sqlite:///PATH, a PostgreSQL DSN, an http(s):// REST catalog URI or a .json/.yaml file "
    "of catalog properties"
)


def _catalog_file(path: str, name: str) -> dict[str, str]:
    """The properties in a JSON/YAML file: a flat mapping, or pyiceberg's own
    ``.pyiceberg.yaml`` layout (``catalog: {NAME: {...}}``), of which the entry ``name``
    (or the only entry)."""
    document = read_document(path, flag="--iceberg_catalog")
    if not isinstance(document, Mapping):
        raise ConfigError("--iceberg_catalog", f"{path} to hold a mapping of catalog properties")
    catalogs = document.get("catalog")
    if isinstance(catalogs, Mapping) and all(isinstance(v, Mapping) for v in catalogs.values()):
        if name in catalogs:
            document = catalogs[name]
        elif len(catalogs) == 1:
            document = next(iter(catalogs.values()))
        else:
            raise ConfigError("--iceberg_catalog_name", f"one of the catalogs in {path} "
                              f"({', '.join(map(str, catalogs))})", name)
    bad = sorted(str(k) for k, v in document.items() if isinstance(v, (Mapping, list)))
    if bad:
        raise ConfigError("--iceberg_catalog", f"{path} to map property names to single values "
                          f"(not {', '.join(bad)})")
    return {str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in document.items()}


def catalog_from_options(options: PipelineOptions) -> tuple[CatalogConfig, Optional[str]]:
    """(catalog, warehouse) for :class:`WriteToIceberg` from ``--iceberg_catalog``,
    ``--iceberg_catalog_properties`` and ``--iceberg_warehouse``."""
    flags = options.view_as(IcebergOptions)
    catalog: Optional[str] = (flags.iceberg_catalog or "").strip() or None
    warehouse: Optional[str] = (flags.iceberg_warehouse or "").strip() or None
    extra = dict(pair.split("=", 1) for pair in flags.iceberg_catalog_properties or [])
    extra = {key.strip(): value for key, value in extra.items()}
    if catalog is None and not extra:
        if warehouse is None or "://" in warehouse:
            raise ConfigError(
                "--iceberg_catalog", f"the catalog when --sink=iceberg: {_CATALOG_FORMS} (or "
                "only --iceberg_warehouse=DIR, for a SQLite catalog in that directory)",
            )
        # A laptop's lake: the catalog file beside the data it points to.
        directory = os.path.abspath(os.path.expanduser(warehouse))
        catalog = f"sqlite:///{os.path.join(directory, 'catalog.db')}"
    if catalog is not None and catalog.lower().endswith(_DOCUMENTS):
        properties: dict[str, str] = _catalog_file(os.path.expanduser(catalog),
                                                   flags.iceberg_catalog_name or "default")
    elif catalog is not None:
        if not extra:
            return catalog, warehouse
        properties = uri_properties(catalog)
    else:
        properties = {}
    properties.update(extra)
    if "uri" not in properties and "type" not in properties:
        raise ConfigError("--iceberg_catalog_properties", "a type=... or uri=... property "
                          "(type=glue, type=rest with uri=...) when there is no --iceberg_catalog")
    return properties, warehouse


def partition_fields(options: PipelineOptions) -> Optional[list[str]]:
    """``--iceberg_partition_by`` as a list of fields; None for the default, [] for none.
    Fields are separated by commas outside parentheses (``bucket(16, user_id)`` is one)."""
    text = options.view_as(IcebergOptions).iceberg_partition_by
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    fields, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char in ",;" and depth == 0:
            fields.append(current)
            current = ""
        else:
            current += char
    fields.append(current)
    return [field.strip() for field in fields if field.strip()] or None


def sink_from_options(options: PipelineOptions, spec: ResultSpec, *, streaming: bool) -> Any:
    """``--sink=iceberg``: replace in batch, append in streaming (a WriteToIceberg whose
    constructor checked the table name, the catalog and the partition fields)."""
    output = options.view_as(IOOptions).output
    if not output:
        raise ConfigError("--output", "the Iceberg table as NAMESPACE.TABLE when --sink=iceberg "
                          "(e.g. --output=analytics.page_views)")
    table = validate_identifier(output.strip(), "--output")
    catalog, warehouse = catalog_from_options(options)
    return WriteToIceberg(
        table,
        spec.table_schema(),
        catalog=catalog,
        warehouse=warehouse,
        mode="append" if streaming else "replace",
        partition_by=partition_fields(options),
        pipeline=spec.name,
        catalog_name=options.view_as(IcebergOptions).iceberg_catalog_name or "default",
    )


def check(options: PipelineOptions, spec: ResultSpec) -> None:
    """Before the run: the [iceberg] extra, the flags, the catalog and the table."""
    sink_from_options(options, spec, streaming=False).check_table()
