"""Field validators shared by every input contract.

Each validator takes the decoded JSON object and a field name and returns the clean
value or raises :class:`InvalidRecord` with a reason a person can act on. Parsers for a
contract (user events, IoT readings) are a few lines built from these.

Numbers are decoded with ``Decimal`` for floats so ``floor(timestamp)`` is exact even
for values a hair below a window boundary (``1733000299.9999999`` must not round up
into the next window, as a binary float would).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from transforms.base import times
from transforms.base.errors import BeamPipelinesError

# The accepted range of event times: [2000-01-01, 2100-01-01) UTC.
MIN_EVENT_SECONDS = 946_684_800
MAX_EVENT_SECONDS = 4_102_444_800


class InvalidRecord(BeamPipelinesError, ValueError):
    """An input record breaks its contract; the message is the dead-letter reason.

    ``code`` is a short, low-cardinality category (``invalid_json``, ``missing_field``,
    ...) for metrics labels and summaries; the message carries the detail.
    """

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every record: json.loads with keyword arguments builds a new one per call.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)
_BOM = "\ufeff"


def decode_json_object(payload: bytes | str) -> dict[str, Any]:
    """Decode one JSON object from UTF-8 bytes, or raise InvalidRecord saying why not."""
    if isinstance(payload, bytes):
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRecord(f"not valid UTF-8: {exc.reason} at byte {exc.start}", "invalid_utf8") from None
    else:
        text = payload
    try:
        if text.startswith(_BOM):  # what json.loads refuses before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRecord(f"invalid JSON: {exc}", "invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidRecord(f"expected a JSON object, got {_json_type(value)}", "not_an_object")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _present(obj: dict[str, Any], name: str) -> Any:
    if name not in obj:
        raise InvalidRecord(f"missing field '{name}'", "missing_field")
    value = obj[name]
    if value is None:
        raise InvalidRecord(f"field '{name}' is null", "null_field")
    return value


def _unicode_text(name: str, value: str) -> str:
    """``value`` if it is Unicode text. JSON's ``\\ud800`` escapes let a string hold a lone
    surrogate, which no UTF-8 sink (a file, Parquet, Postgres, Kafka) can write."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRecord(
                f"field '{name}' is not valid Unicode text: a lone surrogate "
                f"U+{ord(value[exc.start]):04X} at character {exc.start}", "invalid_text",
            ) from None
    return value


def non_empty_string(obj: dict[str, Any], name: str) -> str:
    value = _present(obj, name)
    if not isinstance(value, str):
        raise InvalidRecord(f"field '{name}' must be a non-empty string, got {_json_type(value)}", "wrong_type")
    if not value:
        raise InvalidRecord(f"field '{name}' is an empty string", "empty_field")
    return _unicode_text(name, value)


def string_or_integer_id(obj: dict[str, Any], name: str) -> str:
    """A non-empty string or an integer (booleans are not integers here)."""
    value = _present(obj, name)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecord(
            f"field '{name}' must be a non-empty string or an integer, got {_json_type(value)}",
            "wrong_type",
        )
    if isinstance(value, str):
        if not value:
            raise InvalidRecord(f"field '{name}' is an empty string", "empty_field")
        return _unicode_text(name, value)
    return str(value)


def number(obj: dict[str, Any], name: str) -> float:
    value = _present(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidRecord(f"field '{name}' must be a number, got {_json_type(value)}", "wrong_type")
    try:
        result = float(value)
    except OverflowError:  # an integer beyond a float's range
        result = math.inf
    if not math.isfinite(result):
        raise InvalidRecord(f"field '{name}' must be a finite number", "wrong_type")
    return result


def event_time(obj: dict[str, Any], name: str, *, allow_epoch: bool = True) -> tuple[float, int]:
    """Event time as (seconds, floor(seconds)), from epoch seconds or ISO-8601 with offset.

    The whole-second floor is computed exactly (Decimal or integer arithmetic), because
    it decides the window. Range: [2000-01-01, 2100-01-01) UTC.
    """
    value = _present(obj, name)
    if isinstance(value, str):
        seconds, whole = _parse_iso_with_offset(name, value)
    elif allow_epoch and isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        if isinstance(value, Decimal) and not value.is_finite() or (
                isinstance(value, float) and not math.isfinite(value)):
            raise InvalidRecord(f"field '{name}' must be a finite number", "wrong_type")
        # The range first (exact for int and Decimal): float() of a 400-digit integer
        # overflows, and floor() of 1e99999999 would build a number of 10**8 digits.
        if not MIN_EVENT_SECONDS <= value < MAX_EVENT_SECONDS:
            raise _out_of_range(name, value)
        whole = math.floor(value)
        seconds = float(value)
    else:
        expected = "epoch seconds (a number) or " if allow_epoch else ""
        raise InvalidRecord(
            f"field '{name}' must be {expected}an ISO-8601 string with a timezone offset, "
            f"got {_json_type(value)}",
            "wrong_type",
        )
    if not MIN_EVENT_SECONDS <= whole < MAX_EVENT_SECONDS:
        raise _out_of_range(name, value)
    return seconds, whole


def _out_of_range(name: str, value: Any) -> InvalidRecord:
    text = str(value)
    if len(text) > 40:  # a poison value of hundreds of digits: its start and its length
        text = f"{text[:20]}... ({len(text)} characters)"
    return InvalidRecord(
        f"field '{name}' is out of range: {text} is not within [2000-01-01, 2100-01-01)",
        "out_of_range",
    )


def _shown(value: object) -> str:
    """``repr`` of a value for a reason; a long one by its start and its length, so a
    poison value of thousands of characters keeps its dead letter's reason short."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:40]}... ({len(str(value))} characters)"


def _parse_iso_with_offset(name: str, text: str) -> tuple[float, int]:
    whole, micros = _iso_parts(name, text)
    return whole + micros / 1_000_000, whole


def _iso_parts(name: str, text: str) -> tuple[int, int]:
    """(whole epoch seconds, microseconds) of an ISO-8601 time with an offset, exactly."""
    try:
        moment = times.parse_iso(text)
    except times.NoOffset:
        raise InvalidRecord(f"field '{name}' has no timezone offset: {_shown(text)}",
                            "invalid_time") from None
    except ValueError:
        raise InvalidRecord(
            f"field '{name}' is not epoch seconds or an ISO-8601 time with offset: {_shown(text)}",
            "invalid_time",
        ) from None
    try:
        whole, micros = times.whole_and_micros(moment)
    except OverflowError:
        raise InvalidRecord(f"field '{name}' is out of range: {_shown(text)}", "out_of_range") from None
    return whole, micros


# ---- exact values: numbers and times as written ---------------------------------------

def exact_number(obj: dict[str, Any], name: str) -> Decimal:
    """A JSON number as the exact decimal it was written as (booleans and strings are not
    numbers). It must also be finite as a double, as :func:`number` requires.

    Comparisons against decimal constants (``amount > 3 * mean``) must not flip on binary
    rounding, so contracts that compare values keep them exact: the shared decoder gives
    ``Decimal`` for decimals, and a ``float`` (a record built in Python) is taken as its
    shortest repr, the decimal it was most likely written as.
    """
    value = _present(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise InvalidRecord(f"field '{name}' must be a number, got {_json_type(value)}", "wrong_type")
    try:
        finite = math.isfinite(float(value))
    except OverflowError:  # an integer of hundreds of digits: no double holds it
        finite = False
    if not finite:
        raise InvalidRecord(f"field '{name}' must be a finite number", "wrong_type")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def within(name: str, value: Decimal, low: Decimal | int, high: Decimal | int | None = None, *,
           low_inclusive: bool = True) -> Decimal:
    """``value`` itself when it lies in [low, high] (or (low, high] when not
    ``low_inclusive``; no upper bound when ``high`` is None), else InvalidRecord."""
    above = value >= low if low_inclusive else value > low
    if not above or (high is not None and value > high):
        bracket = "[" if low_inclusive else "("
        span = f"{bracket}{low}, {high}]" if high is not None else f"{bracket}{low}, inf)"
        raise InvalidRecord(f"field '{name}' is out of range: {value} is not within {span}",
                            "out_of_range")
    return value


def uppercase_code(obj: dict[str, Any], name: str, length: int) -> str:
    """A code of exactly ``length`` uppercase ASCII letters (ISO 4217 currency: 3, ISO 3166
    alpha-2 country: 2). The letters are not looked up in the ISO lists."""
    value = _present(obj, name)
    if not isinstance(value, str):
        raise InvalidRecord(
            f"field '{name}' must be {length} uppercase letters, got {_json_type(value)}", "wrong_type")
    if len(value) != length or not (value.isascii() and value.isalpha() and value.isupper()):
        raise InvalidRecord(
            f"field '{name}' must be {length} uppercase ASCII letters, got {_shown(value)}", "invalid_format")
    return value


def exact_event_time(obj: dict[str, Any], name: str) -> tuple[Decimal, int]:
    """Event time as (exact seconds, floor(seconds)): :func:`event_time`'s forms, range and
    errors, with the seconds as a ``Decimal`` (epoch numbers as written; ISO-8601 to the
    microsecond), so windows like ``(t - 60, t]`` are decided without binary rounding."""
    _, whole = event_time(obj, name)
    value = obj[name]
    if isinstance(value, str):
        whole, micros = _iso_parts(name, value)
        return Decimal(whole) + Decimal(micros).scaleb(-6), whole
    return (Decimal(repr(value)) if isinstance(value, float) else Decimal(value)), whole
