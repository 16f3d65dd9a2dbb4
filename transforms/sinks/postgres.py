"""Upsert records into PostgreSQL, keyed, so re-runs and later panes replace rows.

``WriteToPostgres(dsn, table, columns, key)`` creates the table if it is missing
(primary key = ``key``), buffers a bundle's rows and writes them in one transaction with
``INSERT ... ON CONFLICT (key) DO UPDATE``. A backfill re-run over the same input
therefore leaves exactly one row per key, and a streaming job's LATE pane replaces the
ON_TIME count. With ``never_decrease=COLUMN`` (streaming, accumulating counts) an update
never lowers that column, so a pane that reaches the database out of order cannot
overwrite a newer, larger count.

A bundle is written in transactions of :data:`BATCH_ROWS` rows: each is all or
nothing. Transient failures (a lost or refused connection, a server shutting down or
starting up, a serialization failure or deadlock, a timeout: :func:`is_transient`) are
retried, reconnecting first, with jittered exponential backoff for ``retry_seconds``
(``--sink_retry_seconds``, default 120: a database restart or failover is ridden out);
then the run fails with one line naming the table and the cause. A transaction cut
short writes nothing and is written again, and the upsert makes a re-run (or Beam
retrying a bundle) harmless. At launch the sink connects once without retrying, so a
wrong DSN fails in seconds. A row the database *refuses* (a value out of range, a
constraint) is not transient: its transaction is retried row by row and each refused
row comes out of the transform as a DeadLetter (reason code ``sink_rejected``), so one
bad row never stalls a streaming job.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Sequence
from urllib.parse import unquote

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from transforms.base.errors import ConfigError, SinkError
from transforms.base.extras import require
from transforms.records import DeadLetter
from transforms.sinks import as_dict
from transforms.sinks.retry import (
    DEFAULT_RETRY_SECONDS,
    RetryBudget,
    first_line,
    validate_retry_seconds,
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def validate_dsn(dsn: Any, flag: str = "--output") -> str:
    expected = "a PostgreSQL DSN such as postgresql://USER@HOST:5432/DB or 'host=H dbname=D'"
    if not isinstance(dsn, str) or not dsn.strip():
        raise ConfigError(flag, expected, dsn)
    if not (dsn.startswith(("postgresql://", "postgres://")) or "=" in dsn):
        raise ConfigError(flag, expected, redact_dsn(dsn))
    return dsn


def redact_dsn(dsn: str) -> str:
    """The DSN with every password replaced by ***, for logs and errors: a URI
    (:func:`redact_uri`; any scheme, so SQLAlchemy and REST catalog URLs too) or libpq's
    key/value form (:func:`redact_keyword_value`, which also takes a driver's message
    holding either)."""
    if _URI.match(dsn):
        return redact_uri(dsn)
    return redact_keyword_value(dsn)


def _is_secret_key(key: str) -> bool:
    key = key.lower()
    return "password" in key or "secret" in key  # password, sslpassword, ...


_URI = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.\-]*://")
# A keyword, '=' and the spaces libpq allows around it: "password = 'a b'" is one setting.
_KEYWORD = re.compile(r"\s*([^\s=]+)\s*=\s*")
_WORD = re.compile(r"\S+")


def redact_keyword_value(conninfo: str) -> str:
    """``host=h password='a b'`` -> ``host=h password=***``, read as libpq reads it: a
    value is single-quoted (to the closing quote) or runs to the next space, and a
    backslash escapes the next character in both; an unclosed quote runs to the end.

    Words that are not ``key=value`` (the text of a message around a DSN) are kept, but
    for a URI among them, shown as :func:`redact_uri` shows it."""
    out: list[str] = []
    i, n = 0, len(conninfo)
    while i < n:
        found = _KEYWORD.match(conninfo, i)
        if found is None or "://" in found.group(1):
            word = _WORD.search(conninfo, i)
            if word is None:  # trailing spaces
                out.append(conninfo[i:])
                break
            text = word.group(0)
            out.append(conninfo[i:word.start()] + (redact_uri(text) if "://" in text else text))
            i = word.end()
            continue
        out.append(conninfo[i:found.end()])
        j = found.end()
        quoted = j < n and conninfo[j] == "'"
        k = j + 1 if quoted else j
        while k < n and (conninfo[k] != "'" if quoted else not conninfo[k].isspace()):
            k += 2 if conninfo[k] == "\\" else 1
        end = min(k + 1 if quoted else k, n)
        out.append("***" if _is_secret_key(found.group(1)) else conninfo[j:end])
        i = end
    return "".join(out)


def redact_uri(uri: str) -> str:
    """``postgresql://user:secret@host/db?password=x`` -> ``postgresql://user:***@host/db?
    password=***``. The credentials end at the *last* '@' (a raw '@', '/' or '?' in a
    password hides more, never less); query keys are compared percent-decoded."""
    scheme, sep, rest = uri.partition("://")
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _password = rest[:at].partition(":")
        if colon:
            rest = f"{user}:***{rest[at:]}"
    head, question, query = rest.partition("?")
    if question:
        params = []
        for param in query.split("&"):
            key, equals, _value = param.partition("=")
            params.append(f"{key}=***" if equals and _is_secret_key(unquote(key)) else param)
        query = "&".join(params)
    return scheme + sep + head + question + query


DEAD_LETTERS = "dead_letters"
BATCH_ROWS = 1000  # rows per transaction: a backfill's bundle can hold millions
# What passes (SQLSTATE classes and codes): a lost connection (08), a transaction the
# server rolled back (40: serialization failure, deadlock), too many connections or too
# few resources (53), a server shutting down or starting up (57P01-57P03), a statement
# or lock timeout (57014, 55P03).
_TRANSIENT_CLASSES = ("08", "40", "53")
_TRANSIENT_CODES = frozenset({"57P01", "57P02", "57P03", "57014", "55P03"})
# A connection the server itself refused (FATAL) passes only while it goes down or up.
_TRANSIENT_REFUSALS = (
    "starting up", "shutting down", "in recovery mode", "not yet accepting connections",
    "too many clients", "connection slots are reserved", "administrator command",
)


def _sql_value(value: Any, sql_type: str) -> Any:
    """A value for a column of ``sql_type``: JSON text for a ``json``/``jsonb`` column (a
    list of records), which PostgreSQL casts; a list as an array for an array column
    (``text[]``, psycopg adapts it); anything else as it is."""
    if sql_type.startswith("json") and value is not None:
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def is_transient(exc: BaseException) -> bool:
    """Whether retrying can help: a connection that failed or broke, a server restarting,
    a serialization failure or deadlock, a timeout. Not: a refused row (DataError,
    IntegrityError), bad SQL, a wrong password or database name."""
    psycopg = require("postgres", "psycopg")
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    if state:
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_CODES
    text = str(exc)
    if "FATAL:" in text:  # the server answered and said no: only some refusals pass
        return any(phrase in text for phrase in _TRANSIENT_REFUSALS)
    return True  # no answer: refused, reset, timed out


class _UpsertDoFn(beam.DoFn):
    def __init__(self, dsn, table, columns, key, retry_seconds: float, pipeline: str,
                 never_decrease: str | None, batch_rows: int = BATCH_ROWS) -> None:
        self._dsn = dsn
        self._table = table
        self._columns = list(columns)
        self._key = list(key)
        self._retry_seconds = retry_seconds
        self._pipeline = pipeline
        self._never_decrease = never_decrease
        self._batch_rows = batch_rows
        self._conn = None

    def setup(self):
        self._psycopg = require("postgres", "psycopg")
        self._sql = require("postgres", "psycopg.sql")
        self._conn = None
        self._retrying(self._ensure_table)

    def _connection(self):
        if self._conn is None or self._conn.closed:
            self._conn = None
            self._connecting = True
            self._conn = self._psycopg.connect(self._dsn, connect_timeout=10)
            self._connecting = False
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except self._psycopg.Error:  # already broken: nothing to close cleanly
                pass

    def _retrying(self, operation: Callable[[Any], None]) -> None:
        """``operation(connection)``, retried within the retry budget while it fails
        transiently (reconnecting first); SinkError naming the sink once it is spent."""
        budget = RetryBudget(self._retry_seconds,
                             what=f"PostgreSQL sink ({self._table} at {redact_dsn(self._dsn)})")
        while True:
            self._connecting = False
            try:
                operation(self._connection())
                return
            except self._psycopg.Error as exc:
                connecting = self._connecting
                if not connecting and not is_transient(exc):
                    raise
                self._drop_connection()
                if is_transient(exc) and budget.wait(exc):
                    continue
                raise SinkError(self._failure(exc, connecting, budget)) from None

    def _failure(self, exc: BaseException, connecting: bool, budget: RetryBudget) -> str:
        where = redact_dsn(self._dsn)
        if connecting and not budget.seconds:  # the check at launch
            text = f"cannot connect to PostgreSQL at {where}: {first_line(exc)}"
        else:
            text = f"PostgreSQL sink: writing to {self._table} at {where} failed: {first_line(exc)}"
        if budget.failures > 1:  # retried at least once (not the check at launch)
            text += (f" (retried for {budget.elapsed:.0f} s, {budget.failures} attempts; "
                     "--sink_retry_seconds sets how long)")
        return text

    def _table_ident(self):
        return self._sql.Identifier(*self._table.split("."))

    def _ensure_table(self, conn):
        sql = self._sql
        cols = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(sql_type))
            for name, sql_type in self._columns
        )
        ddl = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ({}, updated_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY ({}))"
        ).format(self._table_ident(), cols, sql.SQL(", ").join(map(sql.Identifier, self._key)))
        with conn.transaction():
            conn.execute(ddl)

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
        self._rows.append(tuple(_sql_value(row.get(name), sql_type)
                                for name, sql_type in self._columns))
        self._windows.append(window)

    def finish_bundle(self):
        if not self._rows:
            return
        statement = self._upsert_statement()
        rows, windows = self._rows, self._windows
        self._rows, self._windows = [], []
        for start in range(0, len(rows), self._batch_rows):
            batch = rows[start:start + self._batch_rows]
            try:
                self._write(statement, batch)
            except (self._psycopg.DataError, self._psycopg.IntegrityError):
                # Some row is refused: find which, one transaction per row, and dead-letter it.
                for row, window in zip(batch, windows[start:start + self._batch_rows],
                                       strict=True):
                    try:
                        self._write(statement, [row])
                    except (self._psycopg.DataError, self._psycopg.IntegrityError) as exc:
                        yield self._dead_letter(row, window, exc)

    def _write(self, statement, rows: list[tuple]) -> None:
        """``rows`` in one transaction: all written or none, retried while that fails
        transiently."""

        def write(conn) -> None:
            with conn.transaction():
                with conn.cursor() as cursor:
                    cursor.executemany(statement, rows)

        self._retrying(write)

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

    def teardown(self):
        if self._conn is not None:
            self._drop_connection()


class WriteToPostgres(beam.PTransform):
    """Upsert NamedTuple/dict records into ``table`` keyed by ``key``.

    The result is a PCollection of DeadLetters for rows the database refused.

    Args:
        dsn: a libpq connection string or URI (``postgresql://USER@HOST:5432/DB``).
        table: the table (``name`` or ``schema.name``), created if missing.
        columns: ``(name, SQL type)`` pairs, in the table's order.
        key: the columns of the primary key the upsert conflicts on.
        retry_seconds: how long transient failures (a lost connection, a server
            restarting, a serialization failure or deadlock, a timeout) are retried
            before the run fails (``--sink_retry_seconds``); 0 retries nothing.
        pipeline: the pipeline name in dead letters.
        never_decrease: a column an update never lowers (streaming, accumulating counts).
        batch_rows: rows per transaction; a bundle is written in transactions of this many.
        validate: connect and create the table while the pipeline is built, so a wrong
            DSN fails at launch, in seconds, without retrying.
    """

    def __init__(
        self,
        dsn: str,
        table: str,
        columns: Sequence[tuple[str, str]],
        key: Sequence[str],
        *,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        pipeline: str = "beam_pipelines",
        never_decrease: str | None = None,
        batch_rows: int = BATCH_ROWS,
        validate: bool = True,
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
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise ConfigError("batch_rows", "a whole number of rows >= 1", batch_rows)
        self._table = table
        self._columns = list(columns)
        self._key = list(key)
        self._retry_seconds = validate_retry_seconds(retry_seconds)
        self._pipeline = pipeline
        self._never_decrease = never_decrease
        self._batch_rows = batch_rows
        self._validate = validate

    def _upsert_fn(self, retry_seconds: float) -> _UpsertDoFn:
        return _UpsertDoFn(self._dsn, self._table, self._columns, self._key, retry_seconds,
                           self._pipeline, self._never_decrease, self._batch_rows)

    def expand(self, pcoll):
        """Returns the dead letters of rows the database refused."""
        if self._validate:
            check = self._upsert_fn(retry_seconds=0)  # at launch: fail fast, do not wait
            try:
                check.setup()
            finally:
                check.teardown()
        outputs = pcoll | "Upsert" >> beam.ParDo(
            self._upsert_fn(self._retry_seconds)
        ).with_outputs(DEAD_LETTERS, main="written")
        return outputs[DEAD_LETTERS]
