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

from operator import itemgetter
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import pyarrow as pa

from transforms.batches import EVENT_SCHEMA, ParsedBlock, parse_parquet_batch
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


_EXACT_FLOAT = 2**53


def _screen_huge_integers(arrays: list[Any], of_row: np.ndarray) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Rows whose integer timestamp a float64 cannot hold exactly go one by one:
    ``parse_parquet_batch`` casts the column to float64 before it filters the range."""
    timestamp = arrays[USER_EVENT_COLUMNS.index("timestamp")]
    if not pa.types.is_integer(timestamp.type):
        return arrays, of_row, of_row[:0]
    values = timestamp.to_numpy(zero_copy_only=False)
    huge = np.abs(values.astype(np.float64)) >= _EXACT_FLOAT
    if not huge.any():
        return arrays, of_row, of_row[:0]
    keep = pa.array(~huge)
    return [a.filter(keep) for a in arrays], of_row[~huge], of_row[huge]


def _records_and_failures(payloads: Sequence[bytes], decoder: Decoder):
    records: list[dict[str, Any]] = []
    indexes: list[int] = []
    failed: list[int] = []
    decode = decoder.decode
    for index, payload in enumerate(payloads):
        try:
            records.append(decode(payload))
        except InvalidRecord:
            failed.append(index)
            continue
        indexes.append(index)
    return records, indexes, failed


def user_event_block(payloads: Sequence[bytes], decoder: Decoder) -> Any:
    """A :class:`transforms.batches.ParsedBlock` of user events from one poll's payloads.

    Like :func:`transforms.batches.parse_payloads` for JSON: ``lines`` and
    ``handed_over`` hold payload indexes, and handed-over entries carry the original
    payload bytes, to be decided by the per-record path *with the same decoder*.

    Records are grouped by the kinds of their ``user_id`` and ``timestamp`` (a writer's
    union lets ``user_id`` be a string in one record and a long in the next): each group
    is one Arrow batch of plain types, validated as a Parquet batch is. Values Arrow
    cannot put in one column (a boolean among strings...) send their group one by one.
    """

    records, indexes, failed = _records_and_failures(payloads, decoder)
    getter = itemgetter(*USER_EVENT_COLUMNS)
    try:  # the contract's reader schema guarantees the four keys; other schemas may not
        rows = [getter(record) for record in records]
    except KeyError:
        rows = [tuple(record.get(name) for name in USER_EVENT_COLUMNS) for record in records]
    whole = [_column(list(values)) for values in zip(*rows, strict=True)]
    groups: list[list[int]] = []
    if rows and any(array is None for array in whole):
        by_kind: dict[tuple, list[int]] = {}
        for row, (user_id, _, _, timestamp) in enumerate(rows):
            # ints and floats share a float64 column; a string among numbers does not
            by_kind.setdefault((type(user_id), type(timestamp) is str), []).append(row)
        groups = list(by_kind.values())
    elif rows:
        groups = [list(range(len(rows)))]
    payload_index = np.asarray(indexes, np.int64)
    tables, lines = [], []
    handed = [(index, payloads[index]) for index in failed]
    for members in groups:
        arrays = whole if len(groups) == 1 else [
            _column(list(values)) for values in zip(*(rows[r] for r in members), strict=True)]
        of_row = payload_index[np.asarray(members, np.int64)]
        if any(a is None for a in arrays):  # values Arrow cannot type: one by one
            handed += [(int(i), payloads[int(i)]) for i in of_row]
            continue
        arrays, of_row, beyond = _screen_huge_integers(arrays, of_row)
        handed += [(int(i), payloads[int(i)]) for i in beyond]
        if not len(of_row):
            continue
        block = parse_parquet_batch(pa.RecordBatch.from_arrays(arrays, names=list(USER_EVENT_COLUMNS)))
        tables.append(block.events)
        lines.append(of_row[block.lines])
        handed += [(int(of_row[i]), payloads[int(of_row[i])]) for i, _ in block.handed_over]
    if not tables:
        return ParsedBlock(EVENT_SCHEMA.empty_table(), np.zeros(0, np.int64), sorted(handed), 0,
                           len(payloads))
    events = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    return ParsedBlock(events, np.concatenate(lines), sorted(handed), 0, len(payloads))
