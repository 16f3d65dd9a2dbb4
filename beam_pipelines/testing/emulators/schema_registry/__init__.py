"""A Confluent-compatible schema registry for tests and notebooks (in memory).

Confluent's Schema Registry is a Java service that does not install here, so this speaks
its REST API itself: Confluent's own clients (``confluent_kafka.schema_registry``, its
Avro/Protobuf/JSON serializers) talk to it unchanged. Subjects and versions, global
schema ids (the same schema under two subjects is one id), compatibility levels with real
checks (:mod:`.compatibility` says which rules), soft and permanent deletes, references,
modes, basic and bearer auth. Not implemented: contexts beyond the default, metadata and
rule sets (accepted and ignored), schema normalization (``normalize`` is ignored),
``/exporters``, ``/keks``/``/deks``, ``/associations``.

::

    python -m beam_pipelines.testing.emulators.schema_registry --port 8081

or, in Python::

    with SchemaRegistryEmulator() as registry:
        client = SchemaRegistryClient({"url": registry.url})
"""

from beam_pipelines.testing.emulators.schema_registry.server import SchemaRegistryEmulator

__all__ = ["SchemaRegistryEmulator"]
