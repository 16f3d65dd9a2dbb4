"""The user-event contract (pageviews' input): ``user_id``, ``action``, ``page``, ``timestamp``.

``user_id`` is a non-empty string or an integer, ``action`` and ``page`` non-empty
strings, ``timestamp`` epoch seconds or ISO-8601 with an offset within [2000, 2100).
The parse function stays next to the vectorized parser that must agree with it
(``transforms.parse``, ``transforms.batches``).
"""

from __future__ import annotations

from transforms.contracts.spec import InputContract
from transforms.io.synthetic.events import SyntheticEvents
from transforms.parse import parse_user_event
from transforms.records import UserEvent

__all__ = ["USER_EVENTS", "parse_user_event"]

USER_EVENTS = InputContract("UserEvent", UserEvent, parse_user_event, SyntheticEvents,
                            noun="user events", reader_schema="user_events")
