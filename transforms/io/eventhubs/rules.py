"""What Event Hubs accepts as values: connection strings, hub and container names,
start/stop positions, checkpoint stores; and the redaction of secrets.

Connection strings carry the shared access key, so they never appear in logs, error
messages or ``--help`` output: every place that shows one goes through :func:`redact`
(``SharedAccessKey=***``, ``AccountKey=***``, ``SharedAccessSignature=***``). The flags
(``beam_pipelines.options.eventhubs``) wrap these checks as argparse types; each check
returns the value or raises ValueError with the message ``expected ..., got ...``.
"""

from __future__ import annotations

import datetime as _dt
import re

from transforms.base import times

__all__ = [
    "CONNECTION_FORM", "START_FORM", "START_KEYWORDS", "STOP_KEYWORDS", "STORE_FORM",
    "checkpoint_store", "connection_string", "container_name", "hub_name", "owner_level",
    "parse_time", "redact", "start_at", "stop_at",
]

START_KEYWORDS = ("earliest", "latest")
STOP_KEYWORDS = ("end", "never")
CONNECTION_FORM = ("an Event Hubs connection string (Endpoint=sb://NAMESPACE/;SharedAccessKeyName="
                   "...;SharedAccessKey=...; add UseDevelopmentEmulator=true for the emulator)")
START_FORM = ("earliest, latest, seq:N (sequence number N onwards), offset:O (after offset O) "
              "or an ISO-8601 enqueued time such as 2024-01-01T00:00:00Z")
STORE_FORM = ("an Azure Storage connection string (DefaultEndpointsProtocol=...;AccountName=...;"
              "AccountKey=...; or UseDevelopmentStorage=true) or file://DIRECTORY")
# Any field whose name mentions a key, signature, password or secret (even misspelt, as
# in a connection string a user got wrong), in any case and with spaces around '=' as
# Azure's parsers allow ("SharedAccessKey =x"), except the *name* of a key. The value
# runs to the next ';': a SharedAccessSignature holds spaces, '&' and '=' of its own.
_SECRET = re.compile(
    r"(?i)\b([A-Za-z_]*(?:key|sig|signature|password|secret|token)[A-Za-z_]*)(\s*=\s*)([^;]*)")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,255}$")
_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9\-]{1,61}[a-z0-9]$")


def redact(text: object) -> str:
    """``text`` (an Azure connection string, or a message holding one) with every key,
    signature and password replaced by ***: ``SharedAccessKey=***``, ``AccountKey=***``,
    ``SharedAccessSignature=***``."""
    return _SECRET.sub(
        lambda m: m.group(0) if m.group(1).lower().endswith("name")
        else f"{m.group(1)}{m.group(2)}***",
        str(text))


def parse_time(text: str) -> _dt.datetime:
    """ISO-8601 (a missing zone means UTC) -> aware datetime; ValueError otherwise."""
    return times.parse_iso(text.strip(), naive_utc=True)


def connection_string(text: str) -> str:
    fields = {k.strip().lower() for k, _, _ in (p.partition("=") for p in text.split(";")) if k}
    if "endpoint" not in fields or not ({"sharedaccesskey", "sharedaccesssignature"} & fields):
        raise ValueError(f"expected {CONNECTION_FORM}, got {redact(text)!r}")
    return text


def hub_name(text: str) -> str:
    if not _HUB_NAME.match(text):
        raise ValueError(
            f"expected an event hub name (letters, digits, '.', '_', '-'), got {text!r}")
    return text


def start_at(text: str) -> str:
    """earliest | latest | seq:N | offset:O | ISO time; returned unchanged once valid."""
    value = text.strip()
    if value in START_KEYWORDS:
        return value
    kind, sep, rest = value.partition(":")
    if sep and kind in ("seq", "offset") and re.fullmatch(r"-?\d+", rest):
        return value
    try:
        parse_time(value)
    except ValueError:
        raise ValueError(f"expected {START_FORM}, got {text!r}") from None
    return value


def stop_at(text: str) -> str:
    if text not in STOP_KEYWORDS:
        raise ValueError(
            f"expected end (the last events at launch: a bounded read) or never, got {text!r}")
    return text


def checkpoint_store(text: str) -> str:
    if text.startswith("file://") and len(text) > len("file://"):
        return text
    fields = {k.strip().lower() for k, _, _ in (p.partition("=") for p in text.split(";")) if k}
    if "accountname" in fields or "usedevelopmentstorage" in fields or "blobendpoint" in fields:
        return text
    raise ValueError(f"expected {STORE_FORM}, got {redact(text)!r}")


def container_name(text: str) -> str:
    if not _CONTAINER.match(text):
        raise ValueError(
            f"expected a blob container name (3-63 lowercase letters, digits, '-'), got {text!r}")
    return text


def owner_level(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"expected a whole number >= 0, got {text!r}")
    return value
