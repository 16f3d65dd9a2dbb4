"""JSON Schema: Confluent-framed UTF-8 JSON, validated against the writer's registered schema.

The payload after the header is plain JSON; it is decoded with the contracts' own JSON
decoder (:func:`transforms.validation.decode_json_object`: exact decimals, the same
reasons for broken JSON) and then validated with the ``jsonschema`` package against the
schema its id names (draft from ``$schema``; draft 7 when absent). A violation is a dead
letter with reason ``schema_violation`` and jsonschema's best explanation.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Optional, Sequence

from transforms.base.errors import ConfigError
from transforms.base.extras import require
from transforms.formats.base import Decoder, Encoder
from transforms.formats.errors import (
    SCHEMA_VIOLATION,
    UNKNOWN_SCHEMA_ID,
    WRONG_SCHEMA_TYPE,
    DecodeError,
    EncodeError,
)
from transforms.formats.registry import (
    JSON,
    TOPIC_NAME,
    RegistrySchema,
    SchemaNotFoundError,
    SchemaReference,
    SchemaRegistry,
    subject_name,
)
from transforms.formats.wire import frame, unframe
from transforms.validation import InvalidRecord, decode_json_object

__all__ = ["JsonSchemaDecoder", "JsonSchemaEncoder", "json_schema_validator", "load_json_schema"]


def load_json_schema(source: Any, flag: str = "--value_schema") -> dict[str, Any]:
    """A JSON Schema from a path, JSON text or a dict."""
    if isinstance(source, dict):
        return source
    text = str(source).strip()
    if not text.startswith("{"):
        try:
            with open(text, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(flag, "a readable JSON Schema file", f"{source} ({exc.strerror or exc})") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(flag, f"a JSON Schema in JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(flag, "a JSON Schema object", type(value).__name__)
    return value


def json_schema_validator(schema: dict[str, Any], references: Optional[dict[str, Any]] = None) -> Any:
    """A jsonschema validator for ``schema`` (its draft), with referenced schemas by name."""
    jsonschema = require("formats", "jsonschema")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    if not references:
        return cls(schema)
    referencing = require("formats", "referencing")
    resources = [(name, referencing.Resource.from_contents(
        value, default_specification=referencing.jsonschema.DRAFT7)) for name, value in references.items()]
    registry = referencing.Registry().with_resources(resources)
    return cls(schema, registry=registry)


def _violation(validator: Any, value: Any) -> Optional[str]:
    jsonschema = require("formats", "jsonschema")
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    return f"{where}: {error.message[:200]}"


class JsonSchemaDecoder(Decoder):
    """Confluent-framed JSON validated against its registered JSON Schema.

    Args:
      registry: the schema registry.
      validate: check each record against the writer's schema (the default); False only
        decodes the JSON (faster; the contract still validates what it needs).
    """

    format = "jsonschema"

    def __init__(self, registry: SchemaRegistry, validate: bool = True) -> None:
        self.registry = registry
        self.validate = validate
        self._validators: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"registry": self.registry, "validate": self.validate}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["registry"], state["validate"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"JsonSchemaDecoder({self.registry!r})"

    def _validator(self, schema_id: int) -> Any:
        found = self._validators.get(schema_id)
        if found is None:
            with self._lock:
                try:
                    schema = self.registry.schema_by_id(schema_id)
                except SchemaNotFoundError:
                    raise DecodeError(UNKNOWN_SCHEMA_ID, f"unknown schema id {schema_id}: the "
                                      "registry has no such schema", schema_id) from None
                if schema.schema_type != JSON:
                    found = DecodeError(WRONG_SCHEMA_TYPE, f"schema id {schema_id} is a "
                                        f"{schema.schema_type} schema, not JSON Schema", schema_id)
                else:
                    references = {}
                    for reference in schema.references:
                        _, _, referenced = self.registry.version(reference.subject, reference.version)
                        references[reference.name] = json.loads(referenced.text)
                    found = json_schema_validator(json.loads(schema.text), references)
                self._validators[schema_id] = found
        if isinstance(found, DecodeError):
            raise found
        return found

    def decode(self, payload: bytes) -> dict[str, Any]:
        schema_id, body = unframe(payload)
        validator = self._validator(schema_id)  # the id must exist and be a JSON Schema
        try:
            value = decode_json_object(bytes(body))
        except InvalidRecord as exc:
            raise DecodeError(exc.code, f"{exc} (schema id {schema_id})", schema_id) from None
        if self.validate:
            problem = _violation(validator, value)
            if problem:
                raise DecodeError(SCHEMA_VIOLATION, f"breaks JSON Schema id {schema_id}: {problem}",
                                  schema_id)
        return value


class JsonSchemaEncoder(Encoder):
    """Records -> Confluent-framed JSON, validated against the schema before writing.

    Args:
      registry: the schema registry.
      schema: the JSON Schema (path, JSON text or dict).
      topic: the topic written to (for the subject name).
      subject: the subject, overriding the strategy.
      subject_name_strategy: topic_name (default), record_name (the schema's ``title``)
        or topic_record_name.
      auto_register: register the schema if missing (default) or only look it up.
      references: references of the schema to other registered schemas.
    """

    format = "jsonschema"

    def __init__(self, registry: SchemaRegistry, schema: Any, *, topic: Optional[str] = None,
                 subject: Optional[str] = None, subject_name_strategy: str = TOPIC_NAME,
                 auto_register: bool = True, references: Sequence[SchemaReference] = ()) -> None:
        self.registry = registry
        self.schema = load_json_schema(schema)
        if subject is None:
            if topic is None:
                raise ConfigError("topic", "the topic (or an explicit subject) to name the schema's subject")
            subject = subject_name(subject_name_strategy, topic, self.schema.get("title"))
        self.subject = subject
        self.auto_register = auto_register
        self.references = tuple(references)
        self._validator = json_schema_validator(self.schema) if not references else None
        self._schema_id: Optional[int] = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("registry", "schema", "subject", "auto_register", "references")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.pop("registry"), state.pop("schema"), **state)  # type: ignore[misc]

    @property
    def schema_id(self) -> int:
        if self._schema_id is None:
            self._schema_id = self.registry.id_for(
                self.subject, RegistrySchema(json.dumps(self.schema), JSON, self.references),
                self.auto_register)
        return self._schema_id

    def encode(self, record: dict[str, Any]) -> bytes:
        if self._validator is not None:
            problem = _violation(self._validator, record)
            if problem:
                raise EncodeError(f"record breaks the JSON Schema of subject '{self.subject}': {problem}",
                                  self.subject)
        body = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
        return frame(self.schema_id, body.encode("utf-8"))
