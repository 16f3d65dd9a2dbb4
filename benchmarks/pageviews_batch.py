"""Batch pageviews: our pipeline beside its peers on the same JSON-lines file.

    python benchmarks/pageviews_batch.py --events 200000
    python benchmarks/pageviews_batch.py --input ../shared/events.jsonl   # an existing file

Peers, each in its own process so peak memory (max RSS) is its own:

* ``beam-pipelines``: ``python -m beam_pipelines.pageviews --source=file`` on the
  DirectRunner (validation, dead letters, exact windows, Parquet/JSON output).
* ``textbook Beam``: ReadFromText + json.loads + WindowInto + CombinePerKey, the pipeline
  from a Beam tutorial, with no validation (bad lines are skipped in a bare try/except).
* ``DuckDB``: one SQL GROUP BY over ``read_json_auto``: the fast-path reference.

Spark local is not run here (pyspark is not a dependency); its numbers can be added by
running the same query in ``spark-submit``. All runs must agree on the total count, which
is printed, so a fast wrong answer shows. This is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

TEXTBOOK = textwrap.dedent(
    """
    import json, sys
    import apache_beam as beam
    from apache_beam.transforms import window

    def parse(line):
        try:
            e = json.loads(line)
            return [window.TimestampedValue((e["page"], 1), int(e["timestamp"]))]
        except Exception:
            return []

    with beam.Pipeline() as p:
        (p | beam.io.ReadFromText(sys.argv[1], coder=beam.coders.BytesCoder())  # str crashes on bad UTF-8
           | beam.FlatMap(parse)
           | beam.WindowInto(window.FixedWindows(300))
           | beam.CombinePerKey(sum)
           | beam.Map(lambda kv: json.dumps(kv))
           | beam.io.WriteToText(sys.argv[2]))
    """
)

DUCKDB = textwrap.dedent(
    """
    import sys, duckdb
    rows = duckdb.sql(f'''
        SELECT page, to_timestamp(floor(ts / 300) * 300) AS window_start, count(*) AS n
        FROM (SELECT page, TRY_CAST(timestamp AS DOUBLE) AS ts
              FROM read_json_auto('{sys.argv[1]}', format='newline_delimited',
                                  ignore_errors=true, columns={{'user_id': 'VARCHAR',
                                  'action': 'VARCHAR', 'page': 'VARCHAR', 'timestamp': 'VARCHAR'}}))
        WHERE ts IS NOT NULL AND page IS NOT NULL
        GROUP BY ALL''').fetchall()
    print(sum(r[2] for r in rows))
    """
)


def generate(path: str, events: int) -> None:
    from beam_pipelines.testing import SyntheticEvents

    generator = SyntheticEvents(seed=1, rate=50.0, out_of_order=0.05, malformed=0.01)
    with open(path, "wb") as handle:
        for payload in generator.payloads(events):
            handle.write(payload + b"\n")


def timed(argv: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB of the child, stdout) of one child process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
        child.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode("utf-8", errors="replace")
    if child.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed:\n{text[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, text


def total_from_jsonl(directory: str, key: str) -> int:
    total = 0
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as handle:
            for line in handle:
                row = json.loads(line)
                total += row[key] if isinstance(row, dict) else row[1]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to generate")
    parser.add_argument("--input", help="use this JSON-lines file instead of generating one")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bench-pageviews-")
    path = args.input or os.path.join(work, "events.jsonl")
    if not args.input:
        generate(path, args.events)
    lines = sum(1 for _ in open(path, "rb"))
    size = os.path.getsize(path) / 2**20
    print(f"input: {path} ({lines} lines, {size:.0f} MiB)\n")

    results = []
    ours = os.path.join(work, "ours")
    seconds, rss, _ = timed([sys.executable, "-m", "beam_pipelines.pageviews", "--source=file",
                             f"--input={path}", "--sink=jsonl", f"--output={ours}",
                             f"--dead_letter={work}/dead"])
    results.append(("beam-pipelines (DirectRunner)", seconds, rss, total_from_jsonl(ours, "count")))

    textbook = os.path.join(work, "textbook")
    os.makedirs(textbook)
    seconds, rss, _ = timed([sys.executable, "-c", TEXTBOOK, path, f"{textbook}/out"])
    results.append(("textbook Beam (DirectRunner)", seconds, rss, total_from_jsonl(textbook, "")))

    try:
        import duckdb  # noqa: F401
    except ImportError:
        results.append(("DuckDB", float("nan"), float("nan"), -1))
    else:
        seconds, rss, out = timed([sys.executable, "-c", DUCKDB, path])
        results.append(("DuckDB", seconds, rss, int(out.strip().splitlines()[-1])))

    print(f"{'engine':32} {'seconds':>9} {'events/s':>10} {'peak MiB':>9} {'counted':>9}")
    for name, seconds, rss, counted in results:
        rate = lines / seconds if seconds == seconds and seconds > 0 else float("nan")
        print(f"{name:32} {seconds:9.1f} {rate:10.0f} {rss:9.0f} {counted:9d}")
    print("\n'counted' differs where an engine is lenient: the textbook pipeline and DuckDB accept"
          "\nsome inputs the contract rejects (e.g. numeric strings, booleans as user ids).")


if __name__ == "__main__":
    main()
