"""Protobuf: Confluent-framed with a registry, or raw with a local ``.desc`` file.

Messages are built at run time from descriptors, never from generated code:

* with a registry, from the writer's schema fetched by id in the registry's
  ``serialized`` form (a FileDescriptorProto, as Confluent's own deserializer asks for
  it), its references fetched the same way, and the message chosen by the message-index
  array of the header; one descriptor pool per schema id, so two versions of one
  ``.proto`` file never clash;
* without one, from a FileDescriptorSet (``protoc --include_imports
  --descriptor_set_out=FILE.desc x.proto``) and ``--message_name``.

Records come back as dicts keyed by the ``.proto`` field names
(``preserving_proto_field_name``). Unlike ``json_format.MessageToDict``, 64-bit integers
stay integers (the JSON mapping makes them strings, which a contract reading epoch
seconds would reject); enums are their names, well-known types take their JSON forms
(``Timestamp`` -> RFC 3339 text), wrappers their values. Proto3 scalars without presence
are always present (proto3 cannot tell 0 from unset); unset ``optional``/oneof fields are
absent, so a contract sees them as missing.

A message whose bytes hold fields the *writer's* schema does not define is not a message
of that schema (random bytes often parse as unknown fields): with a registry that is a
dead letter (``undecodable``). Raw Protobuf keeps unknown fields silently, as Protobuf's
own evolution rules want when the local schema is older than the writer's.
"""

# Over 500 lines: descriptor building, Confluent framing and message indexes belong to one wire format.

from __future__ import annotations

import base64
import threading
from typing import Any, Optional, Sequence

from transforms.base.errors import ConfigError
from transforms.base.extras import require
from transforms.formats.base import Decoder, Encoder
from transforms.formats.errors import (
    NOT_A_RECORD,
    TRUNCATED,
    UNDECODABLE,
    UNKNOWN_SCHEMA_ID,
    WRONG_SCHEMA_TYPE,
    DecodeError,
    EncodeError,
)
from transforms.formats.registry import (
    PROTOBUF,
    TOPIC_NAME,
    RegistrySchema,
    SchemaNotFoundError,
    SchemaReference,
    SchemaRegistry,
    subject_name,
)
from transforms.formats.wire import frame, read_message_indexes, unframe

__all__ = [
    "ProtobufDecoder",
    "ProtobufEncoder",
    "RawProtobufDecoder",
    "RawProtobufEncoder",
    "load_descriptor_set",
    "message_descriptor",
    "message_indexes",
    "message_to_dict",
]

_WELL_KNOWN_PREFIX = "google/protobuf/"
_WRAPPERS = {f"google.protobuf.{n}Value" for n in
             ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")}


def _pb() -> Any:
    require("formats", "google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

    return descriptor_pb2, descriptor_pool, json_format, message_factory


def _add_file(pool: Any, proto: Any, available: dict[str, Any], added: set[str]) -> None:
    """Add ``proto`` to ``pool`` after its dependencies (from ``available`` or the
    well-known types compiled into protobuf)."""
    descriptor_pb2, descriptor_pool, _, _ = _pb()
    if proto.name in added:
        return
    added.add(proto.name)
    for dependency in proto.dependency:
        if dependency in available:
            _add_file(pool, available[dependency], available, added)
        elif dependency not in added:
            try:
                known = descriptor_pool.Default().FindFileByName(dependency)
            except KeyError:
                raise ConfigError("--value_schema", f"a descriptor set that includes {dependency} "
                                  "(protoc --include_imports)", proto.name) from None
            file_proto = descriptor_pb2.FileDescriptorProto()
            known.CopyToProto(file_proto)
            _add_file(pool, file_proto, available, added)
    pool.Add(proto)


def load_descriptor_set(path: str) -> Any:
    """A DescriptorPool with every file of a FileDescriptorSet (a ``.desc`` file)."""
    descriptor_pb2, descriptor_pool, _, _ = _pb()
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError("--value_schema", "a readable .desc file (protoc --descriptor_set_out)",
                          f"{path} ({exc.strerror or exc})") from None
    files = descriptor_pb2.FileDescriptorSet()
    try:
        files.ParseFromString(data)
    except Exception:
        raise ConfigError("--value_schema", "a FileDescriptorSet (protoc --include_imports "
                          "--descriptor_set_out=FILE.desc)", path) from None
    if not files.file:
        raise ConfigError("--value_schema", "a FileDescriptorSet with at least one file", path)
    pool = descriptor_pool.DescriptorPool()
    available = {f.name: f for f in files.file}
    added: set[str] = set()
    for proto in files.file:
        _add_file(pool, proto, available, added)
    return pool


def message_descriptor(pool: Any, message_name: Optional[str], flag: str = "--message_name") -> Any:
    """The descriptor of ``message_name`` (full name, e.g. ``shop.v1.PageView``)."""
    if not message_name:
        raise ConfigError(flag, "the full name of the message (package.Message) in the .desc file")
    try:
        return pool.FindMessageTypeByName(message_name.lstrip("."))
    except KeyError:
        raise ConfigError(flag, "a message defined in the .desc file (full name, with its "
                          "package)", message_name) from None


def _message_class(descriptor: Any) -> Any:
    return _pb()[3].GetMessageClass(descriptor)


def message_indexes(descriptor: Any) -> list[int]:
    """The message-index array of a message: its path through the file's nested types."""
    path = []
    current = descriptor
    while current.containing_type is not None:
        parent = current.containing_type
        path.append(list(parent.nested_types).index(current))
        current = parent
    path.append(list(current.file.message_types_by_name.values()).index(current))
    return list(reversed(path))


def _by_indexes(file_descriptor: Any, indexes: Sequence[int]) -> Any:
    candidates = list(file_descriptor.message_types_by_name.values())
    descriptor = None
    for index in indexes:
        if index >= len(candidates):
            return None
        descriptor = candidates[index]
        candidates = list(descriptor.nested_types)
    return descriptor


def _is_repeated(field: Any) -> bool:
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


class _Unknown(Exception):
    pass


def _value(field: Any, value: Any, strict: bool) -> Any:
    if field.type == field.TYPE_MESSAGE:
        name = field.message_type.full_name
        if name in _WRAPPERS:
            return value.value
        if name.startswith("google.protobuf."):
            return _pb()[2].MessageToDict(value, preserving_proto_field_name=True)
        return _to_dict(value, strict)
    if field.type == field.TYPE_ENUM:
        number = field.enum_type.values_by_number.get(value)
        return number.name if number is not None else value
    return value


def _to_dict(message: Any, strict: bool) -> dict[str, Any]:
    if strict:
        from google.protobuf.unknown_fields import UnknownFieldSet

        if len(UnknownFieldSet(message)):
            raise _Unknown(message.DESCRIPTOR.full_name)
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        name = field.name
        if _is_repeated(field):
            values = getattr(message, name)
            if field.type == field.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                out[name] = {k: _value(value_field, v, strict) for k, v in values.items()}
            else:
                out[name] = [_value(field, v, strict) for v in values]
        elif field.has_presence and not message.HasField(name):
            continue
        else:
            out[name] = _value(field, getattr(message, name), strict)
    return out


def message_to_dict(message: Any) -> dict[str, Any]:
    """A message as a JSON-like dict keyed by .proto field names, integers kept as ints."""
    return _to_dict(message, strict=False)


def _ends_early(data: bytes) -> bool:
    """Whether the top-level fields of a payload that failed to parse run past its end.

    Only called after protobuf refused the bytes (upb's error does not say why), to
    tell a cut-off message (``truncated``) from bytes that are no message (``undecodable``).
    """
    position, size = 0, len(data)

    def varint(at: int) -> int:
        for end in range(at, min(at + 10, size)):
            if not data[end] & 0x80:
                return end + 1
        return -1 if at + 10 > size else -2  # -1: ran out of bytes; -2: too long

    while position < size:
        after = varint(position)
        if after < 0:
            return after == -1
        wire_type = data[position] & 0x07
        position = after
        if wire_type == 0:
            after = varint(position)
            if after < 0:
                return after == -1
            position = after
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        elif wire_type == 2:
            after = varint(position)
            if after < 0:
                return after == -1
            length = 0
            for shift, byte in enumerate(data[position:after]):
                length |= (byte & 0x7F) << (7 * shift)
            position = after + length
        else:
            return False  # groups or invalid wire types: not a truncation
        if position > size:
            return True
    return False


def _parse(cls: Any, body: bytes | memoryview, schema_id: int, strict: bool, label: str) -> dict[str, Any]:
    message = cls()
    data = bytes(body)
    try:
        message.ParseFromString(data)
    except Exception as exc:
        reason = TRUNCATED if _ends_early(data) else UNDECODABLE
        what = "truncated: the bytes end inside" if reason == TRUNCATED else "not"
        raise DecodeError(reason, f"{what} a Protobuf {label}: {str(exc)[:200]}", schema_id) from None
    try:
        return _to_dict(message, strict)
    except _Unknown as exc:
        raise DecodeError(UNDECODABLE, f"not a Protobuf {label}: it holds fields that the "
                          f"writer's schema does not define (in {exc})", schema_id) from None


class ProtobufDecoder(Decoder):
    """Confluent-framed Protobuf; the writer's schema from the registry by id, cached.

    Args:
      registry: the schema registry.
    """

    format = "protobuf"

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self._files: dict[int, Any] = {}
        self._classes: dict[tuple[int, tuple[int, ...]], Any] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"registry": self.registry}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["registry"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ProtobufDecoder({self.registry!r})"

    def _file(self, schema_id: int) -> Any:
        found = self._files.get(schema_id)
        if found is None:
            with self._lock:
                found = self._files.get(schema_id)
                if found is None:
                    try:
                        found = self._load(schema_id)
                    except DecodeError as exc:
                        if exc.reason == UNKNOWN_SCHEMA_ID:
                            raise
                        found = exc
                    self._files[schema_id] = found
        if isinstance(found, DecodeError):
            raise found
        return found

    def _load(self, schema_id: int) -> Any:
        descriptor_pb2, descriptor_pool, _, _ = _pb()
        try:
            schema = self.registry.schema_by_id(schema_id, fmt="serialized")
        except SchemaNotFoundError:
            raise DecodeError(UNKNOWN_SCHEMA_ID, f"unknown schema id {schema_id}: the registry "
                              "has no such schema", schema_id) from None
        if schema.schema_type != PROTOBUF:
            raise DecodeError(WRONG_SCHEMA_TYPE, f"schema id {schema_id} is a {schema.schema_type} "
                              "schema, not Protobuf", schema_id)
        available: dict[str, Any] = {}
        self._collect_references(schema.references, available)
        main = _file_proto(schema.text, f"schema{schema_id}.proto")
        pool = descriptor_pool.DescriptorPool()
        added: set[str] = set()
        for proto in available.values():
            _add_file(pool, proto, available, added)
        _add_file(pool, main, available, added)
        return pool.FindFileByName(main.name)

    def _collect_references(self, references: Sequence[SchemaReference], available: dict[str, Any]) -> None:
        for reference in references:
            if reference.name in available:
                continue
            _, _, schema = self.registry.version(reference.subject, reference.version, fmt="serialized")
            self._collect_references(schema.references, available)
            available[reference.name] = _file_proto(schema.text, reference.name)

    def _class(self, schema_id: int, indexes: list[int]) -> Any:
        key = (schema_id, tuple(indexes))
        cls = self._classes.get(key)
        if cls is None:
            descriptor = _by_indexes(self._file(schema_id), indexes)
            if descriptor is None:
                raise DecodeError(UNDECODABLE, f"message indexes {indexes} name no message of "
                                  f"schema id {schema_id}", schema_id)
            cls = self._classes[key] = _message_class(descriptor)
        return cls

    def decode(self, payload: bytes) -> dict[str, Any]:
        schema_id, body = unframe(payload)
        indexes, rest = read_message_indexes(body, schema_id)
        cls = self._class(schema_id, indexes)
        return _parse(cls, rest, schema_id, True, f"{cls.DESCRIPTOR.full_name} (schema id {schema_id})")


def _file_proto(text: str, name: str) -> Any:
    descriptor_pb2 = _pb()[0]
    proto = descriptor_pb2.FileDescriptorProto()
    try:
        proto.ParseFromString(base64.b64decode(text, validate=True))
    except Exception:
        raise DecodeError(UNDECODABLE, f"the registry's Protobuf schema {name} is not a serialized "
                          "FileDescriptorProto (does the registry support format=serialized?)") from None
    if not proto.name:
        proto.name = name
    return proto


class RawProtobufDecoder(Decoder):
    """Protobuf bytes alone (no header), with a local FileDescriptorSet.

    Args:
      descriptor_set: the ``.desc`` file (``protoc --include_imports --descriptor_set_out``).
      message_name: the full name of the message every payload holds.
    """

    format = "protobuf"

    def __init__(self, descriptor_set: str, message_name: str) -> None:
        self.descriptor_set = descriptor_set
        self.message_name = message_name
        self._cls = _message_class(message_descriptor(load_descriptor_set(descriptor_set), message_name))

    def __getstate__(self) -> dict[str, Any]:
        return {"descriptor_set": self.descriptor_set, "message_name": self.message_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["descriptor_set"], state["message_name"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"RawProtobufDecoder({self.message_name!r})"

    def decode(self, payload: bytes) -> dict[str, Any]:
        if not payload:
            raise DecodeError(NOT_A_RECORD, f"an empty payload is not a {self.message_name} "
                              "worth reading (every field would be unset)")
        return _parse(self._cls, payload, -1, False, self.message_name)


def _encode_message(cls: Any, record: dict[str, Any], subject: Optional[str]) -> bytes:
    json_format = _pb()[2]
    try:
        message = json_format.ParseDict(record, cls())
    except Exception as exc:
        raise EncodeError(f"record does not fit {cls.DESCRIPTOR.full_name}: {str(exc)[:300]}",
                          subject) from None
    return message.SerializeToString()


class RawProtobufEncoder(Encoder):
    """Records -> Protobuf bytes alone (no header), with a local FileDescriptorSet.

    Args:
      descriptor_set: the ``.desc`` file.
      message_name: the full name of the message to write.
    """

    format = "protobuf"

    def __init__(self, descriptor_set: str, message_name: str) -> None:
        self.descriptor_set = descriptor_set
        self.message_name = message_name
        self._cls = _message_class(message_descriptor(load_descriptor_set(descriptor_set), message_name))

    def __getstate__(self) -> dict[str, Any]:
        return {"descriptor_set": self.descriptor_set, "message_name": self.message_name}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["descriptor_set"], state["message_name"])  # type: ignore[misc]

    def encode(self, record: dict[str, Any]) -> bytes:
        return _encode_message(self._cls, record, None)


class ProtobufEncoder(Encoder):
    """Records -> Confluent-framed Protobuf; the message's file is registered once.

    The file is registered in the serialized form Confluent's serializer uses; imported
    files other than the well-known types are registered first, each under its file name
    as subject (Confluent's default reference subject strategy), and referenced.

    Args:
      registry: the schema registry.
      descriptor_set: the ``.desc`` file holding the message.
      message_name: the full name of the message to write.
      topic: the topic written to (for the subject name).
      subject: the subject, overriding the strategy.
      subject_name_strategy: topic_name (default), record_name or topic_record_name.
      auto_register: register the schema if missing (default) or only look it up.
    """

    format = "protobuf"

    def __init__(self, registry: SchemaRegistry, descriptor_set: str, message_name: str, *,
                 topic: Optional[str] = None, subject: Optional[str] = None,
                 subject_name_strategy: str = TOPIC_NAME, auto_register: bool = True) -> None:
        self.registry = registry
        self.descriptor_set = descriptor_set
        self.message_name = message_name
        self._descriptor = message_descriptor(load_descriptor_set(descriptor_set), message_name)
        if subject is None:
            if topic is None:
                raise ConfigError("topic", "the topic (or an explicit subject) to name the schema's subject")
            subject = subject_name(subject_name_strategy, topic, self._descriptor.full_name)
        self.subject = subject
        self.auto_register = auto_register
        self._cls = _message_class(self._descriptor)
        self._indexes = message_indexes(self._descriptor)
        self._schemas: dict[str, RegistrySchema] = {}
        self._schema_id: Optional[int] = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("registry", "descriptor_set", "message_name",
                                              "subject", "auto_register")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.pop("registry"), state.pop("descriptor_set"),  # type: ignore[misc]
                      state.pop("message_name"), **state)

    def _register_file(self, file_descriptor: Any, subject: str) -> int:
        """Register ``file_descriptor`` under ``subject``, its imports first (each under
        its file name); memoizes each file's registry form in ``self._schemas``."""
        references = []
        for dependency in file_descriptor.dependencies:
            if dependency.name.startswith(_WELL_KNOWN_PREFIX):
                continue
            self._register_file(dependency, dependency.name)
            version = self.registry.lookup(dependency.name, self._schemas[dependency.name]).version
            references.append(SchemaReference(dependency.name, dependency.name, version))
        text = base64.b64encode(file_descriptor.serialized_pb).decode("ascii")
        schema = self._schemas[file_descriptor.name] = RegistrySchema(text, PROTOBUF, tuple(references))
        return self.registry.id_for(subject, schema, self.auto_register)

    @property
    def schema_id(self) -> int:
        if self._schema_id is None:
            self._schema_id = self._register_file(self._descriptor.file, self.subject)
        return self._schema_id

    def encode(self, record: dict[str, Any]) -> bytes:
        return frame(self.schema_id, _encode_message(self._cls, record, self.subject), self._indexes)
