"""The fraud engine's records: a valid :class:`Transaction` in, a :class:`Decision` out.

NamedTuples like the project's other records (:mod:`transforms.records`), so they pickle
small and Beam can infer schemas from them. Numbers in a Transaction are ``Decimal`` s:
the values as written in the input, so rules compare them without binary rounding.
"""

from __future__ import annotations

import decimal
import math
import time
from decimal import Decimal
from typing import NamedTuple

from transforms.records import UtcTime

__all__ = [
    "ALLOW",
    "BLOCK",
    "DECISIONS",
    "REVIEW",
    "Decision",
    "Transaction",
    "event_time_iso",
    "utc_now_iso_millis",
]

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
    timestamp: UtcTime  # the transaction's event time, UTC ISO-8601 ("...Z")
    decided_at: UtcTime  # when it was decided, UTC ISO-8601 with milliseconds


_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_MICROS = Decimal(1_000_000)
# The minute (its "YYYY-MM-DDTHH:MM:") and the second (its "...:SS") formatted last.
_EVENT_MINUTE: tuple[int, str] = (-1, "")
_NOW_SECOND: tuple[int, str] = (-1, "")


def _second_text(second: int, last: tuple[int, str]) -> tuple[int, str]:
    if last[0] == second:
        return last
    return second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def event_time_iso(seconds: Decimal) -> UtcTime:
    """Exact epoch seconds -> ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` (UTC; the fraction rounded
    half-even to the microsecond, trailing zeros dropped), as
    :func:`transforms.records.utc_iso` writes times, without going through a float."""
    global _EVENT_MINUTE
    whole = math.floor(seconds)
    if seconds == whole:
        micros = 0
    else:
        micros = int(_EXACT.multiply(_EXACT.subtract(seconds, whole), _MICROS).to_integral_value(
            decimal.ROUND_HALF_EVEN))
        if micros == 1_000_000:
            whole, micros = whole + 1, 0
    minute, second = divmod(whole, 60)
    if _EVENT_MINUTE[0] != minute:  # a stream decides many transactions per minute
        _EVENT_MINUTE = (minute, time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60)))
    if not micros:
        return UtcTime(f"{_EVENT_MINUTE[1]}{second:02d}Z")
    return UtcTime(f"{_EVENT_MINUTE[1]}{second:02d}.{micros:06d}".rstrip("0") + "Z")


def utc_now_iso_millis(now: float | None = None) -> UtcTime:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` for ``now`` (epoch seconds; default: the clock)."""
    global _NOW_SECOND
    now = time.time() if now is None else now
    second, millis = divmod(int(now * 1000), 1000)
    _NOW_SECOND = _second_text(second, _NOW_SECOND)
    return UtcTime(f"{_NOW_SECOND[1]}.{millis:03d}Z")
