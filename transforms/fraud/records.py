"""The fraud engine's records: a valid :class:`Transaction` in, a :class:`Decision` out.

NamedTuples like the project's other records (:mod:`transforms.records`), so they pickle
small and Beam can infer schemas from them. Numbers in a Transaction are ``Decimal`` s:
the values as written in the input, so rules compare them without binary rounding.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import NamedTuple

__all__ = ["ALLOW", "BLOCK", "DECISIONS", "REVIEW", "Decision", "Transaction", "utc_now_iso_millis"]

ALLOW = "allow"
REVIEW = "review"
BLOCK = "block"
DECISIONS = (ALLOW, REVIEW, BLOCK)  # in increasing severity


class Transaction(NamedTuple):
    """A valid card transaction (the fraud input contract); extra input fields are dropped."""

    tx_id: str
    card_id: str
    amount: Decimal  # > 0, exactly as written
    currency: str  # three uppercase ASCII letters
    merchant: str
    country: str  # two uppercase ASCII letters
    lat: Decimal  # [-90, 90]
    lon: Decimal  # [-180, 180]
    timestamp: Decimal  # event time, exact epoch seconds (ISO-8601 inputs to the microsecond)


class Decision(NamedTuple):
    """What the engine decided for one valid transaction."""

    tx_id: str
    card_id: str
    decision: str  # allow | review | block
    rules: list[str]  # names of the rules that fired, sorted
    timestamp: str  # the transaction's event time, UTC ISO-8601 ("...Z")
    decided_at: str  # when it was decided, UTC ISO-8601 with milliseconds


def utc_now_iso_millis(now: float | None = None) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` for ``now`` (epoch seconds; default: the clock)."""
    now = time.time() if now is None else now
    millis = int(now * 1000)
    seconds, ms = divmod(millis, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{ms:03d}Z"
