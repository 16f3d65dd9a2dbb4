"""Azure Event Hubs flags: ``--source=eventhubs`` / ``--sink=eventhubs``.

Connection strings carry the shared access key, so they never appear in logs, error
messages or ``--help`` output: every place that shows one goes through :func:`redact`
(``SharedAccessKey=***``, ``AccountKey=***``, ``SharedAccessSignature=***``).
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options.values import from_rule, positive_int, positive_seconds
from transforms.io.eventhubs import rules
from transforms.io.eventhubs.rules import redact

__all__ = ["EventHubsOptions"]

connection_string = from_rule(rules.connection_string)
hub_name = from_rule(rules.hub_name)
start_at = from_rule(rules.start_at)
stop_at = from_rule(rules.stop_at)
checkpoint_store = from_rule(rules.checkpoint_store)
container_name = from_rule(rules.container_name)
owner_level = from_rule(rules.owner_level)


class _Redacted(str):
    """A connection string whose repr (used by argparse messages and Beam's option dumps)
    hides the key."""

    def __repr__(self) -> str:
        return repr(redact(str(self)))


def _secret(parse):
    def wrapped(text: str) -> str:
        return _Redacted(parse(text))

    wrapped.__name__ = parse.__name__
    return wrapped


class EventHubsOptions(PipelineOptions):
    """Azure Event Hubs source and sink (extra [eventhubs])."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--eventhubs_connection_string", type=_secret(connection_string), default=None,
            help="Namespace (or hub) connection string for --source/--sink=eventhubs. Never "
            "logged: shown as SharedAccessKey=***. UseDevelopmentEmulator=true reaches a local "
            "emulator over plain TCP.",
        )
        parser.add_argument(
            "--eventhub", type=hub_name, default=None,
            help="Event hub to read or write (default: the connection string's EntityPath).",
        )
        parser.add_argument(
            "--eventhubs_consumer_group", default="$Default",
            help="Consumer group to read as (default $Default). Checkpoints are kept per "
            "consumer group.",
        )
        parser.add_argument(
            "--eventhubs_start_at", type=start_at, default="earliest",
            help="Where each partition starts when it has no checkpoint: earliest (default), "
            "latest, seq:N (sequence number N onwards), offset:O (after offset O) or an "
            "ISO-8601 enqueued time.",
        )
        parser.add_argument(
            "--eventhubs_stop_at", type=stop_at, default="never",
            help="never (default: an unbounded, streaming read) or end: read up to the last "
            "event of each partition at launch, a bounded (batch) read.",
        )
        parser.add_argument(
            "--eventhubs_max_events", type=positive_int, default=None,
            help="Bounded read: at most this many events per partition.",
        )
        parser.add_argument(
            "--eventhubs_owner_level", type=owner_level, default=None,
            help="Owner level (epoch) of the readers: a reader with a higher level takes a "
            "partition over and the service disconnects lower ones, so two jobs never both "
            "own a partition. Default: none (non-exclusive readers).",
        )
        parser.add_argument(
            "--eventhubs_checkpoint_store", type=_secret(checkpoint_store), default=None,
            help="Where each partition's position is checkpointed once the runner has committed "
            "the bundle that read it, and resumed from: an Azure Storage connection string "
            "(azure-eventhub-checkpointstoreblob layout, shared with EventProcessorClient) or "
            "file://DIRECTORY (our own committed state). Default: no checkpoints.",
        )
        parser.add_argument(
            "--eventhubs_checkpoint_container", type=container_name,
            default="eventhubs-checkpoints",
            help="Blob container for Azure Storage checkpoints (created if missing). "
            "Default eventhubs-checkpoints.",
        )
        parser.add_argument(
            "--eventhubs_event_time_field", default=None,
            help="Event time: this JSON payload field (ISO-8601 or epoch seconds/milliseconds); "
            "default the enqueued time. Events without it keep the enqueued time.",
        )
        parser.add_argument(
            "--eventhubs_partition_key_field", default=None,
            help="--sink=eventhubs: the record field used as partition key (records with one "
            "key keep their order). Default: no key, the service spreads events.",
        )
        parser.add_argument(
            "--eventhubs_idle_timeout", type=positive_seconds, default=5.0,
            help="Bounded reads: fail a partition that yields nothing for this many seconds "
            "while events are still expected. Default 5. (Streaming reads wait at most 0.25 s "
            "per call before handing control back to the runner.)",
        )
