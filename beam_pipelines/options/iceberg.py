"""Iceberg flags: ``--sink=iceberg --output=NAMESPACE.TABLE``.

A laptop or a single machine (a SQLite catalog file beside the data)::

    --sink=iceberg --output=web.page_views --iceberg_warehouse=lake/

production with the SQL catalog in PostgreSQL (the tables Spark's and Trino's JDBC catalogs
read), a REST catalog, or any pyiceberg catalog from its properties::

    --iceberg_catalog=postgresql://etl@db:5432/lake --iceberg_warehouse=s3://bucket/lake
    --iceberg_catalog=https://polaris.example.com/api/catalog \\
        --iceberg_catalog_properties credential=ID:SECRET --iceberg_catalog_properties warehouse=lake
    --iceberg_catalog=catalog.yaml                  # {type: glue, ...} or pyiceberg's own file
    --iceberg_catalog_properties type=glue --iceberg_warehouse=s3://bucket/lake

The values are checked when the pipeline starts (``beam_pipelines.wiring.iceberg``), in
one line naming the flag; property values never appear in an error.
"""

from __future__ import annotations

import argparse
import re

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options.values import non_empty

__all__ = ["IcebergOptions", "catalog_property"]

_PROPERTY_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")


def catalog_property(text: str) -> str:
    """``KEY=VALUE``, a pyiceberg catalog property (the value is not shown in errors: it
    may be a credential)."""
    key, sep, _ = text.partition("=")
    if not sep or not _PROPERTY_KEY.match(key.strip()):
        shown = f"{key}=***" if sep else "a value without '='"
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with a pyiceberg catalog property as KEY (e.g. type=glue, "
            f"s3.endpoint=http://minio:9000), got {shown!r}"
        )
    return text


class IcebergOptions(PipelineOptions):
    """Apache Iceberg table sink (--sink=iceberg --output=NAMESPACE.TABLE)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--iceberg_catalog", type=non_empty("a catalog URI or file"), default=None,
            help="--sink=iceberg: the catalog. A SQL catalog: sqlite:///PATH/catalog.db or a "
            "PostgreSQL DSN (postgresql://USER@HOST:5432/DB); an http(s):// REST catalog URI; or "
            "a .json/.yaml file of pyiceberg catalog properties (a .pyiceberg.yaml works: the "
            "entry named --iceberg_catalog_name is used). Default: sqlite:///WAREHOUSE/catalog.db "
            "for a local --iceberg_warehouse directory.",
        )
        parser.add_argument(
            "--iceberg_catalog_properties", type=catalog_property, action="append",
            default=None,
            help="A pyiceberg catalog property KEY=VALUE (repeatable), added to "
            "--iceberg_catalog's: type=glue, credential=..., s3.endpoint=..., "
            "s3.access-key-id=.... Without --iceberg_catalog they are the whole catalog "
            "(e.g. type=glue). Values are never logged.",
        )
        parser.add_argument(
            "--iceberg_warehouse", type=non_empty("a directory or a bucket URI"), default=None,
            help="--sink=iceberg: where data files go: a directory (made absolute) or "
            "s3://, gs://, abfs:// URI. Needed by SQL catalogs; REST and Glue catalogs may "
            "choose it themselves.",
        )
        parser.add_argument(
            "--iceberg_catalog_name", type=non_empty("a catalog name"), default="default",
            help="The catalog's name (a SQL catalog keeps tables per name): the name Spark "
            "or Trino give the same catalog. Default: default.",
        )
        parser.add_argument(
            "--iceberg_partition_by", type=non_empty("partition fields or none"), default=None,
            help="Partition fields of a new table, comma-separated, as SQL engines write them: "
            "day(window_start), hour(ts), bucket(16, user_id), truncate(4, page), a column; "
            "or none. Default: day() of window_start, else of the result's first timestamp "
            "column (session_start for sessions). An existing table keeps its own spec.",
        )
