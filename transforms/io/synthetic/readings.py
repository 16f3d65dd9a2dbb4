"""A seeded, deterministic generator of IoT sensor readings (the iot_alerts input contract).

Readings carry ``DeviceId``, ``Temperature``, ``Humidity`` and ``EventTime`` as ISO-8601
with an offset (UTC as "Z" or "+00:00", and local offsets); a ``malformed`` fraction is
replaced by one of the kinds of bad input the contract rejects::

    from transforms.io.synthetic.readings import SyntheticReadings
    lines = list(SyntheticReadings(seed=7, malformed=0.05).payloads(1000))

The default ``python -m beam_pipelines.iot_alerts`` run reads them; the tests compare the
pipeline with ``beam_pipelines.testing.iot.reference_alerts`` on them.
"""

from __future__ import annotations

import datetime as _dt
import json
import random
from typing import Any, Iterator

__all__ = ["DEFAULT_START", "MALFORMED_KINDS", "SyntheticReadings", "iso_with_offset",
           "malformed_payload"]

DEFAULT_START = 1_704_067_200  # 2024-01-01T00:00:00Z
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_OFFSETS = (0, 0, 120, -300, 330)  # minutes: UTC (twice as "Z" and "+00:00"), CEST, EST, IST

MALFORMED_KINDS = (
    "truncated_json",
    "missing_device",
    "empty_device",
    "boolean_temperature",
    "string_humidity",
    "epoch_event_time",
    "naive_event_time",
    "out_of_range_event_time",
    "not_an_object",
    "invalid_utf8",
)


def iso_with_offset(seconds: float, offset_minutes: int = 0, *, zulu: bool = False) -> str:
    """Epoch seconds as ISO-8601 local time at ``offset_minutes`` (milliseconds kept)."""
    zone = _dt.timezone(_dt.timedelta(minutes=offset_minutes))
    moment = (_EPOCH + _dt.timedelta(microseconds=round(seconds * 1_000_000))).astimezone(zone)
    text = moment.isoformat(timespec="milliseconds")
    if zulu and offset_minutes == 0:
        text = text[: -len("+00:00")] + "Z"
    return text


class SyntheticReadings:
    """Deterministic sensor readings; ``readings(n)`` yields dicts, ``payloads(n)`` bytes.

    Event time advances by ``1 / rate`` seconds per reading; an ``out_of_order`` fraction
    is moved back by up to ``max_delay`` seconds. Every ``hot_every``-th device runs
    hot (its average is usually above 30) and ``humid`` of the readings spike above 80
    humidity, so a few minutes of data produce both kinds of alert.
    """

    def __init__(
        self,
        seed: int = 42,
        rate: float = 4.0,
        devices: int = 20,
        malformed: float = 0.0,
        out_of_order: float = 0.05,
        max_delay: float = 30.0,
        hot_every: int = 7,
        humid: float = 0.02,
        start: float = DEFAULT_START,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 readings per second of event time, got {rate!r}")
        if devices <= 0:
            raise ValueError(f"devices must be a whole number > 0, got {devices!r}")
        for name, value in (("malformed", malformed), ("out_of_order", out_of_order),
                            ("humid", humid)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
        self.seed = seed
        self.rate = rate
        self.devices = devices
        self.malformed = malformed
        self.out_of_order = out_of_order
        self.max_delay = max_delay
        self.hot_every = hot_every
        self.humid = humid
        self.start = start

    def starting_at(self, start: float) -> SyntheticReadings:
        """The same generator with event time starting at ``start`` (a streaming source
        starts at "now")."""
        return SyntheticReadings(
            seed=self.seed, rate=self.rate, devices=self.devices, malformed=self.malformed,
            out_of_order=self.out_of_order, max_delay=self.max_delay, hot_every=self.hot_every,
            humid=self.humid, start=start,
        )

    def reading(self, index: int, rnd: random.Random) -> dict[str, Any]:
        seconds = self.start + index / self.rate
        if self.out_of_order and rnd.random() < self.out_of_order:
            seconds -= rnd.uniform(0, self.max_delay)
        device = rnd.randrange(self.devices)
        hot = self.hot_every > 0 and device % self.hot_every == 0
        temperature = rnd.gauss(31.0 if hot else 22.0, 2.0 if hot else 4.0)
        humidity = rnd.uniform(80.5, 95.0) if rnd.random() < self.humid else rnd.uniform(30.0, 75.0)
        offset = rnd.choice(_OFFSETS)
        return {
            "DeviceId": f"device-{device:03d}",
            "Temperature": round(temperature, 1),
            "Humidity": round(humidity, 1),
            "EventTime": iso_with_offset(seconds, offset, zulu=rnd.random() < 0.5),
        }

    def records(self, count: int, first: int = 0) -> Iterator[tuple[dict | None, bytes]]:
        """(reading or None when malformed, payload) for readings first..first+count-1.

        Each index has its own random stream, so any range is reproducible on its own.
        """
        for index in range(first, first + count):
            rnd = random.Random(self.seed * 1_000_003 + index)
            reading = self.reading(index, rnd)
            if self.malformed and rnd.random() < self.malformed:
                yield None, malformed_payload(reading, rnd.choice(MALFORMED_KINDS))
            else:
                yield reading, json.dumps(reading, separators=(",", ":")).encode("utf-8")

    def readings(self, count: int, first: int = 0) -> Iterator[dict]:
        for reading, _ in self.records(count, first):
            if reading is not None:
                yield reading

    def payloads(self, count: int, first: int = 0) -> Iterator[bytes]:
        for _, payload in self.records(count, first):
            yield payload


def malformed_payload(reading: dict, kind: str) -> bytes:
    """One reading the contract rejects, of the given kind."""
    bad = dict(reading)
    if kind == "truncated_json":
        return json.dumps(bad).encode()[:-5]
    if kind == "missing_device":
        bad.pop("DeviceId")
    elif kind == "empty_device":
        bad["DeviceId"] = ""
    elif kind == "boolean_temperature":
        bad["Temperature"] = True
    elif kind == "string_humidity":
        bad["Humidity"] = str(bad["Humidity"])
    elif kind == "epoch_event_time":
        bad["EventTime"] = DEFAULT_START
    elif kind == "naive_event_time":
        bad["EventTime"] = "2024-01-01T00:00:00"
    elif kind == "out_of_range_event_time":
        bad["EventTime"] = "2150-01-01T00:00:00Z"
    elif kind == "not_an_object":
        return json.dumps([bad]).encode()
    elif kind == "invalid_utf8":
        return b'{"DeviceId": "\xff", "Temperature": 1, "Humidity": 1}'
    else:
        raise ValueError(f"unknown malformed kind {kind!r}; expected one of {MALFORMED_KINDS}")
    return json.dumps(bad).encode()
