"""Send generated records to a Kafka topic, keyed by their entity, optionally paced."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Optional

from transforms.base.errors import ConfigError, SinkError
from transforms.io.kafka import client, client_config, rules, wait_for_partitions

__all__ = ["config_for", "ensure_topic", "send", "servers_of", "topic_of"]

CONNECT_TIMEOUT_MS = 5000  # a wrong address fails in seconds, not after kafka-python's minute


def topic_of(target: str) -> str:
    """The topic of ``--to kafka://TOPIC``."""
    topic = target[len("kafka://"):] if target.startswith("kafka://") else ""
    if not rules.is_topic_name(topic):
        raise ConfigError("--to", "kafka://TOPIC, a topic name of letters, digits, '.', '_', "
                          "'-'", target)
    return topic


def servers_of(flag: Optional[str]) -> str:
    """``--bootstrap_servers``, checked (default ``localhost:9092``)."""
    try:
        return rules.bootstrap_servers(flag or "localhost:9092")
    except ValueError as exc:
        raise ConfigError("--bootstrap_servers", str(exc), flag) from None


def config_for(servers: str) -> dict[str, Any]:
    """The client settings for ``servers`` (no TLS or SASL: for those, see beam_pipelines.produce)."""
    return client_config(servers)


def _error(config: dict[str, Any], exc: Exception) -> SinkError:
    text = str(exc).strip()
    return SinkError(f"--bootstrap_servers: cannot reach Kafka at {client.servers(config)}: "
                     f"{text.splitlines()[0] if text else repr(exc)}")


def ensure_topic(config: dict[str, Any], topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists (then leave it as it
    is), and wait until its partitions have leaders."""
    client.kafka_module()  # the [kafka] extra, named in one line when missing
    from kafka.admin import NewTopic

    with client.quiet_kafka_logs():  # the one-line error says it all; no retry log spam
        try:
            admin = client.build("admin", client.settings(
                "admin", config, bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
                request_timeout_ms=CONNECT_TIMEOUT_MS + 1000))
        except Exception as exc:
            raise _error(config, exc) from None
        try:
            if topic not in admin.list_topics():
                admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            admin.close()
    wait_for_partitions(config, topic, partitions, error=SinkError)


def send(config: dict[str, Any], topic: str, records: Iterable[tuple[Optional[dict], bytes]],
         key_field: str, *, rate: Optional[float] = None,
         on_record: Optional[Callable[[], None]] = None,
         clock: Callable[[], float] = time.monotonic) -> int:
    """Send each payload to ``topic`` keyed by its record's ``key_field`` (malformed ones,
    with no record, unkeyed), at most ``rate`` a second; returns how many were sent."""
    settings = client.settings("producer", config, acks="all", linger_ms=20,
                               batch_size=256 * 1024)
    try:
        producer = client.build("producer", settings)
    except Exception as exc:
        raise _error(config, exc) from None
    sent = 0
    started = clock()
    try:
        for record, payload in records:
            if rate:
                ahead = started + sent / rate - clock()
                if ahead > 0:
                    time.sleep(ahead)  # pacing: wait for this record's send time
            key = record.get(key_field) if record is not None else None
            producer.send(topic, value=payload,
                          key=None if key is None else str(key).encode("utf-8", "surrogatepass"))
            sent += 1
            if on_record is not None:
                on_record()
        producer.flush()
    finally:
        producer.close(timeout=10)
    return sent
