"""Kafka in pure Python (kafka-python): ``ReadFromKafka`` and ``WriteToKafka``.

A package of small modules, one job each:

* ``rules``: what a server list, topic name, start/stop position and secret look like;
* ``client``: the one builder of kafka-python clients, and their shared config;
* ``discovery``: the topic check at construction, partitions to read, added partitions;
* ``offsets``: where each partition starts and stops, committed offsets, consumer lag;
* ``read``: the splittable reader; ``watermark``: a partition's watermark;
* ``commit``: offsets committed once a bundle is finalized;
* ``serde``: deserializing, the writer's default serializer, raw-record conversions;
* ``write``: the writer.

Reading and writing return their results the same way: a NamedTuple of PCollections
with the outputs and ``dead_letters`` (:class:`KafkaReadResult`, :class:`KafkaWriteResult`).
The flags (``--source=kafka`` ...) are wired in ``beam_pipelines.wiring.kafka``;
docs/kafka.md tells the whole story.
"""

from transforms.io.kafka.client import client_config
from transforms.io.kafka.discovery import check_topics, wait_for_partitions
from transforms.io.kafka.read import KafkaReadResult, ReadFromKafka
from transforms.io.kafka.records import KafkaBatch, KafkaRecord, PartitionRead
from transforms.io.kafka.serde import json_event_time, to_json_bytes, to_raw_batch, to_raw_record
from transforms.io.kafka.write import KafkaWriteResult, WriteToKafka

__all__ = [
    "KafkaBatch", "KafkaReadResult", "KafkaRecord", "KafkaWriteResult", "PartitionRead",
    "ReadFromKafka", "WriteToKafka", "check_topics", "client_config", "json_event_time",
    "to_json_bytes", "to_raw_batch", "to_raw_record", "wait_for_partitions",
]
