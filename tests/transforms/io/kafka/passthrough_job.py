"""A Kafka -> Kafka pass-through job for the delivery tests, run as a subprocess::

    python -m tests.transforms.io.kafka.passthrough_job SERVERS IN OUT GROUP at_least_once|exactly_once

Every input record goes to the output topic as it is, on the local streaming runner; the
group's committed offsets say where a restart resumes. Small polls, so a kill lands
between reads, writes and commits.
"""

from __future__ import annotations

import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from runners.presets import LOCAL_STREAMING
from transforms.io.kafka import ReadFromKafka, WriteToKafka
from transforms.io.kafka.transactions import ExactlyOnce


def main(argv: list[str]) -> None:
    servers, source, target, group, delivery = argv
    exactly_once = delivery == "exactly_once"
    options = PipelineOptions([f"--runner={LOCAL_STREAMING}", "--streaming"])
    with beam.Pipeline(options=options) as pipeline:
        read = pipeline | "Read" >> ReadFromKafka(
            servers, source, consumer_group=group, start_at="committed",
            commit_offsets="transaction" if exactly_once else True,
            config={"max_poll_records": 50}, idle_timeout=600)
        (read.records
         | "Value" >> beam.Map(lambda record: record.value)
         | "Write" >> WriteToKafka(
             servers, target,
             exactly_once=ExactlyOnce(group, f"passthrough.{group}") if exactly_once else None))


if __name__ == "__main__":
    main(sys.argv[1:])
