"""The input contract in plain Python, for the peers that are written in Python.

One function, :func:`window_and_page`, the same rules as ``transforms/validation.py``
but self-contained (the peers must not borrow the code they are compared with):

* a line is split on ``\\n`` and a trailing ``\\r`` is dropped; blank lines are skipped;
* it must be UTF-8 JSON (no ``NaN``/``Infinity``) whose value is an object with
  ``user_id`` a non-empty string or an integer (not a boolean), ``action`` and ``page``
  non-empty strings, and ``timestamp`` epoch seconds (a JSON integer or float, read as
  an exact decimal) or an ISO-8601 string with a timezone offset;
* ``floor(timestamp)`` must be within [2000-01-01, 2100-01-01) UTC;
* the window starts at ``floor(timestamp) - floor(timestamp) % 300``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from decimal import Decimal
from typing import Any, Optional

MIN_SECONDS = 946_684_800
MAX_SECONDS = 4_102_444_800
WINDOW = 300
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _iso_seconds(text: str) -> Optional[int]:
    if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read "Z"
        text = text[:-1] + "+00:00"
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.utcoffset() is None:
        return None
    try:
        delta = moment - _EPOCH
    except OverflowError:
        return None
    return delta.days * 86_400 + delta.seconds


def whole_seconds(value: Any) -> Optional[int]:
    """floor(timestamp) for a valid timestamp value, None for an invalid one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        # The range first: floor(1e99999999) would build a number of 10**8 digits.
        if not value.is_finite() or not MIN_SECONDS <= value < MAX_SECONDS:
            return None
        return math.floor(value)
    if isinstance(value, str):
        return _iso_seconds(value)
    return None


def event_time_and_page(line: bytes) -> Optional[tuple[int, str]]:
    """(floor(timestamp), page) of a valid line (without its ``\\n``); None for a blank or
    rejected one."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.strip():
        return None
    try:
        event = json.loads(line.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(event, dict):
        return None
    user_id = event.get("user_id")
    if isinstance(user_id, bool) or not (isinstance(user_id, int) or (isinstance(user_id, str) and user_id)):
        return None
    action, page = event.get("action"), event.get("page")
    if not (isinstance(action, str) and action and isinstance(page, str) and page):
        return None
    whole = whole_seconds(event.get("timestamp"))
    if whole is None or not MIN_SECONDS <= whole < MAX_SECONDS:
        return None
    return whole, page


def window_and_page(line: bytes) -> Optional[tuple[int, str]]:
    """(window start, page) of a valid line (without its ``\\n``); None otherwise."""
    parsed = event_time_and_page(line)
    if parsed is None:
        return None
    whole, page = parsed
    return whole - whole % WINDOW, page
