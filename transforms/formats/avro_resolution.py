"""Can a reader's Avro schema read what a writer's schema wrote? A static check.

fastavro resolves schemas while it reads, one value at a time, so a writer schema the
reader cannot take would fail record by record (or only on the records that reach the
bad branch). This module applies the Avro specification's resolution rules ("Schema
Resolution") to the two schemas once, so a decoder can classify a schema id at first
sight, and the test registry can answer compatibility questions. The rules:

* primitives: the same type, or a promotion: int -> long, float, double;
  long -> float, double; float -> double; string <-> bytes;
* records: the same unqualified name (or a reader alias); every reader field is either
  in the writer (by name or a reader field alias), resolved recursively, or has a default;
  writer fields the reader lacks are skipped;
* enums: the same name; every writer symbol is a reader symbol, unless the reader has a
  default symbol;
* arrays (items), maps (values), fixed (name and size);
* unions: every branch the writer can write must be readable by the reader (by some
  branch of the reader's union, or by the reader's schema when it is not a union).

Logical types are read as their underlying types (as fastavro does when they differ).
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolution_problems"]

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = {"record", "error", "enum", "fixed"}


def _full_name(name: str, namespace: str | None) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _collect(schema: Any, namespace: str | None, named: dict[str, dict]) -> None:
    """Every named type defined inside ``schema``, by full name (and by short name)."""
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, namespace, named)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED:
            full = _full_name(schema["name"], schema.get("namespace", namespace))
            named[full] = schema
            named.setdefault(full.rsplit(".", 1)[-1], schema)
            namespace = full.rsplit(".", 1)[0] if "." in full else None
            for item in schema.get("fields", []) if kind != "enum" else []:
                _collect(item.get("type"), namespace, named)
        elif kind == "array":
            _collect(schema.get("items"), namespace, named)
        elif kind == "map":
            _collect(schema.get("values"), namespace, named)
        elif isinstance(kind, (dict, list)):
            _collect(kind, namespace, named)


def _deref(schema: Any, named: dict[str, dict]) -> Any:
    """A schema with names replaced by the types they name, and {"type": "int"} by "int"."""
    while True:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema
            if schema in named:
                return named[schema]
            short = schema.rsplit(".", 1)[-1]
            if short in named:
                return named[short]
            return schema
        if isinstance(schema, dict):
            kind = schema.get("type")
            if isinstance(kind, (str, list)) and kind not in _NAMED | {"array", "map"}:
                schema = kind
                continue
            if isinstance(kind, dict):
                schema = kind
                continue
        return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    kind = schema.get("type")
    return "record" if kind == "error" else str(kind)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _names_match(writer: dict, reader: dict) -> bool:
    names = {_short(reader["name"])} | {_short(a) for a in reader.get("aliases", [])}
    return _short(writer["name"]) in names


class _Checker:
    def __init__(self, writer_named: dict[str, dict], reader_named: dict[str, dict]) -> None:
        self.writer_named = writer_named
        self.reader_named = reader_named
        self.seen: set[tuple[int, int]] = set()

    def problems(self, writer: Any, reader: Any, path: str) -> list[str]:
        writer = _deref(writer, self.writer_named)
        reader = _deref(reader, self.reader_named)
        w_kind, r_kind = _kind(writer), _kind(reader)
        if w_kind == "union":
            out: list[str] = []
            for branch in writer:
                out += self.problems(branch, reader, path)
            return out
        if r_kind == "union":
            for branch in reader:
                if not self.problems(writer, branch, path):
                    return []
            return [f"{path or '(top)'}: the writer's {_describe(writer)} matches no branch of the "
                    f"reader's union {[_describe(_deref(b, self.reader_named)) for b in reader]}"]
        if w_kind in _PRIMITIVES or r_kind in _PRIMITIVES:
            if w_kind == r_kind or r_kind in _PROMOTIONS.get(w_kind, ()):
                return []
            return [f"{path or '(top)'}: the writer's {_describe(writer)} cannot be read as "
                    f"{_describe(reader)}"]
        if w_kind != r_kind:
            return [f"{path or '(top)'}: the writer's {w_kind} cannot be read as a {r_kind}"]
        if w_kind == "array":
            return self.problems(writer["items"], reader["items"], f"{path}[]")
        if w_kind == "map":
            return self.problems(writer["values"], reader["values"], f"{path}{{}}")
        if not _names_match(writer, reader):
            return [f"{path or '(top)'}: the writer's {w_kind} {writer['name']} is not the reader's "
                    f"{reader['name']} (names and aliases differ)"]
        if w_kind == "fixed":
            if writer.get("size") != reader.get("size"):
                return [f"{path or '(top)'}: fixed {writer['name']} has size {writer.get('size')} in the "
                        f"writer, {reader.get('size')} in the reader"]
            return []
        if w_kind == "enum":
            missing = [s for s in writer.get("symbols", []) if s not in reader.get("symbols", [])]
            if missing and "default" not in reader:
                return [f"{path or '(top)'}: enum {writer['name']} symbols {missing} are unknown to the "
                        "reader, which has no default symbol"]
            return []
        return self._record(writer, reader, path)

    def _record(self, writer: dict, reader: dict, path: str) -> list[str]:
        key = (id(writer), id(reader))
        if key in self.seen:  # recursive types: assume the pair resolves while checking it
            return []
        self.seen.add(key)
        by_name = {f["name"]: f for f in writer.get("fields", [])}
        out: list[str] = []
        for field in reader.get("fields", []):
            names = [field["name"], *field.get("aliases", [])]
            source = next((by_name[n] for n in names if n in by_name), None)
            here = f"{path}.{field['name']}" if path else field["name"]
            if source is None:
                if "default" not in field:
                    out.append(f"{here}: the reader's field has no default and the writer "
                               "has no such field")
                continue
            out += self.problems(source["type"], field["type"], here)
        return out


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    kind = schema.get("type")
    return f"{kind} {schema['name']}" if "name" in schema else str(kind)


def resolution_problems(writer: Any, reader: Any, writer_named: dict | None = None,
                        reader_named: dict | None = None) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer``; empty when it can.

    Both are Avro schemas as JSON-like values (parsed or not by fastavro). Named types
    used by name must be defined inside them (fastavro's parsed schemas carry them) or in
    ``writer_named`` / ``reader_named`` (types of referenced schemas, by full name).
    """
    writer_named = dict(writer_named or {})
    reader_named = dict(reader_named or {})
    for schema, named in ((writer, writer_named), (reader, reader_named)):
        extra = dict(named)
        if isinstance(schema, dict):
            extra.update(schema.get("__named_schemas") or {})
        for name, value in extra.items():
            named[name] = value
            named.setdefault(_short(name), value)
        _collect(schema, None, named)
    return _Checker(writer_named, reader_named).problems(writer, reader, "")
