"""Argparse value types of the flags: each raises ArgumentTypeError with the expected form.

``--window_size=-5`` is refused as ``--window_size: expected a whole number of seconds
>= 1, got '-5'``. Value rules owned by a connector (topic names, positions, connection
strings) live in that connector's ``rules`` module as functions raising ValueError;
:func:`from_rule` turns one into an argparse type with the same words.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional, TypeVar

# One rule for whole numbers > 0 in every layer: the runners' flags need it too.
from runners.options import positive_int

T = TypeVar("T")

__all__ = ["choice", "fraction", "from_rule", "non_empty", "non_negative_seconds",
           "positive_float", "positive_int", "positive_seconds", "seconds"]


def from_rule(rule: Callable[[str], T], name: Optional[str] = None) -> Callable[[str], T]:
    """An argparse type from a value rule that raises ValueError("expected ..., got ...")."""

    def parse(text: str) -> T:
        try:
            return rule(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name or str(getattr(rule, "__name__", "value"))
    return parse


def choice(*values: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in values:
            raise argparse.ArgumentTypeError(f"expected one of {'|'.join(values)}, got {text!r}")
        return text

    parse.__name__ = "choice"
    return parse


def seconds(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number of seconds >= {minimum}, got {text!r}"
            )
        return value

    parse.__name__ = "seconds"
    return parse


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def non_empty(what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"expected {what}, got an empty value")
        return text

    parse.__name__ = "non_empty"
    return parse
