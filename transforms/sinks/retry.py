"""A retry budget for sinks: keep retrying a transient failure for so many seconds.

A sink that writes to a server (a database restart, a broker failover) retries what is
transient with exponential backoff and jitter, for a budget of seconds rather than a
number of attempts, so the budget says what outage a job survives: the default,
:data:`DEFAULT_RETRY_SECONDS`, outlasts a 30-second database restart with room to
spare. Spent, the sink fails the run with one line naming itself and the cause::

    budget = RetryBudget(retry_seconds)
    while True:
        try:
            write()
            break
        except TransientError as exc:
            if not budget.wait(exc):
                raise SinkError(f"... failed for {budget.elapsed:.0f} s: {exc}") from None
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable

from transforms.base.errors import ConfigError

__all__ = ["DEFAULT_RETRY_SECONDS", "RetryBudget", "validate_retry_seconds"]

DEFAULT_RETRY_SECONDS = 120.0
FIRST_DELAY = 0.2
MAX_DELAY = 5.0  # short enough that a recovered server is noticed within seconds

_LOG = logging.getLogger(__name__)


def validate_retry_seconds(value: object, flag: str = "--sink_retry_seconds") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(flag, "a number of seconds >= 0 (0: do not retry)", value)
    return float(value)


class RetryBudget:
    """The retries of one operation: backoff from ``first_delay`` doubling up to
    ``max_delay``, each wait jittered by +-50% (so workers do not retry in lockstep),
    until ``seconds`` have passed since the first failure.

    ``what`` names the operation in the warning logged at every failed attempt (the
    operator's sign that a sink is riding out an outage); ``clock`` and ``sleep`` are
    parameters for tests of the schedule itself.
    """

    def __init__(
        self,
        seconds: float,
        *,
        what: str = "sink",
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.seconds = validate_retry_seconds(seconds, "seconds")
        self.what = what
        self.failures = 0
        self._delay = first_delay
        self._max_delay = max_delay
        self._clock = clock
        self._sleep = sleep
        self._started: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the first failure (0 before any)."""
        return 0.0 if self._started is None else self._clock() - self._started

    def wait(self, cause: BaseException | str) -> bool:
        """Record a failed attempt; sleep before the next one and return True, or return
        False when the budget is spent (the caller then fails with one line)."""
        now = self._clock()
        if self._started is None:
            self._started = now
        self.failures += 1
        remaining = self._started + self.seconds - now
        if remaining <= 0:
            return False
        delay = min(self._delay * random.uniform(0.5, 1.5), remaining)
        elapsed = now - self._started
        _LOG.warning(
            "%s failed (attempt %d, failing for %.1f s of a %.0f s retry budget): %s; "
            "retrying in %.1f s", self.what, self.failures, elapsed, self.seconds,
            first_line(cause), delay,
            # The same facts as fields, for log pipelines (and tests) that watch retries.
            extra={"retry_what": self.what, "retry_attempt": self.failures,
                   "retry_elapsed": elapsed},
        )
        self._sleep(delay)  # backoff between attempts, not synchronisation
        self._delay = min(self._delay * 2, self._max_delay)
        return True


def first_line(cause: BaseException | str) -> str:
    """The first line of an error's message (drivers add hints on further lines)."""
    text = str(cause).strip()
    if not text and isinstance(cause, BaseException):
        return type(cause).__name__
    return text.splitlines()[0] if text else ""
