"""A Kafka -> Kafka pass-through job for the delivery tests, run as a subprocess::

    python -m tests.transforms.io.kafka.passthrough_job SERVERS IN OUT GROUP at_least_once|exactly_once [HOLD]

Every input record goes to the output topic as it is, on the local streaming runner; the
group's committed offsets say where a restart resumes. Small polls, so a kill lands
between reads, writes and commits.

``HOLD``: a record value the job stops at once the sink has written it, until it is
killed. A step on the sink's written records blocks on that record (and with it the
runner's one worker thread): at least once, what a written record derives from stays in
flight, so its poll's offsets are not committed although its records are written, and
every kill lands in the gap that duplicates, rather than when the timing happens to put
it there. (Exactly once the sink's written records derive from nothing, the transaction
holds their reads instead, so the hold only stops the job.)
"""

from __future__ import annotations

import sys
import threading

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from runners.presets import LOCAL_STREAMING
from transforms.io.kafka import ReadFromKafka, WriteToKafka
from transforms.io.kafka.transactions import ExactlyOnce


def _hold_at(marker: bytes):
    def hold(value: bytes) -> bytes:
        if value == marker:
            threading.Event().wait()  # until the test kills the job
        return value
    return hold


def main(argv: list[str]) -> None:
    servers, source, target, group, delivery, *hold = argv
    exactly_once = delivery == "exactly_once"
    options = PipelineOptions([f"--runner={LOCAL_STREAMING}", "--streaming"])
    with beam.Pipeline(options=options) as pipeline:
        read = pipeline | "Read" >> ReadFromKafka(
            servers, source, consumer_group=group, start_at="committed",
            commit_offsets="transaction" if exactly_once else True,
            config={"max_poll_records": 50}, idle_timeout=600)
        written = (read.records
                   | "Value" >> beam.Map(lambda record: record.value)
                   | "Write" >> WriteToKafka(
                       servers, target,
                       exactly_once=ExactlyOnce(group, f"passthrough.{group}")
                       if exactly_once else None)).written
        if hold:
            written | "Hold" >> beam.Map(_hold_at(hold[0].encode()))


if __name__ == "__main__":
    main(sys.argv[1:])
