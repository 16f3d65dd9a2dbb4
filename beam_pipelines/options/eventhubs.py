"""Azure Event Hubs flags: ``--source=eventhubs`` / ``--sink=eventhubs``.

Connection strings carry the shared access key, so they never appear in logs, error
messages or ``--help`` output: every place that shows one goes through :func:`redact`
(``SharedAccessKey=***``, ``AccountKey=***``, ``SharedAccessSignature=***``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import re

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import positive_int, positive_seconds

START_KEYWORDS = ("earliest", "latest")
STOP_KEYWORDS = ("end", "never")
CONNECTION_FORM = ("an Event Hubs connection string (Endpoint=sb://NAMESPACE/;SharedAccessKeyName="
                   "...;SharedAccessKey=...; add UseDevelopmentEmulator=true for the emulator)")
START_FORM = ("earliest, latest, seq:N (sequence number N onwards), offset:O (after offset O) "
              "or an ISO-8601 enqueued time such as 2024-01-01T00:00:00Z")
STORE_FORM = ("an Azure Storage connection string (DefaultEndpointsProtocol=...;AccountName=...;"
              "AccountKey=...; or UseDevelopmentStorage=true) or file://DIRECTORY")
# Any field whose name mentions a key, signature, password or secret (even misspelt, as
# in a connection string a user got wrong), except the *name* of a key.
_SECRET = re.compile(r"(?i)\b([A-Za-z_]*(?:key|sig|signature|password|secret|token)[A-Za-z_]*)=([^;&]*)")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,255}$")
_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9\-]{1,61}[a-z0-9]$")


def redact(text: object) -> str:
    """``text`` with every key / signature of a connection string replaced by ***."""
    return _SECRET.sub(
        lambda m: m.group(0) if m.group(1).lower().endswith("name") else f"{m.group(1)}=***",
        str(text))


def parse_time(text: str) -> _dt.datetime:
    """ISO-8601 (a missing zone means UTC) -> aware datetime; ValueError otherwise."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    moment = _dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.timezone.utc)


def connection_string(text: str) -> str:
    fields = {k.strip().lower() for k, _, _ in (p.partition("=") for p in text.split(";")) if k}
    if "endpoint" not in fields or not ({"sharedaccesskey", "sharedaccesssignature"} & fields):
        raise argparse.ArgumentTypeError(f"expected {CONNECTION_FORM}, got {redact(text)!r}")
    return text


def hub_name(text: str) -> str:
    if not _HUB_NAME.match(text):
        raise argparse.ArgumentTypeError(
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
        raise argparse.ArgumentTypeError(f"expected {START_FORM}, got {text!r}") from None
    return value


def stop_at(text: str) -> str:
    if text not in STOP_KEYWORDS:
        raise argparse.ArgumentTypeError(
            f"expected end (the last events at launch: a bounded read) or never, got {text!r}")
    return text


def checkpoint_store(text: str) -> str:
    if text.startswith("file://") and len(text) > len("file://"):
        return text
    fields = {k.strip().lower() for k, _, _ in (p.partition("=") for p in text.split(";")) if k}
    if "accountname" in fields or "usedevelopmentstorage" in fields or "blobendpoint" in fields:
        return text
    raise argparse.ArgumentTypeError(f"expected {STORE_FORM}, got {redact(text)!r}")


def container_name(text: str) -> str:
    if not _CONTAINER.match(text):
        raise argparse.ArgumentTypeError(
            f"expected a blob container name (3-63 lowercase letters, digits, '-'), got {text!r}")
    return text


def owner_level(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value






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
