"""The PostgreSQL sink rides out a database restart mid-backfill, and fails with one line
once its retry budget is spent; a transaction is written whole or not at all.

The outage is driven by what the database and the sink show, not by sleeps: a trigger
lets the sink's first transaction through and holds every later one on an advisory lock
the test owns, so the server is stopped (``pg_ctl stop -m fast``) exactly while the
sink has written its first batch and waits to write the next; it is started again once
the sink has logged that it has been failing for 30 seconds.
"""

import logging
import threading

import psycopg
import pytest

from beam_pipelines import pageviews
from beam_pipelines.testing import SyntheticEvents, wait_for
from beam_pipelines.testing.servers import PostgresServer
from transforms.sinks.postgres import BATCH_ROWS, is_transient

GATE = 4242
WINDOW = 60


def wait_until(condition, what):
    """Poll an observable condition (a row count, a log record) until it holds."""
    wait_for(condition, what=what, timeout=180.0)


class RetryLog(logging.Handler):
    """The sink's failed attempts, as it logs them (transforms.sinks.retry)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.elapsed = []

    def emit(self, record):
        if hasattr(record, "retry_elapsed"):
            self.elapsed.append(record.retry_elapsed)

    def __enter__(self):
        logger = logging.getLogger("transforms.sinks.retry")
        logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger("transforms.sinks.retry").removeHandler(self)


def gated_table(dsn):
    """page_views as the sink creates it, plus a trigger that holds every transaction
    after the first on advisory lock GATE, and the connection holding that lock."""
    columns = ", ".join(f"{name} {kind}" for name, kind in pageviews.RESULTS.postgres_columns)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE page_views ({columns}, updated_at timestamptz NOT NULL "
                     f"DEFAULT now(), PRIMARY KEY ({', '.join(pageviews.RESULTS.postgres_key)}))")
        conn.execute("CREATE TABLE first_writer (xid bigint)")
        conn.execute(f"""
            CREATE FUNCTION gate() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NOT EXISTS (SELECT 1 FROM first_writer) THEN
                INSERT INTO first_writer VALUES (txid_current());
              ELSIF NOT EXISTS (SELECT 1 FROM first_writer WHERE xid = txid_current()) THEN
                PERFORM pg_advisory_lock_shared({GATE});
              END IF;
              RETURN NEW;
            END $$""")
        conn.execute("CREATE TRIGGER gate BEFORE INSERT ON page_views "
                     "FOR EACH ROW EXECUTE FUNCTION gate()")
    holder = psycopg.connect(dsn, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [GATE])
    return holder


def scalar(dsn, query):
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute(query).fetchone()[0]


def first_batch_written_and_next_held(dsn):
    return (scalar(dsn, "SELECT count(*) FROM page_views") == BATCH_ROWS
            and scalar(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND NOT granted") > 0)


def expected_counts(generator, count):
    counts = {}
    for event in generator.events(count):
        key = (int(event["timestamp"] // WINDOW * WINDOW), event["page"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def table_counts(dsn):
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT extract(epoch FROM window_start)::bigint, page, count "
                            "FROM page_views").fetchall()
    return {(start, page): count for start, page, count in rows}


@pytest.fixture
def backfill(tmp_path):
    """A backfill whose results take several transactions: (argv, expected counts)."""
    generator = SyntheticEvents(seed=21, rate=1.0, malformed=0.01)
    events = 20_000
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(generator.payloads(events)) + b"\n")
    expected = expected_counts(generator, events)
    assert len(expected) > 3 * BATCH_ROWS
    argv = ["--source=file", f"--input={tmp_path}/events.jsonl", f"--window_size={WINDOW}",
            "--sink=postgres"]
    return argv, expected


def run_in_thread(argv):
    outcome = {}

    def target():
        try:
            pageviews.run(argv)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="backfill")
    thread.start()
    return thread, outcome


@pytest.mark.integration
@pytest.mark.slow
def test_a_30_second_restart_mid_backfill_leaves_exact_rows(backfill):
    argv, expected = backfill
    with PostgresServer() as server, RetryLog() as retries:
        holder = gated_table(server.dsn)
        thread, outcome = run_in_thread(argv + [f"--output={server.dsn}"])
        wait_until(lambda: first_batch_written_and_next_held(server.dsn),
                   "the sink wrote its first batch and waits to write the next")
        server.halt("fast")  # the held transaction is cut short: it wrote nothing
        holder.close()
        wait_until(lambda: retries.elapsed and max(retries.elapsed) >= 30,
                   "the sink has been failing (and retrying) for 30 s")
        server.resume()
        thread.join(timeout=300)
        assert not thread.is_alive()
        assert "error" not in outcome, outcome
        assert table_counts(server.dsn) == expected  # exact: nothing lost, nothing doubled


@pytest.mark.integration
@pytest.mark.slow
def test_a_spent_retry_budget_is_one_line_and_nothing_half_written(backfill, capsys):
    argv, _ = backfill
    with PostgresServer() as server, RetryLog() as retries:
        holder = gated_table(server.dsn)
        result = {}
        thread = threading.Thread(target=lambda: result.setdefault("code", pageviews.main(
            argv + [f"--output={server.dsn}", "--sink_retry_seconds=2"])))
        thread.start()
        wait_until(lambda: first_batch_written_and_next_held(server.dsn),
                   "the sink wrote its first batch and waits to write the next")
        server.halt("fast")
        holder.close()
        thread.join(timeout=300)
        assert result["code"] == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(f"error: PostgreSQL sink: writing to page_views at {server.dsn} "
                                 "failed: "), err[0]
        assert "--sink_retry_seconds" in err[0] and len(retries.elapsed) >= 2
        server.resume()
        assert scalar(server.dsn, "SELECT count(*) FROM page_views") == BATCH_ROWS


@pytest.mark.unit
def test_what_is_transient():
    errors = psycopg.errors
    for exc in (errors.AdminShutdown(), errors.SerializationFailure(), errors.DeadlockDetected(),
                errors.QueryCanceled(), errors.CannotConnectNow(), errors.TooManyConnections(),
                errors.ConnectionFailure(), errors.LockNotAvailable(),
                psycopg.OperationalError("connection failed: Connection refused"),
                psycopg.OperationalError('connection failed: connection to server at "h", port '
                                         "5432 failed: FATAL:  the database system is starting up"),
                psycopg.OperationalError("consuming input failed: server closed the connection "
                                         "unexpectedly")):
        assert is_transient(exc), exc
    for exc in (errors.InvalidPassword(), errors.UndefinedTable(), errors.NumericValueOutOfRange(),
                errors.UniqueViolation(), ValueError("not a database error"),
                psycopg.OperationalError('connection failed: connection to server at "h", port '
                                         '5432 failed: FATAL:  database "x" does not exist')):
        assert not is_transient(exc), exc
