"""The per-record contract for user events, and its verdict on the lines the vectorized
parser hands over, without Beam: the parse pool's worker processes import this module
(:class:`transforms.batches.BlockParser` with :func:`parse_and_decide`), so the per-record
decisions of a backfill's bad lines are made on the workers' cores, not in the runner's
thread. :mod:`transforms.parse` re-exports the contract."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

from transforms.base.errors import BeamPipelinesError
from transforms.batches import ParsedBlock, parse_json_block
from transforms.formats.base import Decoder, JsonDecoder
from transforms.records import UserEvent
from transforms.validation import (
    InvalidRecord,
    event_time,
    non_empty_string,
    string_or_integer_id,
)

__all__ = [
    "ParseFn",
    "Rejected",
    "Verdict",
    "decoder_or_json",
    "is_blank",
    "parse_and_decide",
    "parse_or_reject",
    "parse_user_event",
    "verdict_of",
]

# A parse function turns a decoded JSON object into (record, event time in whole seconds).
ParseFn = Callable[[dict[str, Any]], tuple[Any, int]]


def parse_user_event(obj: dict[str, Any]) -> tuple[UserEvent, int]:
    """The pageviews input contract; extra fields are ignored."""
    user_id = string_or_integer_id(obj, "user_id")
    action = non_empty_string(obj, "action")
    page = non_empty_string(obj, "page")
    seconds, whole = event_time(obj, "timestamp")
    return UserEvent(user_id, action, page, seconds), whole


def is_blank(payload: bytes | str) -> bool:
    return not payload.strip()


_JSON = JsonDecoder()


def decoder_or_json(decoder: Optional[Decoder]) -> Decoder:
    if decoder is None:
        return _JSON
    if not isinstance(decoder, Decoder):
        raise TypeError(f"decoder must be a transforms.formats.Decoder, got {decoder!r}")
    return decoder


def parse_or_reject(parse_fn: ParseFn, payload: bytes | str,
                    decoder: Optional[Decoder] = None) -> tuple[Any, int] | InvalidRecord:
    """``parse_fn`` applied to the decoded payload, or the InvalidRecord saying why not.

    ``decoder`` turns the payload into a dict (default: a JSON object); a payload it
    cannot decode is an InvalidRecord with its reason code (``bad_magic_byte``...). A
    schema registry that cannot be reached is not the record's fault: its
    SchemaRegistryError propagates and fails the bundle, which the runner retries.

    Whatever a parse function raises for one record is that record's problem, never the
    job's: an exception no rule foresaw (a bug, or an input nobody imagined) becomes an
    InvalidRecord with the code ``parse_failed`` that names it, so the record is
    dead-lettered with the reason and the stream goes on.
    """
    try:
        obj = (decoder or _JSON).decode(payload)  # type: ignore[arg-type]  # JSON takes str too
    except InvalidRecord as exc:
        return exc
    except BeamPipelinesError:  # the registry, a schema flag: the run's problem, not the record's
        raise
    except Exception as exc:  # noqa: BLE001 - a decoder bug must not crash the stream either
        return InvalidRecord(f"the decoder failed on this record: {type(exc).__name__}: {exc}",
                             "parse_failed")
    try:
        return parse_fn(obj)
    except InvalidRecord as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return InvalidRecord(f"the parse step failed on this record: {type(exc).__name__}: {exc}",
                             "parse_failed")


class Rejected(NamedTuple):
    """An InvalidRecord as a verdict (an exception would lose its ``code`` in a pickle)."""

    reason: str
    code: str


# None: blank, skipped; (record, event second): valid; Rejected: a dead letter.
Verdict = Union[None, tuple[Any, int], Rejected]


def verdict_of(payload: bytes, decoder: Optional[Decoder] = None) -> Verdict:
    """The user-event contract's verdict on one payload (blank only for JSON)."""
    decoder = decoder or _JSON
    if decoder.format == "json" and is_blank(payload):
        return None
    decided = parse_or_reject(parse_user_event, payload, decoder)
    if isinstance(decided, InvalidRecord):
        return Rejected(str(decided), decided.code)
    return decided


def parse_and_decide(data: bytes) -> ParsedBlock:
    """:func:`transforms.batches.parse_json_block`, with the verdict on each handed-over
    line (``ParsedBlock.verdicts``, in the order of ``handed_over``)."""
    parsed = parse_json_block(data)
    return parsed._replace(verdicts=[verdict_of(payload) for _, payload in parsed.handed_over])
