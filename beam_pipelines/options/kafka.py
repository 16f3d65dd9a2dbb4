"""Kafka flags: ``--source=kafka`` / ``--sink=kafka`` / ``--dead_letter kafka://TOPIC``.

The same flags reach any Kafka-protocol endpoint: a local broker, a managed cluster
(SASL/SSL) or Azure Event Hubs' Kafka endpoint::

    --bootstrap_servers=NS.servicebus.windows.net:9093 --security_protocol=SASL_SSL \\
    --sasl_mechanism=PLAIN --sasl_username='$ConnectionString' --sasl_password='Endpoint=...'

Anything else kafka-python accepts goes through ``--kafka_config KEY=VALUE`` (repeatable).

``--bootstrap_servers`` is not defined here: Beam 2.77 already defines it (for its Kafka
Streams runner, default ``localhost:9092``, the Kafka convention), and argparse refuses a
second definition. We read that same flag and validate it in :func:`servers_from_options`.
``--sasl_password`` never appears in logs or error messages (see :func:`redact`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re
from typing import Any, Optional

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import choice, positive_int, positive_seconds

START_KEYWORDS = ("earliest", "latest", "committed")
STOP_KEYWORDS = ("end", "never")
TIMESTAMP_POLICIES = ("log_time", "processing_time", "event_time")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")
SECRET_KEYS = ("sasl_plain_password", "sasl_password", "ssl_password", "password")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.\-]+):\d{1,5}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")
ISO_FORM = "an ISO-8601 time such as 2024-01-01T00:00:00Z"


def parse_time(text: str) -> float:
    """ISO-8601 (a missing zone means UTC) -> epoch seconds; ValueError otherwise."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = _dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


def _position(keywords: tuple[str, ...]):
    def parse(text: str) -> str:
        if text in keywords:
            return text
        try:
            parse_time(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'|'.join(keywords)} or {ISO_FORM}, got {text!r}"
            ) from None
        return text

    parse.__name__ = "position"
    return parse


start_at = _position(START_KEYWORDS)
stop_at = _position(STOP_KEYWORDS)


def bootstrap_servers(text: str) -> str:
    servers = [s.strip() for s in text.split(",") if s.strip()]
    if not servers or not all(_HOST_PORT.match(s) for s in servers):
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT[,HOST:PORT...], got {text!r}"
        )
    return ",".join(servers)


def topic_names(text: str) -> str:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if not _TOPIC.match(t)]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            "expected a topic name (letters, digits, '.', '_', '-'; comma-separated for "
            f"several), got {text!r}"
        )
    return ",".join(names)


def key_value(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key.strip() or not re.match(r"^[A-Za-z0-9_.]+$", key.strip()):
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with a kafka-python setting as KEY (e.g. "
            f"request_timeout_ms=30000), got {redact_pair(text)!r}"
        )
    return text








def redact_pair(text: str) -> str:
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


def servers_from_options(options: PipelineOptions) -> str:
    """``--bootstrap_servers`` (Beam's flag, default localhost:9092), validated."""
    from transforms.base.errors import ConfigError

    text = options.get_all_options().get("bootstrap_servers") or "localhost:9092"
    try:
        return bootstrap_servers(text)
    except argparse.ArgumentTypeError:
        raise ConfigError("--bootstrap_servers", "HOST:PORT[,HOST:PORT...]", text) from None


def split_topics(values: Optional[list[str]]) -> list[str]:
    """Repeatable and comma-separated ``--topic`` values -> unique names, in order."""
    names: list[str] = []
    for value in values or []:
        for name in value.split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    return names


class KafkaOptions(PipelineOptions):
    """Kafka source, sink and dead-letter topic (any Kafka-protocol endpoint)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--topic", type=topic_names, action="append", default=None,
            help="Topic(s) to read with --source=kafka: repeat the flag and/or comma-separate.",
        )
        parser.add_argument(
            "--consumer_group", default=None,
            help="Consumer group: offsets are committed to it after each bundle is finalized "
            "(at-least-once), and --start_at=committed resumes from it. Default: no commits.",
        )
        parser.add_argument(
            "--start_at", type=start_at, default="latest",
            help="Where each partition starts: earliest, latest (default), committed (the "
            "group's offsets; earliest where none) or an ISO-8601 time (first record whose log "
            "time is at or after it).",
        )
        parser.add_argument(
            "--stop_at", type=stop_at, default="never",
            help="Where each partition stops: never (default: an unbounded, streaming read), "
            "end (the end offsets seen at launch) or an ISO-8601 log time (exclusive). Anything "
            "but never makes the read bounded, so the pipeline runs as batch.",
        )
        parser.add_argument(
            "--max_records", type=positive_int, default=None,
            help="Bounded read: this many records in total, taken from what the partitions "
            "hold at launch, spread as evenly as they allow; if the topic holds fewer, the read "
            "waits for the rest.",
        )
        parser.add_argument(
            "--max_read_time", type=positive_seconds, default=None,
            help="Bounded read: stop reading after this many seconds of wall-clock time.",
        )
        parser.add_argument(
            "--timestamp_policy", type=choice(*TIMESTAMP_POLICIES), default="log_time",
            help="Element timestamps of raw Kafka records: log_time (the record's Kafka "
            "timestamp, default), processing_time, or event_time (the pipelines re-stamp "
            "parsed events with their own event time anyway).",
        )
        parser.add_argument(
            "--idle_timeout", type=positive_seconds, default=10.0,
            help="Seconds after which a caught-up partition with no new records lets its "
            "watermark advance with wall-clock time, so it does not hold windows open. "
            "Default 10.",
        )
        parser.add_argument(
            "--kafka_discovery_interval", type=positive_seconds, default=60.0,
            help="Reads with --stop_at=never: look for partitions added to the topics every "
            "this many seconds and read them from their beginning. Default 60.",
        )
        parser.add_argument(
            "--security_protocol", type=choice(*SECURITY_PROTOCOLS), default=None,
            help="PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL (Event Hubs: SASL_SSL).",
        )
        parser.add_argument(
            "--sasl_mechanism", type=choice(*SASL_MECHANISMS), default=None,
            help="SASL mechanism: PLAIN (Event Hubs), SCRAM-SHA-256, SCRAM-SHA-512, ...",
        )
        parser.add_argument(
            "--sasl_username", default=None,
            help="SASL username (Event Hubs: the literal $ConnectionString).",
        )
        parser.add_argument(
            "--sasl_password", default=None,
            help="SASL password (Event Hubs: the connection string). Never logged.",
        )
        parser.add_argument(
            "--ssl_cafile", default=None,
            help="CA bundle to verify the brokers' TLS certificates (default: system CAs).",
        )
        parser.add_argument(
            "--kafka_config", type=key_value, action="append", default=None,
            help="Any other kafka-python client setting, KEY=VALUE (repeatable), e.g. "
            "--kafka_config request_timeout_ms=60000. Numbers and true/false are converted.",
        )
