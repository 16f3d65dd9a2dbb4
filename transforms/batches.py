"""The vectorized batch path: JSON lines and Parquet as Arrow record batches.

A block of input lines is parsed and validated as a whole with pyarrow; only the lines
it cannot *prove* valid go one by one through the per-record contract
(:func:`transforms.parse.parse_user_event`), which stays the single source of truth for
what is valid and for every dead-letter reason. So the vectorized path can be fast
without ever deciding differently from the reference path: a line is either accepted
here under rules that match the contract exactly, or handed over unchanged, with its
file and line number.

What keeps the two paths equal (each rule is tested against the per-record parser):

* **Screens before parsing.** pyarrow's JSON reader accepts things Python's ``json``
  rejects (``NaN``/``Infinity``/``Inf`` tokens, invalid UTF-8 in fields it ignores, a
  byte-order mark) and splits a line at a lone ``\\r``. Lines that do not start with
  ``{`` and end with ``}``, lines of a block that is not valid UTF-8, lines containing
  ``NaN``, ``Inf`` or ``\\r``, and deeply nested long lines are handed over.
* **Strict types.** Declared column types make pyarrow a type checker: a ``user_id``
  that is a boolean, a ``page`` that is a number, or a ``timestamp`` string among
  numbers is a parse error naming the column and the row. Such rows are handed over,
  and the (column, kind) is remembered so later blocks screen it before parsing. When a
  kind is the majority (a file of integer user ids or ISO timestamps), the declared type
  follows it instead.
* **Exact windows.** Integer timestamps are read as int64. Float timestamps are read as
  float64, whose floor equals the decimal floor unless the value lies within 1e-6 of a
  whole second and was written with 7+ fractional digits or an exponent; those lines
  are handed over (the per-record path floors the decimal text exactly).
* **ISO-8601 strings** in the strict form ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)``
  are converted vectorized; any other string goes to the per-record path.

The result of a block is a :class:`ParsedBlock`: an Arrow table of valid events
(``user_id``, ``action``, ``page``, ``timestamp`` seconds as float64, ``event_second``
= floor(timestamp) as int64) and the lines to hand over.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import threading
from typing import Any, Callable, Iterator, NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from transforms.io.files import parquet_row_payload
from transforms.records import UserEvent
from transforms.validation import MAX_EVENT_SECONDS, MIN_EVENT_SECONDS

# Sub-blocks are parsed as one pyarrow chunk each, so a parse error's "row N" is exact.
SUB_BLOCK_BYTES = 1 << 20
# A line longer than this is checked for nesting depth: Python's json gives up on deep
# nesting (RecursionError, a dead letter) where pyarrow does not.
LONG_LINE = 1024
MAX_BRACKETS_OF_LONG_LINE = 200
# Parse retries of one sub-block (each hands over at least one line) before the whole
# sub-block goes to the per-record path.
MAX_RETRIES = 32

_LBRACE, _RBRACE, _NL, _CR = ord("{"), ord("}"), ord("\n"), ord("\r")
# pyarrow reads NaN, Inf, -Inf, Infinity and splits a line at a lone \r; json rejects them.
_REJECTED_TOKENS = re.compile(rb"NaN|Inf|\r")

_KIND_START = {
    "string": rb'"',
    "number": rb"[-0-9]",
    "boolean": rb"[tf]",
    "object": rb"\{",
    "array": rb"\[",
    "null": rb"n",
}
_QUICK_SEPARATORS = frozenset({b":", b": "})  # screened with bytes.find; others by regex
_KIND_FIRST_BYTE = {"string": b'"', "object": b"{", "array": b"[", "null": b"n"}
_CONFLICT = re.compile(r"Column\(/([^)]*)\) changed from (\w+) to (\w+) in row (\d+)")
_ROW_ERROR = re.compile(r"in row (\d+)\s*$")
_INT_CONVERSION = "Failed to convert JSON to int64"
_UNEXPECTED_FIELD = "unexpected field"

# Strict ISO-8601 with an offset, a subset of what datetime.fromisoformat accepts.
_ISO = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
# Text that a float64 may round across a whole second: 7+ fractional digits or an exponent.
_ROUNDING_RISK = rb"\.[0-9]{7}|[0-9][eE]"
_TWO_VALUES = rb"[}\]][ \t]*[{\[]"


class ParsedBlock(NamedTuple):
    """Valid events of a block as an Arrow table, and the lines to hand over."""

    events: pa.Table
    lines: np.ndarray  # the line index in the block of each row of ``events``
    handed_over: list[tuple[int, bytes]]  # (line index in the block, line bytes)
    blank: int  # empty lines, skipped
    line_count: int


EVENT_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("action", pa.string()),
        ("page", pa.string()),
        ("timestamp", pa.float64()),
        ("event_second", pa.int64()),
    ]
)


class _Kinds:
    """What the user-event columns are declared as; learned per reader, thread-safe."""

    def __init__(self) -> None:
        self.user_id = "string"  # or "number"
        self.timestamp = "integer"  # or "float" or "string"
        # Lines with fields beyond the four: pyarrow is told to ignore them, which makes it
        # some 15% slower than refusing them, so that is only asked once one is met.
        self.extra_fields = False
        # (column, JSON kind) handed over before parsing -> the separators met between
        # the key and such a value (b":" in '"k":"v"', b": " in '"k": "v"', ...)
        self.screens: dict[tuple[str, str], set[bytes]] = {}
        self._lock = threading.Lock()

    def schema(self) -> pa.Schema:
        ts = {"integer": pa.int64(), "float": pa.float64(), "string": pa.string()}
        return pa.schema(
            [
                ("user_id", pa.string() if self.user_id == "string" else pa.int64()),
                ("action", pa.string()),
                ("page", pa.string()),
                ("timestamp", ts[self.timestamp]),
            ]
        )

    def current_screens(self) -> list[tuple[str, str, frozenset[bytes]]]:
        """(column, kind, separators met) of each screen."""
        with self._lock:
            return [(column, kind, frozenset(separators))
                    for (column, kind), separators in self.screens.items()]

    def learn(self, **changes: Any) -> None:
        with self._lock:
            screen = changes.pop("screen", None)
            separators = changes.pop("separators", ())
            if screen:
                self.screens.setdefault(screen, set()).update(separators)
            if changes.pop("extra_fields", False):
                self.extra_fields = True
            for column, declared in changes.items():
                setattr(self, column, declared)
                read = "string" if declared == "string" else "number"
                self.screens.pop((column, read), None)  # what is declared is not screened


def _valid_kinds(column: str) -> dict[str, str]:
    """JSON kinds a column may have -> the declared kind that reads them."""
    if column == "user_id":
        return {"string": "string", "number": "number"}
    if column == "timestamp":
        return {"number": "integer", "string": "string"}
    return {"string": "string"}


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


def _lines_at(starts: np.ndarray, positions) -> np.ndarray:
    """Indices (sorted, distinct) of the lines holding the byte offsets ``positions``."""
    if len(positions) == 0:
        return np.empty(0, np.int64)
    return np.unique(np.searchsorted(starts, np.asarray(positions), side="right") - 1)


def _lines_containing(data: bytes, pattern: bytes, starts: np.ndarray) -> np.ndarray:
    """Indices of the lines whose bytes match the regex ``pattern``."""
    return _lines_at(starts, [m.start() for m in re.finditer(pattern, data)])


def _lines_with_rejected_tokens(data: bytes, arr: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Lines containing NaN, Inf or \\r. The rare bytes N, I and \\r are looked for first
    (``bytes.find`` runs at memory speed); only lines holding one are searched for tokens."""
    if data.find(b"N") < 0 and data.find(b"I") < 0 and data.find(b"\r") < 0:
        return np.empty(0, np.int64)
    rare = np.flatnonzero((arr == 78) | (arr == 73) | (arr == 13))
    return _lines_at(starts, [
        m.start() for p in _lines_at(starts, rare).tolist()
        for m in _REJECTED_TOKENS.finditer(data, int(starts[p]), _line_end(data, starts, p))
    ])


def _line_end(data: bytes, starts: np.ndarray, line: int) -> int:
    return int(starts[line + 1]) if line + 1 < len(starts) else len(data)


def _kind_screen_pattern(column: str, kind: str) -> bytes:
    """The key ``column`` followed by a value of JSON ``kind``; group 1 is the separator."""
    return b'"' + re.escape(column.encode()) + rb'"([ \t]*:[ \t]*)' + _KIND_START[kind]


def _screened_lines(
    data: bytes, starts: np.ndarray, column: str, kind: str, separators: frozenset[bytes]
) -> np.ndarray:
    """Lines where ``column`` may hold a value of JSON ``kind``, screened before parsing.

    A kind with one first byte, met with the separators writers use (``"k":v``,
    ``"k": v``), is looked for with ``bytes.find`` in just the layouts met so far, several
    times faster than the regex over every key. A line in a layout not met yet makes
    pyarrow fail on it; :func:`_learn_from_error` hands it over and adds its separator.
    Other separators (``"k" : v``) make the screen use the full regex. Screening only
    spares those retries; it never decides what is valid."""
    first = _KIND_FIRST_BYTE.get(kind)
    if first is None or not separators or not separators <= _QUICK_SEPARATORS:
        return _lines_containing(data, _kind_screen_pattern(column, kind), starts)
    key = b'"' + column.encode() + b'"'
    return _lines_at(starts, [at for separator in sorted(separators)
                              for at in _find_all(data, key + separator + first)])


def _find_all(data: bytes, literal: bytes) -> list[int]:
    found, find = [], data.find
    at = find(literal)
    while at >= 0:
        found.append(at)
        at = find(literal, at + 1)
    return found


def _invalid_utf8_lines(data: bytes, arr: np.ndarray, split: LineSplit) -> np.ndarray:
    """Lines that are not valid UTF-8. ASCII needs no check; a few lines with non-ASCII
    bytes are decoded one by one, many (text in another script) by decoding the piece."""
    if data.isascii():
        return np.empty(0, np.int64)
    non_ascii = _non_ascii_positions(arr)
    suspects = _lines_at(split.starts, non_ascii)
    if len(suspects) > len(split.starts) // 16:
        try:
            data.decode("utf-8")
            return np.empty(0, np.int64)
        except UnicodeDecodeError:
            pass
    bad = []
    for i in suspects.tolist():
        try:
            data[split.starts[i] : split.ends[i]].decode("utf-8")
        except UnicodeDecodeError:
            bad.append(i)
    return np.asarray(bad, np.int64)


_HIGH_BITS = np.uint64(0x8080808080808080)


def _non_ascii_positions(arr: np.ndarray) -> np.ndarray:
    """Offsets of the bytes >= 0x80, testing eight bytes at a time."""
    whole = len(arr) // 8 * 8
    words = np.flatnonzero(arr[:whole].view(np.uint64) & _HIGH_BITS)
    candidates = (words[:, None] * 8 + np.arange(8)).ravel()
    candidates = np.concatenate((candidates, np.arange(whole, len(arr))))
    return candidates[arr[candidates] >= 0x80]


def parse_json_block(data: bytes, kinds: Optional[_Kinds] = None) -> ParsedBlock:
    """Parse and validate one block of JSON lines (complete lines only)."""
    kinds = kinds or _Kinds()
    split = split_lines(data)
    starts, ends = split
    n = len(starts)
    arr = np.frombuffer(data, np.uint8)
    lengths = ends - starts
    blank = lengths == 0
    candidate = ~blank
    idx = np.flatnonzero(candidate)
    candidate[idx] = (arr[starts[idx]] == _LBRACE) & (arr[ends[idx] - 1] == _RBRACE)
    candidate[_lines_with_rejected_tokens(data, arr, starts)] = False
    candidate[_invalid_utf8_lines(data, arr, split)] = False
    for i in np.flatnonzero(candidate & (lengths > LONG_LINE)).tolist():
        line = data[starts[i] : ends[i]]
        if line.count(b"[") + line.count(b"{") > MAX_BRACKETS_OF_LONG_LINE:
            candidate[i] = False
    for column, kind, separators in kinds.current_screens():
        candidate[_screened_lines(data, starts, column, kind, separators)] = False

    buffer = bytearray(data)
    view = np.frombuffer(buffer, np.uint8)  # a writable view: handed-over lines become spaces
    hidden = np.zeros(n, bool)
    table: Optional[pa.Table] = None
    two_values_screened = False
    for _ in range(MAX_RETRIES):
        hide = ~candidate & ~blank & ~hidden
        _hide(view, starts, ends, hide)
        hidden |= hide
        rows = np.flatnonzero(candidate)
        if len(rows) == 0:
            break
        try:
            table = _read(buffer, kinds.schema(), kinds.extra_fields)
        except pa.ArrowInvalid as exc:
            if str(exc).endswith(_UNEXPECTED_FIELD):
                kinds.learn(extra_fields=True)
                continue
            _learn_from_error(str(exc), data, starts, rows, candidate, kinds)
            continue
        if table.num_rows == len(rows):
            break
        # A line held two JSON values ("{...}{...}"): pyarrow made two rows of it.
        table = None
        if two_values_screened:
            candidate[:] = False
            break
        candidate[_lines_containing(data, _TWO_VALUES, starts)] = False
        two_values_screened = True
    else:
        candidate[:] = False  # too many surprises: the per-record path takes the block
        table = None

    rows = np.flatnonzero(candidate)
    if table is None:
        events, keep = EVENT_SCHEMA.empty_table(), np.zeros(0, bool)
    else:
        events, keep = _validate(table, data, starts, ends, rows, kinds)
    candidate[rows[~keep]] = False
    handed = np.flatnonzero(~candidate & ~blank)
    handed_over = [(i, data[starts[i] : ends[i]]) for i in handed.tolist()]
    return ParsedBlock(events, rows[keep], handed_over, int(blank.sum()), n)


def _hide(view: np.ndarray, starts: np.ndarray, ends: np.ndarray, mask: np.ndarray) -> None:
    for i in np.flatnonzero(mask).tolist():
        view[starts[i] : ends[i]] = 0x20


def _read(buffer: bytearray, schema: pa.Schema, extra_fields: bool = True) -> pa.Table:
    options = pa_json.ParseOptions(
        explicit_schema=schema, unexpected_field_behavior="ignore" if extra_fields else "error"
    )
    # One chunk (block_size above the size), so an error's "row N" counts from the start.
    read = pa_json.ReadOptions(use_threads=False, block_size=max(len(buffer) + 1, 1 << 16))
    source = pa.BufferReader(pa.py_buffer(buffer))  # no copy
    return pa_json.read_json(source, read_options=read, parse_options=options)


def _learn_from_error(
    message: str,
    data: bytes,
    starts: np.ndarray,
    rows: np.ndarray,
    candidate: np.ndarray,
    kinds: _Kinds,
) -> None:
    """Hand over what pyarrow refused, so the next attempt parses the rest."""
    if _INT_CONVERSION in message and kinds.timestamp == "integer":
        kinds.learn(timestamp="float")  # a fractional timestamp: read them all as float64
        return
    if _INT_CONVERSION in message and kinds.user_id == "number":
        kinds.learn(user_id="string")  # an id too big for int64: the slow path keeps it exact
        kinds.learn(screen=("user_id", "number"))
        return
    conflict = _CONFLICT.search(message)
    if conflict:
        column, _, kind, row = conflict.group(1), conflict.group(2), conflict.group(3), int(conflict.group(4))
        found = list(re.finditer(_kind_screen_pattern(column, kind), data))
        lines = _lines_at(starts, [m.start() for m in found])
        lines = lines[candidate[lines]]
        valid = _valid_kinds(column)
        if kind in valid and 2 * len(lines) > len(rows):
            kinds.learn(**{column: valid[kind]})  # the majority decides the declared type
            return
        kinds.learn(screen=(column, kind), separators={m.group(1) for m in found})
        candidate[lines] = False
        _blame_row(row, data, starts, rows, candidate)  # also when the screen missed it
        return
    failed_row = _ROW_ERROR.search(message)
    if failed_row:
        _blame_row(int(failed_row.group(1)), data, starts, rows, candidate)
        return
    candidate[rows] = False  # no row to blame: the per-record path decides for each line


def _blame_row(row: int, data: bytes, starts: np.ndarray, rows: np.ndarray, candidate) -> None:
    """Hand over the line of pyarrow's row ``row``. A line holding two JSON values makes two
    rows and shifts the numbering: then hand those lines over (or, finding none, all)."""
    if row < len(rows):
        candidate[rows[row]] = False  # if shifted, a valid line is handed over: still exact
        return
    two_values = _lines_containing(data, _TWO_VALUES, starts)
    two_values = two_values[candidate[two_values]]
    if len(two_values):
        candidate[two_values] = False
    else:
        candidate[rows] = False


def _validate(
    table: pa.Table,
    data: bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    rows: np.ndarray,
    kinds: _Kinds,
) -> tuple[pa.Table, np.ndarray]:
    """Vectorized contract checks of parsed JSON; returns (valid events, keep over ``rows``)."""
    events, keep, seconds = _check_columns(
        *(table.column(name) for name in ("user_id", "action", "page", "timestamp"))
    )
    if pa.types.is_floating(table.column("timestamp").type):
        risky = _rounding_risk(data, starts, ends, rows, seconds, keep)
        if risky.any():  # risky rows are kept rows: drop them from the events too
            events = events.filter(pa.array(~risky[keep]))
            keep = keep & ~risky
    return events, keep


def _check_columns(user_id, action, page, timestamp) -> tuple[pa.Table, np.ndarray, Any]:
    """(valid events, keep mask, seconds) for the four user-event columns."""
    ok = pc.and_(pc.is_valid(action), pc.greater(pc.binary_length(action), 0))
    ok = pc.and_(ok, pc.and_(pc.is_valid(page), pc.greater(pc.binary_length(page), 0)))
    ok = pc.and_(ok, pc.is_valid(user_id))
    if pa.types.is_integer(user_id.type):
        user_id = pc.cast(user_id, pa.string())
    else:
        ok = pc.and_(ok, pc.greater(pc.binary_length(user_id), 0))
    seconds, whole, time_ok = _event_time(timestamp)
    ok = pc.and_(ok, time_ok)
    keep = np.asarray(pc.fill_null(ok, False).to_numpy(zero_copy_only=False), bool)
    mask = pa.array(keep)
    events = pa.table(
        [
            pc.cast(user_id, pa.string()).filter(mask),
            pc.cast(action, pa.string()).filter(mask),
            pc.cast(page, pa.string()).filter(mask),
            pc.cast(seconds, pa.float64()).filter(mask),
            pc.cast(whole, pa.int64()).filter(mask),
        ],
        schema=EVENT_SCHEMA,
    )
    return events, keep, seconds


def _event_time(ts: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray, pa.ChunkedArray]:
    """(seconds, floor(seconds) as int64, in contract) for a timestamp column."""
    if pa.types.is_integer(ts.type):
        whole = ts
        seconds = ts
    elif pa.types.is_floating(ts.type):
        # floor(t) in [MIN, MAX) <=> t in [MIN, MAX) for whole bounds; checked on the floats
        # so huge values never reach the int64 cast.
        ok = pc.fill_null(pc.and_(pc.is_finite(ts), _in_range(ts)), False)
        whole = pc.cast(pc.floor(pc.if_else(ok, ts, 0.0)), pa.int64())
        return ts, whole, ok
    elif pa.types.is_timestamp(ts.type):
        valid = pc.is_valid(ts)
        micros_type = pa.timestamp("us", tz=ts.type.tz)
        micros = pc.cast(pc.cast(ts, micros_type), pa.int64())
        micros_np = np.asarray(pc.fill_null(micros, 0).to_numpy(zero_copy_only=False), np.int64)
        return _seconds_of_micros(micros_np, valid)
    else:
        strict = pc.fill_null(pc.match_substring_regex(ts, _ISO), False)
        text = pc.if_else(strict, ts, "2000-01-01T00:00:00Z")
        try:
            moment = pc.cast(pc.replace_substring_regex(text, "Z$", "+00:00"),
                             pa.timestamp("us", tz="UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            zero = pa.chunked_array([pa.array(np.zeros(len(ts), np.int64))])
            return zero, zero, pa.chunked_array([pa.array(np.zeros(len(ts), bool))])
        micros_np = np.asarray(pc.cast(moment, pa.int64()).to_numpy(), np.int64)
        return _seconds_of_micros(micros_np, strict)
    return seconds, whole, pc.and_(pc.is_valid(ts), _in_range(pc.fill_null(whole, 0)))


def _seconds_of_micros(micros: np.ndarray, valid: Any) -> tuple[Any, Any, Any]:
    whole_np = np.floor_divide(micros, 1_000_000)
    # As the per-record parser computes it: whole seconds + microseconds / 1e6.
    seconds_np = whole_np + (micros - whole_np * 1_000_000) / 1_000_000
    whole = pa.chunked_array([pa.array(whole_np)])
    seconds = pa.chunked_array([pa.array(seconds_np)])
    return seconds, whole, pc.and_(valid, _in_range(whole))


def _in_range(whole) -> Any:
    return pc.and_(
        pc.greater_equal(whole, MIN_EVENT_SECONDS), pc.less(whole, MAX_EVENT_SECONDS)
    )


def _rounding_risk(
    data: bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    rows: np.ndarray,
    seconds: pa.ChunkedArray,
    keep: np.ndarray,
) -> np.ndarray:
    """Rows whose float64 floor may differ from the decimal floor of the text."""
    values = np.asarray(pc.fill_null(seconds, 0.0).to_numpy(zero_copy_only=False), np.float64)
    fraction = values - np.floor(values)
    near = keep & ((fraction < 1e-6) | (fraction > 1 - 1e-6))
    risky = np.zeros(len(rows), bool)
    for j in np.flatnonzero(near).tolist():
        i = rows[j]
        if re.search(_ROUNDING_RISK, data[starts[i] : ends[i]]):
            risky[j] = True
    return risky


_PARQUET_TYPES = {
    "user_id": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t),
    "action": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "page": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    "timestamp": lambda t: (
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t)
        or pa.types.is_large_string(t) or (pa.types.is_timestamp(t) and t.unit in ("s", "ms", "us"))
    ),
}


def parse_parquet_batch(batch: pa.RecordBatch) -> ParsedBlock:
    """Validate a Parquet record batch of user events; rows that are not plainly valid
    (and every row when a column is missing or of another type) are handed over as the
    JSON payload the per-row path builds (:func:`transforms.io.files.parquet_row_payload`)."""

    n = batch.num_rows
    names = batch.schema.names
    if all(name in names and ok(batch.schema.field(name).type) for name, ok in _PARQUET_TYPES.items()):
        columns = [pa.chunked_array([batch.column(name)]) for name in _PARQUET_TYPES]
        events, keep, _ = _check_columns(*columns)
    else:
        events, keep = EVENT_SCHEMA.empty_table(), np.zeros(n, bool)
    handed = np.flatnonzero(~keep)
    rows = batch.take(pa.array(handed)).to_pylist() if len(handed) else []
    handed_over = [(i, parquet_row_payload(row)) for i, row in zip(handed.tolist(), rows, strict=True)]
    return ParsedBlock(events, np.flatnonzero(keep), handed_over, 0, n)


def parse_payloads(payloads: list[bytes], kinds: Optional[_Kinds] = None) -> ParsedBlock:
    """:func:`parse_json_block` for separate payloads (the messages of a poll): indexes in
    the result (``lines``, ``handed_over``) are payload indexes. A payload that would not
    be one line of the block exactly (it holds a newline or a carriage return, which a
    block's line would lose at its end, or is empty) is handed over as it is."""
    data = b"\n".join(payloads)
    if data.count(b"\n") == len(payloads) - 1 and b"\r" not in data and all(payloads):
        return parse_json_block(data, kinds)

    def separate_one(payload: bytes) -> bool:
        return not payload or b"\n" in payload or b"\r" in payload

    whole = [i for i, p in enumerate(payloads) if not separate_one(p)]
    parsed = parse_json_block(b"\n".join(payloads[i] for i in whole), kinds) if whole else None
    index = np.asarray(whole, np.int64)
    separate = [(i, p) for i, p in enumerate(payloads) if separate_one(p)]
    if parsed is None:
        return ParsedBlock(EVENT_SCHEMA.empty_table(), np.zeros(0, np.int64), separate, 0,
                           len(payloads))
    handed = [(int(index[line]), payload) for line, payload in parsed.handed_over]
    return ParsedBlock(parsed.events, index[parsed.lines], sorted(handed + separate),
                       parsed.blank, len(payloads))


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


def _parse_piece(data: bytes, start: int, stop: int, kinds: _Kinds) -> ParsedBlock:
    # The piece is copied out of the block here, on the pool, not by the submitting thread.
    return parse_json_block(data[start:stop], kinds)


class BlockParser:
    """Parses blocks of JSON lines on a small thread pool (pyarrow releases the GIL).

    One parser per reader (DoFn instance): what it learns about the columns' types in one
    block (float timestamps, integer ids, a kind to screen) applies to the next blocks.
    """

    def __init__(self, threads: Optional[int] = None) -> None:
        self.kinds = _Kinds()
        self._threads = threads or min(4, os.cpu_count() or 1)
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None

    def parse(self, data: bytes) -> Iterator[tuple[int, ParsedBlock]]:
        """(first line index of the piece, its ParsedBlock) for each piece of ``data``."""
        return self.submit(data)()

    def submit(self, data: bytes) -> Callable[[], Iterator[tuple[int, ParsedBlock]]]:
        """Start parsing ``data`` on the pool; the returned function yields what
        :meth:`parse` yields, waiting for each piece. The caller can do other work (handle
        the previous block) while this one is parsed."""
        bounds = piece_bounds(data)
        if self._threads == 1:
            results: Iterator[ParsedBlock] = (
                _parse_piece(data, start, stop, self.kinds) for start, stop in bounds
            )
        else:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self._threads)
            futures = [
                self._pool.submit(_parse_piece, data, start, stop, self.kinds)
                for start, stop in bounds
            ]
            results = (future.result() for future in futures)

        def numbered() -> Iterator[tuple[int, ParsedBlock]]:
            first = 0
            for parsed in results:
                yield first, parsed
                first += parsed.line_count

        return numbered

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
