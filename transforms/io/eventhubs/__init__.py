"""Azure Event Hubs on every Beam runner (extra ``[eventhubs]``): ``ReadFromEventHubs``,
``WriteToEventHubs``.

A package of small modules: ``rules`` (connection strings, names, positions, redaction),
``client`` (clients, retries, one-line errors), ``checkpoints`` (Blob or file stores),
``plan`` (one task per partition), ``receiver`` (a partition's receive loop), ``read``
(the splittable reader) and ``write``. The reader returns a
:class:`~transforms.io.results.ReadResult`; the flags are wired in
``beam_pipelines.wiring.eventhubs``; docs/eventhubs.md tells the whole story.
"""

from transforms.io.eventhubs.checkpoints import Checkpoint, open_checkpoint_store
from transforms.io.eventhubs.read import ReadFromEventHubs
from transforms.io.eventhubs.write import WriteToEventHubs

__all__ = ["Checkpoint", "ReadFromEventHubs", "WriteToEventHubs", "open_checkpoint_store"]
