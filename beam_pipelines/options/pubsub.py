"""Pub/Sub flags: ``--source=pubsub`` and ``--sink=pubsub``.

Read a subscription, or a topic through a temporary subscription::

    --source=pubsub --subscription=projects/P/subscriptions/S
    --source=pubsub --pubsub_topic=projects/P/topics/T   # only messages published from now on

A read is unbounded (the pipeline streams) unless ``--pubsub_max_messages`` or
``--pubsub_max_seconds`` bounds it (tests, backfills of a backlog). Write with
``--sink=pubsub --output=projects/P/topics/T``. Against a local emulator pass
``--pubsub_emulator_host=HOST:PORT`` (or set ``PUBSUB_EMULATOR_HOST``).
"""

from __future__ import annotations

import argparse
import re

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import positive_int, positive_seconds

SUBSCRIPTION_FORM = "projects/P/subscriptions/S"
TOPIC_FORM = "projects/P/topics/T"
# The service's rules: a name starts with a letter, 3-255 of letters, digits and -_.~+%
_NAME = r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}"
_PROJECT = r"[A-Za-z0-9\-.:]+"
SUBSCRIPTION_RE = re.compile(rf"^projects/{_PROJECT}/subscriptions/{_NAME}$")
TOPIC_RE = re.compile(rf"^projects/{_PROJECT}/topics/{_NAME}$")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.\-]+):\d{1,5}$")
_ATTRIBUTE = re.compile(r"^[^\s]{1,256}$")


def subscription_name(text: str) -> str:
    if not SUBSCRIPTION_RE.match(text):
        raise argparse.ArgumentTypeError(f"expected {SUBSCRIPTION_FORM}, got {text!r}")
    return text


def topic_name(text: str) -> str:
    if not TOPIC_RE.match(text):
        raise argparse.ArgumentTypeError(f"expected {TOPIC_FORM}, got {text!r}")
    return text


def host_port(text: str) -> str:
    if not _HOST_PORT.match(text):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return text


def attribute_name(text: str) -> str:
    if not _ATTRIBUTE.match(text):
        raise argparse.ArgumentTypeError(
            f"expected an attribute name (1-256 characters, no spaces), got {text!r}"
        )
    return text


def field_names(text: str) -> str:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected FIELD[,FIELD...], got {text!r}")
    return ",".join(names)






def _ack_deadline(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 10 <= value <= 600:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of seconds from 10 to 600, got {text!r}"
        )
    return value


class PubSubOptions(PipelineOptions):
    """Google Cloud Pub/Sub source and sink (--source=pubsub, --sink=pubsub)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--subscription", type=subscription_name, default=None,
            help=f"--source=pubsub: the subscription to read ({SUBSCRIPTION_FORM}). Messages "
            "are acknowledged only after the runner has committed the bundle that read them.",
        )
        parser.add_argument(
            "--pubsub_topic", type=topic_name, default=None,
            help=f"--source=pubsub: read this topic ({TOPIC_FORM}) through a temporary "
            "subscription created at launch (it sees only messages published after that and "
            "expires after a day unused). Use --subscription to keep a backlog.",
        )
        parser.add_argument(
            "--timestamp_attribute", type=attribute_name, default=None,
            help="Message attribute holding each message's event time: milliseconds since "
            "the epoch or RFC 3339 (2024-01-01T00:00:00Z). Default: the publish time.",
        )
        parser.add_argument(
            "--id_attribute", type=attribute_name, default=None,
            help="Message attribute holding a unique id: messages whose id was already read "
            "are dropped (per reader, over the last 100000 ids). Default: de-duplicate "
            "redeliveries by message id only.",
        )
        parser.add_argument(
            "--pubsub_max_messages", type=positive_int, default=None,
            help="Bounded read: stop after this many messages (the pipeline runs as batch).",
        )
        parser.add_argument(
            "--pubsub_max_seconds", type=positive_seconds, default=None,
            help="Bounded read: stop reading after this many seconds (batch; combines with "
            "--pubsub_max_messages, whichever comes first).",
        )
        parser.add_argument(
            "--pubsub_readers", type=positive_int, default=1,
            help="How many readers pull the subscription in parallel (the service spreads "
            "messages across them; --pubsub_max_messages is divided among them). Default 1.",
        )
        parser.add_argument(
            "--pubsub_ack_deadline", type=_ack_deadline, default=60,
            help="Seconds each extension of a read message's ack deadline lasts while its "
            "bundle is in flight (10-600). Default 60.",
        )
        parser.add_argument(
            "--pubsub_emulator_host", type=host_port, default=None,
            help="HOST:PORT of a Pub/Sub emulator (e.g. python -m "
            "beam_pipelines.testing.emulators.pubsub). Default: $PUBSUB_EMULATOR_HOST, "
            "else the real service with Application Default Credentials.",
        )
        parser.add_argument(
            "--pubsub_ordering_key", default=None,
            help="--sink=pubsub: the record field whose value is each message's ordering "
            "key (messages with one key are delivered in order).",
        )
        parser.add_argument(
            "--pubsub_attribute_fields", type=field_names, default=None,
            help="--sink=pubsub: record fields also sent as message attributes (FIELD,FIELD).",
        )
