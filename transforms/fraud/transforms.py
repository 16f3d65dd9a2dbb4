"""Beam transforms of the fraud engine: raw transactions in, decisions and dead letters out.

::

    rules = load_rules("rules.json")
    result = raw_records | DecideTransactions(rules, streaming=False)
    result.decisions      # Decision, one per valid transaction, timestamped by event time
    result.dead_letters   # DeadLetter, one per invalid input (blank lines are skipped)

Why this shape. A stateful rule needs every earlier transaction of its key in one place,
so its stage is keyed by the rule's key field; rules keyed by different fields (velocity
per ``card_id`` and per ``merchant``) cannot share a stage without losing exactness. So:

* One stateful stage per distinct key field. Every stateful rule on that field is
  evaluated there against one :class:`~transforms.fraud.engine.KeyState` per key value.
* Stateless rules (threshold, blocklist) need nothing but the transaction; they are
  evaluated in place, inside the first stateful stage (or in a plain Map when no rule
  has state), never in a stage of their own.
* One key field (the common case, and the low-latency one): the single stateful stage
  emits the Decision itself. No merge, no second shuffle.
* Several key fields: each stage emits the names its rules fired, keyed by the
  transaction (``tx_id`` plus its input position, so two inputs that share a ``tx_id``
  stay two decisions), and a merge waits for one part per stage: a stateful DoFn in
  streaming (the part count is known, so it emits as soon as the last part arrives), a
  GroupByKey in batch.

Modes. ``streaming=True``: a stateful DoFn per key decides in arrival order; its state
(``ReadModifyWriteStateSpec``) expires with an event-time timer at ``latest + state_ttl``,
when the engine itself would have dropped every entry for any transaction not behind the
watermark. ``streaming=False``: GroupByKey per key, then the key's transactions sorted
by (event time, input position) and run through the same evaluator, so batch decides in
event-time order. When each key's transactions arrive in event-time order both modes
give the same decisions (tests/transforms/fraud proves it with TestStream and hypothesis).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.base.errors import ConfigError
from transforms.formats.base import Decoder
from transforms.fraud.contract import arrival_position, parse_transaction
from transforms.fraud.engine import DEFAULT_STATE_TTL, Engine, KeyedRules
from transforms.fraud.records import Decision, Transaction
from transforms.fraud.rules import RuleSet
from transforms.parse import ParseRecords, _ParseDoFn
from transforms.records import RawBatch, RawRecord

__all__ = [
    "Arrival",
    "DecideTransactions",
    "FraudResult",
    "ParseTransactions",
]

PIPELINE = "fraud"
DEAD_LETTERS = "dead_letters"
VALID = "valid"


class Arrival(NamedTuple):
    """A valid transaction and its input position (the batch tie-break, see
    :func:`~transforms.fraud.contract.arrival_position`)."""

    tx: Transaction
    position: tuple


class FraudResult(NamedTuple):
    decisions: beam.PCollection
    dead_letters: beam.PCollection


def ParseTransactions(pipeline: str = PIPELINE, decoder: Optional[Decoder] = None) -> ParseRecords:
    """ParseRecords for the transactions contract: RawRecord -> Transaction + dead letters
    (payloads decoded by ``decoder``, JSON objects by default)."""
    return ParseRecords(parse_transaction, pipeline=pipeline, step="parse", decoder=decoder)


class _ParseArrivals(_ParseDoFn):
    """RawRecord or RawBatch -> Arrival timestamped by event time; DeadLetter otherwise:
    the project's parse step (blank lines, reasons, counters), keeping input positions."""

    def __init__(self, pipeline: str, step: str, decoder: Optional[Decoder] = None) -> None:
        super().__init__(parse_transaction, pipeline, step, decoder)

    def process(self, element: RawRecord | RawBatch):
        for raw in element.records() if isinstance(element, RawBatch) else (element,):
            for output in super().process(raw):
                if isinstance(output, TimestampedValue):
                    arrival = Arrival(output.value, arrival_position(raw.origin))
                    yield TimestampedValue(arrival, output.timestamp)
                else:
                    yield output


# ---- what a stage emits -----------------------------------------------------------------

class _Part(NamedTuple):
    """One stateful stage's share of a transaction's decision (several key fields)."""

    stage: int
    fired: list[str]
    tx: Optional[Transaction]  # carried by stage 0 only


def _event_second(tx: Transaction) -> int:
    return math.floor(tx.timestamp)


def _merge_key(arrival: Arrival) -> str:
    return arrival.tx.tx_id + "\n" + json.dumps(arrival.position, default=str)


class _Stage:
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
            return TimestampedValue(self.engine.decide(tx, fired), _event_second(tx))
        part = _Part(self.index, fired, tx if self.index == 0 else None)
        return TimestampedValue((_merge_key(arrival), part), _event_second(tx))


class _DecideInArrivalOrder(beam.DoFn):
    """Streaming: one key value's transactions, in the order they arrive."""

    STATE = ReadModifyWriteStateSpec("key_state", coders.PickleCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, keyed: KeyedRules, stage: _Stage) -> None:
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
            expiry.set(_timer_time(expires))
        yield self._stage.emit(arrival, fired)

    @on_timer(EXPIRY)
    def expire(self, key_state=beam.DoFn.StateParam(STATE)):
        # Set at latest + state_ttl and moved on by every transaction: when it fires, any
        # transaction that is not late would find every entry expired anyway.
        key_state.clear()


def _timer_time(seconds: Decimal) -> Timestamp:
    return Timestamp(micros=math.ceil(seconds * 1_000_000))


class _DecideInEventTimeOrder(beam.DoFn):
    """Batch: one key value's transactions, sorted by (event time, input position)."""

    def __init__(self, keyed: KeyedRules, stage: _Stage) -> None:
        self._keyed = keyed
        self._stage = stage

    def process(self, element):
        _, arrivals = element
        state = self._keyed.new_state()
        for arrival in sorted(arrivals, key=lambda a: (a.tx.timestamp, a.position)):
            yield self._stage.emit(arrival, self._keyed.evaluate(state, arrival.tx))


def _assemble(engine: Engine, parts: list[_Part], stages: int) -> Decision:
    by_stage = {part.stage: part for part in parts}
    if len(by_stage) != stages or by_stage[0].tx is None:
        raise RuntimeError(f"fraud merge: expected one part from each of {stages} stages, got "
                           f"{sorted(by_stage)}")
    return engine.decide(by_stage[0].tx, [name for part in by_stage.values() for name in part.fired])


class _MergeAsPartsArrive(beam.DoFn):
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
        yield TimestampedValue(decision, _event_second(next(p.tx for p in parts if p.tx)))


class _MergeGroup(beam.DoFn):
    def __init__(self, engine: Engine, stages: int) -> None:
        self._engine = engine
        self._stages = stages

    def process(self, element):
        _, parts = element
        parts = list(parts)
        decision = _assemble(self._engine, parts, self._stages)
        yield TimestampedValue(decision, _event_second(next(p.tx for p in parts if p.tx)))


class _CountDecisions(beam.DoFn):
    """decisions.<verdict> and rules_fired.<name> counters, in a plain step (the
    bundle-based DirectRunner drops metrics of bundles that fire timers)."""

    def __init__(self, pipeline: str) -> None:
        self._pipeline = pipeline
        self._counters: dict[str, Any] = {}

    def _inc(self, name: str) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(self._pipeline, name)
        counter.inc()

    def process(self, decision: Decision):
        self._inc(f"decisions.{decision.decision}")
        for name in decision.rules:
            self._inc(f"rules_fired.{name}")
        yield decision


# ---- the transform ----------------------------------------------------------------------

class DecideTransactions(beam.PTransform):
    """RawRecord / RawBatch -> :class:`FraudResult` (decisions, dead letters).

    :param rules: validated rules (:func:`transforms.fraud.rules.load_rules`).
    :param streaming: True: decide per key in arrival order with state and timers; False:
        group per key and decide in event-time order (ties in input order).
    :param state_ttl: seconds of event time a key's entries are kept (default 30 days); at
        least the longest velocity window.
    :param pipeline: the metrics namespace and the dead letters' ``pipeline``.
    :param decoder: how a payload becomes a dict (:class:`~transforms.formats.Decoder`:
        Avro, Protobuf, JSON Schema); default: a JSON object.
    """

    def __init__(self, rules: RuleSet, *, streaming: bool,
                 state_ttl: float | Decimal = DEFAULT_STATE_TTL, pipeline: str = PIPELINE,
                 decoder: Optional[Decoder] = None) -> None:
        super().__init__()
        if not isinstance(streaming, bool):
            raise ConfigError("streaming", "True or False", streaming)
        self._engine = Engine(rules, state_ttl)
        self._streaming = streaming
        self._pipeline = pipeline
        self._decoder = decoder

    def expand(self, raw: beam.PCollection) -> FraudResult:
        parsed = raw | "Parse" >> beam.ParDo(
            _ParseArrivals(self._pipeline, "parse", self._decoder)).with_outputs(DEAD_LETTERS, main=VALID)
        arrivals = parsed[VALID] | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
        engine = self._engine
        key_fields = list(engine.keyed)
        if not key_fields:
            decisions = arrivals | "Decide" >> beam.Map(
                lambda a: engine.decide(a.tx, engine.stateless_fired(a.tx)))
        else:
            stages = len(key_fields)
            outputs = [self._stage(arrivals, field, _Stage(engine, index, stages))
                       for index, field in enumerate(key_fields)]
            if stages == 1:
                decisions = outputs[0]
            else:
                decisions = self._merge(tuple(outputs) | "AllParts" >> beam.Flatten(), stages)
        counted = decisions | "Count" >> beam.ParDo(_CountDecisions(self._pipeline))
        return FraudResult(counted, parsed[DEAD_LETTERS])

    def _stage(self, arrivals, key_field: str, stage: _Stage):
        keyed = self._engine.keyed[key_field]
        label = f"By[{key_field}]"
        by_key = arrivals | f"{label}Key" >> beam.Map(
            lambda a, field=key_field: (getattr(a.tx, field), a)
        ).with_output_types(Tuple[str, Any])
        if self._streaming:
            return by_key | f"{label}Decide" >> beam.ParDo(_DecideInArrivalOrder(keyed, stage))
        return (by_key
                | f"{label}Group" >> beam.GroupByKey()
                | f"{label}Decide" >> beam.ParDo(_DecideInEventTimeOrder(keyed, stage)))

    def _merge(self, parts, stages: int):
        typed = parts | "PartsTyped" >> beam.Map(lambda kv: kv).with_output_types(Tuple[str, Any])
        if self._streaming:
            return typed | "Merge" >> beam.ParDo(_MergeAsPartsArrive(self._engine, stages))
        return (typed
                | "MergeGroup" >> beam.GroupByKey()
                | "Merge" >> beam.ParDo(_MergeGroup(self._engine, stages)))
