"""Upsert records into PostgreSQL, keyed, so re-runs and later panes replace rows.

``WriteToPostgres(dsn, table, columns, key)`` creates the table if it is missing
(primary key = ``key``), buffers a bundle's rows and writes them in one transaction with
``INSERT ... ON CONFLICT (key) DO UPDATE``. A backfill re-run over the same input
therefore leaves exactly one row per key, and a streaming job's LATE pane replaces the
ON_TIME count. Transient errors (connection drops, serialization failures) are retried
with exponential backoff before the bundle fails; Beam then retries the bundle, and the
upsert makes that retry harmless.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Sequence

import apache_beam as beam

from beam_pipelines._extras import require
from beam_pipelines.errors import ConfigError, SinkError
from transforms.sinks import as_dict

_LOG = logging.getLogger(__name__)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def validate_dsn(dsn: Any, flag: str = "--output") -> str:
    expected = "a PostgreSQL DSN such as postgresql://USER@HOST:5432/DB or 'host=H dbname=D'"
    if not isinstance(dsn, str) or not dsn.strip():
        raise ConfigError(flag, expected, dsn)
    if not (dsn.startswith(("postgresql://", "postgres://")) or "=" in dsn):
        raise ConfigError(flag, expected, redact_dsn(dsn))
    return dsn


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ***, for logs and errors."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", dsn)


class _UpsertDoFn(beam.DoFn):
    def __init__(self, dsn, table, columns, key, max_retries: int) -> None:
        self._dsn = dsn
        self._table = table
        self._columns = list(columns)
        self._key = list(key)
        self._max_retries = max_retries
        self._conn = None

    def setup(self):
        self._psycopg = require("postgres", "psycopg")
        self._sql = require("postgres", "psycopg.sql")
        self._connect()
        self._ensure_table()

    def _connect(self):
        try:
            self._conn = self._psycopg.connect(self._dsn, connect_timeout=10)
        except self._psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SinkError(
                f"cannot connect to PostgreSQL at {redact_dsn(self._dsn)}: {first}"
            ) from None

    def _table_ident(self):
        return self._sql.Identifier(*self._table.split("."))

    def _ensure_table(self):
        sql = self._sql
        cols = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(sql_type))
            for name, sql_type in self._columns
        )
        ddl = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ({}, updated_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY ({}))"
        ).format(self._table_ident(), cols, sql.SQL(", ").join(map(sql.Identifier, self._key)))
        with self._conn.transaction():
            self._conn.execute(ddl)

    def _upsert_statement(self):
        sql = self._sql
        names = [name for name, _ in self._columns]
        updates = [n for n in names if n not in self._key]
        return sql.SQL(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}, updated_at = now()"
        ).format(
            self._table_ident(),
            sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL(", ").join(sql.Placeholder() * len(names)),
            sql.SQL(", ").join(map(sql.Identifier, self._key)),
            sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n))
                for n in updates
            ),
        )

    def start_bundle(self):
        self._rows: list[tuple] = []

    def process(self, record):
        row = as_dict(record)
        self._rows.append(tuple(row.get(name) for name, _ in self._columns))

    def finish_bundle(self):
        if not self._rows:
            return
        statement = self._upsert_statement()
        delay = 0.2
        for attempt in range(self._max_retries + 1):
            try:
                if self._conn is None or self._conn.closed:
                    self._connect()
                with self._conn.transaction():
                    with self._conn.cursor() as cursor:
                        cursor.executemany(statement, self._rows)
                self._rows = []
                return
            except (self._psycopg.OperationalError, self._psycopg.errors.SerializationFailure) as exc:
                if attempt == self._max_retries:
                    raise SinkError(
                        f"writing to {self._table} at {redact_dsn(self._dsn)} failed after "
                        f"{attempt + 1} attempts: {exc}"
                    ) from None
                _LOG.warning("PostgreSQL write failed (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)  # backoff between retries of a transient error
                delay = min(delay * 2, 10.0)
                if self._conn is not None and self._conn.closed:
                    self._conn = None

    def teardown(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class WriteToPostgres(beam.PTransform):
    """Upsert NamedTuple/dict records into ``table`` keyed by ``key``.

    ``columns`` is a sequence of ``(name, SQL type)``; the table is created if missing.
    """

    def __init__(
        self,
        dsn: str,
        table: str,
        columns: Sequence[tuple[str, str]],
        key: Sequence[str],
        *,
        max_retries: int = 5,
    ) -> None:
        super().__init__()
        self._dsn = validate_dsn(dsn)
        if not isinstance(table, str) or not _IDENTIFIER.match(table):
            raise ConfigError("--output_table", "a table name like page_views or schema.table", table)
        names = [name for name, _ in columns]
        missing = [k for k in key if k not in names]
        if not key or missing:
            raise ConfigError("key", f"column names among {names}", missing or key)
        self._table = table
        self._columns = list(columns)
        self._key = list(key)
        self._max_retries = max_retries

    def expand(self, pcoll):
        return pcoll | "Upsert" >> beam.ParDo(
            _UpsertDoFn(self._dsn, self._table, self._columns, self._key, self._max_retries)
        )
