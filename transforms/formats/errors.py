"""What can go wrong between bytes and records, as errors a caller can tell apart.

A payload that does not decode is the *record's* fault: :class:`DecodeError` is an
:class:`~transforms.validation.InvalidRecord`, so a parse step that already turns
``InvalidRecord`` into a dead letter (with the reason, its ``code`` and the Kafka
coordinates) handles it without a new ``except``. ``code`` is one of :data:`REASONS`.

A registry that cannot be reached, refuses our credentials or answers 5xx is *not* the
record's fault: :class:`SchemaRegistryError` is a runtime failure that stops the bundle
(it is retried), never a dead letter, so an outage cannot silently empty a topic into
the dead-letter sink.
"""

from __future__ import annotations

from typing import Optional

from transforms.base.errors import BeamPipelinesError
from transforms.validation import InvalidRecord

__all__ = [
    "BAD_MAGIC_BYTE",
    "DecodeError",
    "EncodeError",
    "INCOMPATIBLE_SCHEMA",
    "IncompatibleSchemaError",
    "NOT_A_RECORD",
    "REASONS",
    "SCHEMA_VIOLATION",
    "SchemaRegistryError",
    "TRUNCATED",
    "UNDECODABLE",
    "UNKNOWN_SCHEMA_ID",
    "WRONG_SCHEMA_TYPE",
]

# Dead-letter reason codes (``DeadLetter.reason_code``), low-cardinality for metrics.
BAD_MAGIC_BYTE = "bad_magic_byte"  # not in the Confluent wire format (first byte is not 0)
TRUNCATED = "truncated"  # ends before its header, message indexes or record do
UNKNOWN_SCHEMA_ID = "unknown_schema_id"  # the registry has no schema with that id
WRONG_SCHEMA_TYPE = "wrong_schema_type"  # e.g. a PROTOBUF schema id on an Avro topic
INCOMPATIBLE_SCHEMA = "incompatible_schema"  # the writer's schema cannot give the contract's record
UNDECODABLE = "undecodable"  # the bytes are not a value of the writer's schema
SCHEMA_VIOLATION = "schema_violation"  # JSON that breaks its JSON Schema
NOT_A_RECORD = "not_a_record"  # decodes, but to a string/number/array, not a record

REASONS = (BAD_MAGIC_BYTE, TRUNCATED, UNKNOWN_SCHEMA_ID, WRONG_SCHEMA_TYPE,
           INCOMPATIBLE_SCHEMA, UNDECODABLE, SCHEMA_VIOLATION, NOT_A_RECORD)


class DecodeError(InvalidRecord):
    """A payload that does not decode; ``code`` (= ``reason``) is one of :data:`REASONS`,
    the message says what a person would need to know (the schema id, the offset...)."""

    def __init__(self, reason: str, message: str, schema_id: Optional[int] = None) -> None:
        super().__init__(message, reason)
        self.reason = reason
        self.schema_id = schema_id


class EncodeError(BeamPipelinesError, ValueError):
    """A record that does not fit the writer's schema (a missing field, a wrong type)."""

    def __init__(self, message: str, subject: Optional[str] = None) -> None:
        super().__init__(message)
        self.subject = subject


class SchemaRegistryError(BeamPipelinesError):
    """The registry failed us: unreachable, unauthorized, or an answer we cannot use.

    ``status`` is the HTTP status (0 when there was no answer), ``error_code`` the
    registry's own code (40401, 42201...) or -1.
    """

    def __init__(self, message: str, status: int = 0, error_code: int = -1) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class IncompatibleSchemaError(SchemaRegistryError):
    """The registry refused a schema under its subject's compatibility rule (HTTP 409).

    One line: the subject, the level when known, and the registry's own explanation.
    """

    def __init__(self, subject: str, registry_message: str, status: int = 409,
                 error_code: int = 409) -> None:
        first_line = " ".join(registry_message.split())
        super().__init__(
            f"schema registry refused the schema for subject '{subject}': incompatible with "
            f"its registered versions (registry says: {first_line})",
            status, error_code)
        self.subject = subject
        self.registry_message = registry_message
