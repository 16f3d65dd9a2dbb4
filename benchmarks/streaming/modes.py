"""The two modes: throughput over a backlog, and latency under a paced stream."""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from benchmarks.streaming.common import BIG_RESPONSES, WARMUP_PAGE
from benchmarks.streaming.process import LagProbe, Pane, PipelineProcess
from benchmarks.streaming.producing import AVRO_EVENT, Produced, produce, send_warmup, valid_events
from benchmarks.streaming.profiling import Profiler, summarize_profile

# ---- the two modes ----------------------------------------------------------------------

@dataclass
class Result:
    mode: str
    target_rate: Optional[float]
    events: int
    counted: int
    status: str  # done | stalled | timeout | exited | warm-up failed
    sustained: Optional[float] = None  # events/s, see the module docstring
    produce_rate: Optional[float] = None
    p50: Optional[float] = None
    p90: Optional[float] = None
    p99: Optional[float] = None
    max: Optional[float] = None
    kept_up: Optional[bool] = None
    details: dict[str, Any] = field(default_factory=dict)


def pipeline_args(servers: str, topic: str, group: str, args: argparse.Namespace) -> list[str]:
    return [
        "--streaming", "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
        "--start_at=earliest", f"--consumer_group={group}",
        f"--early_firing={args.early_firing}", f"--window_size={args.window_size}",
        f"--kafka_config=receive_message_max_bytes={BIG_RESPONSES}",
        *args.pipeline_arg,
    ]


def _new_topic(create: Callable[[str, int], str], prefix: str, partitions: int) -> str:
    return create(f"{prefix}_{uuid.uuid4().hex[:8]}", partitions)


def throughput_run(servers: str, create: Callable[[str, int], str], events: int,
                   args: argparse.Namespace, workdir: str, data: str = "uniform") -> Result:
    topic = _new_topic(create, f"tput_{data}_{events}", args.partitions)
    group = f"bench-{topic}"
    valid = valid_events(data, events)
    print(f"\n[throughput {data} {events}] producing {events} events ({valid} valid) to {topic} "
          "...", flush=True)
    schema_id, extra = None, []
    if data == "avro":
        from transforms.formats import SchemaRegistry
        from transforms.formats.registry import AVRO, RegistrySchema

        schema_id = SchemaRegistry(args.schema_registry_url).register(
            f"{topic}-value", RegistrySchema(json.dumps(AVRO_EVENT), AVRO))
        extra = ["--format=avro", f"--schema_registry_url={args.schema_registry_url}"]
    produced = produce(servers, topic, args.partitions, count=events,
                       window_size=args.window_size, data=data, avro_schema_id=schema_id)
    print(f"[throughput {events}] produced at {produced.rate:,.0f} events/s; starting the "
          "pipeline", flush=True)
    pipeline = PipelineProcess([*pipeline_args(servers, topic, group, args), *extra],
                               os.path.join(workdir, f"pipeline-throughput-{data}-{events}.log"))
    probe = LagProbe(servers, topic, group, args.partitions)
    profiler = None
    pipeline.start()
    probe.start()
    try:
        if args.pyspy:  # from the start of reading: interpreter and graph start-up excluded
            deadline = time.time() + args.warmup_timeout
            while probe.first_time_at_least(1) is None and time.time() < deadline \
                    and pipeline.running():
                time.sleep(0.1)
            profiler = Profiler(os.path.join(args.pyspy, f"throughput-{data}-{events}.txt"))
            profiler.start(pipeline.pid)
        status = pipeline.wait(lambda: pipeline.total >= valid, timeout=args.timeout,
                               stall_timeout=args.stall_timeout)
        if profiler is not None:
            profiler.stop()
        ended = time.time()
        counted = pipeline.total
    finally:
        probe.stop()
        pipeline.stop()
    read_done = probe.first_time_at_least(events)
    last_update = pipeline.time_total_reached(counted) if counted else None
    first_pane = pipeline.timeline[0][0] if pipeline.timeline else None
    # Offsets are committed once the windows they fed are written (docs/recovery.md), so
    # with windows longer than the run the probe sees no commit and the start of reading
    # is unknown: sustained and read rates are then reported as "-", end-to-end stays.
    read_start = probe.first_time_at_least(1)
    details: dict[str, Any] = {
        "topic": topic,
        "data": data,
        "valid_events": valid,
        "produce_rate": produced.rate,
        "startup_s": (read_start - pipeline.launched) if read_start else None,
        "first_pane_after_launch_s": (first_pane - pipeline.launched) if first_pane else None,
        "read_all_s": (read_done - read_start) if read_start and read_done else None,
        "read_events_per_s": events / (read_done - read_start)
        if read_start and read_done and read_done > read_start else None,
        "committed_at_end": probe.committed_at(ended),
        "drain_s": (last_update - read_start) if read_start and last_update else None,
        "end_to_end_events_per_s": counted / (last_update - pipeline.launched)
        if last_update else None,
        "progress": _progress(pipeline.timeline, read_start or pipeline.launched),
        "pipeline_log_tail": pipeline.log_tail(),
    }
    sustained = (counted / details["drain_s"]) if details["drain_s"] else None
    cpu_start = pipeline.cpu_at(read_start) if read_start else None
    cpu_end = pipeline.cpu_at(last_update) if last_update else None
    if cpu_start is not None and cpu_end is not None and counted:
        details["cpu_us_per_event"] = (cpu_end - cpu_start) / counted * 1e6
    if profiler is not None:
        details["profile"] = summarize_profile(profiler.path, max(counted, 1))
    return Result("throughput", None, events, counted, status, sustained=sustained,
                  produce_rate=produced.rate, kept_up=None, details=details)


def _progress(timeline: list[tuple[float, int]], origin: float, step: float = 5.0) -> list:
    """(seconds since origin, total counted) every ``step`` seconds: the shape of the run."""
    out: list[tuple[float, int]] = []
    next_at = origin
    for at, total in timeline:
        if at >= next_at:
            out.append((round(at - origin, 2), total))
            next_at = at + step
    if timeline and (not out or out[-1][1] != timeline[-1][1]):
        out.append((round(timeline[-1][0] - origin, 2), timeline[-1][1]))
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def latencies(produced: Produced, panes: Sequence[Pane]) -> tuple[list[float], int, list]:
    """Latency of every produced event covered by a pane; (latencies, uncovered, by time)."""
    by_key: dict[tuple[int, str], list[Pane]] = collections.defaultdict(list)
    for pane in panes:
        by_key[(pane.window_start, pane.page)].append(pane)
    out: list[float] = []
    timed: list[tuple[float, float]] = []  # (produce time, latency) for the trend
    uncovered = 0
    for key, sends in produced.times.items():
        covered = 0
        for pane in by_key.get(key, ()):
            upto = min(pane.count, len(sends))
            for j in range(covered, upto):
                out.append(pane.at - sends[j])
                timed.append((sends[j], pane.at - sends[j]))
            covered = max(covered, upto)
        uncovered += len(sends) - covered
    return out, uncovered, timed


def latency_run(servers: str, create: Callable[[str, int], str], rate: float,
                args: argparse.Namespace, workdir: str) -> Result:
    topic = _new_topic(create, f"lat_{int(rate)}", args.partitions)
    group = f"bench-{topic}"
    label = f"[latency {rate:g}/s]"
    pipeline = PipelineProcess(pipeline_args(servers, topic, group, args),
                               os.path.join(workdir, f"pipeline-latency-{int(rate)}.log"))
    probe = LagProbe(servers, topic, group, args.partitions)
    profiler = None
    print(f"\n{label} starting the pipeline on {topic}; waiting for the warm-up events",
          flush=True)
    pipeline.start()
    probe.start()
    try:
        send_warmup(servers, topic, args.partitions)
        warm = pipeline.wait(
            lambda: sum(c for (_, page), c in pipeline.latest.items() if page == WARMUP_PAGE)
            >= args.partitions, timeout=args.warmup_timeout)
        if warm != "done":
            probe.stop()
            pipeline.stop()
            return Result("latency", rate, 0, 0, f"warm-up {warm}",
                          details={"pipeline_log_tail": pipeline.log_tail()})
        warm_at = time.time()
        print(f"{label} live {warm_at - pipeline.launched:.1f} s after launch; producing for "
              f"{args.duration:g} s", flush=True)
        if args.pyspy:
            profiler = Profiler(os.path.join(args.pyspy, f"latency-{int(rate)}.txt"))
            profiler.start(pipeline.pid)
        produced = produce(servers, topic, args.partitions, rate=rate, duration=args.duration,
                           window_size=args.window_size)
        end_offsets = probe.end_offsets()
        lag_at_end = end_offsets - probe.committed_at(produced.flushed)
        backlog = produced.sent - pipeline.total_at(produced.finished)
        print(f"{label} sent {produced.sent} at {produced.rate:,.0f}/s; backlog when the "
              f"producer finished: {backlog} events; waiting up to {args.settle:g} s",
              flush=True)

        def caught_up() -> bool:
            return all(pipeline.latest.get(k, 0) >= len(v) for k, v in produced.times.items())

        status = pipeline.wait(caught_up, timeout=args.settle)
        if profiler is not None:
            profiler.stop()
    finally:
        stopping = time.time()
        probe.stop()
        pipeline.stop()
    # Panes printed while the pipeline shuts down are not counted: the wait was over.
    panes = [pane for pane in pipeline.panes if pane.at <= stopping]
    values, uncovered, timed = latencies(produced, panes)
    values.sort()
    counted = len(values)
    final_total = pipeline.total_at(stopping)
    last_count = pipeline.time_total_reached(final_total) if final_total else None
    catch_up = (last_count - produced.finished) if last_count and uncovered == 0 else None
    kept_up = catch_up is not None and catch_up <= args.early_firing + 2.0
    timed.sort()
    quarter = [lat for at, lat in timed if at >= produced.finished - args.duration / 4]
    quarter.sort()
    details = {
        "topic": topic,
        "duration_s": args.duration,
        "uncounted": uncovered,
        "backlog_at_producer_end": backlog,
        "consumer_lag_at_producer_end": lag_at_end,
        "catch_up_s": catch_up,
        "produce_window_s": produced.finished - produced.started,
        "producer_flush_s": produced.flushed - produced.finished,
        "p99_last_quarter": percentile(quarter, 0.99) if quarter else None,
        "counted_events_per_s": counted / max((last_count or produced.finished)
                                              - produced.started, 1e-9),
        "panes": len(panes),
        "pipeline_log_tail": pipeline.log_tail(),
    }
    if profiler is not None:
        details["profile"] = summarize_profile(profiler.path, max(counted, 1))
    return Result(
        "latency", rate, produced.sent, counted, status,
        sustained=details["counted_events_per_s"] if counted else None,
        produce_rate=produced.rate,
        p50=percentile(values, 0.50) if values else None,
        p90=percentile(values, 0.90) if values else None,
        p99=percentile(values, 0.99) if values else None,
        max=values[-1] if values else None, kept_up=kept_up, details=details)


