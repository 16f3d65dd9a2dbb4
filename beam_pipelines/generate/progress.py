"""A progress bar for the generator on a terminal; nothing when the output is piped."""

from __future__ import annotations

import sys
import time
from typing import IO, Callable, Optional

__all__ = ["Progress", "bar_line"]

WIDTH = 24


def bar_line(done: int, total: int, elapsed: float) -> str:
    """``[#########...............]  37% 37,000/100,000 lines, 120,511/s, ETA 0:01``."""
    share = min(done / total, 1.0) if total else 1.0
    filled = int(share * WIDTH)
    rate = done / elapsed if elapsed > 0 else 0.0
    line = (f"[{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%} "
            f"{done:,}/{total:,} lines, {rate:,.0f}/s")
    if rate > 0 and done < total:
        left = int((total - done) / rate)
        line += f", ETA {left // 60}:{left % 60:02d}"
    return line


class Progress:
    """Redraws the bar at most every ``every`` seconds while ``stream`` is a terminal;
    :meth:`close` clears it, so the summary line that follows stands alone."""

    def __init__(self, total: int, *, stream: Optional[IO[str]] = None, every: float = 0.2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.shown = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.done = 0
        self._every = every
        self._clock = clock
        self._started = clock()
        self._drawn_at: Optional[float] = None

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.shown or (self.done % 512 and self.done != self.total):
            return  # look at the clock every 512 lines only: it costs more than a line
        now = self._clock()
        if self._drawn_at is None or now - self._drawn_at >= self._every:
            self._drawn_at = now
            self.stream.write("\r\x1b[K" + bar_line(self.done, self.total, now - self._started))
            self.stream.flush()

    def close(self) -> None:
        if self.shown and self._drawn_at is not None:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
