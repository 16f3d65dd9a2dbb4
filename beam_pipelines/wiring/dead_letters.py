"""``--dead_letter``: where rejected records go (a directory, kafka://TOPIC or
pubsub://projects/P/topics/T), as the sink ``transforms.sinks.dead_letter_sink`` writes them."""

from __future__ import annotations

from typing import Callable, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.wiring import kafka, pubsub
from transforms.sinks.dead_letter_sink import WriteDeadLetters, message_scheme

__all__ = ["write_dead_letters"]

# scheme -> the function making the writer of a message target from (target, options)
WRITERS: dict[str, Callable[[str, Optional[PipelineOptions]], beam.PTransform]] = {
    "kafka": kafka.dead_letter_writer,
    "pubsub": pubsub.dead_letter_writer,
}
# scheme -> the function giving the largest letter (JSON bytes) a message target takes, from
# (target, options), where it depends on the target; other targets take the sink's default.
LIMITS: dict[str, Callable[[str, PipelineOptions], int]] = {
    "kafka": kafka.dead_letter_limit,
}


def write_dead_letters(target: Optional[str], options: Optional[PipelineOptions], *,
                       pipeline: str, streaming: bool) -> WriteDeadLetters:
    """The dead-letter sink for ``target`` (``--dead_letter``), its writer built from the flags."""
    scheme = message_scheme(target)
    writer: Optional[beam.PTransform] = None
    limit: Optional[int] = None
    if scheme:
        assert target is not None
        writer = WRITERS[scheme](target, options)
        if scheme in LIMITS and options is not None:
            limit = LIMITS[scheme](target, options)
    return WriteDeadLetters(target, pipeline=pipeline, streaming=streaming, writer=writer,
                            limit_bytes=limit)
