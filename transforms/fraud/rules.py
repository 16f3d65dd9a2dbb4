"""Fraud rules: loaded from a JSON or YAML file, checked strictly before anything runs.

A rules file is a list of named rules (or ``{"rules": [...]}``)::

    [
      {"name": "big_amount", "kind": "threshold", "action": "review",
       "field": "amount", "op": ">", "value": 5000},
      {"name": "burst", "kind": "velocity", "action": "block",
       "key": "card_id", "window": 60, "max_count": 5},
      {"name": "spike", "kind": "amount_spike", "action": "review",
       "key": "card_id", "factor": 3, "history": 20, "min_history": 3},
      {"name": "teleport", "kind": "geo_velocity", "action": "block",
       "key": "card_id", "max_kmh": 900},
      {"name": "bad_merchant", "kind": "blocklist", "action": "block",
       "field": "merchant", "list": "blocked_merchants.txt"}
    ]

Every mistake is one :class:`~beam_pipelines.errors.ConfigError` line naming the rule and
the field at fault, e.g. ``--rules: rule 'big_amount': field 'op': expected one of >, >=,
<, <=, ==, !=, in, not_in, got '=>'``. Unknown fields are errors (a typo must not turn a
rule off). ``key`` defaults to ``card_id``; ``description`` is allowed on every rule.

Numbers are read exactly (JSON decimals as ``Decimal``; YAML floats by their shortest
repr), so ``"factor": 3`` and an amount of ``300`` against a mean of ``100`` compare
equal. The exact semantics of each kind live in :mod:`transforms.fraud.engine`; the full
reference is ``docs/fraud.md``.

A ``blocklist`` rule's ``list`` is a file (relative to the rules file) or a registered
``SCHEME://...`` source; see :mod:`transforms.fraud.blocklists`.
"""

from __future__ import annotations

import dataclasses
import operator
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, ClassVar, Mapping, Sequence

from transforms.base.documents import read_document
from transforms.base.errors import ConfigError
from transforms.fraud.blocklists import (
    DEFAULT_RELOAD_SECONDS,
    BlocklistSource,
    FileBlocklist,
    StaticBlocklist,
    blocklist_source_factory,
    parse_blocklist,
    register_blocklist_source,
)
from transforms.fraud.contract import CODE_LENGTHS, FIELD_TYPES, NUMBER, STRING

__all__ = [
    "ACTIONS",
    "DEFAULT_KEY",
    "DEFAULT_RELOAD_SECONDS",
    "KINDS",
    "OPS",
    "AmountSpikeRule",
    "BlocklistRule",
    "BlocklistSource",
    "FileBlocklist",
    "GeoVelocityRule",
    "Rule",
    "RuleSet",
    "StatefulRule",
    "StaticBlocklist",
    "ThresholdRule",
    "VelocityRule",
    "load_rules",
    "parse_blocklist",
    "register_blocklist_source",
    "rules_from_document",
]

FLAG = "--rules"
ACTIONS = ("review", "block")
OPS = (">", ">=", "<", "<=", "==", "!=", "in", "not_in")
KINDS = ("threshold", "velocity", "amount_spike", "geo_velocity", "blocklist")
DEFAULT_KEY = "card_id"
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "!=": operator.ne,
}
_ORDERING_OPS = (">", ">=", "<", "<=")


# ---- the rules --------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """What every rule has: a unique ``name`` and the ``action`` when it fires."""

    name: str
    action: str
    description: str = dataclasses.field(default="", kw_only=True)

    kind: ClassVar[str] = "rule"


@dataclass(frozen=True)
class ThresholdRule(Rule):
    """Fires when ``tx[field] op value``; ``in`` / ``not_in`` take a set of values."""

    field: str
    op: str
    value: Any  # a Decimal or a str; a frozenset of them for in / not_in

    kind: ClassVar[str] = "threshold"

    def fires(self, tx: Any) -> bool:
        actual = getattr(tx, self.field)
        if self.op == "in":
            return actual in self.value
        if self.op == "not_in":
            return actual not in self.value
        return _COMPARE[self.op](actual, self.value)


@dataclass(frozen=True)
class BlocklistRule(Rule):
    """Fires when ``tx[field]`` is one of the values the source holds now."""

    field: str
    source: BlocklistSource

    kind: ClassVar[str] = "blocklist"

    def fires(self, tx: Any) -> bool:
        return getattr(tx, self.field) in self.source.current()


@dataclass(frozen=True)
class StatefulRule(Rule):
    """A rule that looks at the key's earlier transactions (keyed by the ``key`` field)."""

    key: str


@dataclass(frozen=True)
class VelocityRule(StatefulRule):
    """Fires when more than ``max_count`` of the key's transactions, this one included,
    have their event time in ``(t - window, t]``."""

    window: Decimal
    max_count: int

    kind: ClassVar[str] = "velocity"


@dataclass(frozen=True)
class AmountSpikeRule(StatefulRule):
    """Fires when the key has at least ``min_history`` earlier transactions (of the last
    ``history``) and ``amount > factor * mean(their amounts)``."""

    factor: Decimal
    history: int
    min_history: int

    kind: ClassVar[str] = "amount_spike"


@dataclass(frozen=True)
class GeoVelocityRule(StatefulRule):
    """Fires when the speed from the key's previous transaction, haversine km over
    ``max(t - t_prev, 1)`` seconds, is above ``max_kmh`` km/h."""

    max_kmh: Decimal

    kind: ClassVar[str] = "geo_velocity"


class RuleSet:
    """Validated rules, in file order, with what the engine and the transforms need."""

    def __init__(self, rules: Sequence[Rule], source: str = "rules") -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.source = source
        names = [r.name for r in self.rules]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError.from_message(
                f"{FLAG}: rule {duplicated[0]!r}: field 'name': expected a unique name, "
                f"got {duplicated[0]!r} twice")
        self.actions: dict[str, str] = {r.name: r.action for r in self.rules}
        self.stateless: tuple[Rule, ...] = tuple(
            r for r in self.rules if isinstance(r, (ThresholdRule, BlocklistRule)))
        self.stateful: tuple[StatefulRule, ...] = tuple(
            r for r in self.rules if isinstance(r, StatefulRule))
        keys: list[str] = []
        for rule in self.stateful:
            if rule.key not in keys:
                keys.append(rule.key)
        self.key_fields: tuple[str, ...] = tuple(keys)  # in order of first use

    def keyed(self, key_field: str) -> tuple[StatefulRule, ...]:
        """The stateful rules keyed by ``key_field``."""
        return tuple(r for r in self.stateful if r.key == key_field)

    def __iter__(self):
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"RuleSet({self.source}: {', '.join(r.name for r in self.rules)})"


# ---- loading ----------------------------------------------------------------------------

class _Fields:
    """Reads one rule's fields; every error names the rule and the field."""

    def __init__(self, entry: Mapping[str, Any], label: str, flag: str) -> None:
        self.entry = entry
        self.label = label
        self.flag = flag

    def error(self, name: str, expected: str, got: Any = None, *, show_got: bool = True) -> ConfigError:
        message = f"{self.flag}: rule {self.label}: field {name!r}: {expected}"
        if show_got:
            message += f", got {_show(got)}"
        return ConfigError.from_message(message)

    def get(self, name: str, default: Any = None) -> Any:
        return self.entry.get(name, default)

    def string(self, name: str, default: str | None = None) -> str:
        if name not in self.entry and default is not None:
            return default
        value = self.entry.get(name)
        if not isinstance(value, str) or not value:
            raise self.error(name, "expected a non-empty string", value)
        return value

    def one_of(self, name: str, choices: Sequence[str], default: str | None = None) -> str:
        if name not in self.entry and default is not None:
            return default
        value = self.entry.get(name)
        if not isinstance(value, str) or value not in choices:
            raise self.error(name, f"expected one of {', '.join(choices)}", value)
        return value

    def number(self, name: str, what: str, *, minimum: int = 0, strict: bool = True) -> Decimal:
        value = _number(self.entry.get(name))
        if value is None or (value <= minimum if strict else value < minimum):
            raise self.error(name, f"expected {what}", self.entry.get(name))
        return value

    def whole(self, name: str, what: str, minimum: int, maximum: int | None = None) -> int:
        value = self.entry.get(name)
        if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
                or (maximum is not None and value > maximum)):
            raise self.error(name, f"expected {what}", value)
        return value


def _number(value: Any) -> Decimal | None:
    """A finite number from a rules file as an exact Decimal, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return exact if exact.is_finite() else None


def _show(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


_COMMON = ("name", "kind", "action", "description")
_KIND_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind: (required fields, optional fields)
    "threshold": (("field", "op", "value"), ()),
    "velocity": (("window", "max_count"), ("key",)),
    "amount_spike": (("factor", "history", "min_history"), ("key",)),
    "geo_velocity": (("max_kmh",), ("key",)),
    "blocklist": (("field", "list"), ("reload_seconds",)),
}
_KEY_FIELDS = tuple(f for f, t in FIELD_TYPES.items() if t == STRING)


def rules_from_document(document: Any, *, base_dir: str = ".", source: str = "rules",
                        flag: str = FLAG) -> RuleSet:
    """A RuleSet from a decoded rules document (a list of rule objects, or
    ``{"rules": [...]}``). Relative blocklist paths are relative to ``base_dir``."""
    if isinstance(document, Mapping):
        extra = sorted(set(document) - {"rules"})
        if extra or "rules" not in document:
            raise ConfigError.from_message(
                f"{flag}: {source}: expected a list of rules or an object with only the key "
                f"'rules', got the keys {sorted(document)}")
        document = document["rules"]
    if isinstance(document, (str, bytes)) or not isinstance(document, Sequence):
        raise ConfigError.from_message(
            f"{flag}: {source}: expected a list of rules, got {type(document).__name__}")
    rules = [_rule(entry, index, base_dir, flag) for index, entry in enumerate(document, 1)]
    try:
        return RuleSet(rules, source)
    except ConfigError as exc:
        if flag == FLAG:
            raise
        raise ConfigError.from_message(str(exc).replace(FLAG, flag, 1)) from None


def _rule(entry: Any, index: int, base_dir: str, flag: str) -> Rule:
    if not isinstance(entry, Mapping):
        raise ConfigError.from_message(
            f"{flag}: rule #{index}: expected an object with name, kind and action, got {_show(entry)}")
    name = entry.get("name")
    label = f"{name!r}" if isinstance(name, str) and name else f"#{index}"
    fields = _Fields(entry, label, flag)
    if "name" not in entry:
        raise fields.error("name", "missing (every rule needs a unique name)", show_got=False)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise fields.error("name", "expected a name of letters, digits, _ . and -", name)
    kind = fields.one_of("kind", KINDS)
    action = fields.one_of("action", ACTIONS)
    required, optional = _KIND_FIELDS[kind]
    takes = (*_COMMON, *required, *optional)
    for key in entry:
        if key not in takes:
            raise fields.error(str(key), f"not a field of a {kind} rule (it takes "
                               f"{', '.join(takes)})", show_got=False)
    for key in required:
        if key not in entry:
            raise fields.error(key, f"missing (a {kind} rule needs {', '.join(required)})",
                               show_got=False)
    description = entry.get("description", "")
    if not isinstance(description, str):
        raise fields.error("description", "expected a string", description)
    common = {"name": name, "action": action, "description": description}
    if kind == "threshold":
        return _threshold(fields, common)
    if kind == "blocklist":
        return _blocklist(fields, common, base_dir)
    key = fields.one_of("key", _KEY_FIELDS, DEFAULT_KEY)
    if kind == "velocity":
        return VelocityRule(**common, key=key,
                            window=fields.number("window", "a number of seconds > 0"),
                            max_count=fields.whole("max_count", "a whole number >= 1", 1))
    if kind == "amount_spike":
        factor = fields.number("factor", "a number > 0")
        history = fields.whole("history", "a whole number of transactions >= 1", 1)
        min_history = fields.whole("min_history",
                                   f"a whole number from 1 to history ({history})", 1, history)
        return AmountSpikeRule(**common, key=key, factor=factor, history=history,
                               min_history=min_history)
    return GeoVelocityRule(**common, key=key, max_kmh=fields.number("max_kmh", "a speed in km/h > 0"))


def _threshold(fields: _Fields, common: dict[str, Any]) -> ThresholdRule:
    name = fields.one_of("field", tuple(FIELD_TYPES))
    op = fields.one_of("op", OPS)
    kind = FIELD_TYPES[name]
    if kind == STRING and op in _ORDERING_OPS:
        raise fields.error("op", f"expected ==, !=, in or not_in for the string field {name!r}", op)
    raw = fields.get("value")
    if op in ("in", "not_in"):
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or not raw:
            raise fields.error("value", f"expected a non-empty list for {op}", raw)
        return ThresholdRule(**common, field=name, op=op,
                             value=frozenset(_constant(fields, name, kind, v) for v in raw))
    return ThresholdRule(**common, field=name, op=op, value=_constant(fields, name, kind, raw))


def _constant(fields: _Fields, name: str, kind: str, value: Any) -> Decimal | str:
    """A value a threshold compares ``name`` with, of the type the contract gives it."""
    if kind == NUMBER:
        exact = _number(value)
        if exact is None:
            raise fields.error("value", f"expected a finite number (the field {name!r} is a number)", value)
        return exact
    if not isinstance(value, str):
        raise fields.error("value", f"expected a string (the field {name!r} is a string)", value)
    length = CODE_LENGTHS.get(name)
    if length and (len(value) != length or not (value.isascii() and value.isalpha() and value.isupper())):
        raise fields.error("value", f"expected {length} uppercase letters, as the contract "
                           f"requires of {name!r}", value)
    return value


def _blocklist(fields: _Fields, common: dict[str, Any], base_dir: str) -> BlocklistRule:
    name = fields.one_of("field", _KEY_FIELDS)
    target = fields.string("list")
    reload_seconds: float = DEFAULT_RELOAD_SECONDS
    if "reload_seconds" in fields.entry:
        reload_seconds = float(fields.number("reload_seconds", "a number of seconds >= 0", strict=False))
    scheme = target.split("://", 1)[0] if "://" in target else None
    factory = blocklist_source_factory(scheme)
    source: BlocklistSource
    if factory is not None:
        try:
            source = factory(target, reload_seconds)
        except Exception as exc:
            raise fields.error("list", f"cannot open {target}: {exc}", show_got=False) from None
    elif scheme == "kafka":
        raise fields.error("list", "a file; kafka:// blocklists need the pipeline's Kafka wiring "
                           "(register_blocklist_source('kafka', ...))", target)
    else:
        path = _resolve(base_dir, target)
        try:
            source = FileBlocklist(path, reload_seconds)
        except Exception as exc:
            raise fields.error("list", f"cannot read the blocklist {path}: {exc}",
                               show_got=False) from None
    return BlocklistRule(**common, field=name, source=source)


def _resolve(base_dir: str, target: str) -> str:
    """``target`` relative to the rules file's directory, unless absolute or a URL."""
    if "://" in target or os.path.isabs(target):
        return target
    if "://" in base_dir:
        return base_dir.rstrip("/") + "/" + target
    return os.path.normpath(os.path.join(os.path.abspath(base_dir), target))


def load_rules(path: str, *, flag: str = FLAG) -> RuleSet:
    """Rules from a JSON file, or YAML (``.yaml`` / ``.yml``, needs pyyaml).

    Relative blocklist paths are relative to the rules file. Any problem raises one
    ConfigError line starting with ``flag``.
    """
    document = read_document(path, flag=flag, exact=True)
    base_dir = path.rsplit("/", 1)[0] if "://" in path else os.path.dirname(os.path.abspath(path))
    return rules_from_document(document, base_dir=base_dir, source=path, flag=flag)
