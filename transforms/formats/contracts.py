"""The input contracts' schemas, for topics whose records are Avro or JSON Schema.

A contract (``transforms.parse.parse_user_event``) is the single source of truth for
what a valid event is; these schemas only say which *shapes* can reach it. An Avro topic
resolves to :func:`user_event_reader_schema`, so a writer that sends ``user_id`` as a
long or a string, ``timestamp`` as epoch seconds (long or double), an ISO-8601 string or
a ``timestamp-millis``/``-micros`` logical type (given to the contract as ISO-8601), and
any number of extra fields, decodes to the dict the contract validates. A writer schema
without ``action``, ``page``, ``user_id`` or ``timestamp`` cannot resolve (the reader
fields have no defaults): its records are dead letters with reason ``incompatible_schema``
before any is decoded.
"""

from __future__ import annotations

from typing import Any

from transforms.base.errors import ConfigError

__all__ = ["CONTRACTS", "reader_schema", "user_event_json_schema", "user_event_reader_schema"]


def user_event_reader_schema() -> dict[str, Any]:
    """The Avro reader schema of the pageviews input contract (user events)."""
    return {
        "type": "record",
        "name": "UserEvent",
        "namespace": "beam_pipelines.input",
        "doc": "A user event as the pageviews contract reads it; extra writer fields are dropped.",
        "fields": [
            {"name": "user_id", "type": ["string", "long"],
             "doc": "Who acted: a non-empty string or an integer id."},
            {"name": "action", "type": "string", "doc": "What the user did (non-empty)."},
            {"name": "page", "type": "string", "doc": "The page acted on (non-empty)."},
            {"name": "timestamp", "type": ["long", "double", "string"],
             "doc": "Epoch seconds, or ISO-8601 with an offset."},
        ],
    }


def user_event_json_schema() -> dict[str, Any]:
    """A JSON Schema a user-event topic's writers can register (what the contract takes)."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "UserEvent",
        "type": "object",
        "properties": {
            "user_id": {"type": ["string", "integer"]},
            "action": {"type": "string", "minLength": 1},
            "page": {"type": "string", "minLength": 1},
            "timestamp": {"type": ["number", "string"]},
        },
        "required": ["user_id", "action", "page", "timestamp"],
    }


CONTRACTS = {"user_events": user_event_reader_schema}


def reader_schema(contract: str) -> dict[str, Any]:
    """The Avro reader schema of a named input contract (``user_events``)."""
    try:
        return CONTRACTS[contract]()
    except KeyError:
        raise ConfigError("contract", f"one of {'|'.join(CONTRACTS)}", contract) from None
