"""Seeded IoT readings and a pure-Python reference of the alert query, for tests.

The generator (``transforms.io.synthetic.readings``, re-exported here) produces readings in
the iot_alerts input contract (``DeviceId``,
``Temperature``, ``Humidity``, ``EventTime`` as ISO-8601 with an offset)::

    from beam_pipelines.testing.iot import SyntheticReadings, reference_alerts
    lines = list(SyntheticReadings(seed=7, malformed=0.05).payloads(1000))
    expected = reference_alerts(lines)          # what the pipeline must output

:func:`reference_alerts` is the Stream Analytics query written out by hand, with its
own parsing (it does not reuse the pipeline's validators), so a test comparing the two
checks the contract as well as the windowing::

    SELECT DeviceId, Avg(Temperature) AS AvgTemp, Max(Humidity) AS MaxHumidity,
           System.Timestamp AS WindowTime
    FROM IoTInput TIMESTAMP BY EventTime
    GROUP BY DeviceId, TumblingWindow(second, window_size)
    HAVING Avg(Temperature) > 30 OR Max(Humidity) > 80

Averages are exact: the decimal values as written are summed as fractions, so an
average of exactly 30 never alerts, whatever the order of summation.
"""

from __future__ import annotations

import datetime as _dt
import json
from decimal import Decimal
from fractions import Fraction
from typing import Any, Iterable, NamedTuple

from transforms.io.synthetic.readings import (  # noqa: F401  (re-exported for tests)
    DEFAULT_START,
    MALFORMED_KINDS,
    SyntheticReadings,
    iso_with_offset,
    malformed_payload,
)

__all__ = ["edge_case_lines", "reference_alerts", "ReferenceResult"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def edge_case_lines(start: int = DEFAULT_START) -> list[bytes]:
    """Readings on every edge of the query: thresholds, window boundaries, bad inputs.

    ``start`` must be a window boundary (a whole minute for 60 s windows).
    """

    def line(device: Any, temperature: Any, humidity: Any, event_time: Any) -> bytes:
        return json.dumps({"DeviceId": device, "Temperature": temperature,
                           "Humidity": humidity, "EventTime": event_time}).encode()

    t = start
    raw_float = b'{"DeviceId": "edge-sum", "Temperature": %s, "Humidity": 10, "EventTime": "%s"}'
    return [
        # Average exactly 30: no alert (HAVING is strict), even with inexact binary floats.
        line("edge-avg30", 29.9, 50, iso_with_offset(t + 1)),
        line("edge-avg30", 30.1, 50, iso_with_offset(t + 2, 120)),
        *(raw_float % (v, iso_with_offset(t + 3 + i).encode()) for i, v in
          enumerate((b"10.1", b"20.2", b"59.7"))),  # sum 90.0 exactly, 90.00000000000001 in floats
        # A hair above 30: alert.
        line("edge-avg30-plus", 30, 50, iso_with_offset(t + 5)),
        line("edge-avg30-plus", 30.1, 50, iso_with_offset(t + 6)),
        # Humidity exactly 80: no alert; just above: alert.
        line("edge-hum80", 20, 80, iso_with_offset(t + 7)),
        line("edge-hum80-plus", 20, 80.01, iso_with_offset(t + 8)),
        # Integer temperatures are numbers too.
        line("edge-int", 31, 10, iso_with_offset(t + 9, -300)),
        # Window boundaries: the last microsecond of a window and the first of the next,
        # written in different offsets.
        line("edge-boundary", 40, 10, iso_with_offset(t + 59.999999, 120)),
        line("edge-boundary", 10, 10, iso_with_offset(t + 60, 330)),
        line("edge-boundary", 10, 10, _iso_z(t + 119) + "Z"),
        # Invalid readings: each must become exactly one dead letter.
        line("edge-bad", True, 10, iso_with_offset(t)),  # boolean temperature
        line("edge-bad", 10, "80", iso_with_offset(t)),  # humidity as a string
        line("edge-bad", 10, 10, t),  # epoch seconds are not accepted here
        line("edge-bad", 10, 10, "2024-01-01T00:00:30"),  # no offset
        line("", 10, 10, iso_with_offset(t)),  # empty DeviceId
        line(42, 10, 10, iso_with_offset(t)),  # DeviceId must be a string
        line("edge-bad", None, 10, iso_with_offset(t)),  # null temperature
        b'{"DeviceId": "edge-bad", "Temperature": 10, "EventTime": "2024-01-01T00:00:30Z"}',
        b'{"DeviceId": "edge-bad", "Temperature": NaN, "Humidity": 1, "EventTime": "2024-01-01T00:00:30Z"}',
        b'{"DeviceId": "edge-bad", "Temperature": 10',  # truncated JSON
        b'[{"DeviceId": "edge-bad"}]',  # not an object
        b"",  # a blank line is skipped, not dead-lettered
    ]


def _iso_z(seconds: int) -> str:
    return (_EPOCH + _dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


# ---- the reference query --------------------------------------------------------------

class ReferenceResult(NamedTuple):
    alerts: list[dict[str, Any]]  # sorted by (WindowStart, DeviceId)
    invalid_lines: list[int]  # 1-based numbers of the lines that must be dead-lettered
    valid: int


def _reject(_name: str) -> Any:
    raise ValueError("not JSON")


def _reference_parse(payload: bytes) -> tuple[str, Fraction, Decimal, int] | None:
    """(device, temperature, humidity, event second) or None when the reading is invalid."""
    try:
        obj = json.loads(payload.decode("utf-8"), parse_float=Decimal, parse_constant=_reject)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    device, temperature, humidity, when = (obj.get(k) for k in
                                          ("DeviceId", "Temperature", "Humidity", "EventTime"))
    if not isinstance(device, str) or not device:
        return None
    for value in (temperature, humidity):
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            return None
    if not isinstance(when, str):
        return None
    try:
        moment = _dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.utcoffset() is None:
        return None
    second = int((moment - _EPOCH) // _dt.timedelta(seconds=1))
    if not 946_684_800 <= second < 4_102_444_800:  # [2000-01-01, 2100-01-01)
        return None
    assert isinstance(temperature, (int, Decimal)) and isinstance(humidity, (int, Decimal))
    return device, Fraction(temperature), Decimal(humidity), second


def reference_alerts(
    lines: Iterable[bytes],
    *,
    window_size: int = 60,
    temperature_threshold: float | str = 30,
    humidity_threshold: float | str = 80,
) -> ReferenceResult:
    """The alerts the query defines for ``lines`` (batch: one final result per window)."""
    temperature_limit = Fraction(Decimal(str(temperature_threshold)))
    humidity_limit = Decimal(str(humidity_threshold))
    groups: dict[tuple[int, str], tuple[Fraction, int, Decimal]] = {}
    invalid: list[int] = []
    valid = 0
    for number, payload in enumerate(lines, start=1):
        if not payload.strip():
            continue
        parsed = _reference_parse(payload)
        if parsed is None:
            invalid.append(number)
            continue
        valid += 1
        device, temperature, humidity, second = parsed
        key = (second - second % window_size, device)
        total, count, highest = groups.get(key, (Fraction(0), 0, humidity))
        groups[key] = (total + temperature, count + 1, max(highest, humidity))
    alerts = []
    for (start, device), (total, count, highest) in sorted(groups.items()):
        average = total / count
        if average > temperature_limit or highest > humidity_limit:
            alerts.append({
                "DeviceId": device,
                "AvgTemp": float(average),
                "MaxHumidity": float(highest),
                "WindowTime": _iso_z(start + window_size) + "Z",
                "WindowStart": _iso_z(start) + "Z",
            })
    return ReferenceResult(alerts, invalid, valid)
