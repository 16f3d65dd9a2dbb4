"""The shape of an input contract (see the package docstring)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

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
    """

    schema: str
    record: type
    parse: ParseFn
    generator: Callable[..., Any]
    noun: str = "records"

    def parser(self, pipeline: str, step: str = "parse") -> ParseRecords:
        """RawRecords -> ``ParsedRecords(valid, dead_letters)``, valid records timestamped
        with their event time."""
        return ParseRecords(self.parse, pipeline=pipeline, step=step)
