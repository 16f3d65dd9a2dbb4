"""Where a restarted fraud stream reads from, so its decisions equal an uninterrupted run's.

A decision depends on the card's earlier transactions, and a runner without durable state
(the local streaming runner) starts a restart with none. So a restart from a consumer
group's committed offsets first rebuilds the state from the topic itself:

* the group's committed offset of a partition, ``O``, is where decisions resume: every
  record before it has a written decision (the Kafka reader commits an offset only after
  the outputs of what it read are written);
* the read starts earlier, at ``W``: the first record whose log time is at or after
  ``(log time of the record before O) - warmup``;
* records in ``[W, O)`` go through the engine to rebuild their keys' state, and are
  neither decided nor dead-lettered again (:class:`~transforms.fraud.DecideTransactions`
  ``resume=``); from ``O`` on every transaction is decided.

Why that gives the uninterrupted run's decisions: a key's state holds only what is
within ``state_ttl`` (event time) of its latest transaction; a transaction before ``W``
is older (in log time, so in event time when transactions reach the topic at most
``warmup - state_ttl`` after their event time) than ``state_ttl`` before any transaction
from ``O`` on, so it can no longer change their decisions. Records from ``O`` that were
decided before the crash (after the last commit) are decided again against the same
state: duplicates carry the same ``tx_id`` and the same decision. This holds per card
when the topic is keyed by card (a card's transactions in one partition, in order), as
stream == batch does. docs/fraud.md, "Restart", says it for users.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, NamedTuple, Optional, Sequence

from transforms.base.extras import require
from transforms.io.kafka import client
from transforms.io.kafka.offsets import committed_offsets

__all__ = ["ReplayPlan", "plan_replay"]

# How long to wait for the one record whose log time anchors a partition's warm-up.
_FETCH_SECONDS = 10.0


class ReplayPlan(NamedTuple):
    """Per ``(topic, partition)``: where the read starts, and where decisions resume."""

    starts: dict[tuple[str, int], int]
    resume: dict[tuple[str, int], int]

    @property
    def replayed(self) -> int:
        """How many records the warm-up reads (before the resume offsets)."""
        return sum(self.resume[tp] - start for tp, start in self.starts.items())


def plan_replay(config: Mapping[str, Any], topics: Sequence[str], group: str,
                warmup: float) -> ReplayPlan:
    """The plan for restarting ``group`` on ``topics`` with ``warmup`` seconds of log time
    replayed before each committed offset (0: none). A partition without a committed
    offset starts at its beginning, with nothing to replay."""
    kafka = require("kafka", "kafka")
    consumer = client.consumer(config, group_id=group)
    try:
        partitions = [kafka.TopicPartition(topic, p) for topic in topics
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        beginning = consumer.beginning_offsets(partitions)
        end = consumer.end_offsets(partitions)
        committed = committed_offsets(consumer, partitions)
        starts, resume = {}, {}
        for tp in partitions:
            first, last = beginning[tp], end[tp]
            offset = committed.get(tp)
            at = first if offset is None else min(max(offset, first), last)
            start = at
            if warmup > 0 and at > first:
                anchor = _log_time(consumer, tp, at - 1)
                if anchor is not None:
                    found = consumer.offsets_for_times({tp: int((anchor - warmup) * 1000)})
                    earliest = found.get(tp)
                    start = max(first, min(at, earliest.offset if earliest is not None else at))
            starts[(tp.topic, tp.partition)] = start
            resume[(tp.topic, tp.partition)] = at
        return ReplayPlan(starts, resume)
    finally:
        consumer.close()


def _log_time(consumer, tp, offset: int) -> Optional[float]:
    """The log time (epoch seconds) of the record at ``offset``, or of the first one after
    it (compaction or transaction markers leave gaps); None when none arrives in time."""
    consumer.assign([tp])
    consumer.seek(tp, offset)
    deadline = time.monotonic() + _FETCH_SECONDS
    while time.monotonic() < deadline:
        records = consumer.poll(timeout_ms=500, max_records=1).get(tp)
        if records:
            return records[0].timestamp / 1000.0
    return None
