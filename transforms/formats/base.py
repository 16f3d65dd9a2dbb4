"""The two interfaces every format implements, and plain JSON (the default format).

A reader holds a :class:`Decoder` and calls ``decode(payload)`` for each message: it
returns the record as a JSON-like ``dict`` (what the input contracts' parse functions
take) or raises :class:`~transforms.formats.errors.DecodeError`, an ``InvalidRecord``
whose ``code`` is the reason, which the parse step dead-letters with the message's
coordinates. A writer holds an :class:`Encoder` and calls ``encode(record)``.

Both are picklable (Beam ships them to workers) and create their clients lazily.
:class:`RecordEncoder` is an encoder as a writer's value function (records -> bytes).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from transforms.sinks import as_dict
from transforms.validation import InvalidRecord, decode_json_object

__all__ = ["Decoder", "Encoder", "JsonDecoder", "JsonEncoder", "RecordEncoder"]


class Decoder(ABC):
    """Bytes of one message -> a JSON-like dict, or DecodeError with the reason."""

    #: The ``--format`` this decoder reads (json, avro, protobuf, jsonschema).
    format: str = ""

    @abstractmethod
    def decode(self, payload: bytes) -> dict[str, Any]:
        """The record in ``payload``; raises DecodeError (an InvalidRecord) if it does not decode."""

    def decode_many(self, payloads: list[bytes]) -> list[dict[str, Any] | InvalidRecord]:
        """Each payload's record, or the DecodeError (InvalidRecord) it raised, in order."""
        out: list[dict[str, Any] | InvalidRecord] = []
        decode = self.decode
        for payload in payloads:
            try:
                out.append(decode(payload))
            except InvalidRecord as exc:  # registry outages propagate: not the record's fault
                out.append(exc)
        return out


class Encoder(ABC):
    """A record (a dict) -> the bytes of one message."""

    format: str = ""

    @abstractmethod
    def encode(self, record: dict[str, Any]) -> bytes:
        """``record`` as a message; raises EncodeError if it does not fit the schema."""


class JsonDecoder(Decoder):
    """Plain JSON objects, UTF-8 (the pipelines' default input): the contract's own
    decoder, so reasons and codes are exactly those of a JSON line."""

    format = "json"

    def decode(self, payload: bytes) -> dict[str, Any]:
        return decode_json_object(payload)

    def __repr__(self) -> str:
        return "JsonDecoder()"


class JsonEncoder(Encoder):
    """A record as one compact JSON object (UTF-8, no newline)."""

    format = "json"

    def encode(self, record: dict[str, Any]) -> bytes:
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False,
                          default=str).encode("utf-8")

    def __repr__(self) -> str:
        return "JsonEncoder()"


class RecordEncoder:
    """A writer's value function: a record (NamedTuple or dict) -> the bytes of a message.

    Writers call :meth:`setup` once per worker (``DoFn.setup``): an encoder backed by a
    registry registers or looks up its schema there, so a schema the subject's
    compatibility rule refuses fails the worker at start, with one line naming the
    subject, not on the first record.

    Args:
      encoder: the :class:`Encoder` of the sink's ``--sink_format``.
    """

    def __init__(self, encoder: Encoder) -> None:
        if not isinstance(encoder, Encoder):
            raise TypeError(f"encoder must be a transforms.formats.Encoder, got {encoder!r}")
        self.encoder = encoder

    def setup(self) -> None:
        """Register or look up the schema now (encoders without a registry: nothing)."""
        getattr(self.encoder, "schema_id", None)

    def __call__(self, record: Any) -> bytes:
        return self.encoder.encode(as_dict(record))

    def __repr__(self) -> str:
        return f"RecordEncoder({self.encoder!r})"
