"""Event Hubs clients, launch-time retries and one-line errors (secrets redacted)."""

from __future__ import annotations

import time
from typing import Any, Optional

from transforms.base.errors import ConfigError, SourceError
from transforms.base.extras import require
from transforms.io.eventhubs import rules
from transforms.io.eventhubs.rules import CONNECTION_FORM, redact

__all__ = ["check_connection", "client_module", "consumer_client", "with_retries", "wrap"]


def client_module():
    """azure.eventhub, or MissingExtraError naming the [eventhubs] extra."""
    return require("eventhubs", "azure.eventhub")


def check_connection(connection_string: str, eventhub: Optional[str], flag: str) -> str:
    if not isinstance(connection_string, str) or not connection_string:
        raise ConfigError("--eventhubs_connection_string", CONNECTION_FORM)
    try:
        rules.connection_string(connection_string)
    except Exception:
        raise ConfigError("--eventhubs_connection_string", CONNECTION_FORM,
                          redact(connection_string)) from None
    fields = {k.strip().lower(): v for k, _, v in
              (p.partition("=") for p in connection_string.split(";")) if k}
    hub = eventhub or fields.get("entitypath")
    if not hub:
        raise ConfigError(flag, "an event hub name (or EntityPath= in the connection string)")
    return hub


def consumer_client(connection_string: str, eventhub: str, consumer_group: str, retries: int = 2,
                    partition: Optional[str] = None):
    """A consumer client; with ``partition``, one that only ever receives that partition,
    known to exist (a read's plan listed it)."""
    azure_eh = client_module()
    cls: Any = azure_eh.EventHubConsumerClient if partition is None else _one_partition_class()
    client = cls.from_connection_string(
        str.__str__(connection_string), consumer_group=consumer_group, eventhub_name=eventhub,
        retry_total=retries,
    )
    if partition is not None:
        client.known_partition_ids = [partition]
    return client


_ONE_PARTITION: Optional[type] = None


def _one_partition_class() -> type:
    global _ONE_PARTITION
    if _ONE_PARTITION is None:
        base = client_module().EventHubConsumerClient

        class OnePartitionConsumerClient(base):  # type: ignore[misc, valid-type]
            """``receive(partition_id=P)`` starts an event processor whose first step asks
            the service for the hub's partition ids only to check that P is one of them:
            a management request on a connection of its own (~0.35 s of the client's
            polling on a local emulator, a round trip per frame on the service). The
            read's plan has listed the partitions already: answer with the known one."""

            known_partition_ids: list[str]

            def get_partition_ids(self) -> list[str]:
                return list(self.known_partition_ids)

        _ONE_PARTITION = OnePartitionConsumerClient
    return _ONE_PARTITION


def with_retries(call, *args, attempts: int = 3):
    """``call(*args)``, retried with backoff, except for errors that will not go away
    (an unknown hub or partition, a refused token): those fail at once."""
    for attempt in range(attempts):
        try:
            return call(*args)
        except Exception as exc:
            text = str(exc)
            permanent = any(mark in text for mark in (
                "404", "NotFound", "not-found", "could not be found", "401", "Unauthorized"))
            if permanent or attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2 ** attempt)  # backoff between attempts, not synchronisation
    raise AssertionError("unreachable")


def wrap(error: Exception, what: str, kind: type = SourceError) -> Exception:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return kind(f"Event Hubs: {what}: {redact(text)}")
