"""Google Cloud Pub/Sub on every Beam runner (extra ``[pubsub]``): ``ReadFromPubSub``,
``WriteToPubSub``.

A package of small modules: ``rules`` (subscription and topic paths), ``client`` (clients
for the emulator or the service), ``restriction`` and ``leases`` (at-least-once
acknowledgement), ``serde`` (message times), ``read`` and ``write``. The reader returns a
:class:`~transforms.io.results.ReadResult`; the flags are wired in
``beam_pipelines.wiring.pubsub``; docs/pubsub.md tells the whole story.
"""

from transforms.io.pubsub.client import emulator_host, publisher_client, subscriber_client
from transforms.io.pubsub.read import ReadFromPubSub, create_temporary_subscription
from transforms.io.pubsub.write import PubSubMessage, WriteToPubSub

__all__ = ["PubSubMessage", "ReadFromPubSub", "WriteToPubSub", "create_temporary_subscription",
           "emulator_host", "publisher_client", "subscriber_client"]
