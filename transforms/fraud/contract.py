"""The transactions input contract: one JSON object per line or message.

``tx_id``, ``card_id``, ``merchant``: non-empty strings; ``amount``: a finite number > 0
(not a boolean, not a string); ``currency``: three uppercase ASCII letters; ``country``:
two; ``lat`` a number in [-90, 90]; ``lon`` in [-180, 180]; ``timestamp`` as in the
pageviews contract (epoch seconds, or ISO-8601 with an offset, within [2000, 2100)).
Extra fields are ignored. Anything else is one dead letter (reason, reason code, origin),
never decided and never part of any state.

Numbers are kept as the ``Decimal`` they were written as (see
:func:`transforms.validation.exact_number`), times as exact ``Decimal`` epoch seconds.
"""

from __future__ import annotations

from typing import Any

from transforms.fraud.records import Transaction
from transforms.validation import (
    exact_event_time,
    exact_number,
    non_empty_string,
    uppercase_code,
    within,
)

__all__ = ["FIELD_TYPES", "NUMBER", "STRING", "arrival_position", "parse_transaction"]

STRING = "string"
NUMBER = "number"
# The contract's fields and the type a rule sees; rules are checked against this at load.
FIELD_TYPES: dict[str, str] = {
    "tx_id": STRING,
    "card_id": STRING,
    "amount": NUMBER,
    "currency": STRING,
    "merchant": STRING,
    "country": STRING,
    "lat": NUMBER,
    "lon": NUMBER,
    "timestamp": NUMBER,
}
# Fields whose values have a fixed form, so a rule comparing them with another form is a typo.
CODE_LENGTHS = {"currency": 3, "country": 2}


def parse_transaction(obj: dict[str, Any]) -> tuple[Transaction, int]:
    """A decoded JSON object -> (Transaction, floor of its event time), or InvalidRecord.

    Fits :class:`transforms.parse.ParseRecords` as its ``parse_fn``.
    """
    tx_id = non_empty_string(obj, "tx_id")
    card_id = non_empty_string(obj, "card_id")
    amount = within("amount", exact_number(obj, "amount"), 0, low_inclusive=False)
    currency = uppercase_code(obj, "currency", 3)
    merchant = non_empty_string(obj, "merchant")
    country = uppercase_code(obj, "country", 2)
    lat = within("lat", exact_number(obj, "lat"), -90, 90)
    lon = within("lon", exact_number(obj, "lon"), -180, 180)
    seconds, whole = exact_event_time(obj, "timestamp")
    return Transaction(tx_id, card_id, amount, currency, merchant, country, lat, lon, seconds), whole


# Position fields of the sources' origins, most significant first; any other field sorts after.
_POSITION_FIELDS = ("source", "file", "topic", "partition", "line", "row", "offset", "index")


def arrival_position(origin: dict[str, Any]) -> tuple:
    """A sort key giving inputs their input order from their origins: a file's lines in
    order (files by path), a partition's messages by offset.

    Batch runs break ties between equal event times with it, so they decide ties in the
    order a stream reading the same input would receive them. Values are tagged so
    origins of different shapes still compare (numbers before strings).
    """

    def tagged(value: Any) -> tuple:
        if isinstance(value, (int, float)):
            return (0, value, "")
        return (1, 0, str(value))

    known = [(name, tagged(origin[name])) for name in _POSITION_FIELDS if name in origin]
    rest = sorted((str(k), tagged(v)) for k, v in origin.items() if k not in _POSITION_FIELDS)
    return tuple(known + rest)
