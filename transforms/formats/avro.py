"""Avro: Confluent-framed with a registry, or schemaless with a local ``.avsc``.

Reading decodes each record with its *writer's* schema (looked up by the id in its
header, cached) and resolves it to a *reader* schema when one is given (the input
contract's, :func:`transforms.formats.contracts.user_event_reader_schema`): fields the
writer added are dropped, fields it removed take the reader's defaults, ints widen to
longs, and so on (Avro's schema evolution). A writer schema the reader cannot resolve is
found once per schema id (:mod:`transforms.formats.avro_resolution`) and every record
written with it is a dead letter with reason ``incompatible_schema`` and the problems.

The reader schema's *record name* is not compared with the writer's: a contract is a
set of fields, and topics name their records as they like (``com.acme.PageView``).

Values come back JSON-like: Avro logical types that fastavro turns into Python objects
are given back as text the contracts read (``timestamp-millis`` -> an ISO-8601 string
with offset, ``uuid`` -> its string, ``date`` -> ``YYYY-MM-DD``); decimals stay
``Decimal`` (as JSON numbers do in :func:`transforms.validation.decode_json_object`).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import threading
import uuid
from typing import Any, Optional, Sequence

from transforms.base.errors import ConfigError
from transforms.base.extras import require
from transforms.formats.avro_resolution import resolution_problems
from transforms.formats.base import Decoder, Encoder
from transforms.formats.errors import (
    INCOMPATIBLE_SCHEMA,
    NOT_A_RECORD,
    TRUNCATED,
    UNDECODABLE,
    UNKNOWN_SCHEMA_ID,
    WRONG_SCHEMA_TYPE,
    DecodeError,
    EncodeError,
)
from transforms.formats.registry import (
    AVRO,
    TOPIC_NAME,
    RegistrySchema,
    SchemaNotFoundError,
    SchemaReference,
    SchemaRegistry,
    subject_name,
)
from transforms.formats.wire import frame, unframe

__all__ = [
    "AvroDecoder",
    "AvroEncoder",
    "AvroReader",
    "SchemalessAvroDecoder",
    "SchemalessAvroEncoder",
    "load_avro_schema",
    "record_full_name",
]

AvroSchema = Any  # a JSON-like Avro schema: dict (record, enum...), list (union) or str


def _fastavro() -> Any:
    return require("formats", "fastavro")


def load_avro_schema(source: Any, flag: str = "--value_schema") -> AvroSchema:
    """An Avro schema from a ``.avsc`` path, JSON text, or an already loaded value."""
    if isinstance(source, (dict, list)):
        return source
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(flag, "an Avro schema: a .avsc file or its JSON text", source)
    text = source.strip()
    if not text.startswith(("{", "[", '"')):
        try:
            with open(source, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(flag, "a readable .avsc file", f"{source} ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(flag, f"an Avro schema in JSON ({exc})", os.path.basename(source)) from None


def record_full_name(schema: AvroSchema) -> Optional[str]:
    """``namespace.name`` of a record schema (None for other schemas)."""
    if isinstance(schema, dict) and schema.get("type") in ("record", "error"):
        name = schema["name"]
        namespace = schema.get("namespace")
        return name if "." in name or not namespace else f"{namespace}.{name}"
    return None


def _parse(schema: AvroSchema, named: Optional[dict] = None, flag: str = "--value_schema") -> Any:
    fastavro = _fastavro()
    try:
        return fastavro.parse_schema(schema, named_schemas=named)
    except Exception as exc:  # SchemaParseException, UnknownType, ...
        raise ConfigError(flag, f"a valid Avro schema ({type(exc).__name__}: {exc})") from None


def _adopt_writer_name(reader: AvroSchema, writer: AvroSchema) -> AvroSchema:
    """The reader schema renamed to the writer's record name: contracts match fields."""
    writer_name = record_full_name(writer)
    if writer_name and record_full_name(reader) and record_full_name(reader) != writer_name:
        reader = {k: v for k, v in reader.items() if k not in ("namespace", "aliases")}
        reader["name"] = writer_name
    return reader


def _json_like(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_like(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_like(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class AvroReader:
    """One (writer schema, reader schema) pair, resolved and checked once.

    Args:
      writer: the writer's schema (JSON-like).
      reader: the reader's schema, or None to read with the writer's.
      named: named types of the writer's references (fastavro's named_schemas).
      schema_id: the registry id, for messages (-1 for local schemas).
    """

    def __init__(self, writer: AvroSchema, reader: Optional[AvroSchema] = None,
                 named: Optional[dict] = None, schema_id: int = -1) -> None:
        self.schema_id = schema_id
        self.writer = _parse(writer, dict(named or {}))
        self.reader = None
        if reader is not None:
            self.reader = _parse(_adopt_writer_name(reader, writer), None, "--reader_schema")
            problems = resolution_problems(self.writer, self.reader, named)
            if problems:
                shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
                raise DecodeError(INCOMPATIBLE_SCHEMA,
                                  f"writer schema {_schema_label(schema_id)} cannot be read as "
                                  f"the contract's schema: {shown}", schema_id)
        self.logical = "logicalType" in json.dumps(writer)
        self._read = _fastavro().schemaless_reader
        # When resolving would change no value (the reader's fields are writer fields of the
        # same types, or widened as Python does not see: int -> long, float -> double,
        # into unions), read with the writer's schema alone and keep the reader's fields:
        # fastavro's resolving reader is ~40% slower.
        self.projection = _plain_projection(self.writer, self.reader) if self.reader else None

    def read(self, body: bytes | memoryview) -> dict[str, Any]:
        stream = io.BytesIO(body)
        try:
            if self.projection is not None:
                whole = self._read(stream, self.writer, None)
                value = {name: whole[name] for name in self.projection}
            else:
                value = self._read(stream, self.writer, self.reader)
        except (EOFError, IndexError) as exc:
            if isinstance(exc, IndexError) and "string index" not in str(exc):
                raise DecodeError(UNDECODABLE, f"not Avro of {_schema_label(self.schema_id)}: "
                                  f"IndexError: {exc}", self.schema_id) from None
            # fastavro's C reader says IndexError when a varint runs past the end
            raise DecodeError(TRUNCATED, f"truncated: the Avro record ({_schema_label(self.schema_id)}) "
                              f"ends early ({len(body)} bytes)", self.schema_id) from None
        except Exception as exc:
            kind = type(exc).__name__
            reason = INCOMPATIBLE_SCHEMA if kind == "SchemaResolutionError" else UNDECODABLE
            raise DecodeError(reason, f"not Avro of {_schema_label(self.schema_id)}: "
                              f"{kind}: {str(exc)[:200]}", self.schema_id) from None
        left = len(body) - stream.tell()
        if left:
            raise DecodeError(UNDECODABLE, f"not Avro of {_schema_label(self.schema_id)}: "
                              f"{left} bytes left after the record", self.schema_id)
        if not isinstance(value, dict):
            raise DecodeError(NOT_A_RECORD, f"expected an Avro record, got {type(value).__name__} "
                              f"({_schema_label(self.schema_id)})", self.schema_id)
        return _json_like(value) if self.logical else value


_SAME_IN_PYTHON = {("int", "long"), ("float", "double")}


def _branches(schema: Any) -> Optional[list[str]]:
    """The primitive type names of a field's type (a union's branches), or None when
    it involves anything else (named types, arrays, maps, logical types)."""
    kinds = schema if isinstance(schema, list) else [schema]
    out = []
    for kind in kinds:
        if isinstance(kind, dict) and set(kind) == {"type"}:
            kind = kind["type"]
        if not isinstance(kind, str) or kind not in ("null", "boolean", "int", "long", "float",
                                                     "double", "string", "bytes"):
            return None
        out.append(kind)
    return out


def _plain_projection(writer: Any, reader: Any) -> Optional[list[str]]:
    """The reader's field names when reading with the writer's schema and keeping them
    gives exactly what resolution would; None otherwise."""
    if not (isinstance(writer, dict) and isinstance(reader, dict)
            and writer.get("type") == reader.get("type") == "record"):
        return None
    by_name = {f["name"]: f for f in writer["fields"]}
    names = []
    for field in reader["fields"]:
        source = by_name.get(field["name"])
        if source is None:
            return None
        written, read = _branches(source["type"]), _branches(field["type"])
        if written is None or read is None:
            return None
        for kind in written:
            if kind not in read and not any((kind, r) in _SAME_IN_PYTHON for r in read):
                return None
        names.append(field["name"])
    return names


def _schema_label(schema_id: int) -> str:
    return f"schema id {schema_id}" if schema_id >= 0 else "the local schema"


class AvroDecoder(Decoder):
    """Confluent-framed Avro; writer schemas from the registry by id, cached.

    Args:
      registry: the schema registry (a :class:`SchemaRegistry`).
      reader_schema: the schema records are resolved to (path, JSON text or value);
        None decodes with each writer's own schema.
    """

    format = "avro"

    def __init__(self, registry: SchemaRegistry, reader_schema: Any = None) -> None:
        self.registry = registry
        self.reader_schema = None if reader_schema is None else load_avro_schema(reader_schema, "--reader_schema")
        self._readers: dict[int, AvroReader | DecodeError] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"registry": self.registry, "reader_schema": self.reader_schema}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["registry"], state["reader_schema"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"AvroDecoder({self.registry!r}, reader_schema={'yes' if self.reader_schema else 'no'})"

    def reader(self, schema_id: int) -> AvroReader:
        """The resolved reader of a schema id (DecodeError when it cannot be had)."""
        found = self._readers.get(schema_id)
        if found is None:
            with self._lock:
                found = self._readers.get(schema_id)
                if found is None:
                    try:
                        found = self._make_reader(schema_id)
                    except DecodeError as exc:
                        found = exc
                    if not (isinstance(found, DecodeError) and found.reason == UNKNOWN_SCHEMA_ID):
                        self._readers[schema_id] = found
        if isinstance(found, DecodeError):
            raise found
        return found

    def _make_reader(self, schema_id: int) -> AvroReader:
        try:
            schema = self.registry.schema_by_id(schema_id)
        except SchemaNotFoundError:
            raise DecodeError(UNKNOWN_SCHEMA_ID, f"unknown schema id {schema_id}: the registry "
                              "has no such schema", schema_id) from None
        if schema.schema_type != AVRO:
            raise DecodeError(WRONG_SCHEMA_TYPE, f"schema id {schema_id} is a {schema.schema_type} "
                              "schema, not Avro", schema_id)
        named = resolve_references(self.registry, schema.references)
        writer = json.loads(schema.text)
        return AvroReader(writer, self.reader_schema, named, schema_id)

    def decode(self, payload: bytes) -> dict[str, Any]:
        schema_id, body = unframe(payload)
        return self.reader(schema_id).read(body)


def resolve_references(registry: SchemaRegistry, references: Sequence[SchemaReference],
                       named: Optional[dict] = None) -> dict:
    """fastavro named_schemas holding the named types of ``references``, recursively."""
    named = {} if named is None else named
    for reference in references:
        _, _, schema = registry.version(reference.subject, reference.version)
        resolve_references(registry, schema.references, named)
        _fastavro().parse_schema(json.loads(schema.text), named_schemas=named)
    return named


class SchemalessAvroDecoder(Decoder):
    """Avro binary encoding alone (no header), as ``fastavro.schemaless_writer`` writes it.

    Args:
      writer_schema: the schema the records were written with (``--value_schema``).
      reader_schema: the schema to resolve them to, or None.
    """

    format = "avro"

    def __init__(self, writer_schema: Any, reader_schema: Any = None) -> None:
        self.writer_schema = load_avro_schema(writer_schema)
        self.reader_schema = None if reader_schema is None else load_avro_schema(reader_schema, "--reader_schema")
        try:
            self._reader: AvroReader | DecodeError = AvroReader(self.writer_schema, self.reader_schema)
        except DecodeError as exc:  # the contract cannot take this schema: say so now
            raise ConfigError("--value_schema", "a schema the input contract can read", str(exc)) from None

    def __getstate__(self) -> dict[str, Any]:
        return {"writer": self.writer_schema, "reader": self.reader_schema}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["writer"], state["reader"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"SchemalessAvroDecoder({record_full_name(self.writer_schema) or 'schema'})"

    def reader(self, schema_id: int = -1) -> AvroReader:
        assert isinstance(self._reader, AvroReader)
        return self._reader

    def decode(self, payload: bytes) -> dict[str, Any]:
        return self.reader().read(payload)


def _encode_body(writer: Any, record: dict[str, Any], subject: Optional[str]) -> bytes:
    fastavro = _fastavro()
    out = io.BytesIO()
    try:
        fastavro.schemaless_writer(out, writer, record)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        try:
            from fastavro.validation import validate

            validate(record, writer, raise_errors=True)
        except Exception as invalid:  # ValidationError names the field
            detail = " ".join(str(invalid).split())
        raise EncodeError(f"record does not fit the Avro schema {record_full_name(writer) or ''}: "
                          f"{detail[:300]}", subject) from None
    return out.getvalue()


class SchemalessAvroEncoder(Encoder):
    """Records -> Avro binary encoding alone (no header), with a local schema.

    Args:
      schema: the writer's schema (a .avsc path, JSON text or value).
    """

    format = "avro"

    def __init__(self, schema: Any) -> None:
        self.schema = load_avro_schema(schema)
        self._parsed = _parse(self.schema)

    def __getstate__(self) -> dict[str, Any]:
        return {"schema": self.schema}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["schema"])  # type: ignore[misc]

    def encode(self, record: dict[str, Any]) -> bytes:
        return _encode_body(self._parsed, record, None)


class AvroEncoder(Encoder):
    """Records -> Confluent-framed Avro; the schema is registered (or looked up) once.

    Args:
      registry: the schema registry.
      schema: the writer's schema (a .avsc path, JSON text or value).
      topic: the topic written to (for the subject name).
      subject: the subject, overriding the strategy.
      subject_name_strategy: topic_name (``<topic>-value``, default), record_name or
        topic_record_name.
      auto_register: register the schema if the subject lacks it (the Confluent
        serializers' default); False only looks it up and fails if it is missing.
      references: references of the schema to other registered schemas.
      normalize: ask the registry to normalize the schema before comparing.
    """

    format = "avro"

    def __init__(self, registry: SchemaRegistry, schema: Any, *, topic: Optional[str] = None,
                 subject: Optional[str] = None, subject_name_strategy: str = TOPIC_NAME,
                 auto_register: bool = True, references: Sequence[SchemaReference] = (),
                 normalize: bool = False) -> None:
        self.registry = registry
        self.schema = load_avro_schema(schema)
        if subject is None:
            if topic is None:
                raise ConfigError("topic", "the topic (or an explicit subject) to name the schema's subject")
            subject = subject_name(subject_name_strategy, topic, record_full_name(self.schema))
        self.subject = subject
        self.auto_register = auto_register
        self.references = tuple(references)
        self.normalize = normalize
        self._parsed: Any = None
        self._schema_id: Optional[int] = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("registry", "schema", "subject", "auto_register",
                                              "references", "normalize")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.pop("registry"), state.pop("schema"), **state)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"AvroEncoder(subject={self.subject!r}, {self.registry!r})"

    @property
    def schema_id(self) -> int:
        """The registry id of the schema (registered or looked up on first use)."""
        if self._schema_id is None:
            self._schema_id = self.registry.id_for(
                self.subject, RegistrySchema(json.dumps(self.schema), AVRO, self.references),
                self.auto_register, self.normalize)
        return self._schema_id

    def encode(self, record: dict[str, Any]) -> bytes:
        if self._parsed is None:
            named = resolve_references(self.registry, self.references) if self.references else None
            self._parsed = _parse(self.schema, named)
        return frame(self.schema_id, _encode_body(self._parsed, record, self.subject))

