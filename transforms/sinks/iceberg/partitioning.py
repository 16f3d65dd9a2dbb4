"""Partition specs written the way SQL engines write them: ``day(window_start)``.

A spec is a sequence of fields, each ``TRANSFORM(column)``, ``bucket(N, column)``,
``truncate(W, column)`` or a bare ``column`` (identity), as in Spark's and Trino's
``PARTITIONED BY``. :func:`parse_partitioning` checks them against the result's Arrow
schema (the column exists, a time transform gets a timestamp or date), so a typo fails
when the pipeline is built, not on a worker. :func:`default_partitioning` is the choice
for aggregated results: by day of the first timestamp column (``window_start``,
``session_start``), which keeps a day's windows together, lets a backfill replace whole
days, and lets readers prune by time.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Sequence

from transforms.base.errors import ConfigError

__all__ = ["PartitionField", "default_partitioning", "parse_partitioning"]

_TIME_TRANSFORMS = ("year", "month", "day", "hour")
_FIELD = re.compile(
    r"^\s*(?:(?P<transform>[a-z]+)\s*\(\s*(?:(?P<arg>\d+)\s*,\s*)?(?P<column>[^()\s,]+)\s*\)"
    r"|(?P<bare>[^()\s,]+))\s*$"
)
_FLAG = "--iceberg_partition_by"


class PartitionField(NamedTuple):
    """One field of a partition spec: a source column and pyiceberg's transform string
    (``day``, ``identity``, ``bucket[16]``, ``truncate[10]``)."""

    column: str
    transform: str


def default_partitioning(schema) -> list[str]:
    """``["day(C)"]`` for ``window_start`` if the schema has it as a timestamp, else the
    first timestamp or date column; ``[]`` (unpartitioned) when there is none."""
    import pyarrow as pa

    temporal = [f.name for f in schema if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
    if not temporal:
        return []
    column = "window_start" if "window_start" in temporal else temporal[0]
    return [f"day({column})"]


def parse_partitioning(spec: Sequence[str], schema) -> list[PartitionField]:
    """Parse and check partition fields against a pyarrow schema; errors name the field."""
    import pyarrow as pa

    if isinstance(spec, str):
        spec = [part for part in spec.split(";") if part.strip()]
    fields: list[PartitionField] = []
    for text in spec:
        match = _FIELD.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(
                _FLAG, "fields like day(window_start), bucket(16, user_id) or a column name", text
            )
        column = match["column"] or match["bare"]
        transform = match["transform"] or "identity"
        arg = match["arg"]
        if column not in schema.names:
            raise ConfigError(_FLAG, f"a column of the result ({', '.join(schema.names)})", column)
        kind = schema.field(column).type
        if transform in _TIME_TRANSFORMS:
            if arg is not None:
                raise ConfigError(_FLAG, f"{transform}(column) without a width", text)
            temporal = pa.types.is_timestamp(kind) or pa.types.is_date(kind)
            if not temporal or (transform == "hour" and pa.types.is_date(kind)):
                raise ConfigError(_FLAG, f"{transform}() of a timestamp column, not {kind}", text)
            fields.append(PartitionField(column, transform))
        elif transform in ("bucket", "truncate"):
            if arg is None or int(arg) <= 0:
                raise ConfigError(_FLAG, f"{transform}(N, column) with N > 0", text)
            fields.append(PartitionField(column, f"{transform}[{int(arg)}]"))
        elif transform == "identity":
            if arg is not None:
                raise ConfigError(_FLAG, "identity(column) without a width", text)
            fields.append(PartitionField(column, "identity"))
        else:
            raise ConfigError(
                _FLAG, "a transform among year, month, day, hour, bucket, truncate, identity", text
            )
    return fields
