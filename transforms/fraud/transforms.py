"""Beam transforms of the fraud engine: raw transactions in, decisions and dead letters out.

::

    rules = load_rules("rules.json")
    result = raw_records | DecideTransactions(rules, streaming=False)
    result.decisions      # Decision, one per valid transaction, timestamped by event time
    result.dead_letters   # DeadLetter / DeadLetterBatch, one letter per invalid input

Parsing. A :class:`~transforms.records.RawRecord` is parsed by the per-record contract; a
:class:`~transforms.records.RawBatch` (the messages of one Kafka poll) by the batch
parser (:mod:`transforms.fraud.batches`: msgspec, the same results). Either way the valid
transactions travel on as one :class:`~transforms.fraud.batches.TransactionBatch` per
input element, in input order.

Why the stateful shape. A stateful rule needs every earlier transaction of its key in one
place, so its stage is keyed by the rule's key field; rules keyed by different fields
(velocity per ``card_id`` and per ``merchant``) cannot share a per-key stage without
losing exactness. So, on runners that distribute keys (Flink, Dataflow, the batch runs):

* one stateful stage per distinct key field, evaluating every stateful rule on that field
  against one :class:`~transforms.fraud.engine.KeyState` per key value;
* stateless rules (threshold, blocklist) evaluated in place, inside the first stage (or in
  a plain Map when no rule has state);
* one key field (the common case): that stage emits the Decision itself, no merge;
* several: each stage emits the names its rules fired, keyed by the transaction (``tx_id``
  plus its input position), and a merge waits for one part per stage (a stateful DoFn in
  streaming, a GroupByKey in batch).

Modes. ``streaming=True``: decided per key in arrival order, with Beam state that expires
with an event-time timer at ``latest + state_ttl``. ``streaming=False``: grouped per key
and decided in event-time order, ties in input order. ``single_process=True`` (streaming
on a runner that runs the whole pipeline in this process, such as the local streaming
runner): one element per poll all the way, decided in one call against one map of every
key's state (:class:`~transforms.fraud.stateful.DecideBatches`): the same decisions,
without the per-transaction cost of a keyed step. When each key's transactions arrive in
event-time order every mode gives the same decisions (tests/transforms/fraud proves it).

Restarts. ``resume`` maps ``(topic, partition)`` to the offset decisions resume from: the
records before it (a restart's warm-up, :mod:`transforms.fraud.replay`) rebuild their
keys' state and are neither decided nor dead-lettered again.
"""

from __future__ import annotations

import bisect
import collections
from decimal import Decimal
from typing import Any, Mapping, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows, TimestampedValue

from transforms.base.errors import ConfigError
from transforms.formats.base import Decoder
from transforms.fraud.batches import TransactionBatch, parse_transaction_payloads
from transforms.fraud.contract import arrival_position, parse_transaction
from transforms.fraud.engine import DEFAULT_STATE_TTL, Engine
from transforms.fraud.records import Decision
from transforms.fraud.rules import RuleSet
from transforms.fraud.stateful import (
    Arrival,
    DecideBatches,
    DecideInArrivalOrder,
    DecideInEventTimeOrder,
    DecisionBatch,
    MergeAsPartsArrive,
    MergeGroup,
    Stage,
)
from transforms.parse import ParseRecords, is_blank, parse_or_reject
from transforms.records import DeadLetter, DeadLetterBatch, RawBatch, RawRecord
from transforms.validation import InvalidRecord

__all__ = [
    "Arrival",
    "DecideTransactions",
    "FraudResult",
    "ParseTransactions",
]

PIPELINE = "fraud"
DEAD_LETTERS = "dead_letters"
VALID = "valid"
# The single key of the one-process path (every key's state in one map under it).
_ALL = ""
# DecideBatches sweeps expired keys at most this often, as a fraction of the TTL.
_SWEEPS_PER_TTL = 10

Resume = Mapping[Tuple[str, int], int]


class FraudResult(NamedTuple):
    decisions: beam.PCollection
    dead_letters: beam.PCollection


def ParseTransactions(pipeline: str = PIPELINE, decoder: Optional[Decoder] = None) -> ParseRecords:
    """ParseRecords for the transactions contract: RawRecord -> Transaction + dead letters
    (payloads decoded by ``decoder``, JSON objects by default)."""
    return ParseRecords(parse_transaction, pipeline=pipeline, step="parse", decoder=decoder)


class _ParseToBatches(beam.DoFn):
    """RawRecord / RawBatch -> one TransactionBatch of its valid transactions, timestamped
    at the earliest of them, and its dead letters (one DeadLetter for a record, one
    DeadLetterBatch for a batch). Blank inputs are skipped and counted. Inputs before a
    ``resume`` offset are parsed for the state only: no dead letters, no counts as parsed."""

    def __init__(self, pipeline: str, step: str, resume: Optional[Resume],
                 decoder: Optional[Decoder] = None) -> None:
        self._pipeline = pipeline
        # The one-pass msgspec parse reads JSON only; any other format goes per record.
        self._decoder = None if decoder is None or decoder.format == "json" else decoder
        self._step = step
        self._resume = dict(resume or {})
        self._parsed = Metrics.counter(pipeline, "events_parsed")
        self._rejected = Metrics.counter(pipeline, "events_dead_lettered")
        self._blank = Metrics.counter(pipeline, "blank_lines_skipped")
        self._replayed = Metrics.counter(pipeline, "events_replayed")

    def _resume_at(self, origin: dict[str, Any]) -> Optional[int]:
        if not self._resume:
            return None
        return self._resume.get((origin.get("topic"), origin.get("partition")))  # type: ignore[arg-type]

    def process(self, element: RawRecord | RawBatch):
        if isinstance(element, RawBatch):
            yield from self._batch(element)
        else:
            yield from self._record(element)

    def _record(self, raw: RawRecord):
        if is_blank(raw.payload):
            self._blank.inc()
            return
        resume = self._resume_at(raw.origin)
        replay = resume is not None and raw.origin.get("offset", resume) < resume
        decided = parse_or_reject(parse_transaction, raw.payload, self._decoder)
        if isinstance(decided, InvalidRecord):
            if not replay:
                self._rejected.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetter.of(
                    self._pipeline, self._step, str(decided), raw.payload, raw.origin,
                    decided.code))
            return
        tx, second = decided
        (self._replayed if replay else self._parsed).inc()
        yield TimestampedValue(TransactionBatch([tx], [second], raw.origin, "", [None],
                                                1 if replay else 0), second)

    def _batch(self, raw: RawBatch):
        if self._decoder is not None:
            for record in raw.records():
                yield from self._record(record)
            return
        resume = self._resume_at(raw.origin)
        replay_before = 0 if resume is None else bisect.bisect_left(raw.positions, resume)
        parsed = parse_transaction_payloads(raw.payloads)
        rows = parsed.valid
        letters = []
        blank = 0
        for index, payload in parsed.handed_over:
            if is_blank(payload):
                blank += index >= replay_before
                continue
            decided = parse_or_reject(parse_transaction, payload)
            if not isinstance(decided, InvalidRecord):
                rows.append((index, decided[0], decided[1]))
            elif index >= replay_before:
                letters.append(DeadLetter.of(self._pipeline, self._step, str(decided), payload,
                                             raw.origin_of(index), decided.code))
        if parsed.handed_over:
            rows.sort(key=_first)
        replayed = bisect.bisect_left([index for index, _, _ in rows], replay_before)
        if blank:
            self._blank.inc(blank)
        if letters:
            self._rejected.inc(len(letters))
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetterBatch(letters))
        if replayed:
            self._replayed.inc(replayed)
        if len(rows) > replayed:
            self._parsed.inc(len(rows) - replayed)
        if rows:
            seconds = [second for _, _, second in rows]
            yield TimestampedValue(TransactionBatch(
                [tx for _, tx, _ in rows], seconds, raw.origin, raw.position_name,
                [raw.positions[index] for index, _, _ in rows], replayed), min(seconds))


def _first(row: tuple) -> Any:
    return row[0]


def _arrivals(batch: TransactionBatch):
    """A TransactionBatch as Arrivals (timestamped by event time), for the per-key stages."""
    for index, (tx, second) in enumerate(zip(batch.transactions, batch.seconds, strict=True)):
        arrival = Arrival(tx, arrival_position(batch.origin_of(index)), index < batch.replayed)
        yield TimestampedValue(arrival, second)


class _CountDecisions(beam.DoFn):
    """decisions.<verdict> and rules_fired.<name> counters, in a plain step (the
    bundle-based DirectRunner drops metrics of bundles that fire timers); a
    DecisionBatch leaves as its decisions, each timestamped by its event time."""

    def __init__(self, pipeline: str) -> None:
        self._pipeline = pipeline
        self._counters: dict[str, Any] = {}

    def _inc(self, name: str, by: int = 1) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = Metrics.counter(self._pipeline, name)
        counter.inc(by)

    def process(self, element: Decision | DecisionBatch):
        if isinstance(element, Decision):
            self._inc(f"decisions.{element.decision}")
            for name in element.rules:
                self._inc(f"rules_fired.{name}")
            yield element
            return
        verdicts: collections.Counter = collections.Counter()
        fired: collections.Counter = collections.Counter()
        for decision, second in zip(element.decisions, element.seconds, strict=True):
            verdicts[decision.decision] += 1
            if decision.rules:
                fired.update(decision.rules)
            yield TimestampedValue(decision, second)
        for verdict, count in verdicts.items():
            self._inc(f"decisions.{verdict}", count)
        for name, count in fired.items():
            self._inc(f"rules_fired.{name}", count)


# ---- the transform ----------------------------------------------------------------------

class DecideTransactions(beam.PTransform):
    """RawRecord / RawBatch -> :class:`FraudResult` (decisions, dead letters).

    :param rules: validated rules (:func:`transforms.fraud.rules.load_rules`).
    :param streaming: True: decide per key in arrival order with state and timers; False:
        group per key and decide in event-time order (ties in input order).
    :param state_ttl: seconds of event time a key's entries are kept (default 30 days); at
        least the longest velocity window.
    :param pipeline: the metrics namespace and the dead letters' ``pipeline``.
    :param single_process: streaming on a runner that runs the whole pipeline in this
        process and keeps state in memory (the local streaming runner, Beam's direct
        runner): one element per poll through a single stateful step holding every key's
        state (see the module docstring). Refused with ``streaming=False``.
    :param resume: ``{(topic, partition): offset}``: records before the offset only
        rebuild state (a restart's warm-up); None: every record is decided.
    :param decoder: how a payload becomes a dict (:class:`~transforms.formats.Decoder`:
        Avro, Protobuf, JSON Schema); default: a JSON object.
    """

    def __init__(self, rules: RuleSet, *, streaming: bool,
                 state_ttl: float | Decimal = DEFAULT_STATE_TTL, pipeline: str = PIPELINE,
                 single_process: bool = False, resume: Optional[Resume] = None,
                 decoder: Optional[Decoder] = None) -> None:
        super().__init__()
        if not isinstance(streaming, bool):
            raise ConfigError("streaming", "True or False", streaming)
        if single_process and not streaming:
            raise ConfigError("single_process", "False in batch (batch decides per key in "
                              "event-time order)", single_process)
        self._engine = Engine(rules, state_ttl)
        self._streaming = streaming
        self._pipeline = pipeline
        self._single_process = bool(single_process)
        self._resume = dict(resume or {})
        self._decoder = decoder

    def expand(self, raw: beam.PCollection) -> FraudResult:
        parsed = raw | "Parse" >> beam.ParDo(
            _ParseToBatches(self._pipeline, "parse", self._resume, self._decoder)
        ).with_outputs(DEAD_LETTERS, main=VALID)
        batches = parsed[VALID] | "GlobalWindow" >> beam.WindowInto(GlobalWindows())
        engine = self._engine
        if self._single_process:
            sweep = engine.state_ttl / _SWEEPS_PER_TTL
            decisions = (batches
                         | "KeyAll" >> beam.Map(lambda b: (_ALL, b)).with_output_types(Tuple[str, Any])
                         | "Decide" >> beam.ParDo(DecideBatches(engine, sweep)))
        else:
            decisions = self._per_key(batches | "Arrivals" >> beam.FlatMap(_arrivals))
        counted = decisions | "Count" >> beam.ParDo(_CountDecisions(self._pipeline))
        return FraudResult(counted, parsed[DEAD_LETTERS])

    def _per_key(self, arrivals):
        engine = self._engine
        key_fields = list(engine.keyed)
        if not key_fields:
            return (arrivals
                    | "OnlyDecided" >> beam.Filter(lambda a: not a.replay)
                    | "Decide" >> beam.Map(lambda a: engine.decide(a.tx, engine.stateless_fired(a.tx))))
        stages = len(key_fields)
        outputs = [self._stage(arrivals, field, Stage(engine, index, stages))
                   for index, field in enumerate(key_fields)]
        if stages == 1:
            return outputs[0]
        return self._merge(tuple(outputs) | "AllParts" >> beam.Flatten(), stages)

    def _stage(self, arrivals, key_field: str, stage: Stage):
        keyed = self._engine.keyed[key_field]
        label = f"By[{key_field}]"
        by_key = arrivals | f"{label}Key" >> beam.Map(
            lambda a, field=key_field: (getattr(a.tx, field), a)
        ).with_output_types(Tuple[str, Any])
        if self._streaming:
            return by_key | f"{label}Decide" >> beam.ParDo(DecideInArrivalOrder(keyed, stage))
        return (by_key
                | f"{label}Group" >> beam.GroupByKey()
                | f"{label}Decide" >> beam.ParDo(DecideInEventTimeOrder(keyed, stage)))

    def _merge(self, parts, stages: int):
        typed = parts | "PartsTyped" >> beam.Map(lambda kv: kv).with_output_types(Tuple[str, Any])
        if self._streaming:
            return typed | "Merge" >> beam.ParDo(MergeAsPartsArrive(self._engine, stages))
        return (typed
                | "MergeGroup" >> beam.GroupByKey()
                | "Merge" >> beam.ParDo(MergeGroup(self._engine, stages)))
