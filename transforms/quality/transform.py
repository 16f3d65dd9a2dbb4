"""``CheckQuality``: records -> ``.valid`` and ``.dead_letters`` (one per failing record)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple, Sequence, Tuple

import apache_beam as beam
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.base.errors import ConfigError
from transforms.quality.rules import MISSING, Rule, UniqueWithinWindow, field_value, record_json
from transforms.records import DeadLetter

__all__ = ["CheckQuality", "Checked", "validated"]

DEAD_LETTERS = "dead_letters"
VALID = "valid"
NO_ID = "no_id"
STEP = "quality"


def _absent(value: Any) -> bool:
    return value is MISSING or value is None


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


def validated(rules: Sequence[Rule]) -> list[Rule]:
    """``rules`` as a list, refused unless they are Rule instances with unique names."""
    rules = list(rules)
    bad = [r for r in rules if not isinstance(r, Rule)]
    if bad:
        raise ConfigError("rules", "Rule instances (Required, Range, ...)", bad[0])
    names = [r.name for r in rules]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError("rules", "unique rule names (pass name= to tell them apart)",
                          duplicated[0])
    return rules


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
        rules = validated(rules)
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
