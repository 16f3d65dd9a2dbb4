"""The service-log contract (error_rate's input): ``service``, ``timestamp``, and ``level``
and/or ``status``.

One JSON object per log line; extra fields (``message``, ``latency_ms``, ``trace_id``...)
are ignored.

* ``service``: a non-empty string.
* ``timestamp``: epoch seconds or ISO-8601 with an offset, within [2000, 2100).
* ``level``: a string, compared case-insensitively after trimming spaces. An **error**
  level is one of :data:`ERROR_LEVELS` (``error``, ``err``, ``critical``, ``crit``,
  ``fatal``, ``alert``, ``emergency``, ``emerg``, ``panic``, ``severe``: the syslog,
  log4j/logback, Python, Go/zap and java.util.logging names); one of :data:`OTHER_LEVELS`
  (``trace``, ``debug``, ``info``, ``notice``, ``warn``, ``warning``...) is not. Any
  other text, and a number (numeric levels mean different things in Python, pino and
  syslog), is refused: the line cannot be classified.
* ``status``: an HTTP status, a JSON integer or a string of digits (``"503"``), in
  [100, 599]. An **error** status is 500 or above (the server failed; 4xx are the
  client's mistakes, as in SLO error budgets).
* At least one of ``level`` and ``status``; ``null`` counts as absent.
* **Both present: the status decides.** It is the outcome of the request the line
  describes; the level is the logger's opinion, and access logs often log 5xx at INFO or
  a handled 4xx at ERROR. A line with ``"level": "error"`` and no status is an error.

A line that breaks any rule is one dead letter (reason, reason code, origin), never
counted in any window. Reason codes: ``missing_field`` (no service/timestamp, or neither
level nor status), ``wrong_type``, ``empty_field``, ``unknown_level``, ``out_of_range``
(a status outside [100, 599], a time outside [2000, 2100)), ``invalid_time``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Optional

from transforms.contracts.spec import InputContract
from transforms.io.synthetic.logs import SyntheticLogs
from transforms.records import ServiceLog, utc_iso
from transforms.validation import InvalidRecord, event_time, non_empty_string

__all__ = ["ERROR_LEVELS", "OTHER_LEVELS", "SERVICE_LOGS", "error_of", "parse_service_log"]

ERROR_LEVELS = frozenset({"error", "err", "critical", "crit", "fatal", "alert", "emergency",
                          "emerg", "panic", "severe"})
OTHER_LEVELS = frozenset({"trace", "debug", "info", "information", "informational", "notice",
                          "warn", "warning", "verbose", "fine", "finer", "finest", "config"})
MIN_STATUS, MAX_STATUS = 100, 599
_MAX_SHOWN = 40  # characters of a bad value quoted in a reason


def _optional(obj: dict[str, Any], name: str) -> Any:
    return obj.get(name)  # absent and null are the same here


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _level(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        kind = "a number" if isinstance(value, (int, float, Decimal)) else type(value).__name__
        raise InvalidRecord(f"field 'level' must be a level name such as error or info, got {kind}"
                            " (numeric levels differ between loggers)", "wrong_type")
    level = value.strip().lower()
    if not level:
        raise InvalidRecord("field 'level' is an empty string", "empty_field")
    if level not in ERROR_LEVELS and level not in OTHER_LEVELS:
        raise InvalidRecord(
            f"field 'level' is not a known level: {_shown(value)} (errors: "
            f"{', '.join(sorted(ERROR_LEVELS))}; others: {', '.join(sorted(OTHER_LEVELS))})",
            "unknown_level")
    return level


def _status(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRecord(f"field 'status' must be an HTTP status (an integer), got {_shown(value)}",
                            "wrong_type")
    if not MIN_STATUS <= value <= MAX_STATUS:
        raise InvalidRecord(f"field 'status' is out of range: {_shown(value)} is not an HTTP status "
                            f"in [{MIN_STATUS}, {MAX_STATUS}]", "out_of_range")
    return value


def error_of(level: Optional[str], status: Optional[int]) -> bool:
    """Whether a line with this (lower-cased) level and status is an error: the status
    decides when there is one (>= 500), else the level (one of ERROR_LEVELS)."""
    if status is not None:
        return status >= 500
    return level in ERROR_LEVELS


def parse_service_log(obj: dict[str, Any]) -> tuple[ServiceLog, int]:
    """A decoded JSON object -> (ServiceLog, floor of its event time), or InvalidRecord."""
    service = non_empty_string(obj, "service")
    seconds, whole = event_time(obj, "timestamp")
    level = _level(_optional(obj, "level"))
    status = _status(_optional(obj, "status"))
    if level is None and status is None:
        raise InvalidRecord("a log line needs a 'level' or an HTTP 'status' (both missing or null)",
                            "missing_field")
    return ServiceLog(service, error_of(level, status), level, status, utc_iso(seconds)), whole


SERVICE_LOGS = InputContract("ServiceLog", ServiceLog, parse_service_log, SyntheticLogs,
                             noun="log lines")
