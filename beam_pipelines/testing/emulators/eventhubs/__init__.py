"""A local Azure Event Hubs emulator: an AMQP 1.0 broker the official client talks to unchanged.

There is no Event Hubs emulator to install here (no Docker), so this is a protocol-level
one written on python-qpid-proton. Point the official ``azure-eventhub`` client at it with
a connection string containing ``UseDevelopmentEmulator=true`` (plain TCP, no TLS)::

    Endpoint=sb://127.0.0.1:PORT;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true

Run it on its own with ``python -m beam_pipelines.testing.emulators.eventhubs --port P
--hub NAME:PARTITIONS`` or in-process with :class:`EventHubsEmulator` (the pytest fixture
``eventhubs_emulator`` does that).

What the service does that this emulator does too:

* SASL ANONYMOUS then claims-based security: ``put-token`` on ``$cbs`` is accepted
  (tokens are not verified: it is a development emulator, like Microsoft's own);
* ``$management`` READ of hub properties (``com.microsoft:eventhub``) and partition
  properties (``com.microsoft:partition``), with 404 for an unknown hub or partition;
* send to the hub (round-robin), to a partition key (a stable hash of the key, so one
  key always lands in one partition) or to a partition id; batched messages (the
  client's batch format: one outer message whose data sections are encoded messages)
  are split into events; each event gets ``x-opt-sequence-number``, ``x-opt-offset``
  (a byte offset, as a string), ``x-opt-enqueued-time`` and ``x-opt-partition-key``;
* receive from ``.../ConsumerGroups/CG/Partitions/P`` with the selector filter the
  client sends (offset, sequence number or enqueued time, ``>`` or ``>=``);
* owner level (``com.microsoft:epoch``): a receiver with a higher epoch detaches the
  others of that consumer group and partition with ``amqp:link:stolen``; a lower or
  missing epoch next to an epoch receiver is refused with the same condition;
* an unknown hub, partition or consumer group detaches the link with ``amqp:not-found``.

Not emulated: TLS, token validation, retention (events are kept in memory forever),
consumer-group creation (every consumer group name exists), geo-replication.

Modules: ``store`` (hubs, partitions, events), ``amqp`` (message sections and frame
layout), ``broker`` (the proton handler), ``server`` (the I/O loop, ``send_events``),
``azurite`` (Azure Blob Storage for checkpoints) and ``cli``.
"""

from beam_pipelines.testing.emulators.eventhubs.azurite import (
           AZURITE_ACCOUNT,
           AZURITE_KEY,
           AzuriteBlob,
)
from beam_pipelines.testing.emulators.eventhubs.cli import main
from beam_pipelines.testing.emulators.eventhubs.server import EventHubsEmulator, send_events
from beam_pipelines.testing.emulators.eventhubs.store import partition_for_key

__all__ = ["AZURITE_ACCOUNT", "AZURITE_KEY", "AzuriteBlob", "EventHubsEmulator", "main",
           "partition_for_key", "send_events"]
