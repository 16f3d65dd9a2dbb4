"""The shape of an input contract (see the package docstring)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

from transforms.formats.base import Decoder
from transforms.parse import ParseFn, ParseRecords

__all__ = ["InputContract"]


@dataclasses.dataclass(frozen=True)
class InputContract:
    """What a pipeline accepts.

    :param schema: the record's name among the exported schemas (``beam_pipelines.schemas``).
    :param record: the NamedTuple a valid input becomes.
    :param parse: decoded JSON object -> (record, event time in whole seconds); raises
        InvalidRecord (its message is the dead letter's reason).
    :param generator: a seeded generator of inputs in the contract, built with
        ``generator(seed=, rate=, malformed=)`` and read with ``payloads(count, first)``.
    :param noun: what the inputs are called in messages ("user events", "readings").
    :param reader_schema: the contract's name among the Avro reader schemas
        (:data:`transforms.formats.contracts.CONTRACTS`): records of an Avro topic are
        resolved to it (schema evolution) before the contract sees them. None: each
        record is read with its writer's schema and the contract checks the fields.
    """

    schema: str
    record: type
    parse: ParseFn
    generator: Callable[..., Any]
    noun: str = "records"
    reader_schema: Optional[str] = None

    def parser(self, pipeline: str, step: str = "parse",
               decoder: Optional[Decoder] = None) -> ParseRecords:
        """RawRecords -> ``ParsedRecords(valid, dead_letters)``, valid records timestamped
        with their event time; payloads decoded by ``decoder`` (default: JSON objects)."""
        return ParseRecords(self.parse, pipeline=pipeline, step=step, decoder=decoder)
