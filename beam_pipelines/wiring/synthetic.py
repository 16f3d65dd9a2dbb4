"""``--source=synthetic``: the pipeline's own seeded generator, bounded or streaming."""

from __future__ import annotations

from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import IOOptions, is_streaming
from beam_pipelines.wiring.source_spec import SourceSpec
from transforms.base.errors import ConfigError
from transforms.contracts import InputContract
from transforms.io.synthetic.events import SyntheticEvents
from transforms.io.synthetic.read import ReadSynthetic, unbounded_synthetic

__all__ = ["synthetic_source"]


def synthetic_source(options: PipelineOptions, contract: InputContract) -> SourceSpec:
    """Inputs of ``contract`` from its generator (``--synthetic_events``, ``--synthetic_seed``,
    ``--synthetic_rate``, ``--synthetic_malformed``): a bounded read, or with
    ``--streaming`` a stream at ``--synthetic_rate`` per wall-clock second."""
    io = options.view_as(IOOptions)
    # ReadSynthetic only calls generator.payloads(count, first), which every generator has.
    generator: Any = contract.generator(
        seed=io.synthetic_seed, rate=io.synthetic_rate, malformed=io.synthetic_malformed
    )
    if is_streaming(options):
        if not isinstance(generator, SyntheticEvents):
            raise ConfigError.from_message(
                "--streaming: the streaming synthetic source generates user events only in "
                f"this version; stream {contract.noun} from --source=kafka, pubsub or "
                "eventhubs, or drop --streaming"
            )
        return SourceSpec(unbounded_synthetic(generator, io.synthetic_events), bounded=False)
    return SourceSpec(ReadSynthetic(io.synthetic_events, generator), bounded=True)
