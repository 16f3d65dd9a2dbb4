"""Kafka flags: ``--source=kafka`` / ``--sink=kafka`` / ``--dead_letter kafka://TOPIC``.

The same flags reach any Kafka-protocol endpoint: a local broker, a managed cluster
(SASL/SSL) or Azure Event Hubs' Kafka endpoint::

    --bootstrap_servers=NS.servicebus.windows.net:9093 --security_protocol=SASL_SSL \\
    --sasl_mechanism=PLAIN --sasl_username='$ConnectionString' --sasl_password='Endpoint=...'

Anything else kafka-python accepts goes through ``--kafka_config KEY=VALUE`` (repeatable).

``--bootstrap_servers`` is not defined here: Beam 2.77 already defines it (for its Kafka
Streams runner, default ``localhost:9092``, the Kafka convention), and argparse refuses a
second definition. We read that same flag and validate it in
``beam_pipelines.wiring.kafka.servers_from_options``.
``--sasl_password`` never appears in logs or error messages (see
``transforms.io.kafka.rules.redact``). The value rules are the connector's
(``transforms.io.kafka.rules``); this module makes flags of them.
"""

from __future__ import annotations

import functools

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options.values import choice, from_rule, positive_int, positive_seconds
from transforms.io.kafka import rules

__all__ = ["KafkaOptions"]

start_at = from_rule(functools.partial(rules.position, rules.START_KEYWORDS), "position")
stop_at = from_rule(functools.partial(rules.position, rules.STOP_KEYWORDS), "position")
bootstrap_servers = from_rule(rules.bootstrap_servers)
topic_names = from_rule(rules.topic_names)
key_value = from_rule(rules.key_value)


class KafkaOptions(PipelineOptions):
    """Kafka source, sink and dead-letter topic (any Kafka-protocol endpoint)."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--topic", type=topic_names, action="append", default=None,
            help="Topic(s) to read with --source=kafka: repeat the flag and/or comma-separate.",
        )
        parser.add_argument(
            "--consumer_group", default=None,
            help="Consumer group: a record's offset is committed to it once everything derived "
            "from it is written (on LocalStreamingRunner; after each checkpoint on Flink and "
            "Dataflow), and --start_at=committed resumes from it. Default: no commits.",
        )
        parser.add_argument(
            "--start_at", type=start_at, default="latest",
            help="Where each partition starts: earliest, latest (default), committed (the "
            "group's offsets; earliest where none) or an ISO-8601 time (first record whose log "
            "time is at or after it).",
        )
        parser.add_argument(
            "--stop_at", type=stop_at, default="never",
            help="Where each partition stops: never (default: an unbounded, streaming read), "
            "end (the end offsets seen at launch) or an ISO-8601 log time (exclusive). Anything "
            "but never makes the read bounded, so the pipeline runs as batch.",
        )
        parser.add_argument(
            "--max_records", type=positive_int, default=None,
            help="Bounded read: this many records in total, taken from what the partitions "
            "hold at launch, spread as evenly as they allow; if the topic holds fewer, the read "
            "waits for the rest.",
        )
        parser.add_argument(
            "--max_read_time", type=positive_seconds, default=None,
            help="Bounded read: stop reading after this many seconds of wall-clock time.",
        )
        parser.add_argument(
            "--timestamp_policy", type=choice(*rules.TIMESTAMP_POLICIES), default="log_time",
            help="Element timestamps of raw Kafka records: log_time (the record's Kafka "
            "timestamp, default), processing_time, or event_time (the pipelines re-stamp "
            "parsed events with their own event time anyway).",
        )
        parser.add_argument(
            "--idle_timeout", type=positive_seconds, default=10.0,
            help="Seconds after which a caught-up partition with no new records lets its "
            "watermark advance with wall-clock time, so it does not hold windows open. "
            "Default 10.",
        )
        parser.add_argument(
            "--kafka_discovery_interval", type=positive_seconds, default=60.0,
            help="Reads with --stop_at=never: look for partitions added to the topics every "
            "this many seconds and read them from their beginning. Default 60.",
        )
        parser.add_argument(
            "--security_protocol", type=choice(*rules.SECURITY_PROTOCOLS), default=None,
            help="PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL (Event Hubs: SASL_SSL).",
        )
        parser.add_argument(
            "--sasl_mechanism", type=choice(*rules.SASL_MECHANISMS), default=None,
            help="SASL mechanism: PLAIN (Event Hubs), SCRAM-SHA-256, SCRAM-SHA-512, ...",
        )
        parser.add_argument(
            "--sasl_username", default=None,
            help="SASL username (Event Hubs: the literal $ConnectionString).",
        )
        parser.add_argument(
            "--sasl_password", default=None,
            help="SASL password (Event Hubs: the connection string). Never logged.",
        )
        parser.add_argument(
            "--ssl_cafile", default=None,
            help="CA bundle to verify the brokers' TLS certificates (default: system CAs).",
        )
        parser.add_argument(
            "--isolation_level", type=choice(*rules.ISOLATION_LEVELS), default="read_committed",
            help="What Kafka readers see of topics written in transactions: read_committed "
            "(default: only committed transactions, never an aborted one; the same as "
            "read_uncommitted for topics written without them) or read_uncommitted.",
        )
        parser.add_argument(
            "--delivery", type=choice(*rules.DELIVERIES), default="at_least_once",
            help="--sink=kafka from --source=kafka: at_least_once (default: a crash can write "
            "a result twice) or exactly_once (a transactional producer commits the consumed "
            "offsets of --consumer_group in the same transaction; read the output with "
            "read_committed). exactly_once needs a streaming run on LocalStreamingRunner.",
        )
        parser.add_argument(
            "--transactional_id", default=None,
            help="--delivery=exactly_once: the producer's transactional id, the same for every "
            "run of the job (a restart fences the dead run). Default: "
            "beam-pipelines.PIPELINE.GROUP.OUTPUT_TOPIC.",
        )
        parser.add_argument(
            "--kafka_config", type=key_value, action="append", default=None,
            help="Any other kafka-python client setting, KEY=VALUE (repeatable), e.g. "
            "--kafka_config request_timeout_ms=60000. Numbers and true/false are converted.",
        )
