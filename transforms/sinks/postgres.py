"""Upsert records into PostgreSQL, keyed, so re-runs and later panes replace rows.

``WriteToPostgres(dsn, table, columns, key)`` creates the table if it is missing
(primary key = ``key``), buffers a bundle's rows and writes them in one transaction with
``INSERT ... ON CONFLICT (key) DO UPDATE``. A backfill re-run over the same input
therefore leaves exactly one row per key, and a streaming job's LATE pane replaces the
ON_TIME count. With ``never_decrease=COLUMN`` (streaming, accumulating counts) an update
never lowers that column, so a pane that reaches the database out of order cannot
overwrite a newer, larger count.

Transient errors (connection drops, serialization failures) are retried with jittered
exponential backoff before the bundle fails; Beam then retries the bundle, and the
upsert makes that retry harmless. A row the database *refuses* (a value out of range, a
constraint) is not transient: the bundle is retried row by row and each refused row
comes out of the transform as a DeadLetter (reason code ``sink_rejected``), so one bad
row never stalls a streaming job.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from typing import Any, Sequence

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from transforms.base.errors import ConfigError, SinkError
from transforms.base.extras import require
from transforms.records import DeadLetter
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


DEAD_LETTERS = "dead_letters"


def _sql_value(value: Any) -> Any:
    """A list or dict (a ``jsonb`` column, such as a list of records) as JSON text, which
    PostgreSQL casts to the column's type; anything else as it is."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value
_CONNECT_ATTEMPTS = 3


def _backoff(delay: float) -> float:
    """Sleep ``delay`` with +-50% jitter (so many workers do not retry in lockstep)."""
    time.sleep(delay * random.uniform(0.5, 1.5))  # backoff between retries, not synchronisation
    return min(delay * 2, 10.0)


class _UpsertDoFn(beam.DoFn):
    def __init__(self, dsn, table, columns, key, max_retries: int, pipeline: str,
                 never_decrease: str | None) -> None:
        self._dsn = dsn
        self._table = table
        self._columns = list(columns)
        self._key = list(key)
        self._max_retries = max_retries
        self._pipeline = pipeline
        self._never_decrease = never_decrease
        self._conn = None

    def setup(self):
        self._psycopg = require("postgres", "psycopg")
        self._sql = require("postgres", "psycopg.sql")
        self._connect()
        self._ensure_table()

    def _connect(self):
        delay = 0.2
        for attempt in range(_CONNECT_ATTEMPTS):
            try:
                self._conn = self._psycopg.connect(self._dsn, connect_timeout=10)
                return
            except self._psycopg.OperationalError as exc:
                if attempt + 1 < _CONNECT_ATTEMPTS:
                    delay = _backoff(delay)
                    continue
                text = str(exc).strip()
                first = text.splitlines()[0] if text else type(exc).__name__
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
        guard = sql.SQL("")
        if self._never_decrease:
            column = sql.Identifier(self._never_decrease)
            guard = sql.SQL(" WHERE {}.{} IS NULL OR EXCLUDED.{} >= {}.{}").format(
                self._table_ident(), column, column, self._table_ident(), column
            )
        return sql.SQL(
            "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}, updated_at = now()"
            "{}"
        ).format(
            self._table_ident(),
            sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL(", ").join(sql.Placeholder() * len(names)),
            sql.SQL(", ").join(map(sql.Identifier, self._key)),
            sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n))
                for n in updates
            ),
            guard,
        )

    def start_bundle(self):
        self._rows: list[tuple] = []
        self._windows: list = []

    def process(self, record, window=beam.DoFn.WindowParam):
        row = as_dict(record)
        self._rows.append(tuple(_sql_value(row.get(name)) for name, _ in self._columns))
        self._windows.append(window)

    def finish_bundle(self):
        if not self._rows:
            return
        statement = self._upsert_statement()
        try:
            self._write_with_retries(statement, self._rows)
        except (self._psycopg.DataError, self._psycopg.IntegrityError):
            # Some row is refused: find which, one transaction per row, and dead-letter it.
            for row, window in zip(self._rows, self._windows, strict=True):
                try:
                    self._write_with_retries(statement, [row])
                except (self._psycopg.DataError, self._psycopg.IntegrityError) as exc:
                    yield self._dead_letter(row, window, exc)
        self._rows, self._windows = [], []

    def _dead_letter(self, row: tuple, window, exc: Exception):
        names = [name for name, _ in self._columns]
        payload = json.dumps(dict(zip(names, row, strict=True)), default=str)
        reason = f"PostgreSQL refused the row for {self._table}: {str(exc).strip().splitlines()[0]}"
        letter = DeadLetter.of(
            self._pipeline, "sink", reason, payload,
            {"source": "sink", "sink": "postgres", "table": self._table}, "sink_rejected",
        )
        return beam.pvalue.TaggedOutput(
            DEAD_LETTERS,
            WindowedValue(letter, window.max_timestamp(), (window,)),
        )

    def _write_with_retries(self, statement, rows: list[tuple]) -> None:
        delay = 0.2
        for attempt in range(self._max_retries + 1):
            try:
                if self._conn is None or self._conn.closed:
                    self._connect()
                conn = self._conn
                assert conn is not None  # _connect() opened it or raised
                with conn.transaction():
                    with conn.cursor() as cursor:
                        cursor.executemany(statement, rows)
                return
            except (self._psycopg.OperationalError, self._psycopg.errors.SerializationFailure) as exc:
                if attempt == self._max_retries:
                    raise SinkError(
                        f"writing to {self._table} at {redact_dsn(self._dsn)} failed after "
                        f"{attempt + 1} attempts: {exc}"
                    ) from None
                _LOG.warning("PostgreSQL write failed (%s); retrying", exc)
                delay = _backoff(delay)
                if self._conn is not None and self._conn.closed:
                    self._conn = None

    def teardown(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class WriteToPostgres(beam.PTransform):
    """Upsert NamedTuple/dict records into ``table`` keyed by ``key``.

    ``columns`` is a sequence of ``(name, SQL type)``; the table is created if missing.
    The result is a PCollection of DeadLetters for rows the database refused.
    """

    def __init__(
        self,
        dsn: str,
        table: str,
        columns: Sequence[tuple[str, str]],
        key: Sequence[str],
        *,
        max_retries: int = 5,
        pipeline: str = "beam_pipelines",
        never_decrease: str | None = None,
    ) -> None:
        super().__init__()
        self._dsn = validate_dsn(dsn)
        if not isinstance(table, str) or not _IDENTIFIER.match(table):
            raise ConfigError("--output_table", "a table name like page_views or schema.table", table)
        names = [name for name, _ in columns]
        missing = [k for k in key if k not in names]
        if not key or missing:
            raise ConfigError("key", f"column names among {names}", missing or key)
        if never_decrease is not None and never_decrease not in names:
            raise ConfigError("never_decrease", f"one of the columns {names}", never_decrease)
        self._table = table
        self._columns = list(columns)
        self._key = list(key)
        self._max_retries = max_retries
        self._pipeline = pipeline
        self._never_decrease = never_decrease

    def expand(self, pcoll):
        """Returns the dead letters of rows the database refused."""
        outputs = pcoll | "Upsert" >> beam.ParDo(
            _UpsertDoFn(self._dsn, self._table, self._columns, self._key, self._max_retries,
                        self._pipeline, self._never_decrease)
        ).with_outputs(DEAD_LETTERS, main="written")
        return outputs[DEAD_LETTERS]
