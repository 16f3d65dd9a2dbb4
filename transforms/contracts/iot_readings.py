"""The IoT reading contract (iot_alerts' input): ``DeviceId``, ``Temperature``, ``Humidity``,
``EventTime``.

``DeviceId`` is a non-empty string, ``Temperature`` and ``Humidity`` finite numbers (not
booleans), ``EventTime`` ISO-8601 with an offset (epoch numbers are rejected), normalised
to UTC. Extra fields are ignored.
"""

from __future__ import annotations

from typing import Any

from transforms.contracts.spec import InputContract
from transforms.io.synthetic.readings import SyntheticReadings
from transforms.parse import ParseRecords
from transforms.records import IoTReading, utc_iso
from transforms.validation import event_time, non_empty_string, number

__all__ = ["IOT_READINGS", "ParseReadings", "parse_reading"]


def parse_reading(obj: dict[str, Any]) -> tuple[IoTReading, int]:
    """The iot_alerts input contract; extra fields are ignored. Epoch times are rejected."""
    device = non_empty_string(obj, "DeviceId")
    temperature = number(obj, "Temperature")
    humidity = number(obj, "Humidity")
    seconds, whole = event_time(obj, "EventTime", allow_epoch=False)
    return IoTReading(device, temperature, humidity, utc_iso(seconds)), whole


IOT_READINGS = InputContract("IoTReading", IoTReading, parse_reading, SyntheticReadings,
                             noun="readings")


def ParseReadings(pipeline: str = "iot_alerts") -> ParseRecords:
    """ParseRecords for the IoT reading contract."""
    return IOT_READINGS.parser(pipeline)
