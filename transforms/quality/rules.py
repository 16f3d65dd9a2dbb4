"""The data-quality rules: each checks one thing about one record (see the package docstring)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from transforms.base import times
from transforms.base.errors import ConfigError

__all__ = [
    "MaxClockSkew", "Matches", "OneOf", "Range", "Required", "Rule", "Type",
    "UniqueWithinWindow", "event_seconds", "field_value", "record_json",
]

MISSING = object()


def field_value(record: Any, field: str) -> Any:
    """The field of a NamedTuple or mapping record, or the MISSING sentinel."""
    # collections.abc, not typing: typing.Mapping's isinstance is several times slower.
    if isinstance(record, Mapping):
        return record.get(field, MISSING)
    return getattr(record, field, MISSING)


def _absent(value: Any) -> bool:
    return value is MISSING or value is None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


# One encoder for every dead letter's payload: json.dumps builds a new one per call when
# given options, a third of the cost of a failing record.
_RECORD_JSON = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False).encode


def record_json(record: Any) -> str:
    if hasattr(record, "_asdict"):
        record = record._asdict()
    return _RECORD_JSON(record)


# ---- the rules ------------------------------------------------------------------------

class Rule:
    """A check on one record. ``check`` returns None when it passes, else what is wrong."""

    kind = "rule"
    field: str

    def __init__(self, field: str, name: str | None) -> None:
        if not isinstance(field, str) or not field:
            raise ConfigError(f"{self.kind} rule", "a field name (a non-empty string)", field)
        if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name)):
            raise ConfigError(f"{self.kind} rule", "a name of letters, digits, _ . -", name)
        self.field = field
        self.name = name or f"{self.kind}.{field}"

    def check(self, record: Any) -> str | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class Required(Rule):
    """The field is present, not null and, for strings, not empty."""

    kind = "required"

    def __init__(self, field: str, *, name: str | None = None) -> None:
        super().__init__(field, name)

    def check(self, record):
        value = field_value(record, self.field)
        if value is MISSING:
            return f"field '{self.field}' is missing"
        if value is None:
            return f"field '{self.field}' is null"
        if value == "":
            return f"field '{self.field}' is empty"
        return None


_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, (list, tuple)),
}


class Type(Rule):
    """The field has a JSON type: string, number, integer, boolean, object or array.

    Booleans are not numbers here (JSON ``true`` is not ``1``).
    """

    kind = "type"

    def __init__(self, field: str, type: str, *, name: str | None = None) -> None:
        super().__init__(field, name)
        if type not in _TYPES:
            raise ConfigError(f"rule {self.name}", f"a type among {'|'.join(_TYPES)}", type)
        self.type = type

    def check(self, record):
        value = field_value(record, self.field)
        if _absent(value) or _TYPES[self.type](value):
            return None
        return f"field '{self.field}' must be {self.type}, got {type(value).__name__} {value!r}"


class Range(Rule):
    """min <= value <= max (either bound optional; ``exclusive=True`` makes both strict)."""

    kind = "range"

    def __init__(self, field: str, *, min: float | None = None, max: float | None = None,
                 exclusive: bool = False, name: str | None = None) -> None:
        super().__init__(field, name)
        for bound, value in (("min", min), ("max", max)):
            if value is not None and (not _is_number(value) or not math.isfinite(value)):
                raise ConfigError(f"rule {self.name}", f"{bound} as a finite number", value)
        if min is None and max is None:
            raise ConfigError(f"rule {self.name}", "min, max or both")
        if min is not None and max is not None and min > max:
            raise ConfigError(f"rule {self.name}", f"min <= max, got min={min} max={max}")
        self.min, self.max, self.exclusive = min, max, exclusive

    def check(self, record):
        value = field_value(record, self.field)
        if _absent(value):
            return None
        if not _is_number(value):
            return f"field '{self.field}' must be a number, got {value!r}"
        low = self.min is not None and (value <= self.min if self.exclusive else value < self.min)
        high = self.max is not None and (value >= self.max if self.exclusive else value > self.max)
        if low or high:
            lo = "(" if self.exclusive else "["
            hi = ")" if self.exclusive else "]"
            span = f"{lo}{'-inf' if self.min is None else self.min}, " \
                   f"{'inf' if self.max is None else self.max}{hi}"
            return f"field '{self.field}' = {value!r} is outside {span}"
        return None


class OneOf(Rule):
    """The value is one of a fixed set (an enum)."""

    kind = "one_of"

    def __init__(self, field: str, values: Iterable[Any], *, name: str | None = None) -> None:
        super().__init__(field, name)
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ConfigError(f"rule {self.name}", "values as a list", values)
        self.values = list(values)
        if not self.values:
            raise ConfigError(f"rule {self.name}", "a non-empty list of values", self.values)

    def check(self, record):
        value = field_value(record, self.field)
        if _absent(value) or any(value == v and type(value) is type(v) or
                                 (_is_number(value) and _is_number(v) and value == v)
                                 for v in self.values):
            return None
        return f"field '{self.field}' = {value!r} is not one of {self.values!r}"


class Matches(Rule):
    """The value is a string matching a regular expression entirely."""

    kind = "matches"

    def __init__(self, field: str, pattern: str, *, name: str | None = None) -> None:
        super().__init__(field, name)
        try:
            self.regex = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"rule {self.name}", f"a valid regular expression ({exc})",
                              pattern) from None
        self.pattern = pattern

    def check(self, record):
        value = field_value(record, self.field)
        if _absent(value):
            return None
        if not isinstance(value, str):
            return f"field '{self.field}' must be a string matching {self.pattern!r}, got {value!r}"
        if not self.regex.fullmatch(value):
            return f"field '{self.field}' = {value!r} does not match {self.pattern!r}"
        return None


def event_seconds(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO-8601 string with an offset; None if neither."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            moment = times.parse_iso(value)
        except ValueError:  # not ISO-8601, or no offset
            return None
        return times.epoch_seconds(moment)
    return None


class MaxClockSkew(Rule):
    """Event time is at most ``seconds`` ahead of the processing clock (a device clock
    running fast); with ``max_past`` also at most that far behind it.

    ``max_past`` is off by default because a backfill legitimately reads old events.
    ``clock`` returns epoch seconds (``time.time``); tests pass a fixed one.
    """

    kind = "max_clock_skew"

    def __init__(self, field: str, seconds: float, *, max_past: float | None = None,
                 clock: Callable[[], float] = time.time, name: str | None = None) -> None:
        super().__init__(field, name)
        for what, value in (("seconds", seconds), ("max_past", max_past)):
            if value is not None and (not _is_number(value) or value < 0):
                raise ConfigError(f"rule {self.name}", f"{what} as a number of seconds >= 0", value)
        self.seconds, self.max_past, self.clock = seconds, max_past, clock

    def check(self, record):
        value = field_value(record, self.field)
        if _absent(value):
            return None
        when = event_seconds(value)
        if when is None:
            return f"field '{self.field}' = {value!r} is not an event time"
        skew = when - self.clock()
        if skew > self.seconds:
            return f"field '{self.field}' is {skew:.0f}s ahead of the clock (max {self.seconds}s)"
        if self.max_past is not None and -skew > self.max_past:
            return f"field '{self.field}' is {-skew:.0f}s behind the clock (max {self.max_past}s)"
        return None


class UniqueWithinWindow(Rule):
    """At most one record per ``id_field`` value per event-time window of ``window_seconds``."""

    kind = "unique_within_window"

    def __init__(self, id_field: str, window_seconds: int, *, name: str | None = None) -> None:
        super().__init__(id_field, name)
        if isinstance(window_seconds, bool) or not isinstance(window_seconds, int) or window_seconds <= 0:
            raise ConfigError(f"rule {self.name}", "window_seconds as a whole number > 0",
                              window_seconds)
        self.window_seconds = window_seconds

    def window_start(self, timestamp: float) -> int:
        return int(math.floor(timestamp / self.window_seconds)) * self.window_seconds

    def check(self, record):  # stateless part: nothing; duplicates need state
        return None
