"""The emulator's state: topics, subscriptions and messages awaiting acknowledgement."""

from __future__ import annotations

import collections
import itertools
import threading
import time
from typing import Any, Callable

__all__ = ["DEFAULT_ACK_DEADLINE", "MAX_ACK_DEADLINE", "Delivery", "PubSubState", "Subscription"]

DEFAULT_ACK_DEADLINE = 10
MAX_ACK_DEADLINE = 600


class Delivery:
    __slots__ = ("message", "deadline")

    def __init__(self, message: Any, deadline: float) -> None:
        self.message = message
        self.deadline = deadline


class Subscription:
    """Messages waiting for delivery and messages delivered but not acknowledged yet."""

    def __init__(self, proto: Any, condition: threading.Condition) -> None:
        self.proto = proto
        self.waiting: collections.deque = collections.deque()  # PubsubMessage protos
        self.outstanding: dict[str, Delivery] = {}  # ack id -> delivery
        self.condition = condition

    @property
    def ordered(self) -> bool:
        return bool(self.proto.enable_message_ordering)

    def expire(self, now: float) -> None:
        """Put messages whose ack deadline passed back at the front, oldest first."""
        expired = [(ack_id, d) for ack_id, d in self.outstanding.items() if d.deadline <= now]
        if not expired:
            return
        for ack_id, _ in expired:
            del self.outstanding[ack_id]
        expired.sort(key=lambda item: int(item[1].message.message_id))
        self.waiting.extendleft(d.message for _, d in reversed(expired))

    def take(self, limit: int, deadline_seconds: float, next_ack_id: Callable[[], str]) -> list:
        """Up to ``limit`` deliverable messages, leased for ``deadline_seconds``."""
        now = time.monotonic()
        self.expire(now)
        busy_keys = (
            {d.message.ordering_key for d in self.outstanding.values() if d.message.ordering_key}
            if self.ordered else set()
        )
        taken: list = []
        kept: collections.deque = collections.deque()
        while self.waiting and len(taken) < limit:
            message = self.waiting.popleft()
            if self.ordered and message.ordering_key in busy_keys:
                kept.append(message)
                continue
            ack_id = next_ack_id()
            self.outstanding[ack_id] = Delivery(message, now + deadline_seconds)
            taken.append((ack_id, message))
        kept.extend(self.waiting)
        self.waiting = kept
        return taken


class PubSubState:
    """Topics, subscriptions and messages of one emulator, guarded by one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.topics: dict[str, Any] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self._message_ids = itertools.count(1)
        self._ack_ids = itertools.count(1)

    def next_ack_id(self) -> str:
        return f"ack-{next(self._ack_ids)}"

    def next_message_id(self) -> str:
        return str(next(self._message_ids))
