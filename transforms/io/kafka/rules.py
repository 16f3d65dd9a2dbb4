"""What Kafka accepts as values: server lists, topic names, start/stop positions, secrets.

The rules live with the connector; the command-line flags (``beam_pipelines.options.kafka``)
wrap these functions as argparse types, so a flag and a constructor argument are checked
by the same code and refused with the same words. Each check raises ValueError with the
message ``expected ..., got ...``.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from transforms.base import times

__all__ = [
    "DELIVERIES", "ISO_FORM", "ISOLATION_LEVELS", "SASL_MECHANISMS", "SECRET_KEYS", "SECURITY_PROTOCOLS", "START_KEYWORDS",
    "STOP_KEYWORDS", "TIMESTAMP_POLICIES", "bootstrap_servers", "coerce", "is_time",
    "is_topic_name",
    "key_value", "parse_time", "position", "redact", "redact_pair", "split_topics",
    "topic_names",
]

START_KEYWORDS = ("earliest", "latest", "committed")
STOP_KEYWORDS = ("end", "never")
TIMESTAMP_POLICIES = ("log_time", "processing_time", "event_time")
ISOLATION_LEVELS = ("read_committed", "read_uncommitted")
DELIVERIES = ("at_least_once", "exactly_once")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
SECRET_KEYS = ("sasl_plain_password", "sasl_password", "ssl_password", "password")
ISO_FORM = times.ISO_FORM
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.\-]+):\d{1,5}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")
_CONFIG_KEY = re.compile(r"^[A-Za-z0-9_.]+$")


def parse_time(text: str) -> float:
    """ISO-8601 (a missing zone means UTC) -> epoch seconds; ValueError otherwise."""
    return times.epoch_seconds(times.parse_iso(text.strip(), naive_utc=True))


def is_time(value: Any) -> bool:
    """A number of seconds (or epoch seconds): an int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def position(keywords: tuple[str, ...], text: str) -> str:
    """A start or stop position: one of ``keywords`` or an ISO-8601 time, unchanged."""
    if text in keywords:
        return text
    try:
        parse_time(text)
    except ValueError:
        raise ValueError(f"expected {'|'.join(keywords)} or {ISO_FORM}, got {text!r}") from None
    return text


def bootstrap_servers(text: str) -> str:
    """``HOST:PORT[,HOST:PORT...]`` with spaces and empty entries dropped."""
    servers = [s.strip() for s in text.split(",") if s.strip()]
    if not servers or not all(_HOST_PORT.match(s) for s in servers):
        raise ValueError(f"expected HOST:PORT[,HOST:PORT...], got {text!r}")
    return ",".join(servers)


def is_topic_name(name: object) -> bool:
    """Kafka's rule: 1-249 of letters, digits, '.', '_' and '-'."""
    return isinstance(name, str) and bool(_TOPIC.match(name))


def topic_names(text: str) -> str:
    """One topic name or several, comma-separated."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if not is_topic_name(t)]
    if not names or bad:
        raise ValueError(
            "expected a topic name (letters, digits, '.', '_', '-'; comma-separated for "
            f"several), got {text!r}"
        )
    return ",".join(names)


def split_topics(values: Optional[list[str]]) -> list[str]:
    """Repeatable and comma-separated topic values -> unique names, in order."""
    names: list[str] = []
    for value in values or []:
        for name in value.split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


def key_value(text: str) -> str:
    """A ``KEY=VALUE`` kafka-python setting (the value is checked by the client)."""
    key, sep, _ = text.partition("=")
    if not sep or not key.strip() or not _CONFIG_KEY.match(key.strip()):
        raise ValueError(
            f"expected KEY=VALUE with a kafka-python setting as KEY (e.g. "
            f"request_timeout_ms=30000), got {redact_pair(text)!r}"
        )
    return text


def coerce(value: str) -> Any:
    """A ``KEY=VALUE`` setting's value as kafka-python wants it: bool, int, float or str."""
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def redact_pair(text: str) -> str:
    """``KEY=VALUE`` with the value hidden when the key names a secret."""
    key, sep, value = text.partition("=")
    if sep and any(secret in key.lower() for secret in SECRET_KEYS):
        return f"{key}=***"
    return text


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a kafka-python config with every secret replaced by ***, for logs/errors."""
    return {
        k: ("***" if any(secret in k.lower() for secret in SECRET_KEYS) and v is not None else v)
        for k, v in config.items()
    }
