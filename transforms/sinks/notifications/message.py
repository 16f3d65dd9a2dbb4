"""What an alert says, independent of where it is sent.

A sink turns each input into a :class:`Notification`: an :class:`AlertMessage` (what
is wrong, where, the numbers, the window, a severity) built from the result record by
the sink's ``message`` argument, plus its identity:

* ``dedup_key`` is stable per incident. For an :class:`~transforms.incidents.IncidentEvent`
  it is the incident id; for a plain alert record it is ``<pipeline>:<where>:<window
  start>``, so every pane of one window's alert is one PagerDuty alert.
* ``event_id`` is unique per thing to deliver once: ``<incident id>:trigger`` /
  ``:resolve``, or ``<dedup key>:pane<N>`` for a plain alert's pane N. It is the
  webhook's ``Idempotency-Key`` and what the delivery threads remember to never send a
  retried bundle's alert twice.

``message`` is a function of the record returning an AlertMessage, a mapping for
:func:`message_fields` (``{"what": "High temperature on {DeviceId}", "where":
"DeviceId", "numbers": ["AvgTemp", "MaxHumidity"], "window_start": "WindowStart",
"window_end": "WindowTime"}``), or None for :func:`default_message`, which guesses from
the field names of the project's records.
"""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Union

from transforms.base.errors import ConfigError
from transforms.incidents import IncidentEvent, window_of
from transforms.records import utc_iso, utc_now_iso
from transforms.sinks import as_dict

__all__ = [
    "SEVERITIES",
    "AlertMessage",
    "MessageSpec",
    "Notification",
    "default_message",
    "format_number",
    "headline",
    "message_fields",
    "notification_of",
]

SEVERITIES = ("critical", "error", "warning", "info")
TRIGGER, RESOLVE = "trigger", "resolve"
_PANE_FIELDS = ("pane_timing", "pane_index", "is_final")
_WINDOW_NAMES = ("window_start", "window_end", "WindowStart", "WindowEnd", "WindowTime")
# Fields that name the thing an alert is about, most specific first.
_WHERE_NAMES = ("key", "DeviceId", "device_id", "device", "service", "host", "source", "page",
                "user_id", "account", "card")


class AlertMessage(NamedTuple):
    """The human content of an alert."""

    what: str  # the headline: what is wrong ("High temperature")
    where: str  # what it is about: a device, a service (PagerDuty's ``source``)
    numbers: dict[str, Any]  # the measurements, in display order
    window_start: Optional[str] = None  # ISO-8601
    window_end: Optional[str] = None
    severity: str = "error"  # critical | error | warning | info


class Notification(NamedTuple):
    """One thing to deliver: the message and its identity (see the module docstring)."""

    message: AlertMessage
    action: str  # trigger | resolve
    dedup_key: str
    event_id: str
    timestamp: str  # ISO-8601 event time of the alert or transition
    pipeline: str
    fields: dict[str, Any]  # the alert record's fields, JSON-ready
    incident: Optional[dict[str, Any]] = None  # incident_id, reason, opened_at, at
    pane: Optional[str] = None  # "EARLY #0" when the record carries pane fields


MessageSpec = Union[Callable[[Any], AlertMessage], Mapping[str, Any], None]


def format_number(value: Any) -> str:
    """A measurement as people read it: 31.5, 0.0833, 12 (six significant digits)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def headline(message: AlertMessage) -> str:
    """``what on where``, unless ``what`` names ``where`` already."""
    if message.where and message.where not in message.what:
        return f"{message.what} on {message.where}"
    return message.what


def _iso(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return utc_iso(float(value))
    return str(value)


def _json_ready(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Fields as JSON types: Decimals and other objects become their text."""
    return json.loads(json.dumps(dict(fields), default=str, ensure_ascii=False))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _fields_of(record: Any) -> dict[str, Any]:
    try:
        return as_dict(record)
    except TypeError:
        return {"value": record}


class _FieldMessage:
    """The function :func:`message_fields` returns (a class, so it pickles)."""

    def __init__(self, what: str, where: Optional[str], numbers: tuple[str, ...],
                 window_start: Optional[str], window_end: Optional[str],
                 severity: Union[str, Callable[[Any], str]]) -> None:
        self.what, self.where, self.numbers = what, where, numbers
        self.window_start, self.window_end, self.severity = window_start, window_end, severity

    def __call__(self, record: Any) -> AlertMessage:
        fields = _fields_of(record)
        value = fields.get("value")
        if isinstance(value, Mapping):  # a WindowedResult's aggregate: its names are usable too
            fields = {**value, **fields}
        guessed = default_message(record)
        try:
            what = self.what.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"message 'what' template {self.what!r} cannot be filled: {exc!r}") from None
        where = str(fields[self.where]) if self.where else guessed.where
        missing = [name for name in self.numbers if name not in fields]
        if missing:
            raise ValueError(f"the record has no field(s) {missing} named in 'numbers'")
        numbers = {name: fields[name] for name in self.numbers} if self.numbers else guessed.numbers
        start = _iso(fields.get(self.window_start)) if self.window_start else guessed.window_start
        end = _iso(fields.get(self.window_end)) if self.window_end else guessed.window_end
        severity = self.severity(record) if callable(self.severity) else self.severity
        return AlertMessage(what, where, numbers, start, end, severity)


def message_fields(
    *,
    what: str,
    where: Optional[str] = None,
    numbers: Iterable[str] = (),
    window_start: Optional[str] = None,
    window_end: Optional[str] = None,
    severity: Union[str, Callable[[Any], str]] = "error",
) -> Callable[[Any], AlertMessage]:
    """A message function from field names.

    Field names are the record's, and those of its ``value`` when that is a mapping (a
    :class:`~transforms.windowing.WindowedResult` with a dict aggregate).

    :param what: the headline, literally or as a ``str.format`` template over the
        record's fields: ``"High temperature on {DeviceId}"``.
    :param where: the field naming what the alert is about; None: guessed.
    :param numbers: the fields to show as measurements, in order; empty: every number.
    :param window_start: the field with the window start (ISO-8601 or epoch seconds).
    :param window_end: the field with the window end.
    :param severity: critical | error | warning | info, or a function of the record.
    """
    if not isinstance(what, str) or not what.strip():
        raise ConfigError("message.what", "a headline or a {field} template", what)
    if not callable(severity) and severity not in SEVERITIES:
        raise ConfigError("message.severity", "|".join(SEVERITIES), severity)
    names = tuple(numbers)
    if any(not isinstance(name, str) for name in names):
        raise ConfigError("message.numbers", "a list of field names", list(names))
    return _FieldMessage(what, where, names, window_start, window_end, severity)


def default_message(record: Any) -> AlertMessage:
    """A message guessed from the record's field names: ``where`` is the first of key,
    DeviceId, service, host... (else the first text field), ``numbers`` every numeric
    field that is not a window or pane field (a ``value`` mapping is opened up), the
    window from the fields :func:`transforms.incidents.window_of` reads."""
    fields = _fields_of(record)
    where = next((str(fields[n]) for n in _WHERE_NAMES if fields.get(n) not in (None, "")), None)
    if where is None:
        where = next((v for v in fields.values() if isinstance(v, str) and v), "unknown")
    numbers: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _PANE_FIELDS or name in _WINDOW_NAMES:
            continue
        if _is_number(value):
            numbers[name] = value
        elif name == "value" and isinstance(value, Mapping):
            numbers.update({k: v for k, v in value.items() if _is_number(v)})
    try:
        start, end = window_of(record)
        window: tuple[Optional[str], Optional[str]] = (utc_iso(start), utc_iso(end))
    except ValueError:
        window = (None, None)
    return AlertMessage("Alert", where, numbers, window[0], window[1], "error")


def _message_fn(spec: MessageSpec) -> Callable[[Any], AlertMessage]:
    if spec is None:
        return default_message
    if isinstance(spec, Mapping):
        unknown = set(spec) - {"what", "where", "numbers", "window_start", "window_end", "severity"}
        if unknown:
            raise ConfigError("message", "keys among what, where, numbers, window_start, "
                              "window_end, severity", sorted(unknown))
        return message_fields(**spec)
    if callable(spec):
        return spec
    raise ConfigError("message", "a function of the record, a field mapping or None", spec)


def bounded(key: str, limit: int = 255) -> str:
    """``key`` if it fits in ``limit`` characters, else a prefix and a digest of it
    (PagerDuty's dedup_key allows 255), still stable and unique."""
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"{key[:limit - 33]}~{digest}"


def notification_of(element: Any, message_fn: Callable[[Any], AlertMessage], pipeline: str) -> Notification:
    """The Notification for a sink's input: an IncidentEvent or a plain alert record.
    Raises ValueError/TypeError when the message cannot be built (the sink dead-letters)."""
    if isinstance(element, IncidentEvent):
        record, action = element.record, element.action
        dedup_key = element.incident_id
        event_id = f"{element.incident_id}:{action}"
        incident = {"incident_id": element.incident_id, "reason": element.reason,
                    "opened_at": element.opened_at, "at": element.at}
    else:
        record, action, incident = element, TRIGGER, None
        dedup_key = event_id = ""
    message = message_fn(record)
    if not isinstance(message, AlertMessage):
        raise TypeError(f"the message function returned {type(message).__name__}, not AlertMessage")
    if message.severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {'|'.join(SEVERITIES)}, got {message.severity!r}")
    if action not in (TRIGGER, RESOLVE):
        raise ValueError(f"event action must be trigger or resolve, got {action!r}")
    fields = _json_ready(_fields_of(record))
    pane_index, pane_timing = fields.get("pane_index"), fields.get("pane_timing")
    pane = f"{pane_timing or 'pane'} #{pane_index}" if pane_index is not None else None
    if incident is None:
        anchor = message.window_start or hashlib.sha256(
            json.dumps(fields, sort_keys=True).encode("utf-8")).hexdigest()[:16]
        dedup_key = f"{pipeline}:{message.where}:{anchor}"
        event_id = dedup_key + (f":pane{pane_index}" if pane_index is not None else "")
        timestamp = message.window_end or utc_now_iso()
    else:
        timestamp = incident["at"]
    return Notification(message, action, bounded(dedup_key), bounded(event_id, 512), timestamp,
                        pipeline, fields, incident, pane)
