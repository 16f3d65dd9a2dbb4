"""Typed records that flow between the transforms: defined once, used everywhere.

They are ``NamedTuple`` s so Beam can infer schemas from them and so they pickle small.
``origin`` says where an input came from, as a plain dict, because each source knows
different things: ``{"source": "file", "file": PATH, "line": N}`` or
``{"source": "kafka", "topic": T, "partition": P, "offset": O}``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import time
from typing import Any, NamedTuple, NewType, Optional

__all__ = [
    "DeadLetter", "DeadLetterBatch", "encode_payload", "EPOCH", "IoTAlert", "IoTReading",
    "PageViewCount", "RawBatch", "RawRecord", "ServiceErrorRate", "ServiceLog", "UserEvent",
    "utc_iso", "utc_now_iso"
]

EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

# A UTC time as an ISO-8601 string, ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` (what utc_iso gives).
# A plain str at run time; schemas read the name: JSON Schema/Avro ``date-time`` strings,
# Parquet ``timestamp[us, UTC]`` and PostgreSQL ``timestamptz`` columns.
UtcTime = NewType("UtcTime", str)


class RawRecord(NamedTuple):
    """One undecoded input: a line of a file or a message of a topic."""

    payload: bytes
    origin: dict[str, Any]


class RawBatch(NamedTuple):
    """Undecoded inputs read together (the messages of one Kafka poll): one element
    for many records, so a streaming runner's per-element cost is paid once per batch.

    ``origin`` holds what the records share (``{"source": "kafka", "topic": T,
    "partition": P}``) and ``positions`` each record's own place, named by
    ``position_name`` (``"offset"``); :meth:`origin_of` gives a record's full origin, as
    its :class:`RawRecord` would carry it.
    """

    payloads: list[bytes]
    origin: dict[str, Any]
    position_name: str
    positions: list[int]

    def origin_of(self, index: int) -> dict[str, Any]:
        return {**self.origin, self.position_name: self.positions[index]}

    def records(self) -> list[RawRecord]:
        return [RawRecord(p, self.origin_of(i)) for i, p in enumerate(self.payloads)]


class UserEvent(NamedTuple):
    """A valid user event (the pageviews input contract)."""

    user_id: str
    action: str
    page: str
    timestamp: float  # epoch seconds as given; the event's window uses floor(timestamp)


class PageViewCount(NamedTuple):
    """Page views of one page in one window; pane fields are set in streaming only."""

    window_start: UtcTime
    window_end: UtcTime
    page: str
    count: int  # type: ignore[assignment]  # the output column is named count
    pane_timing: Optional[str] = None  # EARLY | ON_TIME | LATE
    pane_index: Optional[int] = None
    is_final: Optional[bool] = None


class DeadLetter(NamedTuple):
    """A rejected input: what it was, why it was rejected, where and by which step."""

    pipeline: str
    step: str
    reason: str
    reason_code: str  # short category for metrics: invalid_json, missing_field, late, ...
    payload: str
    payload_encoding: str  # "utf-8" or "base64" (when the payload is not valid UTF-8)
    origin: dict[str, Any]
    rejected_at: UtcTime

    @classmethod
    def of(
        cls,
        pipeline: str,
        step: str,
        reason: str,
        payload: bytes | str,
        origin: dict[str, Any],
        reason_code: str = "invalid",
    ) -> DeadLetter:
        text, encoding = encode_payload(payload)
        return cls(
            pipeline, step, reason, reason_code, text, encoding, dict(origin), utc_now_iso()
        )

    def to_json_dict(self) -> dict[str, Any]:
        return self._asdict()

    def payload_bytes(self) -> bytes:
        if self.payload_encoding == "base64":
            return base64.b64decode(self.payload)
        return self.payload.encode("utf-8")


class DeadLetterBatch(NamedTuple):
    """Several dead letters as one element. The vectorized steps reject a block's bad
    lines together (a backfill can have tens of thousands), and one element per block
    costs the runner far less than one per letter. Every dead-letter sink takes both;
    :func:`transforms.sinks.dead_letter_sink.each_dead_letter` gives the letters one by one."""

    letters: list[DeadLetter]


def encode_payload(payload: bytes | str) -> tuple[str, str]:
    """Return (text, encoding): UTF-8 text when it decodes, base64 otherwise."""
    if isinstance(payload, str):
        return payload, "utf-8"
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


def utc_iso(seconds: float) -> UtcTime:
    """Epoch seconds -> ``YYYY-MM-DDTHH:MM:SSZ`` (UTC; fractional seconds kept when present)."""
    micros = round(seconds * 1_000_000)
    moment = EPOCH + _dt.timedelta(microseconds=micros)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return UtcTime(text + "Z")


_NOW_PREFIX: tuple[int, str] = (-1, "")


def utc_now_iso() -> UtcTime:
    """Now as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; the part up to the second is formatted once
    per second (a dead letter is stamped with it, and a backfill may reject many)."""
    global _NOW_PREFIX
    now = time.time()
    second = int(now)
    if _NOW_PREFIX[0] != second:
        _NOW_PREFIX = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return UtcTime(f"{_NOW_PREFIX[1]}.{int((now - second) * 1_000_000):06d}Z")


class IoTReading(NamedTuple):
    """A valid IoT sensor reading (the iot_alerts input contract)."""

    DeviceId: str
    Temperature: float
    Humidity: float
    EventTime: UtcTime  # normalised to UTC


class IoTAlert(NamedTuple):
    """A device whose window breaks a threshold; pane fields are set in streaming only."""

    DeviceId: str
    AvgTemp: float
    MaxHumidity: float
    WindowTime: UtcTime  # the window end, as Stream Analytics' System.Timestamp
    WindowStart: UtcTime
    pane_timing: str | None = None  # EARLY | ON_TIME | LATE
    pane_index: int | None = None
    is_final: bool | None = None


class ServiceLog(NamedTuple):
    """A valid service log line (the error_rate input contract,
    ``transforms.contracts.service_logs``): whether it counts as an error, and why."""

    service: str
    error: bool  # see transforms.contracts.service_logs for the rule
    level: str | None  # lower-cased, as written
    status: int | None  # HTTP status
    timestamp: UtcTime


class ServiceErrorRate(NamedTuple):
    """One service's errors in one (sliding) window; pane fields are set in streaming only."""

    window_start: UtcTime
    window_end: UtcTime
    service: str
    events: int
    errors: int
    error_ratio: float  # errors / events
    breaching: bool  # error_ratio > --max_error_ratio with events >= --min_events
    pane_timing: str | None = None  # EARLY | ON_TIME | LATE
    pane_index: int | None = None
    is_final: bool | None = None
