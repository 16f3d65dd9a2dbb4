"""How far this process's file reads have got: the counters behind a backfill's progress line.

Beam's counters reach the caller only when a batch run has ended; a person watching a
long backfill on a terminal wants to see it move. The file readers add what they read
here, in the process that runs them: with the DirectRunner (FnApiRunner, in process)
that is the process printing the line. Other runners read elsewhere, so the line stays
at zero there and :mod:`beam_pipelines.skeleton.progress` does not show it.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

__all__ = ["READ_PROGRESS", "ReadProgress", "ReadSnapshot"]


class ReadSnapshot(NamedTuple):
    """What had been read when the snapshot was taken."""

    bytes: int  # bytes of decoded lines (decompressed for .gz/.bz2/.zst), or of Parquet batches
    records: int  # lines or Parquet rows
    files: int  # files read to their end


class ReadProgress:
    """Thread-safe running totals of the file readers in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = self._records = self._files = 0
        # Set while a progress line is shown: the readers count only then, so a run no
        # one watches (piped, scheduled) pays nothing on its read path.
        self.watched = False

    def add(self, *, bytes: int = 0, records: int = 0, files: int = 0) -> None:  # noqa: A002
        with self._lock:
            self._bytes += bytes
            self._records += records
            self._files += files

    def reset(self) -> None:
        with self._lock:
            self._bytes = self._records = self._files = 0

    def snapshot(self) -> ReadSnapshot:
        with self._lock:
            return ReadSnapshot(self._bytes, self._records, self._files)


READ_PROGRESS = ReadProgress()
