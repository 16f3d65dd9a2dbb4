"""How a pipeline's result records look in each sink, derived from the result record.

The record (a NamedTuple) is the one definition: its fields and types give the console
columns, the Parquet schema, the PostgreSQL DDL and the exported JSON Schema/Avro
(``beam_pipelines.schemas``). A :class:`~transforms.records.UtcTime` field is a
``timestamp[us, UTC]`` Parquet column and a ``timestamptz`` SQL column; ``str`` is
string/text, ``int`` int64/bigint, ``float`` float64/double precision, ``bool`` boolean,
``list[str]`` list<string>/text[] (a native array: ``WHERE 'x' = ANY(rules)``);
a field that is not Optional is ``NOT NULL``. The pane fields of a windowed result
(``pane_timing``, ``pane_index``, ``is_final``) are written in streaming only.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

from beam_pipelines import schemas
from transforms.base.errors import ConfigError

__all__ = ["PANE_COLUMNS", "ResultSpec"]

PANE_COLUMNS = ("pane_timing", "pane_index", "is_final")
_PANE_SQL = {"pane_timing": "text", "pane_index": "integer", "is_final": "boolean"}
_SQL = {"string": "text", "long": "bigint", "double": "double precision", "boolean": "boolean",
        "array": "text[]", "list": "jsonb"}


def _arrow_type(field: schemas.Field):
    import pyarrow as pa

    if field.is_time:
        return pa.timestamp("us", tz="UTC")
    if field.kind == "list" and field.items is not None:  # list[NamedTuple]: list<struct>
        return pa.list_(pa.struct([(f.name, _arrow_type(f)) for f in schemas.fields(field.items)]))
    return {"string": pa.string(), "long": pa.int64(), "double": pa.float64(),
            "boolean": pa.bool_(), "array": pa.list_(pa.string())}[field.kind]


class ResultSpec(NamedTuple):
    """How a pipeline's results are written: everything that differs between pipelines.

    Build it with :meth:`of`, which derives the columns and types from the record.
    """

    name: str  # file name prefix and default table name
    record: type  # the result record (a NamedTuple)
    columns: list[str]  # display and Parquet order, pane columns excluded
    pane_columns: list[str]
    sort_by: list[str]
    title: str
    postgres_table: str
    postgres_key: list[str]
    table_columns: list[str]  # the PostgreSQL table's column order, pane columns excluded
    # Streaming only: a column whose value never decreases across panes of one window
    # (an accumulating count); the upsert then never replaces it with a smaller value.
    never_decrease: Optional[str] = None
    # The field that keys each result's message on a message sink (Kafka), if any.
    message_key: Optional[str] = None

    @classmethod
    def of(cls, record: type, *, name: str, key: Sequence[str], title: str,
           columns: Optional[Sequence[str]] = None, sort_by: Optional[Sequence[str]] = None,
           table: Optional[str] = None, table_columns: Optional[Sequence[str]] = None,
           never_decrease: Optional[str] = None, message_key: Optional[str] = None) -> ResultSpec:
        """The spec of ``record``'s results.

        :param record: the result record, a NamedTuple.
        :param name: the file name prefix of the file sinks (the pipeline's name).
        :param key: the fields identifying a result (the PostgreSQL primary key).
        :param title: the console table's title.
        :param columns: the order of the console and Parquet columns (default: the record's).
        :param sort_by: the console's sort columns (default: ``key``).
        :param table: the default PostgreSQL table (``--output_table`` overrides it).
        :param table_columns: the PostgreSQL column order (default: ``columns``).
        :param never_decrease: a column an upsert never lowers (an accumulating count).
        :param message_key: the field that keys each result's Kafka message (fraud:
            ``tx_id``, so a topic compacts to one decision per transaction).
        """
        names = [f for f in schemas.field_names(record) if f not in PANE_COLUMNS]
        columns = list(columns or names)
        for what, given in (("columns", columns), ("table_columns", table_columns or columns),
                            ("key", key), ("message_key", [message_key] if message_key else [])):
            unknown = sorted(set(given) - set(names))
            if unknown or (what in ("columns", "table_columns") and sorted(given) != sorted(names)):
                raise ConfigError(what, f"the fields of {record.__name__} ({', '.join(names)})",
                                  list(given))
        panes = [f for f in PANE_COLUMNS if f in schemas.field_names(record)]
        return cls(name, record, columns, panes, list(sort_by or key), title, table or name,
                   list(key), list(table_columns or columns), never_decrease, message_key)

    def field_specs(self) -> dict[str, schemas.Field]:
        return {f.name: f for f in schemas.fields(self.record)}

    def arrow_schema(self, panes: bool) -> Any:
        """The pyarrow schema of the results, in :attr:`columns` order, with the pane
        columns last when ``panes``."""
        import pyarrow as pa

        fields = self.field_specs()
        names = self.columns + (self.pane_columns if panes else [])
        return pa.schema([(n, _arrow_type(fields[n])) for n in names])

    def parquet_schema(self, streaming: bool) -> Any:
        """The pyarrow schema of the Parquet sink (pane columns in streaming only)."""
        return self.arrow_schema(panes=streaming)

    def table_schema(self) -> Any:
        """The pyarrow schema of a table sink (Iceberg): the pane columns in batch too
        (null there), so a backfill and a stream can write one table."""
        return self.arrow_schema(panes=True)

    @property
    def postgres_columns(self) -> list[tuple[str, str]]:
        """(column, SQL type) of the PostgreSQL table, pane columns last."""
        fields = self.field_specs()
        out = []
        for n in self.table_columns:
            field = fields[n]
            sql = "timestamptz" if field.is_time else _SQL[field.kind]
            out.append((n, sql if field.nullable else f"{sql} NOT NULL"))
        return out + [(n, _PANE_SQL[n]) for n in self.pane_columns]
