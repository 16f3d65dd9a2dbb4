"""iot_alerts: the Stream Analytics query, checked against a pure-Python reference.

Pipeline runs cost seconds, so each run is shared by several assertions: one batch run
over seeded readings plus every edge case, one TestStream run covering each streaming
behaviour, one PostgreSQL run.
"""

from __future__ import annotations

import json
import time
from fractions import Fraction

import apache_beam as beam
import fastjsonschema
import pytest
from apache_beam.testing import test_stream

from beam_pipelines import iot_alerts, schemas
from beam_pipelines.options import parse as parse_flags
from beam_pipelines.skeleton import SourceSpec
from beam_pipelines.testing.collect import collect
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.iot import (
    DEFAULT_START,
    SyntheticReadings,
    edge_case_lines,
    iso_with_offset,
    reference_alerts,
)
from transforms.records import IoTReading, RawRecord
from transforms.validation import InvalidRecord

T0 = DEFAULT_START




def reading(device, temperature, humidity, seconds) -> bytes:
    return json.dumps({"DeviceId": device, "Temperature": temperature, "Humidity": humidity,
                       "EventTime": iso_with_offset(seconds)}).encode()


# ---- unit: contract and aggregate ---------------------------------------------------------

@pytest.mark.unit
def test_parse_reading_contract():
    record, whole = iot_alerts.parse_reading(
        {"DeviceId": "d", "Temperature": 21, "Humidity": 40.5,
         "EventTime": "2024-01-01T02:00:59.5+02:00", "extra": 1}
    )
    assert record == IoTReading("d", 21.0, 40.5, "2024-01-01T00:00:59.5Z")
    assert whole == T0 + 59
    for bad, code in [
        ({"DeviceId": "d", "Temperature": 1, "Humidity": 1, "EventTime": T0}, "wrong_type"),
        ({"DeviceId": "d", "Temperature": False, "Humidity": 1,
          "EventTime": "2024-01-01T00:00:00Z"}, "wrong_type"),
        ({"DeviceId": "d", "Temperature": 1, "Humidity": 1,
          "EventTime": "2024-01-01T00:00:00"}, "invalid_time"),
        ({"DeviceId": "", "Temperature": 1, "Humidity": 1,
          "EventTime": "2024-01-01T00:00:00Z"}, "empty_field"),
    ]:
        with pytest.raises(InvalidRecord) as info:
            iot_alerts.parse_reading(bad)
        assert info.value.code == code


@pytest.mark.unit
def test_stats_are_exact_whatever_the_merge_order():
    fn = iot_alerts.AlertStatsFn()
    readings = [IoTReading("d", t, h, "") for t, h in ((10.1, 1.0), (20.2, 80.0), (59.7, 3.0))]
    one = fn.create_accumulator()
    for r in readings:
        one = fn.add_input(one, r)
    parts = [fn.add_input(fn.create_accumulator(), r) for r in reversed(readings)]
    merged = fn.merge_accumulators(parts)
    assert fn.extract_output(one) == fn.extract_output(merged)
    assert fn.extract_output(one) == (Fraction(30), 80.0, 3)  # 10.1+20.2+59.7 != 90.0 in floats


@pytest.mark.unit
def test_bad_flags_are_one_line_errors(capsys):
    for argv, expected in [
        (["--temperature_threshold=warm"], "error: --temperature_threshold: expected a finite number, got 'warm'"),
        (["--humidity_threshold=nan"], "error: --humidity_threshold: expected a finite number, got 'nan'"),
        (["--source=file"], "error: --input: expected a file path or glob when --source=file"),
        (["--window_size=0"], "error: --window_size: expected a whole number of seconds >= 1, got '0'"),
        (["--threshold=3"], "error: --threshold: unknown flag"),
    ]:
        assert iot_alerts.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(expected), err
        assert "\n" not in err
    with pytest.raises(TypeError, match="WindowConfig"):
        iot_alerts.DetectAlerts({"size": 60}, streaming=False)


# ---- batch: the whole CLI against the reference ------------------------------------------

@pytest.mark.unit
def test_file_to_jsonl_gives_exactly_the_alerts_of_the_query(tmp_path, capfd):
    lines = list(SyntheticReadings(seed=7, malformed=0.05).payloads(1200)) + edge_case_lines()
    source = tmp_path / "readings.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    expected = reference_alerts(lines)
    assert len(expected.alerts) > 20 and len(expected.invalid_lines) > 40  # the data is interesting

    code = iot_alerts.main([
        "--source=file", f"--input={source}", "--sink=jsonl", f"--output={tmp_path / 'out'}",
        f"--dead_letter={tmp_path / 'dead'}",
    ])
    assert code == 0
    got = sorted(read_jsonl(str(tmp_path / "out" / "iot_alerts-*.jsonl")),
                 key=lambda a: (a["WindowStart"], a["DeviceId"]))
    for alert in got:  # batch has no panes
        assert (alert.pop("pane_timing"), alert.pop("pane_index"), alert.pop("is_final")) == (None,) * 3
    assert got == expected.alerts

    by_device = {(a["DeviceId"], a["WindowStart"][11:19]): a for a in got if a["DeviceId"].startswith("edge")}
    assert set(by_device) == {
        ("edge-avg30-plus", "00:00:00"), ("edge-hum80-plus", "00:00:00"),
        ("edge-int", "00:00:00"), ("edge-boundary", "00:00:00"),
    }  # not: average exactly 30 (twice), humidity exactly 80, the boundary's next window
    assert by_device["edge-boundary", "00:00:00"]["AvgTemp"] == 40.0
    assert by_device["edge-boundary", "00:00:00"]["WindowTime"] == "2024-01-01T00:01:00Z"

    dead = read_jsonl(str(tmp_path / "dead" / "dead_letters-*.jsonl"))
    # What the sinks wrote matches the published schemas (docs/schemas.md).
    validate_alert = fastjsonschema.compile(schemas.json_schema("IoTAlert"))
    validate_dead = fastjsonschema.compile(schemas.json_schema("DeadLetter"))
    for row in read_jsonl(str(tmp_path / "out" / "iot_alerts-*.jsonl")):
        validate_alert(row)
    for row in dead:
        validate_dead(row)
    assert sorted(d["origin"]["line"] for d in dead) == expected.invalid_lines
    assert {d["pipeline"] for d in dead} == {"iot_alerts"}
    epoch = [d for d in dead if f'"EventTime": {T0}' in d["payload"]]
    assert "ISO-8601" in epoch[0]["reason"]  # epoch seconds are rejected, and say why

    err = capfd.readouterr().err
    assert f"{expected.valid} valid records, {len(expected.invalid_lines)} rejected" in err
    assert f"{len(expected.alerts)} alerts emitted" in err


@pytest.mark.unit
def test_default_run_is_offline_and_prints_a_table(capfd):
    assert iot_alerts.main(["--synthetic_events=600"]) == 0
    out, err = capfd.readouterr()
    assert "IoT alerts per device and window" in out
    assert "WindowStart  " in out and "MaxHumidity" in out
    assert "iot_alerts: " in err and "alerts emitted" in err


# ---- streaming: TestStream ------------------------------------------------------------

def raw(*payloads: bytes) -> list[RawRecord]:
    return [RawRecord(p, {"source": "test", "index": i}) for i, p in enumerate(payloads)]


@pytest.mark.unit
def test_streaming_panes_late_updates_and_too_late_readings(tmp_path):
    now = int(time.time())
    stream = (
        test_stream.TestStream()
        .advance_processing_time(now)
        .advance_watermark_to(T0)
        .add_elements(raw(reading("a", 35, 50, T0 + 5), reading("b", 20, 50, T0 + 6),
                          reading("c", 31, 50, T0 + 7), b'{"DeviceId": "a"}'))
        .advance_processing_time(30)  # > --early_firing: EARLY panes; a and c qualify, b not
        .add_elements(raw(reading("a", 31, 50, T0 + 10)))
        .advance_processing_time(30)  # another EARLY pane for a, accumulating: avg 33
        .advance_watermark_to(T0 + 90)  # ON_TIME: a (avg 33) and c (31) alert, b does not
        .add_elements(raw(reading("a", 40, 50, T0 + 30),  # late, within 120 s: a's alert updates
                          reading("b", 20, 85, T0 + 20),  # late: b starts qualifying
                          reading("c", 20, 50, T0 + 30)))  # late: c stops qualifying, no output
        .advance_watermark_to(T0 + 60 + 120 + 1)  # the window expires
        .add_elements(raw(reading("a", 99, 99, T0 + 40)))  # too late: dead-lettered
        .advance_watermark_to_infinity()
    )
    options = parse_flags(
        ["--streaming", "--sink=jsonl", f"--output={tmp_path}", "--allowed_lateness=120",
         "--early_firing=10"],
        [], prog="test",
    )
    pipeline = beam.Pipeline(options=options)
    alerts, dead = iot_alerts.IOT_ALERTS.build(pipeline, options, SourceSpec(stream, bounded=False),
                                    streaming=True)
    got_alerts, got_dead = collect(alerts), collect(dead)
    pipeline.run().wait_until_finish()

    panes = sorted((a.DeviceId, a.pane_index, a.pane_timing, round(a.AvgTemp, 6), a.MaxHumidity,
                    a.is_final, a.WindowTime) for a in got_alerts.items)
    end = "2024-01-01T00:01:00Z"
    assert panes == [
        ("a", 0, "EARLY", 35.0, 50.0, False, end),
        ("a", 1, "EARLY", 33.0, 50.0, False, end),
        ("a", 2, "ON_TIME", 33.0, 50.0, False, end),
        ("a", 3, "LATE", round(106 / 3, 6), 50.0, False, end),
        ("a", 4, "LATE", round(106 / 3, 6), 50.0, True, end),  # the window expired: final
        ("b", 2, "LATE", 20.0, 85.0, False, end),  # b's EARLY and ON_TIME panes did not qualify
        ("b", 3, "LATE", 20.0, 85.0, True, end),
        ("c", 0, "EARLY", 31.0, 50.0, False, end),
        ("c", 1, "ON_TIME", 31.0, 50.0, False, end),  # c's LATE pane (avg 25.5) is not emitted
    ]
    assert sorted(d.reason_code for d in got_dead.items) == ["late", "missing_field"]
    late = next(d for d in got_dead.items if d.reason_code == "late")
    assert json.loads(late.payload)["Temperature"] == 99.0
    # The streaming jsonl sink wrote the same alerts.
    assert len(read_jsonl(str(tmp_path / "iot_alerts-*.jsonl"))) == len(panes)


# ---- PostgreSQL: upsert keyed by (DeviceId, WindowStart) --------------------------------

@pytest.mark.integration
def test_postgres_sink_upserts_one_row_per_device_and_window(postgres_dsn, tmp_path):
    import psycopg

    lines = edge_case_lines()
    source = tmp_path / "edge.jsonl"
    source.write_bytes(b"\n".join(lines))
    expected = reference_alerts(lines).alerts
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        # A stale row from an earlier run for a key this run writes: it must be replaced.
        conn.execute(
            'CREATE TABLE alerts ("DeviceId" text NOT NULL, "WindowStart" timestamptz NOT NULL, '
            '"WindowTime" timestamptz NOT NULL, "AvgTemp" double precision NOT NULL, '
            '"MaxHumidity" double precision NOT NULL, pane_timing text, pane_index integer, '
            'is_final boolean, updated_at timestamptz NOT NULL DEFAULT now(), '
            'PRIMARY KEY ("DeviceId", "WindowStart"))'
        )
        conn.execute("INSERT INTO alerts VALUES ('edge-int', %s, %s, 1.0, 1.0)",
                     ("2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"))
    assert iot_alerts.main(["--source=file", f"--input={source}", "--sink=postgres",
                            f"--output={postgres_dsn}", "--output_table=alerts"]) == 0
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            'SELECT "DeviceId", "AvgTemp", "MaxHumidity", '
            'to_char("WindowTime" AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS"Z"\'), '
            'to_char("WindowStart" AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS"Z"\') '
            'FROM alerts ORDER BY "WindowStart", "DeviceId"'
        ).fetchall()
    fields = ["DeviceId", "AvgTemp", "MaxHumidity", "WindowTime", "WindowStart"]
    assert [dict(zip(fields, row, strict=True)) for row in rows] == expected
