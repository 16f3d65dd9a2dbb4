"""Command line: ``python -m benchmarks.streaming``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import asdict
from typing import Callable, Optional, Sequence

from benchmarks.streaming.common import machine, on_a_broker
from benchmarks.streaming.modes import Result, latency_run, throughput_run
from benchmarks.streaming.profiling import print_profile
from benchmarks.streaming.report import table, targets


def _profiles(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    if not chosen or any(p not in ("realistic", "uniform", "avro") for p in chosen):
        raise argparse.ArgumentTypeError(f"expected realistic, uniform and/or avro, got {text!r}")
    return chosen


def _rates(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1000,10000, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _counts(text: str) -> list[int]:
    values = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        scale = 1
        if part[-1] in "km":
            scale = 1000 if part[-1] == "k" else 1_000_000
            part = part[:-1]
        try:
            values.append(int(float(part) * scale))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected counts like 200k,1M, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive counts, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.streaming",
                                description=(__doc__ or "").splitlines()[0])
    p.add_argument("--mode", choices=("throughput", "latency", "both"), default="both")
    p.add_argument("--events", type=_counts, default=[1_000_000],
                   help="Throughput runs: events to pre-produce, comma-separated (200k,1M; "
                   "default 1M).")
    p.add_argument("--rates", type=_rates, default=[1000.0, 10000.0, 50000.0],
                   help="Latency runs: produce rates in events/s, comma-separated (default "
                   "1000,10000,50000).")
    p.add_argument("--duration", type=float, default=20.0,
                   help="Latency runs: seconds of producing at each rate (default 20).")
    p.add_argument("--partitions", type=int, default=4, help="Partitions per topic (default 4).")
    p.add_argument("--window_size", type=int, default=300, help="Window seconds (default 300).")
    p.add_argument("--early_firing", type=float, default=1,
                   help="Seconds between early panes (default 1).")
    p.add_argument("--settle", type=float, default=30.0,
                   help="Latency runs: seconds to wait for the last counts (default 30).")
    p.add_argument("--warmup_timeout", type=float, default=180.0,
                   help="Latency runs: seconds to wait for the pipeline to count the warm-up "
                   "events (default 180).")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="Throughput runs: give up after this many seconds (default 1800).")
    p.add_argument("--stall_timeout", type=float, default=90.0,
                   help="Throughput runs: stop when the count has not moved for this many "
                   "seconds (default 90).")
    p.add_argument("--bootstrap_servers", default=None,
                   help="Use this broker instead of starting the test broker.")
    p.add_argument("--pipeline_arg", action="append", default=[],
                   help="Extra flag for the pipeline, repeatable (--pipeline_arg=--foo=1).")
    p.add_argument("--json", default=None, help="Write the results as JSON to this file.")
    p.add_argument("--profiles", type=_profiles, default=["realistic", "uniform"],
                   help="Throughput runs: the data, comma-separated: realistic (the mix of "
                   "benchmarks/datagen.py with live times, 1.5%% invalid), uniform "
                   "(string ids, float times, all valid) and/or avro (the uniform events as "
                   "Confluent-framed Avro, read with --format=avro); default realistic,uniform.")
    p.add_argument("--schema_registry_url", default=None,
                   help="The avro profile's registry (default: the emulator, started here).")
    p.add_argument("--pyspy", default=None, metavar="DIR",
                   help="Profile the pipeline with py-spy; raw stacks go to this directory.")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.partitions <= 0 or args.window_size <= 0 or args.early_firing <= 0:
        parser().error("--partitions, --window_size and --early_firing must be > 0")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the broker on kill, too
    if args.pyspy:
        os.makedirs(args.pyspy, exist_ok=True)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, load average "
          f"{' '.join(map(str, info['load_average']))}; Python {info['python']}, "
          f"Beam {info['apache_beam']}, kafka-python {info['kafka_python']}", flush=True)
    results: list[Result] = []
    workdir = tempfile.mkdtemp(prefix="bench-streaming-")
    registry = None
    if "avro" in args.profiles and not args.schema_registry_url:
        from beam_pipelines.testing.emulators.schema_registry import SchemaRegistryEmulator

        registry = SchemaRegistryEmulator().start()
        args.schema_registry_url = registry.url

    def run_all(servers: str, create: Callable[[str, int], str]) -> None:
        if args.mode in ("throughput", "both"):
            for events in args.events:
                for data in args.profiles:
                    results.append(throughput_run(servers, create, events, args, workdir, data))
                    print(table(results[-1:]), flush=True)
        if args.mode in ("latency", "both"):
            for rate in args.rates:
                results.append(latency_run(servers, create, rate, args, workdir))
                print(table(results[-1:]), flush=True)

    try:
        on_a_broker(args.bootstrap_servers, run_all)
    finally:
        if results:
            print(f"\nstreaming benchmark (pageviews, LocalStreamingRunner, {args.partitions} "
                  f"partitions, {args.window_size} s windows, early panes every "
                  f"{args.early_firing} s; {info['cpu']}, {info['cores']} cores)\n")
            print(table(results))
            for line in targets(results):
                print(line)
            for r in results:
                if r.status == "exited" or r.status.startswith("warm-up"):
                    print(f"\n{r.mode} {r.target_rate or r.events}: {r.status}; pipeline log tail:\n"
                          f"{r.details.get('pipeline_log_tail', '')}")
                if r.mode == "throughput" and r.details.get("progress"):
                    shape = ", ".join(f"{t:g}s:{n}" for t, n in r.details["progress"])
                    print(f"\nthroughput {r.events}: counted over time since reading started: {shape}")
                if "profile" in r.details:
                    print_profile(r.details["profile"], f"{r.mode} {r.target_rate or r.events}")
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump({"machine": info, "args": vars(args),
                           "results": [asdict(r) for r in results]}, handle, indent=2,
                          default=str)
            print(f"\nresults written to {args.json}")
        shutil.rmtree(workdir, ignore_errors=True)
        if registry is not None:
            registry.stop()
    return 0

