"""A backfill's progress line on a terminal: bytes and events read, rate, share done, ETA.

Shown only where a person watches (stderr is a terminal), for batch runs over files, and
only while something is read in this process (the DirectRunner's in-process workers:
:mod:`transforms.io.progress`). Piped or logged output gets none of it; the end-of-run
summary is printed either way.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import IO, Callable, Iterator, Optional

from transforms.io.files import expand_glob
from transforms.io.progress import READ_PROGRESS, ReadSnapshot

__all__ = ["input_size", "progress_line", "shown"]

COMPRESSED = (".gz", ".bz2", ".zst", ".zstd", ".parquet")


def input_size(pattern: Optional[str]) -> tuple[Optional[int], int]:
    """(total bytes of the input's lines when every file is plain text, else None; files)."""
    if not pattern:
        return None, 0
    try:
        paths = expand_glob(pattern)
    except Exception:  # the run reports a bad --input itself, in one line
        return None, 0
    if any(p.lower().endswith(COMPRESSED) for p in paths) or any("://" in p for p in paths):
        return None, len(paths)
    try:
        return sum(os.path.getsize(p) for p in paths), len(paths)
    except OSError:
        return None, len(paths)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def progress_line(done: ReadSnapshot, elapsed: float, total_bytes: Optional[int],
                  total_files: int) -> str:
    """``read 120.3 MB of 512.0 MB (23%), 1.31M records, 40.1 MB/s, ETA 0:10``."""
    rate = done.bytes / elapsed if elapsed > 0 else 0.0
    parts = [f"read {_size(done.bytes)}"]
    if total_bytes:
        share = min(done.bytes / total_bytes, 1.0)
        parts[0] += f" of {_size(total_bytes)} ({share:.0%})"
    parts.append(f"{_count(done.records)} records")
    if total_files > 1:
        parts.append(f"file {min(done.files + 1, total_files)} of {total_files}")
    parts.append(f"{_size(rate)}/s")
    if total_bytes and rate > 0 and done.bytes < total_bytes:
        left = int((total_bytes - done.bytes) / rate)
        parts.append(f"ETA {left // 60}:{left % 60:02d}")
    return ", ".join(parts)


@contextlib.contextmanager
def shown(pattern: Optional[str], *, stream: IO[str] = sys.stderr, every: float = 0.5,
          clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Keep a progress line for a batch read of ``pattern`` on ``stream`` while the block
    runs, when ``stream`` is a terminal; the line is cleared at the end."""
    if not pattern or not getattr(stream, "isatty", lambda: False)():
        yield
        return
    total_bytes, total_files = input_size(pattern)
    READ_PROGRESS.reset()
    READ_PROGRESS.watched = True
    started = clock()
    stop = threading.Event()
    drawn: list[bool] = []

    def draw() -> None:
        while not stop.wait(every):
            done = READ_PROGRESS.snapshot()
            if total_files and done.files >= total_files:
                break  # read: what follows (counting, writing, its log lines) gets the screen
            if done.bytes or done.records:
                line = progress_line(done, clock() - started, total_bytes, total_files)
                stream.write("\r\x1b[K" + line)
                stream.flush()
                drawn.append(True)
        if drawn:
            stream.write("\r\x1b[K")
            stream.flush()

    thread = threading.Thread(target=draw, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        READ_PROGRESS.watched = False
