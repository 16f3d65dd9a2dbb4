"""Choosing a source and a sink from the shared flags (``--source``, ``--sink``).

Connector modules provide two functions, looked up lazily so a missing extra or a
connector that has not landed yet gives a one-line error naming the flag:

* ``source_from_options(options) -> SourceSpec``: a PTransform producing
  :class:`~transforms.records.RawRecord` and whether it is bounded;
* ``sink_from_options(options, *, pipeline, streaming) -> PTransform`` taking records.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.errors import ConfigError
from beam_pipelines.options import IOOptions
from transforms.io.files import ReadLinesWithOrigin

_CONNECTORS = {"kafka": "transforms.io.kafka", "pubsub": "transforms.io.pubsub",
               "eventhubs": "transforms.io.eventhubs"}


class SourceSpec(NamedTuple):
    transform: beam.PTransform
    bounded: bool


def _connector(name: str, function: str, flag: str) -> Callable[..., Any]:
    module_name = _CONNECTORS[name]
    try:
        module = importlib.import_module(module_name)
        return getattr(module, function)
    except (ModuleNotFoundError, AttributeError):
        raise ConfigError.from_message(
            f"{flag}: {name} needs the {name} connector ({module_name}), which is not "
            f"available in this version"
        ) from None


def source_spec(
    options: PipelineOptions,
    *,
    default: str,
    synthetic: Callable[[PipelineOptions], SourceSpec],
) -> SourceSpec:
    io = options.view_as(IOOptions)
    source = io.source or default
    if source == "synthetic":
        return synthetic(options)
    if source == "file":
        if not io.input:
            raise ConfigError("--input", "a file path or glob when --source=file")
        return SourceSpec(ReadLinesWithOrigin(io.input), bounded=True)
    return _connector(source, "source_from_options", "--source")(options)


def connector_sink(options: PipelineOptions, *, pipeline: str, streaming: bool) -> beam.PTransform:
    sink = options.view_as(IOOptions).sink
    return _connector(sink, "sink_from_options", "--sink")(
        options, pipeline=pipeline, streaming=streaming
    )
