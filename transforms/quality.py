"""Data-quality rules per schema: each failing record is dead-lettered with the rule it broke.

Rules are small declarative objects (issue #7.3)::

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
:func:`apply_quality`::

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
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import time
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.errors import ConfigError
from transforms.records import DeadLetter

DEAD_LETTERS = "dead_letters"
VALID = "valid"
NO_ID = "no_id"
STEP = "quality"
_MISSING = object()
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def field_value(record: Any, field: str) -> Any:
    """The field of a NamedTuple or mapping record, or the _MISSING sentinel."""
    if isinstance(record, Mapping):
        return record.get(field, _MISSING)
    return getattr(record, field, _MISSING)


def _absent(value: Any) -> bool:
    return value is _MISSING or value is None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def record_json(record: Any) -> str:
    if hasattr(record, "_asdict"):
        record = record._asdict()
    return json.dumps(record, sort_keys=True, default=str, ensure_ascii=False)


# ---- the rules ------------------------------------------------------------------------

class Rule:
    """A check on one record. ``check`` returns None when it passes, else what is wrong."""

    kind = "rule"
    field: str

    def __init__(self, field: str, name: str | None) -> None:
        if not isinstance(field, str) or not field:
            raise ConfigError(f"{self.kind} rule", "a field name (a non-empty string)", field)
        if name is not None and (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name)):
            raise ConfigError(f"{self.kind} rule", "a name of letters, digits, _ . -", name)
        self.field = field
        self.name = name or f"{self.kind}.{field}"

    def check(self, record: Any) -> str | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class Required(Rule):
    """The field is present, not null and, for strings, not empty."""

    kind = "required"

    def __init__(self, field: str, *, name: str | None = None) -> None:
        super().__init__(field, name)

    def check(self, record):
        value = field_value(record, self.field)
        if value is _MISSING:
            return f"field '{self.field}' is missing"
        if value is None:
            return f"field '{self.field}' is null"
        if value == "":
            return f"field '{self.field}' is empty"
        return None


_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, (list, tuple)),
}


class Type(Rule):
    """The field has a JSON type: string, number, integer, boolean, object or array.

    Booleans are not numbers here (JSON ``true`` is not ``1``).
    """

    kind = "type"

    def __init__(self, field: str, type: str, *, name: str | None = None) -> None:
        super().__init__(field, name)
        if type not in _TYPES:
            raise ConfigError(f"rule {self.name}", f"a type among {'|'.join(_TYPES)}", type)
        self.type = type

    def check(self, record):
        value = field_value(record, self.field)
        if _absent(value) or _TYPES[self.type](value):
            return None
        return f"field '{self.field}' must be {self.type}, got {type(value).__name__} {value!r}"


class Range(Rule):
    """min <= value <= max (either bound optional; ``exclusive=True`` makes both strict)."""

    kind = "range"

    def __init__(self, field: str, *, min: float | None = None, max: float | None = None,
                 exclusive: bool = False, name: str | None = None) -> None:
        super().__init__(field, name)
        for bound, value in (("min", min), ("max", max)):
            if value is not None and (not _is_number(value) or not math.isfinite(value)):
                raise ConfigError(f"rule {self.name}", f"{bound} as a finite number", value)
        if min is None and max is None:
            raise ConfigError(f"rule {self.name}", "min, max or both")
        if min is not None and max is not None and min > max:
            raise ConfigError(f"rule {self.name}", f"min <= max, got min={min} max={max}")
        self.min, self.max, self.exclusive = min, max, exclusive

    def check(self, record):
        value = field_value(record, self.field)
        if _absent(value):
            return None
        if not _is_number(value):
            return f"field '{self.field}' must be a number, got {value!r}"
        low = self.min is not None and (value <= self.min if self.exclusive else value < self.min)
        high = self.max is not None and (value >= self.max if self.exclusive else value > self.max)
        if low or high:
            lo = "(" if self.exclusive else "["
            hi = ")" if self.exclusive else "]"
            span = f"{lo}{'-inf' if self.min is None else self.min}, " \
                   f"{'inf' if self.max is None else self.max}{hi}"
            return f"field '{self.field}' = {value!r} is outside {span}"
        return None


class OneOf(Rule):
    """The value is one of a fixed set (an enum)."""

    kind = "one_of"

    def __init__(self, field: str, values: Iterable[Any], *, name: str | None = None) -> None:
        super().__init__(field, name)
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ConfigError(f"rule {self.name}", "values as a list", values)
        self.values = list(values)
        if not self.values:
            raise ConfigError(f"rule {self.name}", "a non-empty list of values", self.values)

    def check(self, record):
        value = field_value(record, self.field)
        if _absent(value) or any(value == v and type(value) is type(v) or
                                 (_is_number(value) and _is_number(v) and value == v)
                                 for v in self.values):
            return None
        return f"field '{self.field}' = {value!r} is not one of {self.values!r}"


class Matches(Rule):
    """The value is a string matching a regular expression entirely."""

    kind = "matches"

    def __init__(self, field: str, pattern: str, *, name: str | None = None) -> None:
        super().__init__(field, name)
        try:
            self.regex = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"rule {self.name}", f"a valid regular expression ({exc})",
                              pattern) from None
        self.pattern = pattern

    def check(self, record):
        value = field_value(record, self.field)
        if _absent(value):
            return None
        if not isinstance(value, str):
            return f"field '{self.field}' must be a string matching {self.pattern!r}, got {value!r}"
        if not self.regex.fullmatch(value):
            return f"field '{self.field}' = {value!r} does not match {self.pattern!r}"
        return None


def event_seconds(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO-8601 string with an offset; None if neither."""
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        text = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
        try:
            moment = _dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.utcoffset() is None:
            return None
        return (moment - _EPOCH).total_seconds()
    return None


class MaxClockSkew(Rule):
    """Event time is at most ``seconds`` ahead of the processing clock (a device clock
    running fast); with ``max_past`` also at most that far behind it.

    ``max_past`` is off by default because a backfill legitimately reads old events.
    ``clock`` returns epoch seconds (``time.time``); tests pass a fixed one.
    """

    kind = "max_clock_skew"

    def __init__(self, field: str, seconds: float, *, max_past: float | None = None,
                 clock: Callable[[], float] = time.time, name: str | None = None) -> None:
        super().__init__(field, name)
        for what, value in (("seconds", seconds), ("max_past", max_past)):
            if value is not None and (not _is_number(value) or value < 0):
                raise ConfigError(f"rule {self.name}", f"{what} as a number of seconds >= 0", value)
        self.seconds, self.max_past, self.clock = seconds, max_past, clock

    def check(self, record):
        value = field_value(record, self.field)
        if _absent(value):
            return None
        when = event_seconds(value)
        if when is None:
            return f"field '{self.field}' = {value!r} is not an event time"
        skew = when - self.clock()
        if skew > self.seconds:
            return f"field '{self.field}' is {skew:.0f}s ahead of the clock (max {self.seconds}s)"
        if self.max_past is not None and -skew > self.max_past:
            return f"field '{self.field}' is {-skew:.0f}s behind the clock (max {self.max_past}s)"
        return None


class UniqueWithinWindow(Rule):
    """At most one record per ``id_field`` value per event-time window of ``window_seconds``."""

    kind = "unique_within_window"

    def __init__(self, id_field: str, window_seconds: int, *, name: str | None = None) -> None:
        super().__init__(id_field, name)
        if isinstance(window_seconds, bool) or not isinstance(window_seconds, int) or window_seconds <= 0:
            raise ConfigError(f"rule {self.name}", "window_seconds as a whole number > 0",
                              window_seconds)
        self.window_seconds = window_seconds

    def window_start(self, timestamp: float) -> int:
        return int(math.floor(timestamp / self.window_seconds)) * self.window_seconds

    def check(self, record):  # stateless part: nothing; duplicates need state
        return None


# ---- the transform ----------------------------------------------------------------------

def _dead_letter(pipeline: str, step: str, rule: Rule, detail: str, record: Any) -> DeadLetter:
    return DeadLetter.of(pipeline, step, f"rule {rule.name} failed: {detail}", record_json(record),
                         {"source": STEP, "rule": rule.name}, rule.name)


class _CountFailures(beam.DoFn):
    """Counts failures per rule in a plain DoFn after the checks: the bundle-based
    DirectRunner (TestStream) does not commit metrics of bundles that fire timers, so
    counting inside the stateful dedup DoFn would under-report."""

    def __init__(self, pipeline: str) -> None:
        self._pipeline = pipeline
        self._total = Metrics.counter(pipeline, "quality_failed")

    def process(self, letter: DeadLetter):
        self._total.inc()
        Metrics.counter(self._pipeline, f"quality_failed.{letter.reason_code}").inc()
        yield letter


class _CheckRules(beam.DoFn):
    def __init__(self, rules: Sequence[Rule], pipeline: str, step: str) -> None:
        self._rules = list(rules)
        self._pipeline = pipeline
        self._step = step

    def process(self, record):
        for rule in self._rules:
            detail = rule.check(record)
            if detail is not None:
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTERS, _dead_letter(self._pipeline, self._step, rule, detail, record))
                return
        yield record


def _duplicate_detail(rule: UniqueWithinWindow, record: Any, start: int) -> str:
    return (f"duplicate {rule.field} {field_value(record, rule.field)!r} in the "
            f"{rule.window_seconds}s window starting at {start}")


class _KeyById(beam.DoFn):
    """(id, record) in streaming, ("window|id", (time, record)) in batch; no id: passes."""

    def __init__(self, rule: UniqueWithinWindow, with_window: bool) -> None:
        self._rule = rule
        self._with_window = with_window

    def process(self, record, timestamp=beam.DoFn.TimestampParam):
        value = field_value(record, self._rule.field)
        if _absent(value):
            yield beam.pvalue.TaggedOutput(NO_ID, record)
            return
        key = json.dumps(value, sort_keys=True, default=str)
        if self._with_window:
            start = self._rule.window_start(float(timestamp))
            yield f"{start}|{key}", (float(timestamp), record)
        else:
            yield key, record


class _FirstOfGroup(beam.DoFn):
    """Batch: keep the earliest record of each (window, id); the rest are duplicates."""

    def __init__(self, rule: UniqueWithinWindow, pipeline: str, step: str) -> None:
        self._rule = rule
        self._pipeline = pipeline
        self._step = step

    def process(self, element):
        key, group = element
        start = int(key.split("|", 1)[0])
        ordered = sorted(group, key=lambda tr: (tr[0], record_json(tr[1])))
        first_ts, first = ordered[0]
        yield TimestampedValue(first, first_ts)
        for ts, record in ordered[1:]:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, TimestampedValue(_dead_letter(
                self._pipeline, self._step, self._rule,
                _duplicate_detail(self._rule, record, start), record), ts))


class _FirstToArrive(beam.DoFn):
    """Streaming: per id, the window starts already seen; cleared by a watermark timer."""

    SEEN = ReadModifyWriteStateSpec("seen_windows", coders.PickleCoder())
    CLEANUP = TimerSpec("cleanup", TimeDomain.WATERMARK)

    def __init__(self, rule: UniqueWithinWindow, pipeline: str, step: str,
                 allowed_lateness: int) -> None:
        self._rule = rule
        self._pipeline = pipeline
        self._step = step
        self._lateness = allowed_lateness

    def _expiry(self, start: int) -> Timestamp:
        return Timestamp(start + self._rule.window_seconds + self._lateness)

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                seen_state=beam.DoFn.StateParam(SEEN), cleanup=beam.DoFn.TimerParam(CLEANUP)):
        _, record = element
        start = self._rule.window_start(float(timestamp))
        seen: set[int] = seen_state.read() or set()
        if start in seen:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, _dead_letter(
                self._pipeline, self._step, self._rule,
                _duplicate_detail(self._rule, record, start), record))
            return
        seen.add(start)
        seen_state.write(seen)
        cleanup.set(self._expiry(min(seen)))
        yield record

    @on_timer(CLEANUP)
    def on_cleanup(self, fire_time=beam.DoFn.TimestampParam,
                   seen_state=beam.DoFn.StateParam(SEEN), cleanup=beam.DoFn.TimerParam(CLEANUP)):
        seen = {s for s in (seen_state.read() or set()) if self._expiry(s) > fire_time}
        if seen:
            seen_state.write(seen)
            cleanup.set(self._expiry(min(seen)))
        else:
            seen_state.clear()


class Checked(NamedTuple):
    valid: beam.PCollection
    dead_letters: beam.PCollection


class CheckQuality(beam.PTransform):
    """Records (timestamped by event time) -> ``.valid`` and ``.dead_letters``.

    ``streaming`` picks how :class:`UniqueWithinWindow` finds duplicates (see the module
    docstring); ``allowed_lateness`` is how long, in streaming, a window's ids are kept
    after the watermark passes the window end.
    """

    def __init__(self, rules: Sequence[Rule], *, pipeline: str, streaming: bool = False,
                 allowed_lateness: int = 0, step: str = STEP) -> None:
        super().__init__()
        rules = list(rules)
        bad = [r for r in rules if not isinstance(r, Rule)]
        if bad:
            raise ConfigError("rules", "Rule instances (Required, Range, ...)", bad[0])
        names = [r.name for r in rules]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError("rules", "unique rule names (pass name= to tell them apart)",
                              duplicated[0])
        if not isinstance(allowed_lateness, int) or allowed_lateness < 0:
            raise ConfigError("allowed_lateness", "a whole number of seconds >= 0", allowed_lateness)
        self._stateless = [r for r in rules if not isinstance(r, UniqueWithinWindow)]
        self._unique = [r for r in rules if isinstance(r, UniqueWithinWindow)]
        self._pipeline = pipeline
        self._streaming = streaming
        self._lateness = allowed_lateness
        self._step = step

    def expand(self, records) -> Checked:
        dead = []
        valid = records
        if self._stateless:
            checked = valid | "CheckRules" >> beam.ParDo(
                _CheckRules(self._stateless, self._pipeline, self._step)
            ).with_outputs(DEAD_LETTERS, main=VALID)
            valid = checked[VALID]
            dead.append(checked[DEAD_LETTERS])
        for rule in self._unique:
            valid, duplicates = self._dedupe(valid, rule)
            dead.append(duplicates)
        if not dead:  # no rules: a composite must not return its own input
            valid = records | "NoRules" >> beam.Map(lambda r: r)
            dead.append(records | "NoFailures" >> beam.FlatMap(lambda _: ()))
        failures = dead[0] if len(dead) == 1 else tuple(dead) | "AllFailures" >> beam.Flatten()
        return Checked(valid, failures | "CountFailures" >> beam.ParDo(_CountFailures(self._pipeline)))

    def _dedupe(self, records, rule: UniqueWithinWindow):
        label = f"Unique[{rule.name}]"
        keyed = records | f"{label}Key" >> beam.ParDo(
            _KeyById(rule, with_window=not self._streaming)
        ).with_output_types(Tuple[str, Any]).with_outputs(NO_ID, main="keyed")
        if self._streaming:
            checked = keyed["keyed"] | f"{label}FirstToArrive" >> beam.ParDo(
                _FirstToArrive(rule, self._pipeline, self._step, self._lateness)
            ).with_input_types(Tuple[str, Any]).with_outputs(DEAD_LETTERS, main=VALID)
        else:
            checked = (
                keyed["keyed"]
                | f"{label}Group" >> beam.GroupByKey()
                | f"{label}First" >> beam.ParDo(
                    _FirstOfGroup(rule, self._pipeline, self._step)
                ).with_outputs(DEAD_LETTERS, main=VALID)
            )
        valid = (checked[VALID], keyed[NO_ID]) | f"{label}Valid" >> beam.Flatten()
        return valid, checked[DEAD_LETTERS]


# ---- declarative rules: --quality_rules ---------------------------------------------------

class QualityOptions(PipelineOptions):
    """Data-quality rules applied to parsed records before aggregation."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--quality_rules",
            default=None,
            help="A JSON (or YAML) file of data-quality rules per schema, e.g. "
            '{"IoTReading": [{"rule": "range", "field": "Temperature", "min": -50, '
            '"max": 150}]}; rules: required, type, range, one_of, matches, max_clock_skew, '
            "unique_within_window. Failing records are dead-lettered with the rule's name.",
        )


_RULES: dict[str, tuple[type[Rule], tuple[str, ...], tuple[str, ...]]] = {
    # kind: (class, required keys, optional keys)
    "required": (Required, ("field",), ()),
    "type": (Type, ("field", "type"), ()),
    "range": (Range, ("field",), ("min", "max", "exclusive")),
    "one_of": (OneOf, ("field", "values"), ()),
    "matches": (Matches, ("field", "pattern"), ()),
    "max_clock_skew": (MaxClockSkew, ("field", "seconds"), ("max_past",)),
    "unique_within_window": (UniqueWithinWindow, ("id_field", "window_seconds"), ()),
}
FLAG = "--quality_rules"
# The schema each pipeline checks when the rules file is keyed by schema.
PIPELINE_SCHEMAS = {"pageviews": "UserEvent", "iot_alerts": "IoTReading"}


def rule_from_config(entry: Any, fields: Sequence[str] | None = None) -> Rule:
    """One rule from its declarative form, e.g. {"rule": "required", "field": "page"}."""
    if not isinstance(entry, Mapping) or "rule" not in entry:
        raise ConfigError.from_message(
            f"{FLAG}: each rule must be an object with a 'rule' key, got {entry!r}")
    kind = entry["rule"]
    if kind not in _RULES:
        raise ConfigError.from_message(
            f"{FLAG}: unknown rule {kind!r}; expected one of {'|'.join(_RULES)}")
    cls, required, optional = _RULES[kind]
    missing = [k for k in required if k not in entry]
    unknown = sorted(set(entry) - {"rule", "name", *required, *optional})
    if missing or unknown:
        what = f"missing {missing}" if missing else f"unknown keys {unknown}"
        raise ConfigError.from_message(
            f"{FLAG}: rule {kind}: {what} (it takes {list(required) + list(optional) + ['name']})")
    field = entry[required[0]]
    if fields is not None and field not in fields:
        raise ConfigError.from_message(
            f"{FLAG}: rule {kind}: {field!r} is not a field of the records (fields: {', '.join(fields)})")
    args = {k: entry[k] for k in (*required[1:], *optional) if k in entry}
    try:
        return cls(field, **args, name=entry.get("name"))
    except ConfigError as exc:
        raise ConfigError.from_message(f"{FLAG}: {exc}") from None


def load_rules(source: str | Mapping | Sequence, *, schema: str | None = None,
               fields: Sequence[str] | None = None) -> list[Rule]:
    """Rules from a file path (JSON, or YAML with pyyaml) or an already-loaded document.

    The document is a list of rules, or a mapping of schema name -> list of rules (then
    ``schema`` picks the list; a schema with no entry gets no rules).
    """
    document: Any = source
    if isinstance(source, str):
        document = read_document(source)
    if isinstance(document, Mapping):
        from beam_pipelines.schemas import SCHEMAS

        unknown = sorted(set(document) - set(SCHEMAS))
        if unknown:
            raise ConfigError.from_message(
                f"{FLAG}: {unknown[0]!r} is not a schema; expected keys among {'|'.join(SCHEMAS)}")
        if schema is None:
            raise ConfigError.from_message(f"{FLAG}: rules keyed by schema, but no schema given")
        document = document.get(schema, [])
    if isinstance(document, (str, bytes)) or not isinstance(document, Sequence):
        raise ConfigError.from_message(
            f"{FLAG}: expected a list of rules or an object of schema -> list of rules")
    return [rule_from_config(entry, fields) for entry in document]


def read_document(path: str, *, flag: str = FLAG, exact: bool = False) -> Any:
    """A JSON or YAML (``.yaml`` / ``.yml``, needs pyyaml) document from a local or Beam
    filesystem path; every failure is one ConfigError line starting with ``flag``.

    ``exact`` reads JSON decimals as ``Decimal`` and refuses NaN and Infinity, for
    documents whose numbers are compared exactly (the fraud rules).
    """
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as handle:
            text = handle.read().decode("utf-8-sig")
    except Exception as exc:  # Beam wraps every filesystem error in its own types
        raise ConfigError.from_message(f"{flag}: cannot read {path!r}: {exc}") from None
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ConfigError.from_message(
                f"{flag}: {path} is YAML, which needs pyyaml (pip install pyyaml); "
                "or write the rules as JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError.from_message(
                f"{flag}: {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        if exact:
            return json.loads(text, parse_float=Decimal, parse_constant=_not_a_number)
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError.from_message(f"{flag}: {path} is not valid JSON: {exc}") from None


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a number this file may use")


def rules_for(options: PipelineOptions, pipeline: str, schema: str | None = None) -> list[Rule]:
    """The rules ``--quality_rules`` configures for ``pipeline`` (empty when unset)."""
    path = options.view_as(QualityOptions).quality_rules
    if not path:
        return []
    schema = schema or PIPELINE_SCHEMAS.get(pipeline)
    fields = None
    if schema:
        from beam_pipelines.schemas import field_names

        fields = field_names(schema)
    return load_rules(path, schema=schema, fields=fields)


def apply_quality(parsed_valid, options: PipelineOptions, pipeline: str, *,
                  schema: str | None = None, label: str = "Quality") -> Checked:
    """Apply ``--quality_rules`` to a pipeline's parsed records: ``(valid, dead_letters)``.

    Without the flag the records pass through unchanged (and ``dead_letters`` is empty),
    so a pipeline can call this unconditionally. ``schema`` picks the rules of a file
    keyed by schema (default: the pipeline's input schema, see PIPELINE_SCHEMAS).
    """
    rules = rules_for(options, pipeline, schema)
    if not rules:
        return Checked(parsed_valid,
                       parsed_valid | f"{label}NotConfigured" >> beam.FlatMap(lambda _: ()))
    from beam_pipelines.options import WindowOptions

    streaming = bool(options.view_as(StandardOptions).streaming)
    lateness = options.view_as(WindowOptions).allowed_lateness or 0
    return parsed_valid | label >> CheckQuality(
        rules, pipeline=pipeline, streaming=streaming, allowed_lateness=lateness)
