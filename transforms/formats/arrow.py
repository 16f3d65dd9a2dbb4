"""Avro on the vectorized (Arrow) path: one poll's payloads -> one Arrow table.

fastavro decodes record by record (in C); what stays vectorized is everything after:
the records of a poll become one ``pyarrow`` table, column by column, and the user-event
block is validated by the same vectorized checks as a Parquet batch
(:func:`transforms.batches.parse_parquet_batch`), so the Avro read path and the JSON
path share every rule and every dead-letter reason.

Rows the vectorized checks cannot prove valid, and payloads that do not decode, are
*handed over* with their original bytes and payload index, for the per-record path to
decide (it decodes them again with the same decoder, so the dead letter carries the same
reason and the original payload). Measured on this machine (docs/formats.md): building the
table column by column from fastavro's dicts is faster than turning them into JSON lines
for :func:`transforms.batches.parse_payloads`, and simpler (no JSON round trip for
floats, timestamps or logical types).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import pyarrow as pa

from transforms.formats.base import Decoder
from transforms.validation import InvalidRecord

__all__ = ["DecodedBatch", "USER_EVENT_COLUMNS", "decode_to_table", "user_event_block"]

USER_EVENT_COLUMNS = ("user_id", "action", "page", "timestamp")


class DecodedBatch(NamedTuple):
    """The decodable payloads of a poll as one table, and the others with their errors."""

    table: pa.Table  # one row per decoded payload
    indexes: np.ndarray  # the payload index of each row
    failures: list[tuple[int, InvalidRecord]]  # (payload index, why it did not decode)


def _column(values: list[Any]) -> Optional[pa.Array]:
    """An Arrow array of one column's values, or None when they share no Arrow type
    (a union the writer used with several branches in one poll)."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return None


def decode_to_table(payloads: Sequence[bytes], decoder: Decoder,
                    columns: Optional[Sequence[str]] = None) -> DecodedBatch:
    """Decode every payload with ``decoder``; the records become one table.

    Args:
      payloads: the messages of one poll.
      decoder: any :class:`~transforms.formats.base.Decoder` (Avro is the one it is for).
      columns: the columns to build (absent fields are nulls); default: every field of
        the first record. A column whose values share no Arrow type is left out.
    """
    records: list[dict[str, Any]] = []
    indexes: list[int] = []
    failures: list[tuple[int, InvalidRecord]] = []
    decode = decoder.decode
    for index, payload in enumerate(payloads):
        try:
            records.append(decode(payload))
        except InvalidRecord as exc:
            failures.append((index, exc))
            continue
        indexes.append(index)
    names = list(columns) if columns is not None else (list(records[0]) if records else [])
    arrays, kept = [], []
    for name in names:
        array = _column([record.get(name) for record in records])
        if array is not None:
            arrays.append(array)
            kept.append(name)
    table = pa.table(arrays, names=kept) if kept else pa.table({})
    if not kept and records:
        table = pa.table({"__rows": pa.nulls(len(records))}).drop(["__rows"])
    return DecodedBatch(table, np.asarray(indexes, np.int64), failures)


def user_event_block(payloads: Sequence[bytes], decoder: Decoder) -> Any:
    """A :class:`transforms.batches.ParsedBlock` of user events from one poll's payloads.

    Like :func:`transforms.batches.parse_payloads` for JSON: ``lines`` and
    ``handed_over`` hold payload indexes, and handed-over entries carry the original
    payload bytes, to be decided by the per-record path *with the same decoder*.
    """
    from transforms.batches import EVENT_SCHEMA, ParsedBlock, parse_parquet_batch

    decoded = decode_to_table(payloads, decoder, USER_EVENT_COLUMNS)
    failed = [(index, payloads[index]) for index, _ in decoded.failures]
    if decoded.table.num_columns == len(USER_EVENT_COLUMNS) and decoded.table.num_rows:
        batch = decoded.table.combine_chunks().to_batches()[0]
        block = parse_parquet_batch(batch)
        lines = decoded.indexes[block.lines]
        handed = [(int(decoded.indexes[row]), payloads[int(decoded.indexes[row])])
                  for row, _ in block.handed_over]
        return ParsedBlock(block.events, lines, sorted(handed + failed), 0, len(payloads))
    # A column mixed types within the poll (or nothing decoded): every record goes one by one.
    handed = [(int(i), payloads[int(i)]) for i in decoded.indexes]
    return ParsedBlock(EVENT_SCHEMA.empty_table(), np.zeros(0, np.int64), sorted(handed + failed),
                       0, len(payloads))
