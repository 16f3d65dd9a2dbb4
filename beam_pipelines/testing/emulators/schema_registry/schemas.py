"""Parsing, identity and rendering of the three schema types the emulator stores.

* AVRO: JSON parsed by fastavro (named types of references available); identity is the
  compact JSON text.
* JSON: a JSON Schema checked against its draft's meta-schema (``jsonschema``);
  identity is the compact JSON text.
* PROTOBUF: accepted as ``.proto`` text (compiled by ``protoc`` from grpcio-tools, with
  the referenced files beside it) or as a base64 FileDescriptorProto (what Confluent's
  Python serializer sends). Identity is the descriptor without its file name, source
  info and json names, so the text and the serialized form of one file are one schema.
  ``format=serialized`` gives the base64 descriptor; the default gives the text: as
  registered, or rendered from the descriptor (messages, nested types, enums, maps,
  oneofs, labels, imports, package; file and field options are not rendered).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, NamedTuple, Optional

from transforms.formats.protobuf import _add_file

AVRO, JSON, PROTOBUF = "AVRO", "JSON", "PROTOBUF"
SCHEMA_TYPES = (AVRO, JSON, PROTOBUF)


class InvalidSchema(ValueError):
    """The schema does not parse (the registry answers 42201)."""


class Parsed(NamedTuple):
    schema_type: str
    identity: str  # equal identities (and references) = the same schema = the same id
    value: Any  # AVRO: fastavro-parsed; JSON: dict; PROTOBUF: FileDescriptorProto
    named: dict  # AVRO: named types by full name, references' included


class Dependency(NamedTuple):
    """A referenced schema as the parser needs it: its name and its parsed form."""

    name: str
    parsed: Parsed
    text: str


def parse(schema_type: str, text: str, dependencies: list[Dependency]) -> Parsed:
    if not isinstance(text, str) or not text.strip():
        raise InvalidSchema("Empty schema")
    if schema_type == AVRO:
        return _parse_avro(text, dependencies)
    if schema_type == JSON:
        return _parse_json(text)
    if schema_type == PROTOBUF:
        return _parse_protobuf(text, dependencies)
    raise InvalidSchema(f"Invalid schema type {schema_type}; valid: {', '.join(SCHEMA_TYPES)}")


def _parse_avro(text: str, dependencies: list[Dependency]) -> Parsed:
    import fastavro

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidSchema(f"Invalid schema {text[:80]!r}: not JSON ({exc})") from None
    named: dict = {}
    for dependency in dependencies:
        named.update(dependency.parsed.named)
    try:
        parsed = fastavro.parse_schema(value, named_schemas=named)
    except Exception as exc:
        raise InvalidSchema(f"Invalid schema: {type(exc).__name__}: {exc}") from None
    return Parsed(AVRO, json.dumps(value, separators=(",", ":")), parsed, named)


def _parse_json(text: str) -> Parsed:
    import jsonschema

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidSchema(f"Invalid schema: not JSON ({exc})") from None
    if not isinstance(value, (dict, bool)):
        raise InvalidSchema("Invalid schema: a JSON Schema is an object or a boolean")
    try:
        jsonschema.validators.validator_for(value, default=jsonschema.Draft7Validator).check_schema(value)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidSchema(f"Invalid schema: {exc.message}") from None
    return Parsed(JSON, json.dumps(value, separators=(",", ":")), value, {})


# ---- Protobuf --------------------------------------------------------------------------

def _serialized(text: str) -> Optional[Any]:
    """The FileDescriptorProto of a base64 text, or None when it is not one."""
    from google.protobuf import descriptor_pb2

    stripped = "".join(text.split())
    if not stripped or any(c in stripped for c in ";{}\" ") or len(stripped) % 4:
        return None
    try:
        data = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        return None
    proto = descriptor_pb2.FileDescriptorProto()
    try:
        proto.ParseFromString(data)
    except Exception:
        return None
    if not (proto.message_type or proto.enum_type or proto.package or proto.syntax):
        return None
    return proto


def _identity(proto: Any) -> str:
    from google.protobuf import descriptor_pb2

    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(proto)
    copy.ClearField("name")
    copy.ClearField("source_code_info")
    if copy.syntax == "proto2":
        copy.ClearField("syntax")

    def strip(messages: Any) -> None:
        for message in messages:
            for field in message.field:
                field.ClearField("json_name")
            strip(message.nested_type)

    strip(copy.message_type)
    return base64.b64encode(copy.SerializeToString(deterministic=True)).decode("ascii")


def _check_pool(proto: Any, dependencies: list[Dependency]) -> None:
    """Build the file in a pool with its dependencies: unknown types fail here."""
    from google.protobuf import descriptor_pool


    pool = descriptor_pool.DescriptorPool()
    available = {d.name: d.parsed.value for d in dependencies}
    for name, dependency in available.items():
        if dependency.name != name:
            dependency = _renamed(dependency, name)
            available[name] = dependency
    try:
        _add_file(pool, proto, available, set())
    except Exception as exc:
        raise InvalidSchema(f"Invalid schema: {exc}") from None


def _renamed(proto: Any, name: str) -> Any:
    from google.protobuf import descriptor_pb2

    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(proto)
    copy.name = name
    return copy


def _parse_protobuf(text: str, dependencies: list[Dependency]) -> Parsed:
    proto = _serialized(text)
    if proto is None:
        proto = _compile(text, dependencies)
    if not proto.name:
        proto.name = "schema.proto"
    _check_pool(proto, dependencies)
    return Parsed(PROTOBUF, _identity(proto), proto, {})


def _compile(text: str, dependencies: list[Dependency]) -> Any:
    """.proto text -> FileDescriptorProto, with protoc (grpcio-tools)."""
    from google.protobuf import descriptor_pb2

    try:
        import grpc_tools
    except ImportError:
        raise InvalidSchema("Invalid schema: this emulator compiles .proto text with grpcio-tools' "
                            "protoc, which is not installed; register the serialized form "
                            "(a base64 FileDescriptorProto) instead") from None
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory(prefix="sr-proto-") as directory:
        for dependency in dependencies:
            path = os.path.join(directory, dependency.name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(render_proto(dependency.parsed.value))
        main = os.path.join(directory, "__schema__.proto")
        with open(main, "w", encoding="utf-8") as handle:
            handle.write(text)
        out = os.path.join(directory, "out.desc")
        result = subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{directory}", f"-I{include}",
             f"--descriptor_set_out={out}", "__schema__.proto"],
            capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            message = " ".join(result.stderr.replace(directory + os.sep, "").split())
            raise InvalidSchema(f"Invalid schema: {message[:500]}")
        files = descriptor_pb2.FileDescriptorSet()
        with open(out, "rb") as handle:
            files.ParseFromString(handle.read())
    proto = files.file[-1]
    proto.ClearField("name")
    return proto


def serialized(parsed: Parsed, name: Optional[str] = None) -> str:
    """The base64 FileDescriptorProto of a Protobuf schema (``format=serialized``)."""
    proto = parsed.value
    if name and proto.name != name:
        proto = _renamed(proto, name)
    return base64.b64encode(proto.SerializeToString()).decode("ascii")


_SCALARS = {1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64",
            7: "fixed32", 8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32",
            16: "sfixed64", 17: "sint32", 18: "sint64"}
_GROUP, _MESSAGE, _ENUM = 10, 11, 14


def _type_name(field: Any) -> str:
    if field.type in (_MESSAGE, _ENUM, _GROUP):
        return field.type_name
    return _SCALARS[field.type]


def _render_enum(enum: Any, indent: str) -> list[str]:
    lines = [f"{indent}enum {enum.name} {{"]
    lines += [f"{indent}  {value.name} = {value.number};" for value in enum.value]
    return lines + [f"{indent}}}"]


def _render_message(message: Any, syntax: str, indent: str) -> list[str]:
    maps = {n.name: n for n in message.nested_type if n.options.map_entry}
    lines = [f"{indent}message {message.name} {{"]
    inner = indent + "  "
    oneof_fields: dict[int, list[Any]] = {}
    for field in message.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            oneof_fields.setdefault(field.oneof_index, []).append(field)
    for field in message.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            continue
        entry = maps.get(field.type_name.rsplit(".", 1)[-1]) if field.type == _MESSAGE else None
        if entry is not None and field.label == 3:
            key, value = entry.field[0], entry.field[1]
            lines.append(f"{inner}map<{_type_name(key)}, {_type_name(value)}> {field.name} = {field.number};")
            continue
        label = {1: "optional ", 2: "required ", 3: "repeated "}[field.label]
        if syntax == "proto3" and field.label == 1 and not field.proto3_optional:
            label = ""
        lines.append(f"{inner}{label}{_type_name(field)} {field.name} = {field.number};")
    for index, fields in oneof_fields.items():
        lines.append(f"{inner}oneof {message.oneof_decl[index].name} {{")
        lines += [f"{inner}  {_type_name(f)} {f.name} = {f.number};" for f in fields]
        lines.append(f"{inner}}}")
    for nested in message.nested_type:
        if not nested.options.map_entry:
            lines += _render_message(nested, syntax, inner)
    for enum in message.enum_type:
        lines += _render_enum(enum, inner)
    return lines + [f"{indent}}}"]


def render_proto(proto: Any) -> str:
    """.proto text of a FileDescriptorProto (options other than map entries omitted)."""
    syntax = proto.syntax or "proto2"
    lines = [f'syntax = "{syntax}";']
    if proto.package:
        lines.append(f"package {proto.package};")
    lines += [f'import "{dependency}";' for dependency in proto.dependency]
    lines.append("")
    for message in proto.message_type:
        lines += _render_message(message, syntax, "")
    for enum in proto.enum_type:
        lines += _render_enum(enum, "")
    return "\n".join(lines) + "\n"


def text_of(parsed: Parsed, registered_text: str, fmt: Optional[str], name: Optional[str] = None) -> str:
    """The schema text an answer carries, in the requested ``format``."""
    if parsed.schema_type != PROTOBUF:
        return registered_text
    if fmt == "serialized":
        return serialized(parsed, name)
    if _serialized(registered_text) is not None:
        return render_proto(parsed.value)
    return registered_text
