"""A pure-Python reference of error_rate, for tests: windows, breaches and incidents.

:func:`reference_error_rates` is the pipeline's definition written out by hand with its
own parsing (it does not reuse the contract's validators), so a test comparing the two
checks the contract (which lines are errors, which are refused), the sliding windows,
the exact breach rule and the incident rules at once::

    from beam_pipelines.testing.logs import reference_error_rates
    expected = reference_error_rates(lines, max_error_ratio="0.05", min_events=20)
    expected.windows      # {(window start, service): (events, errors, breaching)}
    expected.incidents    # [(service, "trigger" | "resolve", window start)], in order

Batch semantics: one final result per window; incidents per service over its windows
with at least ``min_events`` lines, in window order: a trigger at the first breaching
window with no incident open, a resolve at the first later window that does not breach.
"""

from __future__ import annotations

import datetime as _dt
import json
from decimal import Decimal
from fractions import Fraction
from typing import Any, Iterable, NamedTuple, Optional

__all__ = ["ReferenceRates", "reference_error_rates", "reference_log_error"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_LOW, _HIGH = 946_684_800, 4_102_444_800  # [2000-01-01, 2100-01-01)
_ERRORS = {"error", "err", "critical", "crit", "fatal", "alert", "emergency", "emerg", "panic",
           "severe"}
_OTHERS = {"trace", "debug", "info", "information", "informational", "notice", "warn", "warning",
           "verbose", "fine", "finer", "finest", "config"}


class ReferenceRates(NamedTuple):
    windows: dict[tuple[int, str], tuple[int, int, bool]]  # (start, service) -> (events, errors, breaching)
    incidents: list[tuple[str, str, int]]  # (service, action, window start), per service in order
    invalid_lines: list[int]  # 1-based numbers of the lines that must be dead-lettered
    valid: int


def _reject(_name: str) -> Any:
    raise ValueError("not JSON")


def _second(value: Any) -> Optional[int]:
    """Floor of the event time in epoch seconds, or None when invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        if isinstance(value, Decimal) and not value.is_finite():
            return None
        if not _LOW <= value < _HIGH:  # before flooring: 1e999999999 is a number too
            return None
        whole = int(value // 1)  # positive here: // is the floor
    elif isinstance(value, str):
        try:
            moment = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.utcoffset() is None:
            return None
        whole = int((moment - _EPOCH) // _dt.timedelta(seconds=1))
    else:
        return None
    return whole if _LOW <= whole < _HIGH else None


def reference_log_error(obj: Any) -> Optional[tuple[str, bool, int]]:
    """(service, is error, event second) of a decoded line, or None when it is invalid."""
    if not isinstance(obj, dict):
        return None
    service = obj.get("service")
    if not isinstance(service, str) or not service:
        return None
    second = _second(obj.get("timestamp"))
    if second is None:
        return None
    level, status = obj.get("level"), obj.get("status")
    if level is not None:
        if not isinstance(level, str) or level.strip().lower() not in _ERRORS | _OTHERS:
            return None
        level = level.strip().lower()
    if status is not None:
        if isinstance(status, str) and status.strip().isascii() and status.strip().isdigit():
            status = int(status)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            return None
    if level is None and status is None:
        return None
    error = status >= 500 if status is not None else level in _ERRORS
    return service, error, second


def reference_error_rates(
    lines: Iterable[bytes],
    *,
    window_size: int = 60,
    window_period: int = 10,
    max_error_ratio: str = "0.05",
    min_events: int = 20,
) -> ReferenceRates:
    limit = Fraction(Decimal(max_error_ratio))
    counts: dict[tuple[int, str], list[int]] = {}
    invalid: list[int] = []
    valid = 0
    for number, payload in enumerate(lines, start=1):
        if not payload.strip():
            continue
        try:
            obj = json.loads(payload.decode("utf-8"), parse_float=Decimal, parse_constant=_reject)
        except (UnicodeDecodeError, ValueError):
            invalid.append(number)
            continue
        parsed = reference_log_error(obj)
        if parsed is None:
            invalid.append(number)
            continue
        valid += 1
        service, error, second = parsed
        last_start = second - second % window_period
        start = last_start
        while start > second - window_size:  # every window [start, start + size) holding it
            tally = counts.setdefault((start, service), [0, 0])
            tally[0] += 1
            tally[1] += int(error)
            start -= window_period
    windows = {key: (events, errors, events >= min_events and Fraction(errors, events) > limit)
               for key, (events, errors) in counts.items()}
    incidents: list[tuple[str, str, int]] = []
    for service in sorted({s for _, s in windows}):
        open_since: Optional[int] = None
        for start in sorted(k[0] for k in windows if k[1] == service):
            events, _, breaching = windows[(start, service)]
            if events < min_events:
                continue
            if breaching and open_since is None:
                open_since = start
                incidents.append((service, "trigger", start))
            elif not breaching and open_since is not None:
                open_since = None
                incidents.append((service, "resolve", start))
    return ReferenceRates(windows, incidents, invalid, valid)
