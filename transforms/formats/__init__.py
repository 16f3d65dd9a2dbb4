"""Message formats: JSON, and Avro / Protobuf / JSON Schema in the Confluent wire format.

Readers hold a :class:`Decoder` (``decode(payload) -> dict``, raising
:class:`DecodeError`, an ``InvalidRecord`` whose ``code`` is the reason), writers an
:class:`Encoder` (``encode(record) -> bytes``); :func:`decoder_for` and
:func:`encoder_for` build them from the ``--format`` flags' values. The libraries doing
the work are fastavro, google.protobuf, jsonschema and confluent-kafka's registry client
(the ``[formats]`` extra); modules import them on use. See docs/formats.md.
"""

from transforms.formats.base import Decoder, Encoder, JsonDecoder, JsonEncoder, RecordEncoder
from transforms.formats.errors import (
    REASONS,
    DecodeError,
    EncodeError,
    IncompatibleSchemaError,
    SchemaRegistryError,
)
from transforms.formats.factory import FORMATS, decoder_for, encoder_for, registry_for
from transforms.formats.registry import RegistryConfig, SchemaRegistry, subject_name

__all__ = [
    "FORMATS",
    "REASONS",
    "DecodeError",
    "Decoder",
    "EncodeError",
    "Encoder",
    "IncompatibleSchemaError",
    "JsonDecoder",
    "JsonEncoder",
    "RecordEncoder",
    "RegistryConfig",
    "SchemaRegistry",
    "SchemaRegistryError",
    "decoder_for",
    "encoder_for",
    "registry_for",
    "subject_name",
]
