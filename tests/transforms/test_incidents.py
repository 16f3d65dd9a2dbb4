"""TrackIncidents: one trigger per incident, one resolve, in streaming (TestStream) and batch."""

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_stream import TestStream as Stream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.testing.collect import collect
from transforms.base.errors import ConfigError
from transforms.incidents import (
    IncidentEvent,
    IncidentState,
    IncidentTracker,
    TrackIncidents,
    window_of,
)
from transforms.records import IoTAlert
from transforms.windowing import WindowedResult

pytestmark = pytest.mark.unit

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
W = 60


def result(service, window, ratio, pane_timing="ON_TIME", pane_index=0):
    start = T0 + window * W
    return WindowedResult(service, float(start), float(start + W), ratio, pane_timing, pane_index,
                          pane_timing != "EARLY")


def at_end(record):
    return TimestampedValue(record, record.window_end - 0.000001)


def track(stream_steps, *, quiet_period=None, streaming=True):
    """Run TrackIncidents over TestStream steps (streaming) or the records (batch)."""
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = streaming
    pipeline = beam.Pipeline(options=options)
    transform = TrackIncidents(lambda r: r.key, lambda r: r.value > 0.1,
                               quiet_period=quiet_period, streaming=streaming, pipeline="errors")
    if streaming:
        stream = Stream()
        for kind, arg in stream_steps:
            stream = stream.add_elements([at_end(r) for r in arg]) if kind == "add" \
                else stream.advance_watermark_to(arg)
        source = pipeline | stream.advance_watermark_to_infinity()
    else:
        records = [r for kind, arg in stream_steps if kind == "add" for r in arg]
        source = pipeline | beam.Create(records) | beam.Map(at_end)
    incidents = source | transform
    events, dead = collect(incidents.events), collect(incidents.dead_letters)
    pipeline.run().wait_until_finish()
    assert dead.items == []
    return events.items


def brief(events):
    return [(e.action, e.key, e.reason, e.incident_id, e.window_start[11:19]) for e in events]


def add(*records):
    return ("add", list(records))


def watermark(window):
    return ("wm", T0 + window * W)


BOTH = pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "batch"])


@BOTH
def test_breach_trigger_still_breaching_nothing_recovered_resolve(streaming):
    steps = [
        add(result("api", 0, 0.5)), watermark(1),
        add(result("api", 1, 0.6)), watermark(2),  # still breaching: nothing
        add(result("api", 2, 0.01)), watermark(3),  # recovered: resolve
    ]
    assert brief(track(steps, streaming=streaming)) == [
        ("trigger", "api", "breach", "errors:api:2024-01-01T00:00:00Z", "00:00:00"),
        ("resolve", "api", "recovered", "errors:api:2024-01-01T00:00:00Z", "00:02:00"),
    ]


@BOTH
def test_breach_again_opens_a_new_incident_with_a_new_id(streaming):
    steps = [
        add(result("api", 0, 0.5)), watermark(1),
        add(result("api", 1, 0.0)), watermark(2),
        add(result("api", 2, 0.3)), watermark(3),
        add(result("api", 3, 0.0)), watermark(4),
    ]
    events = track(steps, streaming=streaming)
    assert [(e.action, e.incident_id) for e in events] == [
        ("trigger", "errors:api:2024-01-01T00:00:00Z"),
        ("resolve", "errors:api:2024-01-01T00:00:00Z"),
        ("trigger", "errors:api:2024-01-01T00:02:00Z"),
        ("resolve", "errors:api:2024-01-01T00:02:00Z"),
    ]


@BOTH
def test_quiet_period_resolves_when_a_key_goes_silent(streaming):
    steps = [
        add(result("db", 0, 0.9)), watermark(1),
        add(result("db", 1, 0.9)), watermark(2),
        watermark(10),  # no data for db: 120 s after its last window end the incident resolves
        add(result("db", 10, 0.9)), watermark(11),  # breaching again: a new incident
    ]
    events = track(steps, quiet_period=120, streaming=streaming)
    assert [(e.action, e.reason, e.incident_id[-9:-1], e.at[11:19]) for e in events] == [
        ("trigger", "breach", "00:00:00", "00:01:00"),
        ("resolve", "quiet_period", "00:00:00", "00:04:00"),  # last window ends 00:02 + 120 s
        ("trigger", "breach", "00:10:00", "00:11:00"),
        ("resolve", "quiet_period", "00:10:00", "00:13:00"),  # the end of input expires it
    ]
    assert events[1].record == result("db", 1, 0.9)  # the last breaching result


@BOTH
def test_panes_of_the_same_window_never_duplicate(streaming):
    steps = [
        add(result("api", 0, 0.2, "EARLY", 0)),
        add(result("api", 0, 0.3, "EARLY", 1)),
        add(result("api", 0, 0.05, "ON_TIME", 2)),  # same window stops breaching: no resolve
        add(result("api", 0, 0.4, "LATE", 3)),  # and breaches again: no second trigger
        watermark(2),
        add(result("api", 1, 0.0, "EARLY", 0)),  # a later window is clean: resolve
        add(result("api", 1, 0.0, "ON_TIME", 1)),  # its next pane: nothing more
        watermark(3),
    ]
    assert [(e.action, e.reason) for e in track(steps, streaming=streaming)] == [
        ("trigger", "breach"), ("resolve", "recovered"),
    ]


@BOTH
def test_keys_are_independent(streaming):
    steps = [
        add(result("api", 0, 0.5), result("db", 0, 0.0)), watermark(1),
        add(result("api", 1, 0.0), result("db", 1, 0.5)), watermark(2),
    ]
    assert sorted(brief(track(steps, streaming=streaming))) == [
        ("resolve", "api", "recovered", "errors:api:2024-01-01T00:00:00Z", "00:01:00"),
        ("trigger", "api", "breach", "errors:api:2024-01-01T00:00:00Z", "00:00:00"),
        ("trigger", "db", "breach", "errors:db:2024-01-01T00:01:00Z", "00:01:00"),
    ]


def test_a_stale_result_of_an_older_window_changes_nothing():
    tracker = IncidentTracker("p", quiet_period=None)
    state = IncidentState()
    first = tracker.observe(state, "k", "r1", T0 + 60, T0 + 120, True)
    assert first is not None and first.action == "trigger"
    assert tracker.observe(state, "k", "r0", T0, T0 + 60, False) is None  # older window
    assert state.open is not None
    resolved = tracker.observe(state, "k", "r2", T0 + 120, T0 + 180, False)
    assert resolved is not None and resolved.record == "r2"


def test_iot_alerts_resolve_by_quiet_period_and_window_of_reads_their_fields():
    alert = IoTAlert("dev-1", 31.0, 70.0, "2024-01-01T00:01:00Z", "2024-01-01T00:00:00Z")
    assert window_of(alert) == (T0, T0 + 60)
    assert window_of({"window_start": T0, "window_end": T0 + 60.0}) == (T0, T0 + 60)
    options = PipelineOptions()
    pipeline = beam.Pipeline(options=options)
    incidents = (
        pipeline
        | beam.Create([alert]) | beam.Map(lambda a: TimestampedValue(a, T0 + 60 - 0.000001))
        | TrackIncidents(lambda a: a.DeviceId, quiet_period=120, streaming=False,
                         pipeline="iot_alerts")
    )
    got = collect(incidents.events)
    pipeline.run().wait_until_finish()
    assert [(e.action, e.reason, e.incident_id) for e in got.items] == [
        ("trigger", "breach", "iot_alerts:dev-1:2024-01-01T00:00:00Z"),
        ("resolve", "quiet_period", "iot_alerts:dev-1:2024-01-01T00:00:00Z"),
    ]
    assert isinstance(got.items[0], IncidentEvent)


def test_results_without_a_window_are_dead_lettered():
    pipeline = beam.Pipeline()
    incidents = pipeline | beam.Create([{"service": "x"}]) | TrackIncidents(
        lambda r: r["service"], streaming=False)
    dead = collect(incidents.dead_letters)
    pipeline.run().wait_until_finish()
    [letter] = dead.items
    assert letter.reason_code == "missing_field" and "no window" in letter.reason


def test_arguments_are_checked():
    with pytest.raises(ConfigError, match="quiet_period"):
        TrackIncidents(str, quiet_period=0, streaming=True)
    with pytest.raises(ConfigError, match="key_fn"):
        TrackIncidents("service", streaming=True)
