"""The vectorized batch path: JSON lines, Kafka polls and Parquet as Arrow tables of events.

Every JSON line (or message) is decoded on its own by msgspec, a strict RFC 8259 parser
in C, straight into a typed struct that states the user-event contract: ``user_id`` a
non-empty string or an integer, ``action`` and ``page`` non-empty strings, ``timestamp``
a number or a string; other fields are skipped. So every form the contract accepts, in
any mix and proportion, is read natively, and a line that breaks the shape (bad JSON, a
missing field, a wrong type, an empty string) fails alone, never its neighbours. The
decoded values become Arrow columns and the rest of the contract is checked vectorized
(times in range, ISO-8601 strings, exact floors). What is not proven valid is handed
over, unchanged and with its line number, to the per-record contract
(:func:`transforms.parse.parse_user_event`), which stays the single source of truth for
what is valid and for every dead-letter reason.

msgspec decides as Python's ``json`` does (duplicate keys: the last wins; escaped keys;
``NaN``, ``Infinity``, trailing commas, a byte-order mark, control characters and lone
surrogates refused). Where it could decide differently, the line is handed over:

* **invalid UTF-8** anywhere in a line (msgspec does not check the bytes of the fields it
  skips; Python decodes the whole line first);
* **long lines** (over 1 KiB) nested more than 200 deep or holding a run of 4,300 digits
  (Python's ``json`` refuses such integers and hits its recursion limit on deep nesting;
  msgspec skips them in fields it ignores);
* **float timestamps within 1e-6 of a whole second written with 7+ decimals or an
  exponent** (a float64 may round them across the second; the per-record path floors
  the decimal text exactly);
* **ISO-8601 strings** outside the strict form ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)``
  (the per-record path reads every form ``datetime.fromisoformat`` reads).

The result of a block is a :class:`ParsedBlock`: an Arrow table of valid events
(:data:`EVENT_SCHEMA`: ``user_id``, ``action``, ``page``, ``timestamp`` seconds as
float64, ``event_second`` = floor(timestamp) as int64) and the lines to hand over.
docs/performance.md says why this design and what was measured against it.
"""

# Over 500 lines: the vectorized parser keeps its JSON, ISO-time and Parquet paths together because they must accept exactly what the per-record contract accepts.

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sys
import types
from typing import Annotated, Any, Callable, Iterator, NamedTuple, Optional, Union

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.base.lean_imports import hide_pandas_from_this_process
from transforms.records import UserEvent
from transforms.validation import MAX_EVENT_SECONDS, MIN_EVENT_SECONDS

__all__ = [
    "EVENT_SCHEMA",
    "BlockParser",
    "LineSplit",
    "ParsedBlock",
    "events_table",
    "parse_json_block",
    "parse_lines",
    "parse_parquet_batch",
    "parse_payloads",
    "piece_bounds",
    "split_lines",
    "suspect_lines",
    "user_events",
]

# Pieces a block is handed on in (one table and one DeadLetterBatch each at most).
SUB_BLOCK_BYTES = 1 << 20
# A line longer than this is checked for deep nesting and huge integers.
LONG_LINE = 1024
MAX_BRACKETS_OF_LONG_LINE = 200
_HUGE_INTEGER = re.compile(rb"[0-9]{4300}")

_LOG = logging.getLogger(__name__)
_NL, _CR = ord("\n"), ord("\r")
# Strict ISO-8601 with an offset, a subset of what datetime.fromisoformat accepts.
_ISO = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
# A timestamp a float64 may round across a whole second: 7+ fractional digits or an exponent.
_ROUNDING_RISK = re.compile(rb"\.[0-9]{7}|[eE]")

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# Integers beyond 64 bits (valid user ids for the contract) take the per-record path.
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
# In range: [2000-01-01, 2100-01-01). floor(t) is in range exactly when t is.
_Seconds = Annotated[int, msgspec.Meta(ge=MIN_EVENT_SECONDS, lt=MAX_EVENT_SECONDS)]
_FloatSeconds = Annotated[float, msgspec.Meta(ge=MIN_EVENT_SECONDS, lt=MAX_EVENT_SECONDS)]


class _Shape(msgspec.Struct, gc=False):
    """The user-event contract as far as msgspec checks it; other fields are skipped."""

    user_id: Union[_NonEmpty, _Int64]
    action: _NonEmpty
    page: _NonEmpty
    timestamp: Union[_Seconds, _FloatSeconds, str]


_DECODE = msgspec.json.Decoder(_Shape).decode


class _TimestampText(msgspec.Struct, gc=False):
    timestamp: msgspec.Raw


_DECODE_TIMESTAMP_TEXT = msgspec.json.Decoder(_TimestampText).decode
# What msgspec raises for a line that does not fit (DecodeError includes ValidationError).
_DOES_NOT_FIT = (msgspec.DecodeError, RecursionError)
_INT, _FLOAT, _STR = 0, 1, 2
_KIND_OF_TYPE = {int: _INT, float: _FLOAT, str: _STR}


class ParsedBlock(NamedTuple):
    """Valid events of a block as an Arrow table, and the lines to hand over."""

    events: pa.Table
    lines: np.ndarray  # the line index in the block of each row of ``events``
    handed_over: list[tuple[int, bytes]]  # (line index in the block, line bytes)
    blank: int  # blank lines (whitespace only), skipped
    line_count: int
    # The per-record contract's verdict on each handed-over line, when the parser was
    # given it (transforms.user_event_contract.parse_and_decide); None: not decided yet.
    verdicts: Optional[list[Any]] = None


EVENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("action", pa.string()),
        ("page", pa.string()),
        ("timestamp", pa.float64()),
        ("event_second", pa.int64()),
    ]
)


class LineSplit(NamedTuple):
    starts: np.ndarray  # int64 byte offsets
    ends: np.ndarray  # exclusive, without the newline and a trailing \r


def split_lines(data: bytes) -> LineSplit:
    """Line boundaries of ``data`` (lines end at ``\\n``; a trailing ``\\r`` is dropped,
    as :func:`transforms.io.files.iter_lines` does)."""
    arr = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(arr == _NL)
    starts = np.empty(len(newlines) + 1, np.int64)
    starts[0] = 0
    starts[1:] = newlines + 1
    ends = np.empty(len(newlines) + 1, np.int64)
    ends[:-1] = newlines
    ends[-1] = len(data)
    if starts[-1] == len(data):  # the block ends with a newline: no partial last line
        starts, ends = starts[:-1], ends[:-1]
    nonempty = ends > starts
    cr = np.zeros(len(ends), bool)
    cr[nonempty] = arr[ends[nonempty] - 1] == _CR
    ends = ends - cr
    return LineSplit(starts, ends)


def parse_json_block(data: bytes) -> ParsedBlock:
    """Parse and validate one block of JSON lines (complete lines; the last one may lack
    its newline). Lines lose a trailing ``\\r``, as files' lines do
    (:func:`transforms.io.files.iter_lines`)."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the empty piece after the block's last newline
    if b"\r" in data:
        lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        return parse_lines(lines)
    return parse_lines(lines, data)


def parse_payloads(payloads: list[bytes]) -> ParsedBlock:
    """:func:`parse_lines` for the messages of a poll: indexes in the result (``lines``,
    ``handed_over``) are payload indexes, and a payload is handed over exactly as it is."""
    return parse_lines(payloads)


def parse_lines(lines: list[bytes], joined: Optional[bytes] = None) -> ParsedBlock:
    """Decide every line (a file's line without its newline, or a message): a row of the
    events table, handed over, or empty (skipped). ``joined``, when given, is
    ``b"\\n".join(lines)`` (with or without a final newline), which spares a copy.

    Fails safe: should the vectorized checks themselves raise (a bug, or an input nobody
    imagined), every line is handed over, and the per-record contract decides each."""
    try:
        return _parse_lines(lines, joined)
    except Exception:  # noqa: BLE001 - see the docstring
        _LOG.exception("the vectorized parser failed on a piece of %d lines; the per-record "
                       "contract decides each of them", len(lines))
        return ParsedBlock(EVENT_SCHEMA.empty_table(), np.zeros(0, np.int64),
                           [(i, line) for i, line in enumerate(lines) if line.strip()],
                           sum(1 for line in lines if not line.strip()), len(lines))


def _parse_lines(lines: list[bytes], joined: Optional[bytes] = None) -> ParsedBlock:
    n = len(lines)
    decoded: list[Optional[_Shape]] = []
    failed: list[int] = []
    keep, fail = decoded.append, failed.append
    decode = _DECODE
    for line in lines:  # the hot loop: one call and one append per line
        try:
            keep(decode(line))
        except _DOES_NOT_FIT:
            fail(len(decoded))
            keep(None)
    if failed:
        events: list[_Shape] = list(filter(None, decoded))
        row_index = np.delete(np.arange(n, dtype=np.int64), failed)
    else:
        events = decoded  # type: ignore[assignment]  # no None in it
        row_index = np.arange(n, dtype=np.int64)
    accepted = np.ones(len(row_index), bool)
    suspects = _suspect_lines(lines, joined)
    if len(suspects):
        accepted &= ~np.isin(row_index, suspects)
    table, valid = _events_of(events, lines, row_index)
    accepted &= valid
    if not accepted.all():
        table = table.filter(pa.array(accepted[valid]))
    decided = np.zeros(n, bool)
    decided[row_index[accepted]] = True
    blank = 0
    handed_over = []
    for i in np.flatnonzero(~decided).tolist():
        line = lines[i]
        if line.strip():
            handed_over.append((i, line))
        else:  # blank (as transforms.parse.is_blank says): skipped, never decided
            blank += 1
    return ParsedBlock(table, row_index[accepted], handed_over, blank, n)


def suspect_lines(lines: list[bytes]) -> np.ndarray:
    """Indexes of the lines (or messages) where msgspec and Python's json could decide
    differently: invalid UTF-8, and long lines nested deep or holding huge integers. Any
    msgspec-based parser hands these to its per-record contract."""
    return _suspect_lines(lines)


def _suspect_lines(lines: list[bytes], joined: Optional[bytes] = None) -> np.ndarray:
    """Lines where msgspec and Python's json could disagree (see the module's
    docstring): invalid UTF-8, and long lines nested deep or holding huge integers."""
    suspects = []
    data = b"\n".join(lines) if joined is None else joined
    array = np.frombuffer(data, np.uint8)
    if joined is None:
        lengths = np.fromiter(map(len, lines), np.int64, len(lines))
        starts = np.zeros(len(lines), np.int64)
        np.cumsum(lengths[:-1] + 1, out=starts[1:])
    else:  # the lines of a block: they start after its newlines
        starts = np.zeros(len(lines), np.int64)
        starts[1:] = np.flatnonzero(array == _NL)[: len(lines) - 1] + 1
        lengths = np.diff(np.append(starts, len(data) + 1)) - 1
    if not data.isascii():  # at memory speed; then only the lines with high bytes
        high = np.flatnonzero(array >= 0x80)
        for i in np.unique(np.searchsorted(starts, high, side="right") - 1).tolist():
            try:
                lines[i].decode("utf-8")
            except UnicodeDecodeError:
                suspects.append(i)
    for i in np.flatnonzero(lengths > LONG_LINE).tolist():
        line = lines[i]
        if (line.count(b"[") + line.count(b"{") > MAX_BRACKETS_OF_LONG_LINE
                or _HUGE_INTEGER.search(line)):
            suspects.append(i)
    return np.asarray(suspects, np.int64)


def _events_of(events: list[_Shape], lines: list[bytes], rows: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """(the events whose time is valid, as a table; that mask over ``events``)."""
    n = len(events)
    if n == 0:
        return EVENT_SCHEMA.empty_table(), np.zeros(0, bool)
    user_id = _id_strings([e.user_id for e in events])
    action = pa.array([e.action for e in events], pa.string())
    page = pa.array([e.page for e in events], pa.string())
    seconds, whole, valid = _event_times([e.timestamp for e in events], lines, rows)
    columns = [user_id, action, page, pa.array(seconds), pa.array(whole)]
    if not valid.all():
        mask = pa.array(valid)
        columns = [column.filter(mask) for column in columns]
    return pa.Table.from_arrays(columns, schema=EVENT_SCHEMA), valid


def _kinds(values: list[Any]) -> np.ndarray:
    """The kind (_INT, _FLOAT, _STR) of each value, without a Python-level loop."""
    return np.frombuffer(bytes(map(_KIND_OF_TYPE.__getitem__, map(type, values))), np.uint8)


def _id_strings(values: list[Any]) -> pa.Array:
    """User ids as strings: integers as their digits (as ``str(int)`` per record)."""
    try:
        return pa.array(values, pa.string())  # all strings: no Python-level loop
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array([v if v.__class__ is str else str(v) for v in values], pa.string())


def _event_times(values: list[Any], lines: list[bytes], rows: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seconds, floor(seconds), valid) for decoded timestamps: integers and floats in
    range (msgspec checked it), or strings."""
    n = len(values)
    kinds = _kinds(values)
    seconds = np.zeros(n, np.float64)
    whole = np.zeros(n, np.int64)
    valid = np.zeros(n, bool)
    for kind in np.unique(kinds).tolist():
        chosen_mask = kinds == kind
        where = np.flatnonzero(chosen_mask)
        chosen = values if len(where) == n else list(itertools.compress(values, chosen_mask))
        if kind == _INT:
            w = np.fromiter(chosen, np.int64, len(chosen))
            s, ok = w.astype(np.float64), np.ones(len(w), bool)
        elif kind == _FLOAT:
            at = rows[where]
            s, w, ok = _float_times(chosen, lambda j: lines[int(at[j])])  # noqa: B023
        else:
            s, w, ok = _iso_times(pa.array(chosen, pa.string()))
        seconds[where], whole[where], valid[where] = s, w, ok
    return seconds, whole, valid


def _float_times(values: list[float], line_of: Callable[[int], bytes]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Floats in range: floor them, and refuse those a float64 may have rounded across a
    whole second (the per-record path floors their decimal text exactly)."""
    seconds = np.fromiter(values, np.float64, len(values))
    whole = np.floor(seconds).astype(np.int64)
    valid = np.ones(len(values), bool)
    fraction = seconds - whole
    for j in np.flatnonzero((fraction < 1e-6) | (fraction > 1 - 1e-6)).tolist():
        written = bytes(_DECODE_TIMESTAMP_TEXT(line_of(j)).timestamp)  # as written in the line
        if _ROUNDING_RISK.search(written):
            valid[j] = False
    return seconds, whole, valid


def _iso_times(text: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorized ISO-8601 for strings in the strict form; others are not valid here."""
    n = len(text)
    strict = np.asarray(pc.fill_null(pc.match_substring_regex(text, _ISO), False)
                        .to_numpy(zero_copy_only=False), bool)
    if not strict.any():
        return np.zeros(n), np.zeros(n, np.int64), strict
    try:
        moment = _iso_cast(text, strict)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a day that does not exist
        # strptime rolls February 30th over to March 1st: a real day prints back the same.
        written = pc.utf8_slice_codeunits(text, 0, 19)
        read = pc.strptime(written, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
        same = pc.equal(pc.strftime(read, format="%Y-%m-%dT%H:%M:%S"), written)
        strict &= np.asarray(pc.fill_null(same, False).to_numpy(zero_copy_only=False), bool)
        try:
            moment = _iso_cast(text, strict)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return np.zeros(n), np.zeros(n, np.int64), np.zeros(n, bool)
    micros = np.asarray(pc.cast(moment, pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    seconds, whole = _seconds_of_micros(micros)
    return seconds, whole, strict & _in_range(whole)


def _iso_cast(text: Any, strict: np.ndarray) -> Any:
    chosen = pc.if_else(pa.array(strict), text, "2000-01-01T00:00:00Z")
    return pc.cast(pc.replace_substring_regex(chosen, "Z$", "+00:00"), pa.timestamp("us", tz="UTC"))


def _seconds_of_micros(micros: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    whole = np.floor_divide(micros, 1_000_000)
    # As the per-record parser computes it: whole seconds + microseconds / 1e6.
    return whole + (micros - whole * 1_000_000) / 1_000_000, whole


def _in_range(whole: np.ndarray) -> np.ndarray:
    return (whole >= MIN_EVENT_SECONDS) & (whole < MAX_EVENT_SECONDS)


# ---- Parquet ---------------------------------------------------------------------------

def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


_PARQUET_TYPES: dict[str, Callable[[pa.DataType], bool]] = {
    "user_id": lambda t: _is_string(t) or pa.types.is_integer(t),
    "action": _is_string,
    "page": _is_string,
    "timestamp": lambda t: (
        pa.types.is_integer(t) or pa.types.is_floating(t) or _is_string(t)
        or (pa.types.is_timestamp(t) and t.unit in ("s", "ms", "us"))
    ),
}


def parse_parquet_batch(batch: pa.RecordBatch) -> ParsedBlock:
    """Validate a Parquet record batch of user events; rows that are not plainly valid
    (and every row when a column is missing or of another type) are handed over as the
    JSON payload the per-row path builds (:func:`transforms.io.files.parquet_row_payload`)."""

    from transforms.io.files import parquet_row_payload, parquet_rows  # Beam: not in parse workers

    n = batch.num_rows
    names = batch.schema.names
    events, keep = EVENT_SCHEMA.empty_table(), np.zeros(n, bool)
    if all(name in names and ok(batch.schema.field(name).type) for name, ok in _PARQUET_TYPES.items()):
        try:
            events, keep = _check_columns(*(batch.column(name) for name in _PARQUET_TYPES))
        except Exception:  # noqa: BLE001 - fail safe, as parse_lines does
            _LOG.exception("the vectorized checks failed on a Parquet batch of %d rows; the "
                           "per-record contract decides each of them", n)
    handed = np.flatnonzero(~keep)
    rows = parquet_rows(batch.take(pa.array(handed))) if len(handed) else []
    handed_over = [(i, parquet_row_payload(row)) for i, row in zip(handed.tolist(), rows, strict=True)]
    return ParsedBlock(events, np.flatnonzero(keep), handed_over, 0, n)


def _check_columns(user_id: pa.Array, action: pa.Array, page: pa.Array, timestamp: pa.Array
                   ) -> tuple[pa.Table, np.ndarray]:
    """(valid events, keep mask) for typed user-event columns."""
    ok = pc.and_(pc.is_valid(action), pc.greater(pc.binary_length(action), 0))
    ok = pc.and_(ok, pc.and_(pc.is_valid(page), pc.greater(pc.binary_length(page), 0)))
    ok = pc.and_(ok, pc.is_valid(user_id))
    if not pa.types.is_integer(user_id.type):
        ok = pc.and_(ok, pc.greater(pc.binary_length(user_id), 0))
    seconds, whole, time_ok = _column_times(timestamp)
    keep = np.asarray(pc.fill_null(ok, False).to_numpy(zero_copy_only=False), bool) & time_ok
    mask = pa.array(keep)
    events = pa.Table.from_arrays(
        [
            pc.cast(user_id, pa.string()).filter(mask),
            pc.cast(action, pa.string()).filter(mask),
            pc.cast(page, pa.string()).filter(mask),
            pa.array(seconds).filter(mask),
            pa.array(whole).filter(mask),
        ],
        schema=EVENT_SCHEMA,
    )
    return events, keep


def _column_times(ts: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seconds, floor(seconds), valid) for a typed timestamp column."""
    present = np.asarray(pc.is_valid(ts).to_numpy(zero_copy_only=False), bool)
    if pa.types.is_integer(ts.type):
        whole = np.asarray(pc.fill_null(pc.cast(ts, pa.int64()), 0).to_numpy(zero_copy_only=False), np.int64)
        return whole.astype(np.float64), whole, present & _in_range(whole)
    if pa.types.is_floating(ts.type):
        seconds = np.asarray(pc.fill_null(pc.cast(ts, pa.float64()), 0.0).to_numpy(zero_copy_only=False))
        with np.errstate(invalid="ignore"):
            valid = present & (seconds >= MIN_EVENT_SECONDS) & (seconds < MAX_EVENT_SECONDS)
        return seconds, np.floor(np.where(valid, seconds, 0.0)).astype(np.int64), valid
    if pa.types.is_timestamp(ts.type):
        micros_type = pa.timestamp("us", tz=ts.type.tz)
        micros = np.asarray(pc.fill_null(pc.cast(pc.cast(ts, micros_type), pa.int64()), 0)
                            .to_numpy(zero_copy_only=False), np.int64)
        seconds, whole = _seconds_of_micros(micros)
        return seconds, whole, present & _in_range(whole)
    seconds, whole, valid = _iso_times(pc.cast(ts, pa.string()))
    return seconds, whole, valid & present


# ---- tables <-> records ------------------------------------------------------------------

def events_table(events: list[tuple[Any, int]]) -> pa.Table:
    """(UserEvent, floor of its time) pairs, as the per-record parser gives them -> a
    table of :data:`EVENT_SCHEMA`."""
    return pa.table(
        {
            "user_id": [e.user_id for e, _ in events],
            "action": [e.action for e, _ in events],
            "page": [e.page for e, _ in events],
            "timestamp": [float(e.timestamp) for e, _ in events],
            "event_second": [second for _, second in events],
        },
        schema=EVENT_SCHEMA,
    )


def user_events(table: pa.Table) -> list[tuple[Any, int]]:
    """The inverse of :func:`events_table`: (UserEvent, floor of its time) per row."""

    columns = [table.column(name).to_pylist() for name in EVENT_SCHEMA.names]
    return [(UserEvent(u, a, p, t), s) for u, a, p, t, s in zip(*columns, strict=True)]


# ---- blocks in pieces ------------------------------------------------------------------

def piece_bounds(data: bytes, size: int = SUB_BLOCK_BYTES) -> list[tuple[int, int]]:
    """(start, stop) of pieces of about ``size`` bytes, each cut after a newline."""
    bounds = []
    offset = 0
    while offset < len(data):
        cut = data.find(b"\n", offset + size)
        stop = len(data) if cut < 0 else cut + 1
        bounds.append((offset, stop))
        offset = stop
    return bounds


# Below this a block is parsed in the calling thread: pickling a piece out and its
# ParsedBlock back costs more than a second core saves on a small Kafka poll.
POOL_MIN_BYTES = 2 * SUB_BLOCK_BYTES


_BLAS_THREADS = "OPENBLAS_NUM_THREADS"


def _ready() -> None:
    """A worker's first task: unpickling it imports this module, and nothing more."""


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """While processes start, hide the ``__main__`` module from multiprocessing.

    A 'forkserver' (or 'spawn') child imports the parent's ``__main__`` module again
    before its first task (multiprocessing.spawn.prepare), in case a task refers to it.
    For ``python -m beam_pipelines.pageviews`` that is all of Beam and the application:
    about 1 s of CPU and 200 MB per worker before it parses anything. Parse tasks refer
    only to this module, which imports msgspec, NumPy and pyarrow (about 0.15 s).
    Processes start synchronously in ``submit``, so the swap lasts only that long.

    The workers also get one BLAS thread (unless the environment says otherwise): they
    do no matrix math, and each idle OpenBLAS thread spins for a while after NumPy's
    import, on the cores the other processes parse on. The forkserver, started by the
    first ``submit``, passes its environment on to the workers."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")  # no __spec__, no __file__
    blas = os.environ.get(_BLAS_THREADS)
    os.environ.setdefault(_BLAS_THREADS, "1")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
        if blas is None:
            os.environ.pop(_BLAS_THREADS, None)


class BlockParser:
    """Parses blocks of JSON lines piece by piece, numbering each piece's lines.

    msgspec holds the GIL while it decodes, so threads cannot parse on two cores. With
    ``processes`` > 0, blocks of at least ``min_bytes`` have their pieces parsed in a
    pool of worker processes (created on first use, shut down by :meth:`close`); the
    results are yielded in piece order, so line numbers and dead letters are those of
    the in-thread path. The pool uses the 'forkserver' start method: forking a process
    that runs Beam's threads (gRPC, the runner's workers) can copy a lock held by
    another thread into the child and deadlock it. Should a worker die, the pieces it
    took are parsed again in the calling thread, and the pool is replaced at the next
    block: no piece is lost or skipped. ``threads`` is accepted for compatibility and
    ignored; ``piece_bytes`` is the size pieces are cut to. ``task`` parses a piece
    (:func:`parse_json_block` by default), in a worker or in the calling thread; a task
    given here must be importable by the workers without Beam (see _without_main).
    """

    def __init__(
        self,
        threads: Optional[int] = None,
        processes: int = 0,
        min_bytes: int = POOL_MIN_BYTES,
        piece_bytes: int = SUB_BLOCK_BYTES,
        task: Callable[[bytes], ParsedBlock] = parse_json_block,
    ) -> None:
        del threads
        self._task = task
        self._piece_bytes = piece_bytes
        self._processes = processes
        self._min_bytes = min_bytes
        self._pool: Any = None

    def parse(self, data: bytes) -> Iterator[tuple[int, ParsedBlock]]:
        """(first line index of the piece, its ParsedBlock) for each piece of ``data``."""
        return self.submit(data)()

    def submit(self, data: bytes) -> Callable[[], Iterator[tuple[int, ParsedBlock]]]:
        """A function yielding what :meth:`parse` yields. Pieces sent to the pool start
        parsing now; in-thread pieces are parsed as the function's results are read."""
        bounds = piece_bounds(data, self._piece_bytes)
        if self._processes <= 0 or len(data) < self._min_bytes or len(bounds) < 2:
            def numbered() -> Iterator[tuple[int, ParsedBlock]]:
                first = 0
                for start, stop in bounds:
                    parsed = self._task(data[start:stop])
                    yield first, parsed
                    first += parsed.line_count

            return numbered

        pieces = [data[start:stop] for start, stop in bounds]
        pool, futures = self._submit_all(pieces)

        def gathered() -> Iterator[tuple[int, ParsedBlock]]:
            from concurrent.futures import CancelledError
            from concurrent.futures.process import BrokenProcessPool

            first = 0
            for piece, future in zip(pieces, futures, strict=True):
                try:
                    parsed = future.result() if future is not None else self._task(piece)
                except (BrokenProcessPool, CancelledError):
                    self._discard_pool(pool)
                    parsed = self._task(piece)
                yield first, parsed
                first += parsed.line_count

        return gathered

    def _submit_all(self, pieces: list[bytes]) -> tuple[Any, list[Any]]:
        from concurrent.futures.process import BrokenProcessPool

        pool = self._ensure_pool()
        try:
            return pool, [pool.submit(self._task, piece) for piece in pieces]
        except BrokenProcessPool:
            self._discard_pool(pool)
            return pool, [None] * len(pieces)

    def _ensure_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # Workers run only parse tasks, which never use pandas; pyarrow would import
            # it anyway (0.25 s of CPU a worker; transforms.base.lean_imports).
            pool = ProcessPoolExecutor(
                self._processes, mp_context=multiprocessing.get_context("forkserver"),
                initializer=hide_pandas_from_this_process,
            )
            # One task per worker makes the pool start every worker now, each told not to
            # import the caller's __main__: see _without_main.
            with _without_main():
                for _ in range(self._processes):
                    pool.submit(_ready)
            self._pool = pool
        return self._pool

    def _discard_pool(self, pool: Any) -> None:
        # Only the broken pool: a later block may already run on its replacement.
        if self._pool is pool:
            self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
