"""The one ISO-8601 / epoch time parser every layer uses.

Inputs (event times), flags (``--start_at``), message attributes (Pub/Sub timestamps)
and payload fields (Event Hubs event times) all read ISO-8601 the same way:

* a trailing ``Z`` or ``z`` means UTC (Python 3.10's ``datetime.fromisoformat`` does not
  read it; 3.11 does), anything else is what ``datetime.fromisoformat`` accepts;
* a time without an offset is refused (:class:`NoOffset`) unless the caller says naive
  times are UTC (``naive_utc=True``: flags, where ``2024-01-01T00:00:00`` is common);
* the result is an aware :class:`datetime.datetime`; :func:`epoch_seconds` and
  :func:`whole_and_micros` turn it into epoch seconds, the second exactly (integer
  arithmetic), because the whole second decides a record's window.

Errors are :class:`ValueError` s (``NoOffset`` is one); each caller words its own message,
since only it knows the field or flag.

Two reference implementations keep their own parsing on purpose, as oracles that must not
borrow the code they check: ``beam_pipelines.testing.iot.reference_alerts`` and the
peers' contract in ``benchmarks/contract.py``.
"""

from __future__ import annotations

import datetime as _dt

__all__ = ["EPOCH", "ISO_FORM", "NoOffset", "epoch_seconds", "parse_iso", "whole_and_micros"]

EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
ISO_FORM = "an ISO-8601 time such as 2024-01-01T00:00:00Z"


class NoOffset(ValueError):
    """The text is an ISO-8601 time without a UTC offset, and the caller needs one."""


def parse_iso(text: str, *, naive_utc: bool = False) -> _dt.datetime:
    """ISO-8601 ``text`` -> an aware datetime; ValueError when it is not ISO-8601.

    ``naive_utc``: a time without an offset is UTC (else :class:`NoOffset`). The text is
    taken as it is: callers that accept surrounding spaces strip them first.
    """
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    moment = _dt.datetime.fromisoformat(iso)
    if moment.tzinfo is None or moment.utcoffset() is None:
        if not naive_utc:
            raise NoOffset(f"{text!r} has no timezone offset")
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment


def epoch_seconds(moment: _dt.datetime) -> float:
    """An aware datetime as epoch seconds (``datetime.timestamp()``; OverflowError at the
    ends of the datetime range)."""
    return (moment - EPOCH).total_seconds()


def whole_and_micros(moment: _dt.datetime) -> tuple[int, int]:
    """An aware datetime as (floor of its epoch seconds, microseconds past that second),
    computed exactly; OverflowError at the ends of the datetime range."""
    delta = moment - EPOCH
    return delta.days * 86_400 + delta.seconds, delta.microseconds  # microseconds are >= 0
