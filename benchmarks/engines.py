"""The peers of the batch benchmark, one per process: ``python -m benchmarks.engines NAME INPUT OUT``.

Each reads the JSON-lines file INPUT, applies the input contract (``benchmarks/contract.py``
says it in Python; the SQL engines say the same in their own functions), counts valid
events per (5-minute window, page), and writes ``OUT/counts*.jsonl``: one JSON row
``[window_start_epoch_seconds, page, count]`` per line. The harness (``benchmarks/run.py``)
times the whole process and reads those rows.

* ``plain-python``: one loop, ``json.loads`` and a dict of counts.
* ``textbook-beam``: ReadFromText (bytes) | FlatMap(json.loads + validation) |
  WindowInto(FixedWindows(300)) | CombinePerKey(sum) | WriteToText, element at a time,
  on the DirectRunner, as a Beam tutorial writes it.
* ``duckdb``: one SQL query; lines read with ``read_csv`` as one VARCHAR column, validated
  with DuckDB's JSON functions; ISO-8601 timestamps cast to TIMESTAMPTZ.
* ``spark``: PySpark ``local[2]``: ``spark.read.text`` + ``try_parse_json`` /
  ``variant_get`` + ``groupBy(window(...), page).count()``.

Where an engine's JSON reader is more lenient than the contract, the query adds the
check that closes the gap; what still differs only on inputs the generator never writes
is listed in ``benchmarks/README.md``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Iterable, Iterator

WINDOW = 300
MIN_SECONDS = 946_684_800
MAX_SECONDS = 4_102_444_800
# ISO-8601 with a timezone (Z or +HH:MM), the form JSON producers write; the SQL peers
# read it with their timestamp casts. Python's fromisoformat (the contract) reads more
# forms (a space for the T, basic format): none of them is in the generated data.
ISO = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,6})?"
       r"(Z|[+-][0-9]{2}:[0-9]{2})")


def write_rows(out_dir: str, rows: Iterable[tuple[int, str, int]]) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "counts.jsonl"), "w", encoding="utf-8") as handle:
        for window_start, page, count in rows:
            handle.write(json.dumps([int(window_start), page, int(count)]) + "\n")


# ---- plain Python ------------------------------------------------------------------------

def plain_python(path: str, out_dir: str) -> None:
    from benchmarks.contract import window_and_page

    counts: dict[tuple[int, str], int] = {}
    with open(path, "rb") as handle:
        for line in handle:
            key = window_and_page(line[:-1] if line.endswith(b"\n") else line)
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
    write_rows(out_dir, ((w, page, n) for (w, page), n in counts.items()))


# ---- textbook Beam -----------------------------------------------------------------------

def textbook_beam(path: str, out_dir: str) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner
    from apache_beam.transforms import window

    from benchmarks.contract import event_time_and_page

    class OfflineDirectRunner(SwitchingDirectRunner):
        # Beam 2.77's DirectRunner first tries to download Prism; offline that only costs
        # time before it falls back to the FnApiRunner. Skip the attempt, exactly as the
        # project's DirectRunner preset does, so both Beam pipelines run on the same runner.
        _is_interactive = True

    def parse(line: bytes) -> Iterator[Any]:
        parsed = event_time_and_page(line)  # json.loads + the contract's checks
        if parsed is not None:
            seconds, page = parsed
            yield window.TimestampedValue((page, 1), seconds)

    def to_row(kv: Any, w: Any = beam.DoFn.WindowParam) -> str:
        return json.dumps([int(w.start), kv[0], kv[1]])

    os.makedirs(out_dir, exist_ok=True)
    with beam.Pipeline(runner=OfflineDirectRunner(), options=PipelineOptions()) as p:
        (
            p
            | beam.io.ReadFromText(path, coder=beam.coders.BytesCoder())  # bad UTF-8 reaches parse
            | beam.FlatMap(parse)
            | beam.WindowInto(window.FixedWindows(WINDOW))
            | beam.CombinePerKey(sum)
            | beam.Map(to_row)
            | beam.io.WriteToText(os.path.join(out_dir, "counts"), file_name_suffix=".jsonl")
        )


# ---- DuckDB ------------------------------------------------------------------------------

def duckdb_query(path: str) -> str:
    """Counts per (window_start, page), plus one row (NULL, NULL, n) of rejected lines."""
    quoted = path.replace("'", "''")
    # One VARCHAR column per line: the delimiter is \x01, a byte that valid JSON never
    # holds raw, no quote or escape character, and '\n' as the line separator (a trailing
    # '\r' is dropped). A line that is not valid UTF-8 is an error for the CSV reader;
    # ignore_errors drops it (the contract rejects it) instead of failing the query.
    lines = (
        f"read_csv('{quoted}', columns={{'line': 'VARCHAR'}}, header=false, auto_detect=false, "
        f"delim='\x01', quote='', escape='', new_line='\\n', strict_mode=false, ignore_errors=true)"
    )
    fields = "['$.user_id', '$.action', '$.timestamp', '$.page']"
    # Two things keep this fast: each line is parsed by json_valid, json_type and
    # json_extract_string once (a path list reads all four fields in one pass), and no
    # WHERE sits above the parse: DuckDB pushes a filter down by copying the expressions
    # it refers to, which would parse every line once per reference. Rejected lines are
    # counted in a NULL group instead, which the caller drops.
    return f"""
    WITH parsed AS (
        SELECT CASE WHEN json_valid(line) THEN json_type(line, {fields}) END AS t,
               CASE WHEN json_valid(line) THEN json_extract_string(line, {fields}) END AS v
        FROM {lines}
    ),
    checked AS (
        SELECT CASE WHEN (t[1] IN ('BIGINT', 'UBIGINT') OR (t[1] = 'VARCHAR' AND v[1] <> '')
                          -- an integer too large for 64 bits is typed DOUBLE, kept as text
                          OR (t[1] = 'DOUBLE' AND regexp_full_match(v[1], '-?[0-9]+')))
                     AND t[2] = 'VARCHAR' AND v[2] <> '' AND t[4] = 'VARCHAR' AND v[4] <> ''
                    THEN CASE WHEN t[3] IN ('BIGINT', 'UBIGINT') THEN TRY_CAST(v[3] AS BIGINT)
                              -- NaN and Infinity (DuckDB reads them) fail the cast: rejected
                              WHEN t[3] = 'DOUBLE' THEN TRY_CAST(floor(TRY_CAST(v[3] AS DOUBLE)) AS BIGINT)
                              -- ISO-8601 with Z or an offset (the strict form; a time without
                              -- an offset is rejected), floored to the second
                              WHEN t[3] = 'VARCHAR' AND regexp_full_match(v[3], '{ISO}')
                              THEN epoch_us(TRY_CAST(v[3] AS TIMESTAMPTZ)) // 1000000
                         END
               END AS whole,
               v[4] AS page
        FROM parsed
    ),
    windowed AS (
        SELECT CASE WHEN whole >= {MIN_SECONDS} AND whole < {MAX_SECONDS}
                    THEN whole - whole % {WINDOW} END AS window_start,
               page
        FROM checked
    )
    SELECT window_start, CASE WHEN window_start IS NOT NULL THEN page END AS page, count(*) AS n
    FROM windowed
    GROUP BY ALL
    """


def duckdb_engine(path: str, out_dir: str) -> None:
    import duckdb

    rows = duckdb.sql(duckdb_query(path)).fetchall()
    write_rows(out_dir, (row for row in rows if row[0] is not None))


# ---- Spark -------------------------------------------------------------------------------

def spark_engine(path: str, out_dir: str) -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("beam-pipelines-benchmark")
        .config("spark.driver.memory", os.environ.get("BENCH_SPARK_DRIVER_MEMORY", "2g"))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        # Python's json keeps the last of duplicate keys; Spark's variant parser fails the row.
        .config("spark.sql.variant.allowDuplicateKeys", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    # lineSep: split on '\n' only (Hadoop's default also splits on a lone '\r').
    lines = spark.read.option("lineSep", "\n").text(path)
    trimmed = F.expr("trim(BOTH ' \t\r\n' FROM value)")
    events = (
        lines
        # Spark decodes invalid UTF-8 to U+FFFD when it parses: reject those lines first.
        # try_parse_json reads the first JSON value and ignores what follows it, so the
        # line must also start with '{' and end with '}' (an object, nothing after it).
        .where(F.expr("is_valid_utf8(value)") & trimmed.startswith("{") & trimmed.endswith("}"))
        .select(F.expr("try_parse_json(value)").alias("v"))
        .where("v IS NOT NULL")
        .select(
            F.expr("schema_of_variant(variant_get(v, '$.user_id'))").alias("user_id_type"),
            F.expr("try_variant_get(v, '$.user_id', 'string')").alias("user_id"),
            F.expr("schema_of_variant(variant_get(v, '$.action'))").alias("action_type"),
            F.expr("try_variant_get(v, '$.action', 'string')").alias("action"),
            F.expr("schema_of_variant(variant_get(v, '$.page'))").alias("page_type"),
            F.expr("try_variant_get(v, '$.page', 'string')").alias("page"),
            F.expr("schema_of_variant(variant_get(v, '$.timestamp'))").alias("ts_type"),
            # A variant keeps a JSON number as BIGINT, an exact DECIMAL or a DOUBLE; casting
            # it to bigint truncates, which is floor() for every time in range (> 0).
            F.expr("try_variant_get(v, '$.timestamp', 'bigint')").alias("number_whole"),
            F.expr("try_variant_get(v, '$.timestamp', 'string')").alias("ts_text"),
        )
        .where(
            "(user_id_type = 'BIGINT' OR user_id_type RLIKE '^DECIMAL\\\\([0-9]+,0\\\\)$'"
            "  OR (user_id_type = 'STRING' AND user_id <> ''))"
            " AND action_type = 'STRING' AND action <> ''"
            " AND page_type = 'STRING' AND page <> ''"
        )
        # ISO-8601 strings with Z or an offset; a cast to seconds truncates, which is
        # floor() for every time in range.
        .withColumn("whole", F.expr(
            "CASE WHEN ts_type = 'BIGINT' OR ts_type = 'DOUBLE' OR ts_type LIKE 'DECIMAL(%' "
            "THEN number_whole "
            f"WHEN ts_type = 'STRING' AND ts_text RLIKE '^{ISO}$' "
            "THEN unix_seconds(try_cast(ts_text AS TIMESTAMP)) END"))
        .where(f"whole >= {MIN_SECONDS} AND whole < {MAX_SECONDS}")
    )
    counts = events.groupBy(F.window(F.timestamp_seconds("whole"), "5 minutes"), "page").count()
    rows = counts.select(F.expr("unix_seconds(window.start)").alias("window_start"), "page", "count")
    write_rows(out_dir, ((r.window_start, r.page, r["count"]) for r in rows.collect()))
    spark.stop()


ENGINES: dict[str, Callable[[str, str], None]] = {
    "plain-python": plain_python,
    "textbook-beam": textbook_beam,
    "duckdb": duckdb_engine,
    "spark": spark_engine,
}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ENGINES:
        print(f"usage: python -m benchmarks.engines {{{'|'.join(ENGINES)}}} INPUT OUT_DIR", file=sys.stderr)
        return 2
    name, path, out_dir = argv
    ENGINES[name](path, out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
