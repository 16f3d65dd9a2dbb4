"""The Confluent wire format: how a schema id travels in front of every message.

::

    byte 0      magic byte, always 0
    bytes 1-4   schema id, a big-endian unsigned 32-bit integer
    (Protobuf)  message indexes: which message of the schema's .proto file this is, as a
                zigzag-varint count followed by zigzag-varint indexes into the file's
                (nested) message types; the common case [0] is the single byte 0
    rest        the payload: Avro binary encoding, Protobuf bytes, or UTF-8 JSON

Framing is the only hand-written codec here; the payloads go through fastavro,
google.protobuf and json.
"""

from __future__ import annotations

import struct
from typing import Sequence

from transforms.formats.errors import BAD_MAGIC_BYTE, TRUNCATED, UNDECODABLE, DecodeError

__all__ = [
    "HEADER_SIZE",
    "MAGIC_BYTE",
    "frame",
    "message_indexes_bytes",
    "read_message_indexes",
    "unframe",
]

MAGIC_BYTE = 0
HEADER_SIZE = 5
_HEADER = struct.Struct(">bI")
MAX_SCHEMA_ID = 2**31 - 1
# A .proto file nests messages a few levels deep; more indexes than this is not a header.
_MAX_INDEXES = 64


def frame(schema_id: int, payload: bytes, message_indexes: Sequence[int] | None = None) -> bytes:
    """Magic byte + schema id (+ Protobuf message indexes) + payload."""
    if not 0 <= schema_id <= MAX_SCHEMA_ID:
        raise ValueError(f"schema id must be within [0, {MAX_SCHEMA_ID}], got {schema_id}")
    header = _HEADER.pack(MAGIC_BYTE, schema_id)
    if message_indexes is None:
        return header + payload
    return header + message_indexes_bytes(message_indexes) + payload


def unframe(data: bytes) -> tuple[int, memoryview]:
    """(schema id, the rest) of a framed message, or DecodeError saying what is wrong."""
    if len(data) < HEADER_SIZE:
        if data and data[0] != MAGIC_BYTE:
            raise _bad_magic(data)
        raise DecodeError(
            TRUNCATED,
            f"truncated: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte Confluent "
            "header (magic byte + schema id)")
    if data[0] != MAGIC_BYTE:
        raise _bad_magic(data)
    schema_id = int.from_bytes(data[1:HEADER_SIZE], "big")
    return schema_id, memoryview(data)[HEADER_SIZE:]


def _bad_magic(data: bytes) -> DecodeError:
    hint = " (it looks like JSON: is the topic's --format json?)" if data[:1] in (b"{", b"[") else ""
    return DecodeError(
        BAD_MAGIC_BYTE,
        f"not in the Confluent wire format: first byte is 0x{data[0]:02x}, expected 0x00{hint}")


def _zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def _unzigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value & ~0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def message_indexes_bytes(indexes: Sequence[int]) -> bytes:
    """The message-index array of a Protobuf message: [0] is the single byte 0."""
    if not indexes:
        raise ValueError("a message-index array has at least one index")
    if list(indexes) == [0]:
        return b"\x00"
    return _varint(_zigzag(len(indexes))) + b"".join(_varint(_zigzag(i)) for i in indexes)


def _read_varint(body: memoryview, position: int, schema_id: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(body):
            raise DecodeError(TRUNCATED, "truncated: the Protobuf message-index array ends "
                              "before its last varint", schema_id)
        byte = body[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return _unzigzag(result), position
        shift += 7
        if shift > 63:
            raise DecodeError(UNDECODABLE, "not a Protobuf message-index array: a varint "
                              "longer than 10 bytes", schema_id)


def read_message_indexes(body: memoryview, schema_id: int = -1) -> tuple[list[int], memoryview]:
    """(message indexes, the Protobuf bytes after them) of an unframed body."""
    count, position = _read_varint(body, 0, schema_id)
    if count == 0:
        return [0], body[position:]
    if not 0 < count <= _MAX_INDEXES:
        raise DecodeError(UNDECODABLE, f"not a Protobuf message-index array: count {count}",
                          schema_id)
    indexes = []
    for _ in range(count):
        index, position = _read_varint(body, position, schema_id)
        if index < 0:
            raise DecodeError(UNDECODABLE, f"not a Protobuf message-index array: index {index}",
                              schema_id)
        indexes.append(index)
    return indexes, body[position:]
