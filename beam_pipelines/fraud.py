"""Fraud rules engine: allow, review or block for every card transaction; stream or batch.

The job people write with Flink or Kafka Streams: transactions arrive on a topic, rules
decide each one from the transaction and the card's recent history, and the decision is
out before the payment completes. Written once, on the pipeline skeleton::

    python -m beam_pipelines.fraud --rules=docs/examples/fraud/rules.json      # synthetic
    python -m beam_pipelines.fraud --rules=rules.json --source=file --input=tx.jsonl \\
        --sink=jsonl --output=decisions/ --dead_letter=rejected/          # a backfill
    python -m beam_pipelines.fraud --rules=rules.json --source=kafka --topic=transactions \\
        --consumer_group=fraud --start_at=committed --sink=kafka --output=decisions

``--rules`` is the rules file (docs/fraud.md: kinds, exact semantics, mistakes), checked
completely before anything runs. Each valid transaction gets one Decision (``tx_id``,
``card_id``, ``decision``, ``rules``, ``timestamp``, ``decided_at``); each invalid one a
dead letter. In batch each card's transactions are decided in event-time order; in
streaming in arrival order per card, which is the same when the topic is keyed by card.

On the local streaming runner a Kafka poll stays one element from the read to the
decisions (parsed in one pass, decided in one call against one map of every card's
state); on Flink or Dataflow the decide step is keyed per card. A restart from
``--start_at=committed`` first replays ``--warmup`` seconds of the topic before the
committed offsets to rebuild the cards' state, so its decisions equal an uninterrupted
run's (:mod:`transforms.fraud.replay`).
"""

from __future__ import annotations

import sys
import weakref
from decimal import Decimal
from typing import Any, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import PipelineResult

from beam_pipelines import options as opts
from beam_pipelines.metrics import fresh_metrics, read_snapshot
from beam_pipelines.options import applies
from beam_pipelines.options.kafka import KafkaOptions
from beam_pipelines.options.quality import QualityOptions
from beam_pipelines.skeleton import (
    Alerts,
    Context,
    Core,
    Inputs,
    Pipeline,
    ResultSpec,
    read_records,
)
from beam_pipelines.wiring import kafka as kafka_wiring
from beam_pipelines.wiring.source_spec import SourceSpec
from runners.presets import LOCAL_STREAMING
from transforms.base.errors import ConfigError
from transforms.contracts import TRANSACTIONS
from transforms.fraud import DEFAULT_STATE_TTL, DecideTransactions, Decision, Engine, load_rules
from transforms.fraud.kafka_blocklist import register_kafka_blocklists
from transforms.fraud.records import BLOCK, DECISIONS, REVIEW
from transforms.fraud.replay import ReplayPlan, plan_replay
from transforms.fraud.rules import RuleSet
from transforms.io.kafka.rules import is_topic_name
from transforms.sinks.notifications import message_fields

__all__ = ["DESCRIPTION", "FRAUD", "Fraud", "FraudOptions", "PIPELINE", "RESULTS", "main",
           "route_decisions", "run"]

PIPELINE = "fraud"
DESCRIPTION = (__doc__ or "").splitlines()[0]
# Log time replayed on a restart beyond the TTL: how late a transaction may reach the topic
# after its event time (clock skew, retries, batching producers) for the restart to be exact.
WARMUP_SLACK = 600
ROUTED = (BLOCK, REVIEW)
_LOCAL_STREAMING_NAMES = (LOCAL_STREAMING, "LocalStreamingRunner")


def route_decisions(text: str) -> dict[str, str]:
    """``block=TOPIC[,review=TOPIC]`` -> {verdict: topic}."""
    routes: dict[str, str] = {}
    for part in text.split(","):
        verdict, sep, topic = part.strip().partition("=")
        verdict, topic = verdict.strip(), topic.strip()
        if not sep or verdict not in ROUTED or verdict in routes or not is_topic_name(topic):
            raise ValueError(f"expected block=TOPIC and/or review=TOPIC, comma-separated, got {text!r}")
        routes[verdict] = topic
    return routes


class FraudOptions(PipelineOptions):
    """fraud flags: the rules, the state's TTL, a restart's warm-up, routing by verdict."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--rules", default=None,
            help="The rules file (JSON, or YAML with .yaml/.yml): a list of named rules of the "
            "kinds threshold, velocity, amount_spike, geo_velocity and blocklist, each with an "
            "action (review or block). Required; see docs/fraud.md and "
            "docs/examples/fraud/rules.json.",
        )
        parser.add_argument(
            "--state_ttl", type=opts.positive_seconds, default=float(DEFAULT_STATE_TTL),
            help="Seconds of event time a card's history is kept (amount_spike history, "
            "geo_velocity's previous transaction); at least the longest velocity window. "
            "Default 2592000 (30 days).",
        )
        parser.add_argument(
            "--warmup", type=opts.seconds(0), default=None,
            help="Kafka with --start_at=committed: seconds of log time read again before the "
            "committed offsets to rebuild the cards' state (those transactions are not decided "
            "again), so a restart decides as an uninterrupted run would. 0: no warm-up "
            "(decisions right after a restart miss the earlier history). Default: "
            "--state_ttl + 600.",
        )
        parser.add_argument(
            "--route_decisions", type=opts.from_rule(route_decisions), default=None,
            help="Also send block and/or review decisions to topics of their own "
            "(block=TOPIC,review=TOPIC), keyed by tx_id, on the --bootstrap_servers cluster; "
            "--sink still gets every decision.",
        )


RESULTS = ResultSpec.of(
    Decision,
    name=PIPELINE,
    key=["tx_id"],  # PostgreSQL upserts on it: a replayed decision replaces its twin
    sort_by=["timestamp", "tx_id"],
    title="fraud decisions",
    table="fraud_decisions",
    message_key="tx_id",
)

# The restart plan of each pipeline being built (read() computes it, core() uses it).
_PLANS: weakref.WeakKeyDictionary[beam.Pipeline, ReplayPlan] = weakref.WeakKeyDictionary()
# read() -> core(): the source's decoder (--format), for DecideTransactions' parse step.
_DECODERS: weakref.WeakKeyDictionary[beam.Pipeline, Any] = weakref.WeakKeyDictionary()


def _flags(options: PipelineOptions) -> FraudOptions:
    return options.view_as(FraudOptions)


def rules_of(options: PipelineOptions) -> RuleSet:
    """``--rules``, loaded and checked (one line naming the rule and field at fault);
    ``"list": "kafka://TOPIC"`` blocklists follow TOPIC on the ``--bootstrap_servers``
    cluster."""
    path = _flags(options).rules
    if not path:
        raise ConfigError("--rules", "the rules file (JSON or YAML), e.g. "
                          "--rules=docs/examples/fraud/rules.json")
    register_kafka_blocklists(kafka_wiring.config_from_options(options))
    return load_rules(path)


def state_ttl(options: PipelineOptions) -> Decimal:
    return Decimal(repr(_flags(options).state_ttl))


def single_process(options: PipelineOptions, streaming: bool) -> bool:
    """Whether this run decides a poll in one call against one map of every card's state:
    streaming on the local streaming runner, which keeps state in this process's memory."""
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__
    return streaming and name in _LOCAL_STREAMING_NAMES


def replay_plan(options: PipelineOptions) -> Optional[ReplayPlan]:
    """The restart's warm-up: for ``--source=kafka --start_at=committed`` with a
    ``--consumer_group``, unless ``--warmup=0``."""
    io = options.view_as(opts.IOOptions)
    k = options.view_as(KafkaOptions)
    flags = _flags(options)
    warmup = flags.warmup if flags.warmup is not None else flags.state_ttl + WARMUP_SLACK
    if io.source != "kafka" or k.start_at != "committed" or not k.consumer_group or not warmup:
        return None
    config = kafka_wiring.config_from_options(options)
    topics = [t for value in k.topic or [] for t in value.split(",") if t.strip()]
    return plan_replay(config, [t.strip() for t in topics], k.consumer_group, warmup)


class Fraud(Pipeline):
    """The fraud rules engine (see the module docstring)."""

    name = PIPELINE
    description = DESCRIPTION
    contract = TRANSACTIONS
    results = RESULTS
    flags = (FraudOptions,)
    # A "kafka://TOPIC" blocklist in --rules and --route_decisions use the Kafka cluster
    # whatever the source and sink: its client flags always apply.
    flag_rules = {flag: None for flag in applies.KAFKA_CLIENT}

    def check(self, options: PipelineOptions) -> None:
        rules = rules_of(options)
        try:
            Engine(rules, state_ttl(options))
        except ConfigError as exc:
            raise ConfigError("--state_ttl", exc.expected, exc.got) from None
        if options.view_as(QualityOptions).quality_rules:
            raise ConfigError.from_message(
                "--quality_rules: the fraud pipeline does not take data-quality rules; write "
                "the check as a fraud rule (a threshold rule with action review) in --rules")

    def read(self, pipeline: beam.Pipeline, source: SourceSpec, ctx: Context) -> Inputs:
        """Raw records, or on a stream from Kafka one RawBatch per poll; a restart from
        committed offsets starts the read earlier (the warm-up, see replay_plan)."""
        plan = replay_plan(ctx.options)
        if plan is not None:
            _PLANS[pipeline] = plan
            source = kafka_wiring.source_from_options(ctx.options, start_at=plan.starts)
        if ctx.streaming and source.batches is not None:
            source = source._replace(transform=source.batches)
        _DECODERS[pipeline] = source.decoder
        raw, rejected = read_records(pipeline, source)
        return Inputs(raw, rejected, form="raw")

    def core(self, inputs: Inputs, ctx: Context) -> Core:
        plan = _PLANS.get(inputs.records.pipeline)
        result = inputs.records | "Decide" >> DecideTransactions(
            rules_of(ctx.options), streaming=ctx.streaming, state_ttl=state_ttl(ctx.options),
            pipeline=PIPELINE, single_process=single_process(ctx.options, ctx.streaming),
            resume=plan.resume if plan is not None else None,
            decoder=_DECODERS.get(inputs.records.pipeline))
        routes = _flags(ctx.options).route_decisions or {}
        outputs = None
        if routes:
            split = result.decisions | "ByVerdict" >> beam.ParDo(_ByVerdict()).with_outputs(*routes)
            outputs = {verdict: split[verdict] for verdict in routes}
        return Core(result.decisions, dead_letters=[result.dead_letters], outputs=outputs)

    def write(self, core: Core, ctx: Context) -> list:
        """``--route_decisions``: block / review decisions to their own topics."""
        routes = _flags(ctx.options).route_decisions or {}
        refused = []
        for verdict, topic in routes.items():
            assert core.outputs is not None  # core() made one output per route
            written = core.outputs[verdict] | f"Route[{verdict}]" >> kafka_wiring.topic_writer(
                ctx.options, topic, pipeline=PIPELINE, key_field="tx_id",
                step="route_decisions", flag="--route_decisions")
            refused.append(written.dead_letters)  # decisions are in the global window
        return refused

    def alerts(self, core: Core, ctx: Context) -> Alerts:
        """Review and block decisions, one notification each (``--notify=pagerduty``
        beside ``--sink=kafka``, say). Decisions are not windows: no incidents."""
        flagged = core.results | "FlaggedDecisions" >> beam.Filter(_is_routed)
        message = message_fields(
            what="Transaction {tx_id} on card {card_id}: {decision} (rules: {rules})",
            where="card_id", severity=_severity)
        return Alerts(flagged, message)

    def finish(self, result: PipelineResult, options: PipelineOptions) -> None:
        """One line: how many decisions of each kind, and the rules that fired most."""
        try:
            fresh_metrics(result)
            counters = read_snapshot(result).counters
        except Exception:  # a runner without a metrics API (Dask): the summary said so
            return
        verdicts = {d: counters.get((PIPELINE, f"decisions.{d}"), 0) for d in DECISIONS}
        fired = sorted(((count, name.split(".", 1)[1]) for (ns, name), count in counters.items()
                        if ns == PIPELINE and name.startswith("rules_fired.") and count),
                       reverse=True)
        line = (f"{PIPELINE}: {sum(verdicts.values())} decisions: "
                + ", ".join(f"{count} {verdict}" for verdict, count in verdicts.items()))
        if fired:
            line += "; rules fired: " + ", ".join(f"{name} {count}" for count, name in fired)
        replayed = counters.get((PIPELINE, "events_replayed"), 0)
        if replayed:
            line += f"; {replayed} transactions replayed to rebuild the cards' state"
        print(line, file=sys.stderr, flush=True)


def _is_routed(decision: Decision) -> bool:
    return decision.decision in ROUTED


def _severity(decision: Decision) -> str:
    return "critical" if decision.decision == BLOCK else "warning"


class _ByVerdict(beam.DoFn):
    def process(self, decision: Decision):
        if decision.decision in ROUTED:
            yield beam.pvalue.TaggedOutput(decision.decision, decision)


FRAUD = Fraud()
run = FRAUD.run
main = FRAUD.main


if __name__ == "__main__":
    raise SystemExit(main())
