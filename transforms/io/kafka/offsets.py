"""Where each partition starts and stops: start/stop positions, ``--max_records`` shares,
committed offsets and consumer lag. One place reads a group's committed offsets
(:func:`committed_offsets`): the reader's ``start_at=committed`` and the lag probe."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from transforms.base.errors import ConfigError
from transforms.base.extras import require
from transforms.delivery import Position
from transforms.io.kafka.records import NEVER, StartAt, StopAt
from transforms.io.kafka.rules import START_KEYWORDS, STOP_KEYWORDS, is_time, parse_time

__all__ = ["allot", "committed_offsets", "committed_positions", "consumer_lag", "shares",
           "validate_start", "validate_stop"]


def validate_start(start_at: Any) -> StartAt:
    if isinstance(start_at, str) and start_at in START_KEYWORDS:
        return start_at
    if isinstance(start_at, str):
        try:
            return parse_time(start_at)
        except ValueError:
            pass
    elif is_time(start_at) or isinstance(start_at, Mapping):
        return start_at
    raise ConfigError(
        "--start_at",
        "earliest|latest|committed, an ISO-8601 time, epoch seconds or {(topic, partition): offset}",
        start_at,
    )


def validate_stop(stop_at: Any) -> StopAt:
    if isinstance(stop_at, str) and stop_at in STOP_KEYWORDS:
        return stop_at
    if isinstance(stop_at, str):
        try:
            return parse_time(stop_at)
        except ValueError:
            pass
    elif is_time(stop_at):
        return stop_at
    raise ConfigError("--stop_at", "end|never, an ISO-8601 time or epoch seconds", stop_at)


def shares(total: int, count: int) -> list[int]:
    """``total`` split into ``count`` near-equal whole shares (the first ones get the rest)."""
    base, rest = divmod(total, count)
    return [base + (1 if i < rest else 0) for i in range(count)]


def allot(total: int, available: Sequence[int]) -> list[int]:
    """``--max_records``: how many records each partition reads, ``total`` in all.

    Records already in the topic come first, spread as evenly as the partitions allow
    (an empty partition gets nothing, so a bounded read never waits on it); only when
    the topic holds fewer than ``total`` is the rest spread over every partition, each
    then waiting for its share to arrive.
    """
    given = [0] * len(available)
    left = total
    while left > 0:
        open_ = [i for i, a in enumerate(available) if given[i] < a]
        if not open_:
            break
        for i, share in zip(open_, shares(left, len(open_)), strict=True):
            take = min(share, available[i] - given[i])
            given[i] += take
            left -= take
    if left > 0:
        given = [g + s for g, s in zip(given, shares(left, len(given)), strict=True)]
    return given


class Resolver:
    """Offsets for start/stop positions, from one consumer (launch time)."""

    def __init__(self, consumer, group: Optional[str]) -> None:
        self._consumer = consumer
        self._group = group

    def _times(self, tps, seconds: float, fallback: dict) -> dict:
        found = self._consumer.offsets_for_times({tp: int(seconds * 1000) for tp in tps})
        return {tp: (found[tp].offset if found.get(tp) is not None else fallback[tp]) for tp in tps}

    def starts(self, tps, start_at: StartAt, beginning: dict, end: dict) -> dict:
        if start_at == "earliest":
            return dict(beginning)
        if start_at == "latest":
            return dict(end)
        if start_at == "committed":
            committed = committed_offsets(self._consumer, tps) if self._group else {}
            out = {}
            for tp in tps:
                offset = committed.get(tp)
                out[tp] = beginning[tp] if offset is None else max(offset, beginning[tp])
            return out
        if isinstance(start_at, Mapping):
            out = {}
            for tp in tps:
                given = start_at.get((tp.topic, tp.partition), start_at.get(tp.partition))
                out[tp] = beginning[tp] if given is None else int(given)
            return out
        return self._times(tps, float(start_at), end)

    def stops(self, tps, stop_at: StopAt, end: dict) -> dict:
        if stop_at == "never":
            return {tp: NEVER for tp in tps}
        if stop_at == "end":
            return dict(end)
        return self._times(tps, float(stop_at), end)


def committed_offsets(consumer, tps) -> dict[Any, Optional[int]]:
    """The offsets the consumer's group has committed for ``tps`` (None where it has none)."""
    return {tp: consumer.committed(tp) for tp in tps}


def committed_positions(consumer, tps) -> dict[Any, Position]:
    """The group's committed offsets with what a restart needs (their commit metadata, see
    :class:`transforms.delivery.Position`), for the partitions that have one."""
    found = {}
    for tp in tps:
        committed = consumer.committed(tp, metadata=True)
        if committed is not None and committed.offset is not None and committed.offset >= 0:
            found[tp] = Position.parse(committed.offset, committed.metadata)
    return found


def consumer_lag(consumer, topics: Sequence[str]) -> dict[str, int]:
    """{"TOPIC-PARTITION": end offset - committed offset} of the consumer's group, like
    ``kafka-consumer-groups --describe``; a partition with no committed offset counts
    from its start."""
    kafka = require("kafka", "kafka")
    partitions = [
        kafka.TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return {}
    ends = consumer.end_offsets(partitions)
    starts = consumer.beginning_offsets(partitions)
    committed = committed_offsets(consumer, partitions)
    lags = {}
    for tp in partitions:
        offset = committed[tp]
        position = offset if offset is not None else starts.get(tp, 0)
        lags[f"{tp.topic}-{tp.partition}"] = max(0, int(ends.get(tp, 0)) - int(position))
    return lags
