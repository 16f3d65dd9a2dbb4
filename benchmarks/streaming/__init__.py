"""The streaming benchmark: pageviews from Kafka on the local streaming runner.

    python -m benchmarks.streaming                  # both modes: 1M events; 1k, 10k, 50k/s
    python -m benchmarks.streaming --mode throughput --events 200k,1M
    python -m benchmarks.streaming --mode latency --rates 1000,10000,50000 --duration 20

What it measures and how (throughput over a backlog, latency under a paced stream, the
profiles, py-spy) is in docs/streaming-benchmark.md.
"""

from benchmarks.streaming.cli import main
from benchmarks.streaming.common import machine
from benchmarks.streaming.modes import percentile
from benchmarks.streaming.profiling import Profiler, print_profile, summarize_profile

__all__ = ["Profiler", "machine", "main", "percentile", "print_profile", "summarize_profile"]
