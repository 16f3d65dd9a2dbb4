"""``--source``: the source a run reads, from the flags.

``synthetic`` is the pipeline's own generator (its input contract decides which one),
``file`` reads ``--input``, and ``kafka``/``pubsub``/``eventhubs`` are wired in the
modules of this package. Every connector is imported here by name: its client library is
imported only when a run uses it (``transforms.base.extras.require``).
"""

from __future__ import annotations

from typing import Callable, Optional

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import IOOptions
from beam_pipelines.wiring import eventhubs, formats, kafka, pubsub
from beam_pipelines.wiring.source_spec import SourceSpec
from transforms.base.errors import ConfigError
from transforms.contracts import InputContract
from transforms.io.files import ReadFileBlocks, ReadLinesWithOrigin

__all__ = ["CONNECTORS", "SourceSpec", "file_source", "source_spec"]

# --source value -> the function making the SourceSpec from the flags.
CONNECTORS: dict[str, Callable[[PipelineOptions], SourceSpec]] = {
    "kafka": kafka.source_from_options,
    "pubsub": pubsub.source_from_options,
    "eventhubs": eventhubs.source_from_options,
}


def file_source(options: PipelineOptions) -> SourceSpec:
    """``--source=file --input=GLOB``: lines (or Parquet rows) with their file and line."""
    io = options.view_as(IOOptions)
    if not io.input:
        raise ConfigError("--input", "a file path or glob when --source=file")
    return SourceSpec(ReadLinesWithOrigin(io.input), bounded=True, blocks=ReadFileBlocks(io.input))


def source_spec(
    options: PipelineOptions,
    *,
    default: str,
    synthetic: Callable[[PipelineOptions], SourceSpec],
    contract: Optional[InputContract] = None,
) -> SourceSpec:
    """The source ``--source`` names (``default`` when unset); ``synthetic`` makes the
    pipeline's own generator source. The payloads' decoder (``--format``) comes with it;
    ``contract`` gives an Avro source its default reader schema."""
    source = options.view_as(IOOptions).source or default
    decoder = formats.decoder_from_options(options, source, contract)
    if source == "synthetic":
        return synthetic(options)
    if source == "file":
        return file_source(options)
    return CONNECTORS[source](options)._replace(decoder=decoder)
