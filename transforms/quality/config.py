"""Rules from their declarative form: ``--quality_rules=rules.json`` (JSON, or YAML with
pyyaml), a list of rules or a mapping of schema name -> list of rules."""

from __future__ import annotations

from typing import Any, Collection, Mapping, Optional, Sequence

from transforms.base.documents import read_document
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
)

__all__ = ["FLAG", "load_rules", "rule_from_config"]

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
               fields: Sequence[str] | None = None,
               schemas: Optional[Collection[str]] = None) -> list[Rule]:
    """Rules from a file path (JSON, or YAML with pyyaml) or an already-loaded document.

    The document is a list of rules, or a mapping of schema name -> list of rules (then
    ``schema`` picks the list; a schema with no entry gets no rules).

    :param source: a file path (any Beam filesystem) or the loaded document.
    :param schema: the schema whose rules a mapping document gives.
    :param fields: the records' fields; a rule on another field is refused.
    :param schemas: the schema names a mapping document may use (a typo is refused);
        None accepts any.
    """
    document: Any = source
    if isinstance(source, str):
        document = read_document(source, flag=FLAG)
    if isinstance(document, Mapping):
        unknown = sorted(set(document) - set(schemas)) if schemas is not None else []
        if unknown:
            assert schemas is not None
            raise ConfigError.from_message(
                f"{FLAG}: {unknown[0]!r} is not a schema; expected keys among {'|'.join(schemas)}")
        if schema is None:
            raise ConfigError.from_message(f"{FLAG}: rules keyed by schema, but no schema given")
        document = document.get(schema, [])
    if isinstance(document, (str, bytes)) or not isinstance(document, Sequence):
        raise ConfigError.from_message(
            f"{FLAG}: expected a list of rules or an object of schema -> list of rules")
    return [rule_from_config(entry, fields) for entry in document]
