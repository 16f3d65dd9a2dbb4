"""The one place that builds kafka-python clients (consumers, producers, admin clients).

Every client of the project comes from :func:`build`: the reader and the partition
discovery, the offset committer, the writer, the consumer-lag probe, the dead-letter CLI
and the producer CLI. A config (from :func:`client_config`) holds the settings shared by
all three kinds; :func:`settings` keeps the ones the kind takes, under the caller's
defaults and over its overrides. Callers word their own error when a client cannot be
built (they know the flag to name); :func:`consumer` is the reading consumer with the
reader's wording.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from typing import Any, Iterator, Mapping, Optional

from transforms.base.errors import ConfigError, SourceError
from transforms.base.extras import require
from transforms.io.kafka.rules import redact

__all__ = [
    "NoClientsPickled", "build", "client_config", "close_pooled_consumers", "consumer",
    "first_line", "kafka_module", "pooled_consumer",
    "quiet_kafka_logs", "reading_consumer", "servers", "settings",
]

KINDS = ("consumer", "producer", "admin")


def _not_auto_commit_noise(record: logging.LogRecord) -> bool:
    # kafka-python warns on every consumer without a group, although we disable auto-commit.
    return not str(record.msg).startswith("group_id is None: disabling auto-commit")


logging.getLogger("kafka.coordinator.consumer").addFilter(_not_auto_commit_noise)


def client_config(
    bootstrap_servers: str,
    *,
    security_protocol: Optional[str] = None,
    sasl_mechanism: Optional[str] = None,
    sasl_username: Optional[str] = None,
    sasl_password: Optional[str] = None,
    ssl_cafile: Optional[str] = None,
    extra: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """kafka-python settings shared by consumers, producers and admin clients.

    :param bootstrap_servers: ``HOST:PORT[,HOST:PORT...]``.
    :param security_protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    :param sasl_mechanism: PLAIN, SCRAM-SHA-256, ...
    :param sasl_username: the SASL user (``$ConnectionString`` for Event Hubs).
    :param sasl_password: the SASL password; never logged (see :func:`rules.redact`).
    :param ssl_cafile: a CA bundle to verify the brokers' certificates.
    :param extra: any other kafka-python setting, applied last.
    """
    config: dict[str, Any] = {"bootstrap_servers": bootstrap_servers.split(",")}
    if security_protocol:
        config["security_protocol"] = security_protocol
    if sasl_mechanism:
        config["sasl_mechanism"] = sasl_mechanism
    if sasl_username is not None:
        config["sasl_plain_username"] = sasl_username
    if sasl_password is not None:
        config["sasl_plain_password"] = sasl_password
    if ssl_cafile:
        config["ssl_cafile"] = ssl_cafile
    config.update(extra or {})
    return config


def kafka_module():
    """kafka-python, or MissingExtraError naming the [kafka] extra."""
    return require("kafka", "kafka")


def _client_class(kind: str):
    kafka = kafka_module()
    return {"consumer": kafka.KafkaConsumer, "producer": kafka.KafkaProducer,
            "admin": kafka.KafkaAdminClient}[kind]


def settings(kind: str, config: Mapping[str, Any], *, defaults: Optional[Mapping[str, Any]] = None,
             **overrides: Any) -> dict[str, Any]:
    """The settings a ``kind`` client is built with: ``defaults``, then the config's
    settings that kind takes (a shared config serves all three), then ``overrides``."""
    allowed = set(_client_class(kind).DEFAULT_CONFIG)
    result = dict(defaults or {})
    result.update({k: v for k, v in config.items() if k in allowed})
    result.update(overrides)
    return result


def build(kind: str, client_settings: Mapping[str, Any]):
    """A ``kind`` client (consumer | producer | admin) with exactly ``client_settings``."""
    return _client_class(kind)(**client_settings)


def servers(config: Mapping[str, Any]) -> str:
    """The config's bootstrap servers as ``HOST:PORT,...``, for messages."""
    found = config.get("bootstrap_servers")
    return ",".join(found) if isinstance(found, (list, tuple)) else str(found)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# What a consumer of ours is unless the config says otherwise: no auto-commit (offsets are
# committed when a bundle is finalized), no topic created by reading it, a failure to
# reach the brokers within seconds rather than minutes, and only committed transactions
# (an aborted one is never read; the same as read_uncommitted for topics written
# without transactions).
CONSUMER_DEFAULTS = {"enable_auto_commit": False, "auto_offset_reset": "earliest",
                     "allow_auto_create_topics": False, "session_timeout_ms": 10000,
                     "bootstrap_timeout_ms": 10000, "isolation_level": "read_committed"}


def consumer(config: Mapping[str, Any], **overrides: Any):
    """A consumer with :data:`CONSUMER_DEFAULTS`; ConfigError for a setting kafka-python
    refuses, SourceError naming the servers when they cannot be reached."""
    kafka = require("kafka", "kafka")
    found = settings("consumer", config, defaults=CONSUMER_DEFAULTS, **overrides)
    try:
        return build("consumer", found)
    except kafka.errors.KafkaConfigurationError as exc:
        raise ConfigError.from_message(f"--kafka_config: {first_line(exc)}") from None
    except Exception as exc:
        security = {k: v for k, v in found.items() if k.startswith(("security", "sasl", "ssl"))}
        raise SourceError(
            f"cannot reach Kafka at {servers(found)} within "
            f"{found['bootstrap_timeout_ms'] / 1000:.0f}s: {first_line(exc)} (check "
            f"--bootstrap_servers and the security settings"
            + (f" {redact(security)}" if security else "") + ")"
        ) from None


def reading_consumer(config: Mapping[str, Any]):
    # Larger batches than kafka-python's 500 for throughput, unless --kafka_config says otherwise.
    return consumer(config, **({} if "max_poll_records" in config else {"max_poll_records": 2000}))


@contextlib.contextmanager
def quiet_kafka_logs() -> Iterator[None]:
    logger = logging.getLogger("kafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


_POOL_LOCK = threading.Lock()
_POOL: dict[str, list] = {}


@contextlib.contextmanager
def pooled_consumer(config: Mapping[str, Any], partition: Optional[tuple[str, int]] = None):
    """A reading consumer for one invocation, for DoFns whose ``setup`` a runner never calls.

    Beam's direct runners wrap an SDF and pickle a fresh copy of it per bundle without
    calling its ``setup``/``teardown``; a consumer per copy would leak a connection and a
    network thread per bundle. The pool keeps idle consumers per config and, for reads,
    per partition: a consumer that stays assigned to its partition keeps its fetch in
    flight between invocations, where re-assigning a shared one would discard it.
    """
    key = repr((sorted((k, repr(v)) for k, v in config.items()), partition))
    with _POOL_LOCK:
        idle = _POOL.get(key)
        found = idle.pop() if idle else None
    if found is None:
        found = reading_consumer(config)
    try:
        yield found
    finally:
        with _POOL_LOCK:
            _POOL.setdefault(key, []).append(found)


@atexit.register
def close_pooled_consumers() -> None:
    """Close the idle pooled consumers (at exit; and before a test broker stops, so none
    of them keeps trying to reach it). A later read opens new ones."""
    with _POOL_LOCK:
        consumers = [c for idle in _POOL.values() for c in idle]
        _POOL.clear()
    for pooled in consumers:
        try:
            pooled.close()
        except Exception:  # closing at interpreter exit: nothing left to report to
            pass


class NoClientsPickled:
    """Runners may pickle a DoFn after ``setup``; live clients (sockets) are not copied."""

    _CLIENTS: tuple[str, ...] = ()

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in self._CLIENTS:
            state.pop(name, None)
        return state
