"""py-spy profiles of the pipeline process, summarized per event."""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import time
from typing import Any, Optional

from benchmarks.streaming.common import REPO

# ---- profiling -------------------------------------------------------------------------

PROFILE_RATE = 100  # py-spy samples per second


class Profiler:
    """``py-spy record --pid PID --format raw`` from ``start`` to ``stop``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._process: Optional[subprocess.Popen] = None
        self.started = 0.0
        self.stopped = 0.0

    def start(self, pid: int) -> Profiler:
        binary = shutil.which("py-spy")
        if not binary:
            raise SystemExit("--pyspy needs py-spy: pip install py-spy")
        self._process = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE), "--format", "raw",
             "--output", self.path, "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.started = time.time()
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        self.stopped = time.time()
        if process is None:
            return
        process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (file path without site-packages prefix)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    for marker in ("site-packages/", "/work/main/", REPO + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize_profile(path: str, events: int, top: int = 25) -> dict[str, Any]:
    """Inclusive and self samples per function of a raw py-spy file, in us per event."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                n = int(count)
                frames = [_frame_name(f) for f in stack.split(";") if f]
                if not frames:
                    continue
                total += n
                own[frames[-1]] += n
                for name in set(frames):
                    inclusive[name] += n
    except OSError:
        return {"error": f"no profile at {path}"}
    skip = ("_bootstrap", "Thread.run", "_ExecutorServiceWorker.run")

    def rows(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        out = []
        for name, n in counter.most_common():
            if any(s in name for s in skip):
                continue
            out.append({"function": name, "samples": n, "seconds": n / PROFILE_RATE,
                        "us_per_event": n / PROFILE_RATE / max(events, 1) * 1e6})
            if len(out) >= top:
                break
        return out

    return {"path": path, "samples": total, "busy_seconds": total / PROFILE_RATE,
            "events": events, "us_per_event_total": total / PROFILE_RATE / max(events, 1) * 1e6,
            "inclusive": rows(inclusive), "self": rows(own)}


def print_profile(summary: dict[str, Any], title: str) -> None:
    if "error" in summary:
        print(f"\nprofile {title}: {summary['error']}")
        return
    print(f"\nprofile {title}: {summary['busy_seconds']:.1f} s of samples over "
          f"{summary['events']} events = {summary['us_per_event_total']:.0f} us/event "
          f"(all threads; raw stacks: {summary['path']})")
    for kind in ("inclusive", "self"):
        print(f"  {kind:<9} {'us/event':>9} {'s':>7}  function")
        for row in summary[kind][:20]:
            print(f"  {'':<9} {row['us_per_event']:>9.1f} {row['seconds']:>7.1f}  {row['function']}")


