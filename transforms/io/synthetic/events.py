"""A seeded, deterministic generator of user events in the pageviews input contract.

Used by the default run (``python -m beam_pipelines.pageviews`` with no flags), by the
producer, by the tests and by users in their own tests::

    from beam_pipelines.testing import SyntheticEvents
    gen = SyntheticEvents(seed=1, rate=50.0, out_of_order=0.05, malformed=0.01)
    lines = list(gen.payloads(1000))          # bytes, one JSON object each (or garbage)

Event time starts at ``start`` (default 2024-01-01T00:00:00Z) and advances by
``1 / rate`` seconds per event; an ``out_of_order`` fraction is moved back by up to
``max_delay`` seconds. A ``malformed`` fraction is replaced by one of the kinds of bad
input the contract rejects (bad JSON, missing field, wrong type, out-of-range time,
invalid UTF-8, not an object), so the same seed always gives the same dead letters.
"""

from __future__ import annotations

import json
import random
from typing import Iterator, Optional

__all__ = [
    "ACTIONS", "DEFAULT_START", "MALFORMED_KINDS", "malformed_payload", "PAGES", "SyntheticEvents"
]

PAGES = (
    "/",
    "/home",
    "/search",
    "/cart",
    "/checkout",
    "/login",
    "/products/1",
    "/products/2",
    "/products/3",
    "/products/4",
)
ACTIONS = ("page_view", "page_view", "page_view", "click", "scroll")
DEFAULT_START = 1_704_067_200  # 2024-01-01T00:00:00Z

MALFORMED_KINDS = (
    "truncated_json",
    "missing_page",
    "wrong_type_timestamp",
    "out_of_range_timestamp",
    "invalid_utf8",
    "not_an_object",
    "boolean_user_id",
    "empty_action",
)


class SyntheticEvents:
    """Deterministic user events; ``events(n)`` yields dicts, ``payloads(n)`` bytes."""

    def __init__(
        self,
        seed: int = 42,
        rate: float = 20.0,
        out_of_order: float = 0.05,
        max_delay: float = 120.0,
        malformed: float = 0.0,
        start: float = DEFAULT_START,
        users: int = 500,
        pages: tuple[str, ...] = PAGES,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 events per second of event time, got {rate!r}")
        for name, value in (("out_of_order", out_of_order), ("malformed", malformed)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
        self.seed = seed
        self.rate = rate
        self.out_of_order = out_of_order
        self.max_delay = max_delay
        self.malformed = malformed
        self.start = start
        self.users = users
        self.pages = pages

    def event(self, index: int, rnd: random.Random) -> dict:
        timestamp = self.start + index / self.rate
        if self.out_of_order and rnd.random() < self.out_of_order:
            timestamp -= rnd.uniform(0, self.max_delay)
        return {
            "user_id": f"user_{rnd.randrange(self.users)}",
            "action": rnd.choice(ACTIONS),
            "page": rnd.choice(self.pages),
            "timestamp": round(timestamp, 3),
        }

    def records(self, count: int, first: int = 0) -> Iterator[tuple[Optional[dict], bytes]]:
        """(event or None when malformed, payload bytes) for events first..first+count-1.

        Each index has its own random stream, so any slice is reproducible on its own
        (a splittable or parallel source can generate ranges independently).
        """
        for index in range(first, first + count):
            rnd = random.Random(self.seed * 1_000_003 + index)
            event = self.event(index, rnd)
            if self.malformed and rnd.random() < self.malformed:
                yield None, malformed_payload(event, rnd.choice(MALFORMED_KINDS))
            else:
                yield event, json.dumps(event, separators=(",", ":")).encode("utf-8")

    def events(self, count: int, first: int = 0) -> Iterator[dict]:
        """Only the valid events (malformed ones are skipped)."""
        for event, _ in self.records(count, first):
            if event is not None:
                yield event

    def payloads(self, count: int, first: int = 0) -> Iterator[bytes]:
        for _, payload in self.records(count, first):
            yield payload


def malformed_payload(event: dict, kind: str) -> bytes:
    """One bad input of the given kind, derived from a valid event."""
    bad = dict(event)
    if kind == "truncated_json":
        return json.dumps(bad).encode()[:-7]
    if kind == "missing_page":
        bad.pop("page")
    elif kind == "wrong_type_timestamp":
        bad["timestamp"] = "yesterday"
    elif kind == "out_of_range_timestamp":
        bad["timestamp"] = 4_200_000_000
    elif kind == "invalid_utf8":
        return b'{"user_id": "\xff\xfe", "page": "/"}'
    elif kind == "not_an_object":
        return json.dumps([bad]).encode()
    elif kind == "boolean_user_id":
        bad["user_id"] = True
    elif kind == "empty_action":
        bad["action"] = ""
    else:
        raise ValueError(f"unknown malformed kind {kind!r}; expected one of {MALFORMED_KINDS}")
    return json.dumps(bad).encode()
