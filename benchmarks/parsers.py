"""The JSON-lines parser candidates of the vectorized path, side by side on the same blocks.

    python -m benchmarks.parsers                 # 4 MiB blocks of both profiles, 9 rounds
    python -m benchmarks.parsers --rounds 21 --events 100000

Each candidate turns one block of lines into the answer the vectorized path needs (which
lines are valid events, with their columns), in one thread, and the candidates take
turns round after round (A/B interleaving), so a machine whose speed drifts treats them
alike; the table shows the median and the fastest round, in milliseconds per block and
microseconds per line. Candidates that cannot decide every line of a dirty block alone
say so and are timed on the block's valid lines only (the best case for them):

* ``msgspec`` (the chosen design): :func:`transforms.batches.parse_json_block`, the
  whole contract, every line decided or handed over;
* ``pyarrow``: ``pyarrow.json.read_json`` with the explicit four-column schema. It
  demands one type per column: on the realistic profile it fails on the first integer
  id among string ids (the old design screened such lines out and retried);
* ``duckdb``: one query over an Arrow array of the lines: ``json_valid``, ``json_type``
  and ``json_extract_string`` over the four paths, ``json_keys`` for duplicate keys;
* ``orjson``: ``orjson.loads`` per line, decoding only (no checks, no columns): a lower
  bound for any Python-level loop over a general JSON decoder;
* ``polars``: ``str.json_decode`` with a struct of four strings (coerces numbers to
  strings, so it cannot tell ``"1733000000"`` from ``1733000000``); fails the whole
  batch on one invalid line.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from typing import Any, Callable, Optional

from benchmarks import datagen

FIELDS = "['$.user_id', '$.action', '$.page', '$.timestamp']"


def _block(profile: str, events: int, seed: int) -> bytes:
    with tempfile.TemporaryDirectory() as workdir:
        path, _ = datagen.cached(workdir, events, seed=seed, profile=profile)
        with open(path, "rb") as handle:
            data = handle.read(4 << 20)
    return data[: data.rfind(b"\n") + 1]


def _valid_lines(data: bytes) -> bytes:
    from benchmarks.contract import event_time_and_page

    return b"\n".join(line for line in data.split(b"\n") if event_time_and_page(line)) + b"\n"


def candidates() -> dict[str, Callable[[bytes], Callable[[], Any]]]:
    """name -> (block -> a function doing the candidate's work on it)."""

    def ours(data: bytes) -> Callable[[], Any]:
        from transforms.batches import parse_json_block

        return lambda: parse_json_block(data)

    def pyarrow_json(data: bytes) -> Callable[[], Any]:
        import pyarrow as pa
        import pyarrow.json as pa_json

        schema = pa.schema([("user_id", pa.string()), ("action", pa.string()),
                            ("page", pa.string()), ("timestamp", pa.int64())])
        options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        read = pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1)
        return lambda: pa_json.read_json(io.BytesIO(data), read_options=read, parse_options=options)

    def duckdb_sql(data: bytes) -> Callable[[], Any]:
        import duckdb
        import pyarrow as pa

        lines = pa.table({"line": pa.array(data.decode("utf-8", "replace").split("\n")[:-1])})
        con = duckdb.connect()
        con.execute("SET threads=1")
        con.register("lines", lines)
        query = f"""
            WITH p AS (SELECT json_valid(line) AS ok, line FROM lines)
            SELECT CASE WHEN ok THEN json_type(line, {FIELDS}) END AS t,
                   CASE WHEN ok THEN json_extract_string(line, {FIELDS}) END AS v,
                   CASE WHEN ok THEN len(json_keys(line)) = len(list_distinct(json_keys(line)))
                   END AS distinct_keys
            FROM p"""
        return lambda: con.sql(query).to_arrow_table()

    def orjson_loop(data: bytes) -> Callable[[], Any]:
        import orjson

        lines = data.split(b"\n")[:-1]

        def run() -> list:
            out = []
            for line in lines:
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    out.append(None)
            return out

        return run

    def polars_decode(data: bytes) -> Callable[[], Any]:
        import polars as pl

        series = pl.Series("line", data.decode("utf-8", "replace").split("\n")[:-1])
        dtype = pl.Struct({"user_id": pl.String, "action": pl.String, "page": pl.String,
                           "timestamp": pl.String})
        return lambda: series.str.json_decode(dtype)

    return {"msgspec (chosen)": ours, "pyarrow read_json": pyarrow_json, "duckdb SQL": duckdb_sql,
            "orjson loop": orjson_loop, "polars json_decode": polars_decode}


def measure(rounds: int, events: int, seed: int) -> list[dict[str, Any]]:
    blocks = {profile: _block(profile, events, seed) for profile in datagen.PROFILES}
    jobs: list[tuple[str, str, str, Callable[[], Any]]] = []
    notes: dict[tuple[str, str], str] = {}
    for profile, data in blocks.items():
        for name, make in candidates().items():
            try:
                work = make(data)
                work()
                jobs.append((profile, name, "all lines", work))
            except ImportError as exc:
                notes[(profile, name)] = f"not installed ({exc.name})"
            except Exception as exc:  # noqa: BLE001 - the point: it cannot take the block
                notes[(profile, name)] = f"fails on the block: {str(exc).splitlines()[0][:70]}"
                try:
                    work = make(_valid_lines(data))
                    work()
                except Exception:  # noqa: BLE001
                    notes[(profile, name)] += "; and on its valid lines alone"
                    continue
                jobs.append((profile, name, "valid lines only", work))
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for profile, name, _, work in jobs:
            started = time.perf_counter()
            work()
            times.setdefault((profile, name), []).append(time.perf_counter() - started)
    rows = []
    for (profile, name), note in notes.items():
        if (profile, name) not in times:
            rows.append({"profile": profile, "candidate": name, "scope": "-", "lines": 0,
                         "median_ms": float("nan"), "fastest_ms": float("nan"),
                         "us_per_line": float("nan"), "note": note})
    for profile, name, scope, _ in jobs:
        lines = blocks[profile].count(b"\n")
        median = statistics.median(times[(profile, name)])
        rows.append({"profile": profile, "candidate": name, "scope": scope, "lines": lines,
                     "median_ms": round(median * 1000, 1),
                     "fastest_ms": round(min(times[(profile, name)]) * 1000, 1),
                     "us_per_line": round(median / lines * 1e6, 2),
                     "note": notes.get((profile, name), "")})
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parsers",
                                     description="Time the JSON-lines parser candidates side by side.")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument("--events", type=int, default=60_000,
                        help="events generated per profile; the first 4 MiB are the block")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    args = parser.parse_args(argv)
    print(f"{'profile':10} {'candidate':20} {'scope':17} {'median ms':>9} {'fastest':>8} "
          f"{'us/line':>8}  note")
    for row in measure(args.rounds, args.events, args.seed):
        print(f"{row['profile']:10} {row['candidate']:20} {row['scope']:17} "
              f"{row['median_ms']:9.1f} {row['fastest_ms']:8.1f} {row['us_per_line']:8.2f}  "
              f"{row['note']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
