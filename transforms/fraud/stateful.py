"""The stateful steps of :class:`~transforms.fraud.transforms.DecideTransactions`.

* :class:`DecideInArrivalOrder` (streaming, any runner): one key value's transactions in
  the order they arrive, with per-key Beam state and an expiry timer;
* :class:`DecideInEventTimeOrder` (batch): one key value's transactions sorted by
  (event time, input position);
* :class:`DecideBatches` (streaming, runners that run the pipeline in this process): a
  poll's transactions decided in one call against one map of every key's state;
* the merge of several key fields' parts (:class:`MergeAsPartsArrive`, :class:`MergeGroup`).

All of them run the same evaluator (:mod:`transforms.fraud.engine`); they only choose the
order and the place.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, NamedTuple, Optional

import apache_beam as beam
from apache_beam import coders
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.fraud.batches import TransactionBatch
from transforms.fraud.engine import Engine, KeyedRules, KeyState
from transforms.fraud.records import Decision, Transaction, utc_now_iso_millis

__all__ = [
    "Arrival",
    "DecideBatches",
    "DecideInArrivalOrder",
    "DecideInEventTimeOrder",
    "DecisionBatch",
    "InProcessCoder",
    "MergeAsPartsArrive",
    "MergeGroup",
    "Stage",
]


class Arrival(NamedTuple):
    """A valid transaction, its input position (the batch tie-break, see
    :func:`~transforms.fraud.contract.arrival_position`), and whether it only rebuilds
    state (a restart's warm-up: never decided)."""

    tx: Transaction
    position: tuple
    replay: bool = False


class DecisionBatch(NamedTuple):
    """The decisions of one poll, in input order, with each one's event second."""

    decisions: list[Decision]
    seconds: list[int]


class _Part(NamedTuple):
    """One stateful stage's share of a transaction's decision (several key fields)."""

    stage: int
    fired: list[str]
    tx: Optional[Transaction]  # carried by stage 0 only


def _merge_key(arrival: Arrival) -> str:
    return arrival.tx.tx_id + "\n" + json.dumps(arrival.position, default=str)


def event_second(tx: Transaction) -> int:
    return math.floor(tx.timestamp)


def timer_time(seconds: Decimal) -> Timestamp:
    return Timestamp(micros=math.ceil(seconds * 1_000_000))


class Stage:
    """What a stateful stage does with the names its rules fired for one transaction."""

    def __init__(self, engine: Engine, index: int, stages: int) -> None:
        self.engine = engine
        self.index = index
        self.stages = stages

    def emit(self, arrival: Arrival, fired: list[str]):
        tx = arrival.tx
        if self.index == 0:  # the stateless rules, in place
            fired = self.engine.stateless_fired(tx) + fired
        if self.stages == 1:
            return TimestampedValue(self.engine.decide(tx, fired), event_second(tx))
        part = _Part(self.index, fired, tx if self.index == 0 else None)
        return TimestampedValue((_merge_key(arrival), part), event_second(tx))


class DecideInArrivalOrder(beam.DoFn):
    """Streaming: one key value's transactions, in the order they arrive."""

    STATE = ReadModifyWriteStateSpec("key_state", coders.PickleCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, keyed: KeyedRules, stage: Stage) -> None:
        self._keyed = keyed
        self._stage = stage

    def process(self, element, key_state=beam.DoFn.StateParam(STATE),
                expiry=beam.DoFn.TimerParam(EXPIRY)):
        _, arrival = element
        state = key_state.read() or self._keyed.new_state()
        fired = self._keyed.evaluate(state, arrival.tx)
        key_state.write(state)
        expires = self._keyed.expires_at(state)
        if expires is not None:
            expiry.set(timer_time(expires))
        if not arrival.replay:
            yield self._stage.emit(arrival, fired)

    @on_timer(EXPIRY)
    def expire(self, key_state=beam.DoFn.StateParam(STATE)):
        # Set at latest + state_ttl and moved on by every transaction: when it fires, any
        # transaction that is not late would find every entry expired anyway.
        key_state.clear()


class DecideInEventTimeOrder(beam.DoFn):
    """Batch: one key value's transactions, sorted by (event time, input position)."""

    def __init__(self, keyed: KeyedRules, stage: Stage) -> None:
        self._keyed = keyed
        self._stage = stage

    def process(self, element):
        _, arrivals = element
        state = self._keyed.new_state()
        for arrival in sorted(arrivals, key=lambda a: (a.tx.timestamp, a.position)):
            fired = self._keyed.evaluate(state, arrival.tx)
            if not arrival.replay:
                yield self._stage.emit(arrival, fired)


# ---- one process: a poll's transactions in one call ------------------------------------

class InProcessCoder(coders.Coder):
    """Keeps a state value as the object itself, not as bytes.

    Only for runners that keep user state in this process's memory and never write it
    anywhere (the local streaming runner, Beam's bundle-based direct runner): they store
    what the coder returns as it is. There, a map of every key's state is read and written
    by reference per poll, instead of being pickled whole per transaction. A runner that
    ships state as bytes (Flink, Dataflow, Beam's portable runners) cannot use it, and
    :class:`~transforms.fraud.transforms.DecideTransactions` takes the per-key path there.
    """

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, encoded: Any) -> Any:
        return encoded

    def is_deterministic(self) -> bool:
        return False


class _KeyStates:
    """Every key's state, by key field and value, and when the next sweep is due."""

    __slots__ = ("states", "earliest")

    def __init__(self) -> None:
        self.states: dict[str, dict[str, KeyState]] = {}
        self.earliest: Optional[Decimal] = None  # no key expires before this (a lower bound)


class DecideBatches(beam.DoFn):
    """Streaming in one process: each element is a poll's transactions (a
    :class:`~transforms.fraud.batches.TransactionBatch`), all under one key, decided in
    input order with :meth:`Engine.decide_batch` against one map of every key's state.

    The same decisions as :class:`DecideInArrivalOrder` run per key: each key's
    transactions are evaluated in the order they arrive, by the same evaluator, and
    several key fields need no merge (every key field's state is at hand). Keys whose
    state the engine would treat as all expired (``latest + state_ttl``) are forgotten
    when the watermark passes that time, as the per-key timer does; a sweep visits every
    key, so after one that forgot some keys the next waits ``sweep_seconds`` of event
    time (a key may outlive its expiry by that much: only a transaction later than the
    watermark by more than the TTL can tell).
    """

    STATE = ReadModifyWriteStateSpec("key_states", InProcessCoder())
    SWEEP = TimerSpec("sweep", TimeDomain.WATERMARK)

    def __init__(self, engine: Engine, sweep_seconds: Decimal) -> None:
        self._engine = engine
        self._sweep_seconds = sweep_seconds

    def process(self, element, key_states=beam.DoFn.StateParam(STATE),
                sweep=beam.DoFn.TimerParam(SWEEP)):
        batch: TransactionBatch = element[1]
        if not batch.transactions:
            return
        held = key_states.read() or _KeyStates()
        decisions = self._engine.decide_batch(batch.transactions, held.states,
                                              replayed=batch.replayed,
                                              decided_at=utc_now_iso_millis())
        # A key's state expires at its latest time + TTL: never before this batch's
        # earliest time + TTL, nor before the earliest expiry known so far.
        earliest = self._engine.state_ttl + min(tx.timestamp for tx in batch.transactions)
        if held.earliest is None or earliest < held.earliest:
            held.earliest = earliest
            sweep.set(timer_time(earliest))
        key_states.write(held)
        if decisions:
            seconds = batch.seconds[batch.replayed:]
            yield TimestampedValue(DecisionBatch(decisions, seconds), min(seconds))

    @on_timer(SWEEP)
    def expire(self, key_states=beam.DoFn.StateParam(STATE), sweep=beam.DoFn.TimerParam(SWEEP),
               when=beam.DoFn.TimestampParam):
        held = key_states.read()
        if held is None:
            return
        upto = Decimal(when.micros).scaleb(-6)
        before = sum(map(len, held.states.values()))
        held.earliest = self._engine.expire(held.states, upto)
        if held.earliest is not None:
            if sum(map(len, held.states.values())) < before:
                # Sweeping visits every key: after one that forgot keys, not again within
                # sweep_seconds (a miss of the lower bound forgets none: then at once).
                held.earliest = max(held.earliest, upto + self._sweep_seconds)
            sweep.set(timer_time(held.earliest))
        key_states.write(held)


# ---- several key fields: one part per stage, merged -------------------------------------

def _assemble(engine: Engine, parts: list[_Part], stages: int) -> Decision:
    by_stage = {part.stage: part for part in parts}
    if len(by_stage) != stages or by_stage[0].tx is None:
        raise RuntimeError(f"fraud merge: expected one part from each of {stages} stages, got "
                           f"{sorted(by_stage)}")
    return engine.decide(by_stage[0].tx, [name for part in by_stage.values() for name in part.fired])


def _first_tx(parts: list[_Part]) -> Transaction:
    return next(p.tx for p in parts if p.tx is not None)


class MergeAsPartsArrive(beam.DoFn):
    """Streaming merge: a transaction's parts, one per stage; decided when the last arrives."""

    PARTS = BagStateSpec("parts", coders.PickleCoder())

    def __init__(self, engine: Engine, stages: int) -> None:
        self._engine = engine
        self._stages = stages

    def process(self, element, parts_state=beam.DoFn.StateParam(PARTS)):
        _, part = element
        parts = [*parts_state.read(), part]
        if len({p.stage for p in parts}) < self._stages:
            parts_state.add(part)
            return
        parts_state.clear()
        decision = _assemble(self._engine, parts, self._stages)
        yield TimestampedValue(decision, event_second(_first_tx(parts)))


class MergeGroup(beam.DoFn):
    """Batch merge: a transaction's parts, grouped."""

    def __init__(self, engine: Engine, stages: int) -> None:
        self._engine = engine
        self._stages = stages

    def process(self, element):
        _, parts = element
        parts = list(parts)
        decision = _assemble(self._engine, parts, self._stages)
        yield TimestampedValue(decision, event_second(_first_tx(parts)))
