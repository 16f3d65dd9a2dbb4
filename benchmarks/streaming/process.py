"""The pipeline under test in its own process, the panes it prints, and a committed-offset probe."""

from __future__ import annotations

import calendar
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Optional, Sequence

from benchmarks.streaming.common import REPO, WARMUP_PAGE, log_tail

# ---- the pipeline process and what it prints -----------------------------------------

@dataclass
class Pane:
    at: float  # wall-clock time the line was read here
    window_start: int
    page: str
    count: int
    timing: str


def parse_pane(line: str, at: float) -> Optional[Pane]:
    """A console-sink streaming line (``k=v`` pairs separated by two spaces) -> Pane."""
    fields: dict[str, str] = {}
    for part in line.strip().split("  "):
        key, sep, value = part.partition("=")
        if sep:
            fields[key] = value
    try:
        start = calendar.timegm(time.strptime(fields["window_start"][:19], "%Y-%m-%dT%H:%M:%S"))
        return Pane(at, start, fields["page"], int(fields["count"]), fields.get("pane_timing", ""))
    except (KeyError, ValueError):
        return None


class PipelineProcess:
    """``python -m beam_pipelines.pageviews ...`` with its panes read as they are printed."""

    def __init__(self, args: Sequence[str], log_path: str) -> None:
        self.command = [sys.executable, "-m", "beam_pipelines.pageviews", *args]
        self.log_path = log_path
        self.panes: list[Pane] = []
        self.latest: dict[tuple[int, str], int] = {}
        self.total = 0  # sum of the latest count of every (window, page), warm-up excluded
        self.timeline: list[tuple[float, int]] = []  # (time, total) after each pane
        self.launched = 0.0
        # (time, CPU seconds the pipeline process has used), sampled every 0.25 s: its CPU
        # per event does not depend on what else the machine runs, as its wall clock does.
        self.cpu: list[tuple[float, float]] = []
        self._lock = threading.Condition()
        self._process: Optional[subprocess.Popen] = None
        self._log: Optional[IO[bytes]] = None
        self._reader: Optional[threading.Thread] = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> PipelineProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")
        self.launched = time.time()
        self._process = subprocess.Popen(
            self.command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self._log,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name="panes", daemon=True)
        self._reader.start()
        threading.Thread(target=self._sample_cpu, name="cpu", daemon=True).start()
        return self

    def _sample_cpu(self) -> None:
        """Linux: utime + stime of /proc/PID/stat (every thread of the process)."""
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        path = f"/proc/{self.pid}/stat"
        while self.running():
            try:
                with open(path, encoding="ascii") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                return
            self.cpu.append((time.time(), (int(fields[11]) + int(fields[12])) / ticks))
            time.sleep(0.25)

    def cpu_at(self, moment: float) -> Optional[float]:
        """CPU seconds used by ``moment`` (the last sample at or before it)."""
        before = [cpu for at, cpu in list(self.cpu) if at <= moment]
        return before[-1] if before else None

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw in self._process.stdout:
            at = time.time()
            pane = parse_pane(raw.decode("utf-8", "replace"), at)
            if pane is None:
                continue
            with self._lock:
                self.panes.append(pane)
                key = (pane.window_start, pane.page)
                previous = self.latest.get(key, 0)
                if pane.count > previous:
                    self.latest[key] = pane.count
                    if pane.page != WARMUP_PAGE:
                        self.total += pane.count - previous
                self.timeline.append((at, self.total))
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def count_of(self, key: tuple[int, str]) -> int:
        with self._lock:
            return self.latest.get(key, 0)

    def wait(self, done: Callable[[], bool], timeout: float,
             stall_timeout: Optional[float] = None) -> str:
        """Wait until ``done()``: 'done', 'timeout', 'stalled' (no new count) or 'exited'."""
        deadline = time.time() + timeout
        last_total, last_change = self.total, time.time()
        with self._lock:
            while not done():
                now = time.time()
                if self.total != last_total:
                    last_total, last_change = self.total, now
                if not self.running():
                    return "exited"
                if now >= deadline:
                    return "timeout"
                if stall_timeout is not None and now - last_change >= stall_timeout:
                    return "stalled"
                self._lock.wait(timeout=0.25)
        return "done"

    def time_total_reached(self, total: int) -> Optional[float]:
        with self._lock:
            for at, value in self.timeline:
                if value >= total:
                    return at
        return None

    def total_at(self, moment: float) -> int:
        with self._lock:
            value = 0
            for at, total in self.timeline:
                if at > moment:
                    break
                value = total
            return value

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            for signum, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(process.pid, signum)  # its own session: the pipeline and no other
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if process is not None:
            self._process = process
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 15) -> str:
        return log_tail(self.log_path, lines)


class LagProbe:
    """Polls the pipeline's committed offsets (no group membership) in a thread."""

    def __init__(self, servers: str, topic: str, group: str, partitions: int,
                 interval: float = 0.25) -> None:
        self._servers = servers
        self._topic = topic
        self._group = group
        self._partitions = partitions
        self._interval = interval
        self.samples: list[tuple[float, int]] = []  # (time, committed offsets summed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-probe", daemon=True)
        self._consumer: Any = None

    def start(self) -> LagProbe:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(
            bootstrap_servers=self._servers.split(","), group_id=self._group,
            enable_auto_commit=False, session_timeout_ms=10000)
        self._tps = [TopicPartition(self._topic, p) for p in range(self._partitions)]
        self._thread.start()
        return self

    def committed(self) -> int:
        return sum(self._consumer.committed(tp) or 0 for tp in self._tps)

    def end_offsets(self) -> int:
        return sum(self._consumer.end_offsets(self._tps).values())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self.committed()))
            except Exception:  # a slow broker answer: try again at the next tick
                pass
            self._stop.wait(self._interval)

    def first_time_at_least(self, value: int) -> Optional[float]:
        for at, committed in list(self.samples):
            if committed >= value:
                return at
        return None

    def committed_at(self, moment: float) -> int:
        value = 0
        for at, committed in list(self.samples):
            if at > moment:
                break
            value = committed
        return value

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._consumer is not None:
            self._consumer.close()


