"""The built-in synthetic source: deterministic user events, no broker, no network.

``ReadSynthetic(count=N)`` is bounded (batch): the default pageviews run uses it. The
events are generated in ranges by a DoFn, so a large count does not build a big list at
pipeline-construction time.
"""

from __future__ import annotations

import apache_beam as beam

from beam_pipelines.errors import ConfigError
from beam_pipelines.testing.synthetic import SyntheticEvents
from transforms.records import RawRecord

_RANGE = 10_000


class _GenerateRange(beam.DoFn):
    def __init__(self, generator: SyntheticEvents) -> None:
        self._generator = generator

    def process(self, bounds: tuple[int, int]):
        first, count = bounds
        for offset, payload in enumerate(self._generator.payloads(count, first)):
            yield RawRecord(payload, {"source": "synthetic", "index": first + offset})


class ReadSynthetic(beam.PTransform):
    """A bounded stream of ``count`` synthetic user events as RawRecords."""

    def __init__(self, count: int = 5_000, generator: SyntheticEvents | None = None) -> None:
        super().__init__()
        if not isinstance(count, int) or count <= 0:
            raise ConfigError("--synthetic_events", "a whole number > 0", count)
        self._count = count
        self._generator = generator or SyntheticEvents()

    def expand(self, pbegin):
        ranges = [(i, min(_RANGE, self._count - i)) for i in range(0, self._count, _RANGE)]
        return (
            pbegin
            | "Ranges" >> beam.Create(ranges)
            | "Generate" >> beam.ParDo(_GenerateRange(self._generator))
        )
