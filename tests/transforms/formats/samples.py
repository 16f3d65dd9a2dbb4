"""Schemas and records shared by the format tests: two Avro versions of a page-view
topic, and a Protobuf file built with descriptor_pb2 (no protoc needed)."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import descriptor_pb2, timestamp_pb2

PAGEVIEW_V1: dict[str, Any] = {
    "type": "record", "name": "PageView", "namespace": "com.acme.web",
    "fields": [
        {"name": "user_id", "type": "long"},
        {"name": "action", "type": "string"},
        {"name": "page", "type": "string"},
        {"name": "timestamp", "type": "double"},
        {"name": "session", "type": "string"},
    ],
}
# v2: 'session' removed, 'referrer' added with a default, user_id widened to a union.
PAGEVIEW_V2: dict[str, Any] = {
    "type": "record", "name": "PageView", "namespace": "com.acme.web",
    "fields": [
        {"name": "user_id", "type": ["long", "string"]},
        {"name": "action", "type": "string"},
        {"name": "page", "type": "string"},
        {"name": "timestamp", "type": "double"},
        {"name": "referrer", "type": ["null", "string"], "default": None},
    ],
}
# A writer that lacks 'page': the contract cannot take its records.
NO_PAGE: dict[str, Any] = {
    "type": "record", "name": "Click", "fields": [
        {"name": "user_id", "type": "string"}, {"name": "action", "type": "string"},
        {"name": "timestamp", "type": "long"}]}

EVENTS = [
    {"user_id": 7, "action": "page_view", "page": "/home", "timestamp": 1733000000.25, "session": "s1"},
    {"user_id": 8, "action": "click", "page": "/cart", "timestamp": 1733000061.0, "session": "s2"},
]


def avsc(schema: dict[str, Any]) -> str:
    return json.dumps(schema)


def pageview_file() -> descriptor_pb2.FileDescriptorProto:
    """shop/pageview.proto: package shop.v1, imports google/protobuf/timestamp.proto."""
    f = descriptor_pb2.FileDescriptorProto()
    f.name = "shop/pageview.proto"
    f.package = "shop.v1"
    f.syntax = "proto3"
    f.dependency.append("google/protobuf/timestamp.proto")
    T = descriptor_pb2.FieldDescriptorProto
    kind = f.enum_type.add(name="Kind")
    kind.value.add(name="KIND_UNSPECIFIED", number=0)
    kind.value.add(name="HUMAN", number=1)
    kind.value.add(name="BOT", number=2)
    other = f.message_type.add(name="Heartbeat")
    other.field.add(name="device", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    m = f.message_type.add(name="PageView")
    m.field.add(name="user_id", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    m.field.add(name="action", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    m.field.add(name="page", number=3, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    m.field.add(name="timestamp", number=4, type=T.TYPE_INT64, label=T.LABEL_OPTIONAL)
    ref = m.field.add(name="referrer", number=5, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL,
                      proto3_optional=True, oneof_index=0)
    del ref
    m.oneof_decl.add(name="_referrer")
    m.field.add(name="kind", number=6, type=T.TYPE_ENUM, label=T.LABEL_OPTIONAL, type_name=".shop.v1.Kind")
    entry = m.nested_type.add(name="TagsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    m.field.add(name="tags", number=7, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED,
                type_name=".shop.v1.PageView.TagsEntry")
    m.field.add(name="seen_at", number=8, type=T.TYPE_MESSAGE, label=T.LABEL_OPTIONAL,
                type_name=".google.protobuf.Timestamp")
    inner = m.nested_type.add(name="Device")
    inner.field.add(name="model", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    m.field.add(name="device", number=9, type=T.TYPE_MESSAGE, label=T.LABEL_OPTIONAL,
                type_name=".shop.v1.PageView.Device")
    m.field.add(name="ids", number=10, type=T.TYPE_INT64, label=T.LABEL_REPEATED)
    return f


def write_descriptor_set(path: str, include_imports: bool = True) -> str:
    files = descriptor_pb2.FileDescriptorSet()
    if include_imports:
        ts = descriptor_pb2.FileDescriptorProto()
        timestamp_pb2.DESCRIPTOR.CopyToProto(ts)
        files.file.append(ts)
    files.file.append(pageview_file())
    with open(path, "wb") as handle:
        handle.write(files.SerializeToString())
    return path


PAGEVIEW_RECORD = {
    "user_id": "u-1", "action": "page_view", "page": "/home", "timestamp": 1733000000,
    "kind": "HUMAN", "tags": {"ab": "b"}, "seen_at": "2024-11-30T20:53:20Z",
    "device": {"model": "x1"}, "ids": [1, 9007199254740993],
}
