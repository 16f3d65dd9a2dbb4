"""Message-format flags: ``--format`` of a source, ``--sink_format`` of a sink, and the
schema registry they use (docs/formats.md).

Secrets never go on the command line (``ps`` shows every process's arguments to every
user of the machine): the registry's credentials come from a file
(``--schema_registry_basic_auth_file``, ``--schema_registry_bearer_token_file``) or the
environment (``SCHEMA_REGISTRY_BASIC_AUTH``, ``SCHEMA_REGISTRY_BEARER_TOKEN`` and their
``_FILE`` forms, see :class:`transforms.formats.RegistryConfig`). Credentials written
into ``--schema_registry_url`` are moved out of it and never printed.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options.values import choice, non_empty
from transforms.formats.factory import FORMATS
from transforms.formats.registry import SUBJECT_NAME_STRATEGIES

__all__ = ["FormatOptions"]


class FormatOptions(PipelineOptions):
    """Message formats (Avro, Protobuf, JSON Schema) and the schema registry."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--format", type=choice(*FORMATS), default=None,
            help="Payload format of a kafka, pubsub or eventhubs source: json (default), avro, "
            "protobuf or jsonschema; the last three in the Confluent wire format with "
            "--schema_registry_url, or without a registry from --value_schema.",
        )
        parser.add_argument(
            "--sink_format", type=choice(*FORMATS), default=None,
            help="Payload format a kafka, pubsub or eventhubs sink writes: json (default), "
            "avro or jsonschema (the schema derived from the result record, registered "
            "under the output topic's subject), or protobuf (--sink_value_schema=FILE.desc "
            "--sink_message_name=NAME).",
        )
        parser.add_argument(
            "--schema_registry_url", type=non_empty("the registry's URL"), default=None,
            help="Confluent-compatible schema registry, http(s)://HOST[:PORT][,URL...] "
            "(env SCHEMA_REGISTRY_URL).",
        )
        parser.add_argument(
            "--schema_registry_basic_auth_file", type=non_empty("a file path"), default=None,
            help="A file holding the registry's KEY:SECRET (Confluent Cloud API key); env "
            "SCHEMA_REGISTRY_BASIC_AUTH or SCHEMA_REGISTRY_BASIC_AUTH_FILE. Never logged.",
        )
        parser.add_argument(
            "--schema_registry_bearer_token_file", type=non_empty("a file path"), default=None,
            help="A file holding an OAuth access token for the registry; env "
            "SCHEMA_REGISTRY_BEARER_TOKEN or SCHEMA_REGISTRY_BEARER_TOKEN_FILE. Never logged.",
        )
        parser.add_argument(
            "--schema_registry_logical_cluster", default=None,
            help="Confluent Cloud's registry cluster id (lsrc-...), sent with bearer tokens "
            "(env SCHEMA_REGISTRY_LOGICAL_CLUSTER).",
        )
        parser.add_argument(
            "--schema_registry_ca", type=non_empty("a file path"), default=None,
            help="CA bundle for a registry with a private certificate (env SCHEMA_REGISTRY_CA).",
        )
        parser.add_argument(
            "--value_schema", type=non_empty("a schema file"), default=None,
            help="A source's local schema for payloads without a registry header: FILE.avsc "
            "(schemaless Avro, as fastavro.schemaless_writer writes it) or FILE.desc with "
            "--message_name (raw Protobuf).",
        )
        parser.add_argument(
            "--message_name", type=non_empty("a message name"), default=None,
            help="The Protobuf message (package.Message) of --value_schema=FILE.desc.",
        )
        parser.add_argument(
            "--reader_schema", type=non_empty("a schema file"), default=None,
            help="Avro: the schema records are resolved to (FILE.avsc, or a contract name "
            "such as user_events). Default: the pipeline's input contract, where it has one.",
        )
        parser.add_argument(
            "--sink_value_schema", type=non_empty("a schema file"), default=None,
            help="The sink's writer schema instead of the one derived from the result "
            "record: FILE.avsc (avro), FILE.json (jsonschema) or FILE.desc (protobuf, with "
            "--sink_message_name).",
        )
        parser.add_argument(
            "--sink_message_name", type=non_empty("a message name"), default=None,
            help="The Protobuf message (package.Message) of --sink_value_schema=FILE.desc.",
        )
        parser.add_argument(
            "--subject_name_strategy", type=choice(*SUBJECT_NAME_STRATEGIES), default=None,
            help="Sinks: the subject the schema is registered under: topic_name (default, "
            "<topic>-value), record_name or topic_record_name.",
        )
        parser.add_argument(
            "--no_auto_register_schemas", action="store_true", default=False,
            help="Sinks: only look the schema up under its subject (fail at start if it is "
            "not registered) instead of registering it.",
        )
