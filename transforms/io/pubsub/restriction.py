"""A reader's restriction: what is left to pull, and the ack ids of the bundle before.

Each pull is claimed and the DoFn then checkpoints, so the *residual* restriction carries
the ack ids of the bundle just read; a runner processes a residual only after committing
the bundle that produced it, so the residual's first act is to acknowledge them.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.transforms.core import RestrictionProvider

__all__ = ["PullRestriction", "PullTracker"]


class PullRestriction(NamedTuple):
    """What is left of one reader's work.

    ``ack_ids``/``keys`` belong to the bundle that produced this restriction: it was
    committed by the time this restriction is processed, so they are acknowledged (and
    remembered for de-duplication) first.
    """

    ack_ids: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    remaining: int | None = None  # messages still to read; None: unbounded
    deadline: float | None = None  # epoch seconds after which nothing more is pulled
    finished: bool = False
    newest: float | None = None  # the latest event time read so far (for an idle watermark)


class PullTracker(RestrictionTracker):
    """Claims pulls; splits only to checkpoint (the residual carries the claimed ack ids)."""

    def __init__(self, restriction: PullRestriction) -> None:
        self._restriction = restriction
        self._ack_ids: list[str] = []
        self._keys: list[str] = []
        self._count = 0
        self._newest = restriction.newest
        self._split = False
        self._done = restriction.finished
        self._lock = threading.Lock()

    def current_restriction(self) -> PullRestriction:
        return self._restriction

    def try_claim(self, position: tuple[list[str], list[str], int, float | None] | None) -> bool:
        """Claim one pull (ack ids, de-duplication keys, count, newest event time);
        ``None`` claims the end."""
        with self._lock:
            if self._split or self._done:
                return False
            if position is None:
                self._done = True
                return False
            ack_ids, keys, count, newest = position
            if newest is not None and (self._newest is None or newest > self._newest):
                self._newest = newest
            self._ack_ids.extend(ack_ids)
            self._keys.extend(keys)
            self._count += count
            return True

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder > 0:
            return None  # a pull stream cannot be divided; only checkpoint
        with self._lock:
            if self._split or self._done:
                return None
            self._split = True
            r = self._restriction
            remaining = None if r.remaining is None else r.remaining - self._count
            exhausted = (remaining is not None and remaining <= 0) or (
                r.deadline is not None and time.time() >= r.deadline
            )
            residual = PullRestriction(
                tuple(self._ack_ids), tuple(self._keys), remaining, r.deadline, exhausted,
                self._newest,
            )
            primary = r._replace(remaining=self._count, finished=True)
            return primary, residual

    def check_done(self) -> None:
        if not (self._split or self._done):
            raise ValueError("Pub/Sub reader returned without checkpointing or finishing")

    def current_progress(self) -> RestrictionProgress:
        r = self._restriction
        if r.remaining is None:
            return RestrictionProgress(completed=self._count, remaining=1)
        return RestrictionProgress(completed=self._count,
                                   remaining=max(0, r.remaining - self._count))

    def is_bounded(self) -> bool:
        r = self._restriction
        return r.remaining is not None or r.deadline is not None


class PullRestrictionProvider(RestrictionProvider):
    def __init__(self, max_messages: int | None, max_seconds: float | None) -> None:
        self._max_messages = max_messages
        self._max_seconds = max_seconds

    def initial_restriction(self, element) -> PullRestriction:
        deadline = time.time() + self._max_seconds if self._max_seconds else None
        return PullRestriction(remaining=self._max_messages, deadline=deadline)

    def create_tracker(self, restriction: PullRestriction) -> PullTracker:
        return PullTracker(restriction)

    def split(self, element, restriction):
        yield restriction

    def restriction_size(self, element, restriction: PullRestriction) -> int:
        return restriction.remaining if restriction.remaining is not None else 1

    def truncate(self, element, restriction: PullRestriction):
        # On drain: keep only the acknowledgements of what was already committed.
        return restriction._replace(remaining=0, finished=not restriction.ack_ids)
