"""Waiting for a condition in tests: the one polling helper.

Tests wait for *state* (a file written, a message pending again, a receiver attached),
never for time: ``wait_for`` polls ``condition`` until it is true and returns its value,
and fails with what it waited for once ``timeout`` seconds pass (a deadline against
hanging, not a measure of speed)::

    rows = wait_for(lambda: read_jsonl(f"{out}/*.jsonl"), what="the first output")
"""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout: float = 30.0, what: str = "condition",
             interval: float = 0.05, abort: Optional[Callable[[], Optional[str]]] = None) -> T:
    """``condition()``'s first truthy value, polled every ``interval`` seconds.

    :param condition: what to wait for; its truthy value is returned.
    :param timeout: seconds before the test fails (it hangs otherwise).
    :param what: what is waited for, for the failure message.
    :param interval: seconds between two polls.
    :param abort: called at every poll; a message it returns fails the wait at once (a
        subprocess that exited, say), with that message.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if abort is not None:
            reason = abort()
            if reason:
                raise AssertionError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # polling a condition with a deadline, not synchronising
