"""Flags that do nothing in the chosen mode are an error naming the flag.

Every pipeline accepts every connector's flags (one parser knows them all), so
``--topic=clicks`` without ``--source=kafka`` used to be read by nobody: the run counted
synthetic events and exited 0. :func:`check` refuses a flag given on the command line
that the run's source, sink and dead-letter target do not use, in one line::

    --topic: only used with --source=kafka (this run: --source=synthetic)

``--input`` is the one flag that chooses a mode itself: given without ``--source`` it
means ``--source=file`` (there is nothing else it could mean, and the README's backfills
read better without the extra flag); given with another ``--source`` it is refused like
any other flag. :func:`implied_source` makes that decision.

A rule says when a flag applies (:class:`Rule`); :data:`RULES` holds the defaults and a
pipeline with its own needs overrides some with ``Pipeline.flag_rules`` (fraud reads a
``kafka://`` blocklist on ``--bootstrap_servers`` whatever its source;
train_recommender writes its model to ``--output`` with the console sink). Format flags
(``--format``, ``--sink_format`` ...) and notification flags are checked where they are
wired (``wiring/formats.py``, ``wiring/notifications.py``).
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, NamedTuple, Optional, Sequence, Type

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from beam_pipelines.options import IOOptions
from transforms.base.errors import ConfigError

__all__ = ["ALWAYS", "KAFKA_CLIENT", "Mode", "RULES", "Rule", "check", "given_flags", "implied_source", "mode_of"]


class Mode(NamedTuple):
    """What a run reads from and writes to: the facts a rule decides on."""

    source: str
    sink: str
    dead_letter: str  # the --dead_letter scheme: "kafka", "pubsub", "dir" or "" (none)
    given: frozenset[str]  # the flags on the command line, without "--"

    def uses(self, connector: str) -> bool:
        """Whether the source, the sink or the dead-letter target is ``connector``."""
        return connector in (self.source, self.sink, self.dead_letter)

    def describe(self) -> str:
        return f"--source={self.source}, --sink={self.sink}"


class Rule(NamedTuple):
    """When a flag applies, and how to say so: ``needs`` completes "only used with ..."."""

    applies: Callable[[Mode], bool]
    needs: str


def _source(*names: str) -> Rule:
    return Rule(lambda m: m.source in names, " or ".join(f"--source={n}" for n in names))


def _sink(*names: str) -> Rule:
    return Rule(lambda m: m.sink in names, " or ".join(f"--sink={n}" for n in names))


def _uses(connector: str, dead_letter: bool = True) -> Rule:
    target = f" or --dead_letter={connector}://..." if dead_letter else ""
    return Rule(lambda m: m.uses(connector),
                f"--source={connector} or --sink={connector}{target}")


def _given(*flags: str) -> Rule:
    return Rule(lambda m: any(f in m.given for f in flags), " or ".join(f"--{f}" for f in flags))


# A rule that always holds: for a pipeline's override (flag_rules = {"output": ALWAYS}).
ALWAYS = Rule(lambda m: True, "")

_KAFKA_SOURCE = ("topic", "consumer_group", "start_at", "stop_at", "max_records",
                 "max_read_time", "timestamp_policy", "idle_timeout", "kafka_discovery_interval")
KAFKA_CLIENT = ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username",
                 "sasl_password", "ssl_cafile", "kafka_config", "isolation_level")
_PUBSUB_SOURCE = ("subscription", "pubsub_topic", "timestamp_attribute", "id_attribute",
                  "pubsub_max_messages", "pubsub_max_seconds", "pubsub_readers",
                  "pubsub_ack_deadline")
_EVENTHUBS_SOURCE = ("eventhubs_consumer_group", "eventhubs_start_at", "eventhubs_stop_at",
                     "eventhubs_max_events", "eventhubs_owner_level",
                     "eventhubs_checkpoint_store", "eventhubs_checkpoint_container",
                     "eventhubs_event_time_field", "eventhubs_idle_timeout")
_ICEBERG = ("iceberg_catalog", "iceberg_catalog_properties", "iceberg_warehouse",
            "iceberg_catalog_name", "iceberg_partition_by")
_SYNTHETIC = ("synthetic_events", "synthetic_seed", "synthetic_rate", "synthetic_malformed")

# flag (without "--") -> when it applies. Flags not listed always apply.
RULES: dict[str, Rule] = {
    "input": _source("file"),
    # --output names the directory, DSN, table, topic, hub or URL of every sink but console.
    "output": Rule(lambda m: m.sink != "console", "a --sink other than console"),
    "output_table": _sink("postgres"),
    "sink_retry_seconds": _sink("postgres"),
    **{flag: _source("synthetic") for flag in _SYNTHETIC},
    **{flag: _source("kafka") for flag in _KAFKA_SOURCE},
    **{flag: _uses("kafka") for flag in KAFKA_CLIENT},
    "delivery": _sink("kafka"),
    "transactional_id": _sink("kafka"),
    **{flag: _source("pubsub") for flag in _PUBSUB_SOURCE},
    "pubsub_emulator_host": _uses("pubsub"),
    "pubsub_ordering_key": _sink("pubsub"),
    "pubsub_attribute_fields": _sink("pubsub"),
    **{flag: _source("eventhubs") for flag in _EVENTHUBS_SOURCE},
    "eventhubs_connection_string": _uses("eventhubs", dead_letter=False),
    "eventhub": _uses("eventhubs", dead_letter=False),
    "eventhubs_partition_key_field": _sink("eventhubs"),
    **{flag: _sink("iceberg") for flag in _ICEBERG},
    "batch_engine": _source("file", "kafka"),
    "metrics_address": _given("metrics_port"),
    "metrics_linger": _given("metrics_port"),
    "metrics_poll_interval": _given("metrics_port", "pushgateway"),
}


def given_flags(options: PipelineOptions) -> list[str]:
    """The flags on the command line (``--name`` or ``--name=value``), without "--", in
    order. Beam keeps the argv it was made from in ``_flags``."""
    names = []
    for token in getattr(options, "_flags", None) or []:
        if isinstance(token, str) and token.startswith("--") and len(token) > 2:
            name = token[2:].split("=", 1)[0]
            if name not in names:
                names.append(name)
    return names


def implied_source(options: PipelineOptions) -> None:
    """``--input`` without ``--source`` means ``--source=file`` (see the module docstring)."""
    io = options.view_as(IOOptions)
    if io.input and io.source is None:
        io.source = "file"


def mode_of(options: PipelineOptions, *, default_source: str) -> Mode:
    io = options.view_as(IOOptions)
    target = io.dead_letter or ""
    scheme = target.split("://", 1)[0] if "://" in target else ("dir" if target else "")
    return Mode(io.source or default_source, io.sink or "console", scheme,
                frozenset(given_flags(options)))


def _class_flags(classes: Iterable[Type[PipelineOptions]]) -> set[str]:
    """The flags (dests) the option classes declare."""
    # Beam's own parser class: _add_argparse_args is typed for it (and may rely on it).
    parser = _BeamArgumentParser(add_help=False, conflict_handler="resolve")
    for cls in classes:
        cls._add_argparse_args(parser)
    return {action.dest for action in parser._actions}


def check(options: PipelineOptions, *, default_source: str, pipeline: str,
          own_classes: Sequence[Type[PipelineOptions]] = (),
          other_classes: Sequence[Type[PipelineOptions]] = (),
          extra_rules: Optional[Mapping[str, Optional[Rule]]] = None) -> None:
    """Refuse, naming it, the first flag given on the command line that this run does not
    use: a connector flag its source/sink/dead-letter target do not use (:data:`RULES`,
    overridden by ``extra_rules``; a None rule always applies), or a flag of another
    pipeline (``other_classes`` minus ``own_classes``)."""
    mode = mode_of(options, default_source=default_source)
    rules = {**RULES, **(extra_rules or {})}
    foreign = _class_flags(other_classes) - _class_flags(own_classes) if other_classes else set()
    for flag in sorted(mode.given, key=given_flags(options).index):
        if flag in foreign:
            raise ConfigError.from_message(
                f"--{flag}: not a flag of {pipeline} (see --help for the flags it takes)")
        rule = rules.get(flag)
        if rule is None or rule.applies(mode):
            continue
        raise ConfigError.from_message(
            f"--{flag}: only used with {rule.needs} (this run: {mode.describe()})")
