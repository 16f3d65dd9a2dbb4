"""What ``--quality_rules`` costs a batch run: ``python -m benchmarks.quality``.

::

    python -m benchmarks.quality                       # 200k events, 3 runs of each mode
    python -m benchmarks.quality --events 1M --repeat 5 --rules my_rules.json

The pageviews backfill (``--source=file --sink=jsonl``) over the batch benchmark's
realistic input (``benchmarks/datagen.py``), in three modes, each run in its own process:

* ``no rules``: the vectorized (Arrow) path, the reference;
* ``rules, arrow``: the same with ``--quality_rules`` (rules checked on the tables,
  transforms/quality/tables.py);
* ``rules, records``: the same rules with ``--batch_engine=records`` (the per-record path,
  which every run with rules took before).

It prints the fastest run of each mode, its ratio to the reference (the target is 1.5x
at most for ``rules, arrow``), and checks that both rule modes wrote the same results
and the same dead letters per reason. The default rules are
``benchmarks/quality_rules.json``, the example of docs/production.md (few records of the
input fail them); ``--rules benchmarks/quality_rules_strict.json`` fails about a fifth
of them (non-ASCII pages, scrolls, out-of-order events before the first second), so the
dead letters' own cost shows. Measurements, not a test: run it on a quiet machine;
docs/performance.md has the numbers.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from typing import Any, Optional

from benchmarks import datagen
from benchmarks.run import DEFAULT_WORKDIR, measure, parse_size

RULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quality_rules.json")
TARGET = 1.5  # rules on the vectorized path: at most this many times a run without them
MODES = {
    "no rules": [],
    "rules, arrow": ["--quality_rules={rules}"],
    "rules, records": ["--quality_rules={rules}", "--batch_engine=records"],
}


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=parse_size, default=200_000,
                        help="Events in the input: 200000, 200k, 1M (default 200k).")
    parser.add_argument("--repeat", type=int, default=3,
                        help="Runs per mode; the fastest is reported (default 3).")
    parser.add_argument("--rules", default=RULES, help=f"The rules file (default {RULES}).")
    parser.add_argument("--seed", type=int, default=7, help="Generator seed (default 7).")
    parser.add_argument("--workdir", default=DEFAULT_WORKDIR,
                        help=f"Input, outputs and logs (default {DEFAULT_WORKDIR}).")
    return parser.parse_args(argv)


def _results(out_dir: str) -> list[str]:
    rows: list[str] = []
    for name in sorted(os.listdir(out_dir)):
        with open(os.path.join(out_dir, name), encoding="utf-8") as handle:
            rows.extend(line for line in handle if line.strip())
    return sorted(rows)


def _reasons(dead_dir: str) -> dict[str, int]:
    counts: collections.Counter = collections.Counter()
    for name in os.listdir(dead_dir):
        with open(os.path.join(dead_dir, name), encoding="utf-8") as handle:
            counts.update(json.loads(line)["reason_code"] for line in handle if line.strip())
    return dict(sorted(counts.items()))


def run_mode(mode: str, path: str, args: argparse.Namespace, index: int) -> dict[str, Any]:
    run_dir = os.path.join(args.workdir, "quality", f"{mode.replace(', ', '-').replace(' ', '-')}-{index}")
    out, dead = os.path.join(run_dir, "out"), os.path.join(run_dir, "dead")
    argv = [sys.executable, "-m", "beam_pipelines.pageviews", "--source=file", f"--input={path}",
            "--sink=jsonl", f"--output={out}", f"--dead_letter={dead}",
            *(flag.format(rules=os.path.abspath(args.rules)) for flag in MODES[mode])]
    os.makedirs(run_dir, exist_ok=True)
    measured = measure(argv, os.path.join(run_dir, "log.txt"), timeout=None)
    if measured.exit_code != 0:
        raise SystemExit(f"{mode}: exit code {measured.exit_code}; see {run_dir}/log.txt")
    return {"seconds": measured.seconds, "peak_mib": measured.peak_mib,
            "results": _results(out), "reasons": _reasons(dead)}


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    args.workdir = os.path.abspath(args.workdir)
    path, meta = datagen.cached(args.workdir, args.events, seed=args.seed)
    print(f"input: {path} ({meta['events']:,} events, {meta['bytes'] / 2**20:.1f} MiB, "
          f"{meta['malformed']:,} malformed); rules: {args.rules}; load average "
          f"{os.getloadavg()[0]:.2f}")
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for index in range(args.repeat):  # interleaved, so a busy spell hits every mode
        for mode in MODES:
            runs[mode].append(run_mode(mode, path, args, index))
    best = {mode: min(r["seconds"] for r in mode_runs) for mode, mode_runs in runs.items()}
    reference = best["no rules"]
    print(f"\n{'mode':<16} {'seconds':>8} {'events/s':>10} {'vs no rules':>12}")
    for mode, seconds in best.items():
        print(f"{mode:<16} {seconds:>8.2f} {args.events / seconds:>10,.0f} "
              f"{seconds / reference:>11.2f}x")
    arrow, records = runs["rules, arrow"][0], runs["rules, records"][0]
    failed = sum(n for reason, n in arrow["reasons"].items()
                 if reason not in runs["no rules"][0]["reasons"])
    print(f"\nrecords failing a rule: {failed:,} ({failed / args.events:.1%}); dead letters "
          f"per reason: {arrow['reasons']}")
    same = arrow["results"] == records["results"] and arrow["reasons"] == records["reasons"]
    print(f"arrow and records give the same results and dead letters: {'yes' if same else 'NO'}")
    ratio = best["rules, arrow"] / reference
    print(f"target: rules on the arrow path within {TARGET}x of no rules: "
          f"{'met' if ratio <= TARGET else 'NOT met'} ({ratio:.2f}x)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
