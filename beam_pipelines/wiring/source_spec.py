"""What a source gives the pipeline skeleton: its read, whether it is bounded, and the
same input in bulk form where the source has one."""

from __future__ import annotations

from typing import NamedTuple, Optional

import apache_beam as beam

from transforms.formats import Decoder

__all__ = ["SourceSpec"]


class SourceSpec(NamedTuple):
    """A source chosen by ``--source``.

    ``transform`` reads :class:`~transforms.records.RawRecord` s: it returns them as a
    PCollection, or as a :class:`~transforms.io.results.ReadResult` whose dead letters
    the skeleton routes with every other rejected record.
    """

    transform: beam.PTransform
    bounded: bool
    # The same input as blocks of lines / record batches for the vectorized batch path
    # (transforms.batches), where the source has one.
    blocks: Optional[beam.PTransform] = None
    # The same stream as RawBatches (transforms.records), one element per poll, for the
    # vectorized streaming path, where the source has one.
    batches: Optional[beam.PTransform] = None
    # How the parse step decodes the payloads (``--format``): None for JSON objects.
    decoder: Optional[Decoder] = None
