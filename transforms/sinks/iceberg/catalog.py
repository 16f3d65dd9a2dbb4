"""Which catalog, which table: the Iceberg sink's configuration, checked up front.

``catalog`` is one of

* a SQL catalog URI: ``sqlite:///path/catalog.db`` (a file; the catalog's tables are
  created on first use) or a PostgreSQL DSN, ``postgresql://USER@HOST:5432/DB`` or
  ``host=H dbname=D user=U`` (psycopg 3 is the driver, from the ``[postgres]`` extra);
* ``http(s)://...``: a REST catalog (Polaris, Nessie, Unity, Tabular, Lakekeeper ...);
* a mapping of pyiceberg catalog properties, for everything else (``{"type": "glue"}``,
  ``{"type": "rest", "uri": ..., "credential": ...}``, ``{"type": "hive", ...}``).

``warehouse`` is where data and metadata files go: a local directory (made absolute, as
workers may run elsewhere), ``s3://bucket/prefix``, ``gs://``, ``abfs://``. A REST or Glue
catalog may choose it itself; a SQL catalog needs it.

:func:`ensure_table` creates the table with the result's schema and partition spec when
it is missing (two workers racing to create it both end with the same table) and checks
an existing table's schema, failing in one line that names the table and the column.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional, Sequence, Union

from transforms.base.errors import ConfigError, SinkError
from transforms.base.extras import require
from transforms.sinks.iceberg.partitioning import PartitionField
from transforms.sinks.postgres import redact_dsn

__all__ = [
    "CatalogConfig",
    "check_schema",
    "ensure_table",
    "load_catalog",
    "uri_properties",
    "validate_identifier",
]

CatalogConfig = Union[str, Mapping[str, str]]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres")


def validate_identifier(identifier: Any, flag: str = "--output") -> str:
    """``NAMESPACE.TABLE`` (the namespace may be nested: ``lake.web.page_views``)."""
    if not isinstance(identifier, str) or not _IDENTIFIER.match(identifier):
        raise ConfigError(flag, "an Iceberg table as NAMESPACE.TABLE, e.g. analytics.page_views", identifier)
    return identifier


def catalog_properties(
    catalog: CatalogConfig, warehouse: Optional[str], flag: str = "--iceberg_catalog"
) -> dict[str, str]:
    """pyiceberg catalog properties for a catalog URI or mapping plus a warehouse."""
    if isinstance(catalog, Mapping):
        properties = {str(k): str(v) for k, v in catalog.items()}
    elif isinstance(catalog, str) and catalog.strip():
        properties = uri_properties(catalog.strip(), flag)
    else:
        raise ConfigError(
            flag, "sqlite:///PATH, a PostgreSQL DSN, an http(s):// REST catalog URI or a "
            "mapping of pyiceberg catalog properties", catalog,
        )
    if warehouse is not None:
        if not isinstance(warehouse, str) or not warehouse.strip():
            raise ConfigError("--iceberg_warehouse", "a directory or a bucket URI", warehouse)
        properties["warehouse"] = _absolute(warehouse.strip())
    if _catalog_type(properties) == "sql" and "warehouse" not in properties:
        raise ConfigError(
            "--iceberg_warehouse", "a directory or bucket URI for the data files (a SQL "
            "catalog stores only table pointers)",
        )
    return properties


def _catalog_type(properties: Mapping[str, str]) -> Optional[str]:
    """The catalog type, given or as pyiceberg infers it from the URI."""
    if "type" in properties:
        return properties["type"].lower()
    uri = properties.get("uri", "")
    if uri.startswith(("http://", "https://")):
        return "rest"
    if uri.startswith(_SQL_SCHEMES) or ("=" in uri and "://" not in uri):
        return "sql"
    return None


def uri_properties(uri: str, flag: str = "--iceberg_catalog") -> dict[str, str]:
    """pyiceberg catalog properties of a catalog URI (a relative SQLite path made
    absolute); ConfigError naming ``flag`` for a URI of no catalog it knows."""
    scheme = uri.split(":", 1)[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        return {"type": "rest", "uri": uri}
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        return {"type": "sql", "uri": _absolute_sqlite(uri)}
    if base in ("postgresql", "postgres") or (not scheme and "=" in uri):
        return {"type": "sql", "uri": uri}  # the driver is chosen when the catalog opens
    raise ConfigError(
        flag, "sqlite:///PATH, postgresql://USER@HOST/DB, 'host=H dbname=D' or an http(s):// "
        "REST catalog URI", redact_dsn(uri),
    )


def _absolute_sqlite(uri: str) -> str:
    """``sqlite:///relative.db`` relative to where the pipeline was started, not to each
    worker's directory."""
    prefix, _, path = uri.partition(":///")
    if not path or path.startswith("/") or path.startswith(":memory:"):
        return uri
    return f"{prefix}:///{os.path.abspath(path)}"


def _make_sqlite_directory(uri: str) -> None:
    """SQLite creates a missing database file but not its directory (``lake/catalog.db``
    on a first run)."""
    prefix, _, path = uri.partition(":///")
    if prefix.split("+", 1)[0].lower() == "sqlite" and path and not path.startswith(":memory:"):
        directory = os.path.dirname(path.split("?", 1)[0])  # relative to the working dir
        if directory:
            os.makedirs(directory, exist_ok=True)


def _absolute(warehouse: str) -> str:
    if "://" in warehouse:
        return warehouse
    return os.path.abspath(os.path.expanduser(warehouse))


def _sqlalchemy_uri(uri: str) -> str:
    """A PostgreSQL DSN as an SQLAlchemy URL on psycopg 3 (the project's driver); SQLite
    and URLs that name a driver are used as they are."""
    from sqlalchemy.engine import URL, make_url

    if "://" not in uri:  # key=value DSN
        conninfo = require("postgres", "psycopg.conninfo")
        parts = conninfo.conninfo_to_dict(uri)
        port = parts.pop("port", None)
        return URL.create(
            "postgresql+psycopg",
            username=parts.pop("user", None),
            password=parts.pop("password", None),
            host=parts.pop("host", None),
            port=int(port) if port else None,
            database=parts.pop("dbname", None),
            query={k: str(v) for k, v in parts.items()},
        ).render_as_string(hide_password=False)
    url = make_url(uri)
    if url.drivername in ("postgresql", "postgres"):
        require("postgres", "psycopg")
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def load_catalog(name: str, properties: Mapping[str, str]):
    """Open the pyiceberg catalog; a failure is one line naming the catalog."""
    require("iceberg", "pyiceberg")
    catalog_module = require("iceberg", "pyiceberg.catalog")
    properties = dict(properties)
    shown = redact_dsn(properties.get("uri", properties.get("type", "?")))
    try:
        if _catalog_type(properties) == "sql":
            require("iceberg", "sqlalchemy")
            from pyiceberg.catalog.sql import SqlCatalog

            properties.pop("type", None)
            _make_sqlite_directory(properties["uri"])
            properties["uri"] = _sqlalchemy_uri(properties["uri"])
            return SqlCatalog(name, **properties)
        return catalog_module.load_catalog(name, **properties)
    except (ImportError, ConfigError):
        raise
    except Exception as exc:  # any driver's connection error: one line, no password
        raise SinkError(f"cannot open the Iceberg catalog at {shown}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = redact_dsn(str(exc).strip())
    return text.splitlines()[0] if text else type(exc).__name__


def ensure_table(
    catalog, identifier: str, schema, partitioning: Sequence[PartitionField],
    properties: Optional[Mapping[str, str]] = None,
):
    """Load ``identifier``, creating it (and its namespace) with ``schema`` and the
    partition spec if missing; check that the result's schema fits an existing table."""
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError

    namespace = identifier.rsplit(".", 1)[0]
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        catalog.create_namespace_if_not_exists(namespace)
        try:
            create = catalog.create_table_transaction(
                identifier, schema=schema, properties=dict(properties or {})
            )
            if partitioning:
                with create.update_spec() as spec:
                    for field in partitioning:
                        spec.add_field(field.column, field.transform)
            create.commit_transaction()
        except TableAlreadyExistsError:
            pass  # another worker created it first: use theirs (checked below)
        table = catalog.load_table(identifier)
    check_schema(table, identifier, schema)
    return table


def check_schema(table, identifier: str, schema) -> None:
    """Every result column must exist in the table with the same or a wider type (int ->
    long, float -> double), and every required table column must be in the result."""
    from pyiceberg.catalog import Catalog
    from pyiceberg.exceptions import ResolveError
    from pyiceberg.schema import promote

    wanted = Catalog._convert_schema_if_needed(schema)
    existing = table.schema()
    names = {field.name for field in wanted.fields}
    for field in wanted.fields:
        try:
            found = existing.find_field(field.name)
        except ValueError:
            raise SinkError(
                f"Iceberg table {identifier} has no column '{field.name}' that the result "
                f"has ({field.field_type}); use a new table or add the column"
            ) from None
        if found.field_type == field.field_type:
            continue
        try:
            promote(field.field_type, found.field_type)
        except ResolveError:
            raise SinkError(
                f"Iceberg table {identifier}: column '{field.name}' is {found.field_type} "
                f"in the table but {field.field_type} in the result"
            ) from None
    for field in existing.fields:
        if field.required and field.name not in names:
            raise SinkError(
                f"Iceberg table {identifier}: required column '{field.name}' is not in the result"
            )
