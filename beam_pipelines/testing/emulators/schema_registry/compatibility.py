"""Compatibility rules: may a subject's new schema follow its registered versions?

Levels (Confluent's): NONE; BACKWARD (the default: the new schema reads data written
with the latest version); FORWARD (the latest version reads data written with the new
schema); FULL (both); and the ``_TRANSITIVE`` forms, against every live version instead
of the latest. A schema of another type than the subject's is incompatible at any level
but NONE.

What is checked, per type (``problems(writer, reader)``: can ``reader`` read what
``writer`` wrote?):

* AVRO: the Avro specification's schema resolution, as
  :mod:`transforms.formats.avro_resolution` implements it (fields added without a
  default, type changes other than promotions, enum symbols removed without a default,
  renamed records without aliases, union branches...).
* JSON (basic rules): a type set narrowed (``integer`` counts as within ``number``); a
  property made required; a property removed while the reader's content model is closed
  (``additionalProperties: false``); a content model closed; enum values removed; the
  same recursively in ``properties`` and ``items``. Not checked: ``$ref`` targets,
  combinators (``allOf``/``anyOf``/``oneOf``), numeric and length bounds, patterns;
  adding a property to an open content model is accepted (Confluent flags it).
* PROTOBUF (basic rules): the package changed; a message removed; a field (by number)
  changed kind (scalar to message, repeated to single), changed to a wire-incompatible
  scalar type (int32/uint32/int64/uint64/bool interchange, as do sint32/sint64,
  fixed32/sfixed32, fixed64/sfixed64, string/bytes), or to another message/enum type; a
  proto2 ``required`` field added or removed. Removing a field is compatible.
"""

from __future__ import annotations

from typing import Any

from beam_pipelines.testing.emulators.schema_registry.schemas import AVRO, JSON, PROTOBUF, Parsed
from transforms.formats.avro_resolution import resolution_problems

LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
          "FULL_TRANSITIVE")
DEFAULT_LEVEL = "BACKWARD"


def problems(writer: Parsed, reader: Parsed) -> list[str]:
    """Why ``reader`` cannot read what ``writer`` wrote (empty: it can)."""
    if writer.schema_type != reader.schema_type:
        return [f"schema type changed from {writer.schema_type} to {reader.schema_type}"]
    if writer.schema_type == AVRO:
        return resolution_problems(writer.value, reader.value, writer.named, reader.named)
    if writer.schema_type == JSON:
        return _json(writer.value, reader.value, "#")
    if writer.schema_type == PROTOBUF:
        return _protobuf(writer.value, reader.value)
    return []


def check(level: str, new: Parsed, previous: list[Parsed]) -> list[str]:
    """Problems of registering ``new`` after ``previous`` (oldest first) at ``level``."""
    if level == "NONE" or not previous:
        return []
    against = previous if level.endswith("_TRANSITIVE") else previous[-1:]
    base = level.replace("_TRANSITIVE", "")
    out: list[str] = []
    for old in against:
        if base in ("BACKWARD", "FULL"):
            out += [f"{p} (new schema cannot read data written with an old one)" for p in problems(old, new)]
        if base in ("FORWARD", "FULL"):
            out += [f"{p} (old schema cannot read data written with the new one)" for p in problems(new, old)]
    return list(dict.fromkeys(out))


# ---- JSON Schema ----------------------------------------------------------------------

def _types(schema: Any) -> set[str] | None:
    if not isinstance(schema, dict) or "type" not in schema:
        return None
    kind = schema["type"]
    return {kind} if isinstance(kind, str) else set(kind)


def _closed(schema: dict) -> bool:
    return schema.get("additionalProperties", True) is False


def _json(writer: Any, reader: Any, path: str) -> list[str]:
    if reader is True or reader == {} or writer is False:
        return []
    if reader is False:
        return [f"{path}: the new schema accepts nothing"]
    if writer is True:
        writer = {}
    out: list[str] = []
    written, read = _types(writer), _types(reader)
    if read is not None:
        if written is None:
            out.append(f"{path}: type narrowed from any to {sorted(read)}")
        else:
            lost = {t for t in written - read if not (t == "integer" and "number" in read)}
            if lost:
                out.append(f"{path}: type narrowed: {sorted(lost)} no longer accepted")
    added = set(reader.get("required", [])) - set(writer.get("required", []))
    out += [f"{path}/required: property '{name}' made required" for name in sorted(added)]
    w_props, r_props = writer.get("properties", {}), reader.get("properties", {})
    for name in w_props:
        if name in r_props:
            out += _json(w_props[name], r_props[name], f"{path}/properties/{name}")
        elif _closed(reader):
            out.append(f"{path}/properties/{name}: property removed from a closed content model")
    if _closed(reader) and not _closed(writer):
        out.append(f"{path}: content model closed (additionalProperties: false)")
    if "enum" in reader:
        removed = [v for v in writer.get("enum", []) if v not in reader["enum"]]
        if "enum" not in writer:
            out.append(f"{path}: enum added (values restricted)")
        elif removed:
            out.append(f"{path}/enum: values removed: {removed}")
    if isinstance(writer.get("items"), dict) and isinstance(reader.get("items"), dict):
        out += _json(writer["items"], reader["items"], f"{path}/items")
    return out


# ---- Protobuf --------------------------------------------------------------------------

_COMPATIBLE_SCALARS = [
    {3, 4, 5, 8, 13},  # int64, uint64, int32, bool, uint32
    {17, 18},  # sint32, sint64
    {7, 15},  # fixed32, sfixed32
    {6, 16},  # fixed64, sfixed64
    {9, 12},  # string, bytes
]
_MESSAGE, _ENUM, _GROUP = 11, 14, 10


def _messages(proto: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(messages: Any, prefix: str) -> None:
        for message in messages:
            if message.options.map_entry:
                continue
            name = f"{prefix}.{message.name}"
            out[name] = message
            walk(message.nested_type, name)

    walk(proto.message_type, f".{proto.package}" if proto.package else "")
    return out


def _scalar_compatible(a: int, b: int) -> bool:
    return a == b or any(a in group and b in group for group in _COMPATIBLE_SCALARS)


def _protobuf(writer: Any, reader: Any) -> list[str]:
    out: list[str] = []
    if writer.package != reader.package:
        out.append(f"package changed from '{writer.package}' to '{reader.package}'")
    written, read = _messages(writer), _messages(reader)
    for name, message in written.items():
        other = read.get(name)
        if other is None:
            out.append(f"message {name.lstrip('.')} removed")
            continue
        fields = {f.number: f for f in other.field}
        for field in message.field:
            twin = fields.get(field.number)
            where = f"{name.lstrip('.')}.{field.name} (#{field.number})"
            if twin is None:
                if field.label == 2:
                    out.append(f"{where}: required field removed")
                continue
            if (field.label == 3) != (twin.label == 3):
                out.append(f"{where}: changed between repeated and singular")
            named = {_MESSAGE, _ENUM, _GROUP}
            if field.type in named or twin.type in named:
                if field.type != twin.type or field.type_name != twin.type_name:
                    out.append(f"{where}: type changed from {field.type_name or field.type} to "
                               f"{twin.type_name or twin.type}")
            elif not _scalar_compatible(field.type, twin.type):
                out.append(f"{where}: scalar type changed incompatibly")
        known = {f.number for f in message.field}
        out += [f"{name.lstrip('.')}.{f.name} (#{f.number}): required field added"
                for f in other.field if f.label == 2 and f.number not in known]
    return out
