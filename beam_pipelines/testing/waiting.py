"""One polling helper for tests that wait on something another thread or process does.

::

    wait_for(lambda: len(route.accepted) == 3, what="three alerts at the receiver")

The timeout is a deadline for failing loudly, not a measurement: a test never asserts
on how long something took.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout: float = 30.0,
    *,
    what: Optional[str] = None,
    interval: float = 0.02,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Raises AssertionError naming ``what`` (or the condition) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            name = what or getattr(condition, "__name__", "condition")
            raise AssertionError(f"timed out after {timeout:g}s waiting for {name}")
        time.sleep(interval)  # polling between checks, not synchronising on a duration
