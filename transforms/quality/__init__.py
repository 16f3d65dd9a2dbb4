"""Data-quality rules per schema: each failing record is dead-lettered with the rule it broke.

Rules are small declarative objects::

    rules = [
        Required("DeviceId"),
        Range("Temperature", min=-50, max=150),
        Matches("DeviceId", r"device-\\d{3}"),
        MaxClockSkew("EventTime", seconds=300),       # not more than 5 min in the future
        UniqueWithinWindow("event_id", window_seconds=600),
    ]
    checked = parsed.valid | CheckQuality(rules, pipeline="iot_alerts", streaming=False)
    checked.valid, checked.dead_letters

or from a file with ``--quality_rules=rules.json`` (JSON, or YAML with pyyaml) and
``beam_pipelines.wiring.quality.apply_quality``::

    {"IoTReading": [
        {"rule": "required", "field": "DeviceId"},
        {"rule": "range", "field": "Temperature", "min": -50, "max": 150},
        {"rule": "one_of", "field": "DeviceId", "values": ["a", "b"]},
        {"rule": "matches", "field": "DeviceId", "pattern": "device-[0-9]+"},
        {"rule": "type", "field": "Humidity", "type": "number"},
        {"rule": "max_clock_skew", "field": "EventTime", "seconds": 300},
        {"rule": "unique_within_window", "id_field": "DeviceId", "window_seconds": 60,
         "name": "one_reading_per_minute"}]}

Semantics:

* Rules run in order; a record fails on the *first* rule it breaks, so each bad record is
  one dead letter (``reason`` "rule <name> failed: ...", ``reason_code`` = the rule's
  name) and one count in the Beam counter ``<pipeline>/quality_failed.<name>`` (plus the
  total ``quality_failed``).
* Only :class:`Required` checks presence: the other rules pass a record whose field is
  absent or null, as SQL constraints do, so each rule says one thing.
* :class:`UniqueWithinWindow` keeps the first record of each id in each event-time
  window (tumbling, ``window_seconds``) and dead-letters the others. In batch "first" is
  the earliest event time (ties: the smallest JSON form), found with a GroupByKey per
  (window, id), so reruns reject the same records. In streaming "first" is the first to
  arrive, tracked by a stateful DoFn keyed by id whose state for a window is dropped once
  the watermark passes the window end plus ``allowed_lateness``; a duplicate arriving
  after that is not detected (the windowed aggregate downstream dead-letters such
  too-late records anyway when it uses the same lateness).

The vectorized batch path (Arrow tables of records) applies the same rules with
:class:`CheckQualityTables`: the same valid records and dead letters, with the rules
evaluated on columns by pyarrow.compute (every rule but ``unique_within_window``, which
keeps such runs per record).

Modules: ``rules`` (the rules), ``transform`` (:class:`CheckQuality`), ``tables``
(:class:`CheckQualityTables`), ``config`` (rules from their declarative form). The flag is
``beam_pipelines.options.quality``; the file format is in docs/production.md.
"""

from transforms.quality.config import load_rules, rule_from_config
from transforms.quality.rules import (
    Matches,
    MaxClockSkew,
    OneOf,
    Range,
    Required,
    Rule,
    Type,
    UniqueWithinWindow,
    event_seconds,
    field_value,
)
from transforms.quality.tables import CheckQualityTables, check_table, vectorizable
from transforms.quality.transform import Checked, CheckQuality

__all__ = [
    "CheckQuality", "CheckQualityTables", "Checked", "Matches", "MaxClockSkew", "OneOf", "Range", "Required", "Rule",
    "Type", "UniqueWithinWindow", "check_table", "event_seconds", "field_value", "load_rules",
    "rule_from_config", "vectorizable",
]
