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

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options.values import from_rule, positive_int, positive_seconds
from transforms.io.pubsub import rules
from transforms.io.pubsub.rules import SUBSCRIPTION_FORM, TOPIC_FORM

__all__ = ["PubSubOptions"]

subscription_name = from_rule(rules.subscription_name)
topic_name = from_rule(rules.topic_name)
host_port = from_rule(rules.host_port)
attribute_name = from_rule(rules.attribute_name)
field_names = from_rule(rules.field_names)
_ack_deadline = from_rule(rules.ack_deadline, "_ack_deadline")


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
