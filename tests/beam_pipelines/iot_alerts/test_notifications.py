"""iot_alerts to a webhook over a file of readings made here (thresholds moved by flags, values
on them, ISO times in unusual offsets): exactly the reference's alerts, one POST each; and
incidents per device (trigger, resolve on a clean window or after --resolve_after)."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from beam_pipelines import iot_alerts
from beam_pipelines.testing.iot import SyntheticReadings, iso_with_offset, reference_alerts
from transforms.records import utc_iso
from transforms.sinks.notifications import verify_signature

pytestmark = pytest.mark.integration

T0 = 1_710_000_000 - 1_710_000_000 % 60  # a window boundary in March 2024
HMAC = "iot-webhook-secret"
TEMPERATURE, HUMIDITY = "25.5", "70"
OFFSETS = (840, -720, 345, 0, -150, 60)  # +14:00, -12:00, +05:45, Z, -02:30, +01:00


def readings() -> list[bytes]:
    """Devices around the moved thresholds, in offsets the generator never writes."""
    rnd = random.Random(2024)
    lines: list[bytes] = []

    def add(device, temperature, humidity, seconds, **extra):
        record = {"EventTime": iso_with_offset(seconds, rnd.choice(OFFSETS)),
                  "DeviceId": device, "Humidity": humidity, "Temperature": temperature, **extra}
        lines.append(json.dumps(record).encode())

    for minute in range(6):
        base = T0 + 60 * minute
        add("exact-avg", 25.4, 10, base + 1)  # average exactly 25.5: never an alert
        add("exact-avg", 25.6, 10, base + 59.999999)
        add("exact-hum", 1, 70, base + 30)  # humidity exactly 70: never
        # alerts in minutes 0-1, clean in 2, alerts again in 3, then silent
        if minute in (0, 1, 3):
            add("flapping", 25.500001, 10, base + 0.5, firmware="2.1")
        elif minute == 2:
            add("flapping", 25.5, 10, base + 10)
        if minute == 4:
            add("humid", 20, 70.0001, base + 42, tags=["roof"])  # one alert, then quiet
        add("int-values", 26 if minute % 2 else 25, 69, base + 5)
    for index, payload in enumerate(SyntheticReadings(seed=2718, rate=2.0, devices=6,
                                                      start=T0).payloads(700)):
        if index % 97 == 0:
            lines.append(b'{"DeviceId": "bad", "Temperature": "hot", "Humidity": 1}')
        lines.append(payload)
    rnd.shuffle(lines)  # a file is not in event-time order
    return lines


@pytest.fixture(scope="module")
def readings_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("iot") / "readings.jsonl"
    lines = readings()
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


def run(path, hook, extra: list[str], dead) -> None:
    assert iot_alerts.main([
        "--source=file", f"--input={path}", "--sink=webhook", f"--output={hook.url}",
        f"--webhook_secret={HMAC}", f"--temperature_threshold={TEMPERATURE}",
        f"--humidity_threshold={HUMIDITY}", f"--dead_letter={dead}", *extra]) == 0


def test_every_alert_is_posted_once_as_the_reference_says(readings_file, http_receiver, tmp_path):
    path, lines = readings_file
    hook = http_receiver.webhook(HMAC)
    run(path, hook, ["--notify_on=alerts"], tmp_path / "dead")

    expected = reference_alerts(lines, temperature_threshold=TEMPERATURE,
                                humidity_threshold=HUMIDITY)
    assert hook.problems == [] and len(hook.requests) == len(expected.alerts)
    assert all(verify_signature(HMAC, r.body, r.header("X-Signature-256")) for r in hook.requests)
    fields = ("DeviceId", "AvgTemp", "MaxHumidity", "WindowTime", "WindowStart")
    got = sorted(({k: d[k] for k in fields} for d in hook.deliveries),
                 key=lambda a: (a["WindowStart"], a["DeviceId"]))
    assert got == expected.alerts
    devices = {a["DeviceId"] for a in got}
    assert "exact-avg" not in devices and "exact-hum" not in devices
    assert {"flapping", "humid"} <= devices
    for delivery in hook.deliveries:
        assert delivery["event_action"] == "trigger"
        assert delivery["event_id"] == f"iot_alerts:{delivery['DeviceId']}:{delivery['WindowStart']}"


def expected_incidents(lines: list[bytes], quiet: float) -> dict[str, list[tuple[str, str]]]:
    """incident id -> [(action, reason)], by the rules of docs/alerting.md, from the reference."""
    every = reference_alerts(lines, temperature_threshold="-1e18").alerts  # every window
    alerting = {(a["DeviceId"], a["WindowStart"]) for a in reference_alerts(
        lines, temperature_threshold=TEMPERATURE, humidity_threshold=HUMIDITY).alerts}
    out: dict[str, list[tuple[str, str]]] = {}
    for device in sorted({a["DeviceId"] for a in every}):
        windows = sorted(a["WindowStart"] for a in every if a["DeviceId"] == device)
        starts = [int(iso_seconds(w)) for w in windows]
        open_id, deadline = None, None
        for start, window in zip(starts, windows, strict=True):
            end = start + 60
            if deadline is not None and end - 1e-6 >= deadline:  # quiet before this one
                if open_id:
                    out[open_id].append(("resolve", "quiet_period"))
                open_id = None
            deadline = end + quiet
            if (device, window) in alerting:
                if open_id is None:
                    open_id = f"iot_alerts:{device}:{window}"
                    out[open_id] = [("trigger", "breach")]
            elif open_id is not None:
                out[open_id].append(("resolve", "recovered"))
                open_id = None
        if open_id is not None:  # the end of the input: the quiet period expires
            out[open_id].append(("resolve", "quiet_period"))
    return out


def iso_seconds(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_incidents_per_device_trigger_once_and_resolve_once(readings_file, http_receiver,
                                                           tmp_path):
    path, lines = readings_file
    hook = http_receiver.webhook(HMAC)
    run(path, hook, ["--resolve_after=90"], tmp_path / "dead")

    assert hook.problems == []
    got: dict[str, list[tuple[str, str]]] = {}
    for delivery in hook.deliveries:
        got.setdefault(delivery["dedup_key"], []).append(
            (delivery["event_action"], delivery["incident"]["reason"]))
    assert got == expected_incidents(lines, quiet=90)
    flapping = {k: v for k, v in got.items() if ":flapping:" in k}
    assert flapping == {f"iot_alerts:flapping:{utc_iso(T0)}": [("trigger", "breach"),
                                                                  ("resolve", "recovered")],
                        f"iot_alerts:flapping:{utc_iso(T0 + 180)}": [("trigger", "breach"),
                                                                        ("resolve", "quiet_period")]}
