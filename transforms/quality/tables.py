"""Data-quality rules on Arrow tables: the vectorized batch path's ``--quality_rules``.

:class:`CheckQualityTables` takes the tables of valid records the vectorized parse makes
(one row per record, one column per field) and gives the same valid records and the same
dead letters as :class:`~transforms.quality.CheckQuality` on those records one by one::

    checked = tables | CheckQualityTables(rules, UserEvent, pipeline="pageviews")
    checked.valid           # the tables, without the rows that broke a rule
    checked.dead_letters    # one DeadLetterBatch per table with failures

How it stays the same contract: each rule first finds its *candidates* with
pyarrow.compute, a superset of the rows that can fail it (exactly them, for the rules and
column types below); each candidate is then made into its record and decided by the
rule's own ``check``, which words the dead letter. So a rule never disagrees with the
per-record path, and only the failing rows (and, for a rule with no vectorized form, the
whole table) cost Python work. Rules run in order and a row fails on its first rule, as
per record.

Vectorized forms: ``required`` (nulls, empty strings), ``type`` (decided by the column's
Arrow type), ``range`` and ``one_of`` on floating-point columns (``one_of`` on strings
too), ``matches`` on strings (Python's ``re`` once per distinct value, so the regex
dialect is exactly the per-record one), ``max_clock_skew`` on floating-point columns (the
clock is read once per table, where per record it is read once per record). Any other
rule or column type makes every row a candidate. ``unique_within_window`` needs state
across tables: :func:`vectorizable` says False for it, and such runs stay per record.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from transforms.base.errors import ConfigError
from transforms.quality.rules import (
    Matches,
    MaxClockSkew,
    OneOf,
    Range,
    Required,
    Rule,
    Type,
    UniqueWithinWindow,
    _is_number,
)
from transforms.quality.transform import (
    DEAD_LETTERS,
    STEP,
    VALID,
    Checked,
    _dead_letter,
    validated,
)
from transforms.records import DeadLetter, DeadLetterBatch

__all__ = ["CheckQualityTables", "TableCheck", "candidates", "check_table", "vectorizable"]

# A row mask: True where the rule may fail the row.
Mask = np.ndarray


def vectorizable(rules: Sequence[Rule]) -> bool:
    """Whether the rules can run on tables: none keeps state across records."""
    return not any(isinstance(rule, UniqueWithinWindow) for rule in rules)


def _bool(array: Any) -> Mask:
    """A boolean Arrow array (nulls as False) as a numpy mask."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _valid(column: pa.ChunkedArray) -> Mask:
    return _bool(pc.is_valid(column))


def _exact_float(value: Any) -> float | None:
    """``value`` as a float when that float equals it exactly (Python compares exactly)."""
    try:
        as_float = float(value)
    except OverflowError:  # an integer beyond a float's range equals no float
        return None
    return as_float if as_float == value else None


def _bound(value: Any, toward: float) -> float:
    """A float bound at least as strict as ``value``: rounded toward ``toward`` when
    ``value`` (a large int, a Decimal) has no exact float, so the mask stays a superset."""
    exact = _exact_float(value)
    return exact if exact is not None else math.nextafter(float(value), toward)


def _required(rule: Required, column: pa.ChunkedArray) -> Mask:
    missing = ~_valid(column)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        missing |= _bool(pc.equal(column, ""))
    return missing


# The Python type of a column's values (as to_pylist gives them) -> the types it passes.
def _passing_types(arrow_type: pa.DataType) -> set[str] | None:
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return {"string"}
    if pa.types.is_floating(arrow_type):
        return {"number"}
    if pa.types.is_integer(arrow_type):
        return {"number", "integer"}
    if pa.types.is_boolean(arrow_type):
        return {"boolean"}
    return None  # unknown here: every row is a candidate


def _type(rule: Type, column: pa.ChunkedArray) -> Mask | None:
    passing = _passing_types(column.type)
    if passing is None:
        return None
    return np.zeros(len(column), bool) if rule.type in passing else _valid(column)


def _range(rule: Range, column: pa.ChunkedArray) -> Mask | None:
    if not pa.types.is_floating(column.type):
        return _valid(column) if pa.types.is_string(column.type) else None  # strings fail
    mask = np.zeros(len(column), bool)
    if rule.min is not None:
        low = _bound(rule.min, math.inf)
        mask |= _bool(pc.less_equal(column, low) if rule.exclusive else pc.less(column, low))
    if rule.max is not None:
        high = _bound(rule.max, -math.inf)
        mask |= _bool(pc.greater_equal(column, high) if rule.exclusive
                      else pc.greater(column, high))
    return mask


def _one_of(rule: OneOf, column: pa.ChunkedArray) -> Mask | None:
    if pa.types.is_string(column.type):
        allowed = pa.array([v for v in rule.values if type(v) is str], pa.string())
    elif pa.types.is_floating(column.type):
        numbers = (_exact_float(v) for v in rule.values if _is_number(v))
        allowed = pa.array([v for v in numbers if v is not None and not math.isnan(v)],
                           pa.float64())
    else:
        return None
    return _valid(column) & ~_bool(pc.is_in(column, value_set=allowed))


def _matches(rule: Matches, column: pa.ChunkedArray) -> Mask | None:
    if not pa.types.is_string(column.type):
        return _valid(column) if pa.types.is_floating(column.type) else None
    failing = [v for v in pc.unique(column).to_pylist()
               if v is not None and not rule.regex.fullmatch(v)]
    return _bool(pc.is_in(column, value_set=pa.array(failing, pa.string())))


def _clock_skew(rule: MaxClockSkew, column: pa.ChunkedArray) -> Mask | None:
    if not pa.types.is_floating(column.type):
        return None  # strings are parsed as ISO-8601 per record
    now = rule.clock()
    skew = pc.subtract(column, now)
    mask = _bool(pc.greater(skew, rule.seconds))
    if rule.max_past is not None:
        mask |= _bool(pc.greater(pc.negate(skew), rule.max_past))
    return mask


_VECTORIZED: dict[type, Callable[[Any, pa.ChunkedArray], Mask | None]] = {
    Required: _required, Type: _type, Range: _range, OneOf: _one_of, Matches: _matches,
    MaxClockSkew: _clock_skew,
}


def candidates(rule: Rule, table: pa.Table) -> Mask:
    """Rows that may fail ``rule`` (a superset of those that do): the rows its ``check``
    must decide. Every row when the rule or the column has no vectorized form."""
    form = _VECTORIZED.get(type(rule))
    if form is None or rule.field not in table.column_names:
        return np.ones(table.num_rows, bool)
    mask = form(rule, table.column(rule.field))
    return np.ones(table.num_rows, bool) if mask is None else mask


class TableCheck(NamedTuple):
    valid: pa.Table
    dead_letters: list[DeadLetter]


def check_table(rules: Sequence[Rule], table: pa.Table, record_type: Callable[..., Any],
                pipeline: str, step: str = STEP) -> TableCheck:
    """``table`` without the rows that break a rule, and a dead letter for each of them.

    ``record_type`` makes a row's record from its values, in its fields' order (a
    NamedTuple class such as UserEvent): the record each rule's ``check`` sees and the
    dead letter's payload, as per record.
    """
    fields: Sequence[str] = record_type._fields  # type: ignore[attr-defined]
    records: dict[int, Any] = {}
    failed = np.zeros(table.num_rows, bool)
    letters: list[DeadLetter] = []
    for rule in rules:
        rows = np.flatnonzero(candidates(rule, table) & ~failed)
        if not len(rows):
            continue
        new = [row for row in rows.tolist() if row not in records]
        if new:  # only candidates become Python records, each once
            taken = table.select(list(fields)).take(pa.array(new, pa.int64()))
            columns = [taken.column(name).to_pylist() for name in fields]
            made = (record_type(*values) for values in zip(*columns, strict=True))
            records.update(zip(new, made, strict=True))
        for row in rows.tolist():
            record = records[row]
            detail = rule.check(record)
            if detail is not None:
                failed[row] = True
                letters.append(_dead_letter(pipeline, step, rule, detail, record))
    valid = table.filter(pa.array(~failed)) if letters else table
    return TableCheck(valid, letters)


class _CheckTablesDoFn(beam.DoFn):
    def __init__(self, rules: Sequence[Rule], record_type: Callable[..., Any], pipeline: str,
                 step: str) -> None:
        self._rules = list(rules)
        self._record_type = record_type
        self._pipeline = pipeline
        self._step = step
        self._total = Metrics.counter(pipeline, "quality_failed")

    def process(self, table: pa.Table):
        valid, letters = check_table(self._rules, table, self._record_type, self._pipeline,
                                     self._step)
        if valid.num_rows:
            yield valid  # keeps the table's timestamp and window
        if letters:
            self._total.inc(len(letters))
            per_rule: dict[str, int] = {}
            for letter in letters:
                per_rule[letter.reason_code] = per_rule.get(letter.reason_code, 0) + 1
            for name, count in per_rule.items():
                Metrics.counter(self._pipeline, f"quality_failed.{name}").inc(count)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetterBatch(letters))


class CheckQualityTables(beam.PTransform):
    """Arrow tables of valid records -> ``.valid`` tables and ``.dead_letters``
    (DeadLetterBatch), with the counters of :class:`~transforms.quality.CheckQuality`
    (``<pipeline>/quality_failed`` and ``quality_failed.<rule>``)."""

    def __init__(self, rules: Sequence[Rule], record_type: Callable[..., Any], *, pipeline: str,
                 step: str = STEP) -> None:
        super().__init__()
        rules = validated(rules)
        if not vectorizable(rules):
            raise ConfigError("rules", "rules without state across records (CheckQuality "
                              "takes unique_within_window)", rules)
        self._rules = rules
        self._record_type = record_type
        self._pipeline = pipeline
        self._step = step

    def expand(self, tables) -> Checked:
        checked = tables | "CheckRules" >> beam.ParDo(
            _CheckTablesDoFn(self._rules, self._record_type, self._pipeline, self._step)
        ).with_outputs(DEAD_LETTERS, main=VALID)
        return Checked(checked[VALID], checked[DEAD_LETTERS])
