"""Session windows in streaming, driven deterministically by TestStream: merging, closing at
the watermark, early panes, allowed lateness and late dead letters.

As in tests/foundation/test_streaming_semantics.py, early panes use wall-clock timers, so
a test that needs them first moves TestStream's processing clock to "now"."""

from __future__ import annotations

import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream  # not by name: pytest would collect TestStream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.testing.collect import collect
from transforms.base.errors import ConfigError
from transforms.records import UserEvent
from transforms.session_windows import SessionConfig, event_timestamp
from transforms.sessions import Sessionize
from transforms.sinks.dead_letter_sink import late_record_to_dead_letter

pytestmark = pytest.mark.unit

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z


def ev(user, page, offset):
    """An event as a parser emits it: stamped with its whole second."""
    seconds = T0 + offset
    return TimestampedValue(UserEvent(user, "page_view", page, float(seconds)), int(seconds))


def run_stream(stream: test_stream.TestStream, config: SessionConfig):
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    out = pipeline | stream | Sessionize(config, streaming=True)
    panes, late = collect(out.sessions), collect(out.late)
    pipeline.run().wait_until_finish()
    return panes.items, late.items


def simple(panes):
    """(user, start offset, end offset, events, first, last, timing, index, final)."""
    def offset(iso):
        return round(event_timestamp(_seconds(iso)).micros / 1e6 - T0, 6)

    return [
        (p.user_id, offset(p.session_start), offset(p.session_end), p.events, p.first_page,
         p.last_page, p.pane_timing, p.pane_index, p.is_final)
        for p in panes
    ]


def _seconds(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_sessions_close_when_the_watermark_passes_their_end():
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(T0)
        # u: 0 and 29 are one session (29 < gap); 59 is exactly the gap after 29: a new one.
        .add_elements([ev("u", "/a", 0), ev("u", "/b", 29), ev("u", "/c", 59), ev("v", "/a", 5)])
        .advance_watermark_to(T0 + 50)  # v's session [5, 35) has closed; u's [0, 59) has not
        .add_elements([ev("u", "/d", 50)])  # still joins u's first session (and its second)
        # v's session [5, 35) closed, so an event whose window ends before 35 is dead-lettered.
        # (A key learns the watermark from its own timers: it knows 35 has passed, not 50.)
        .add_elements([ev("v", "/b", 3)])
        .advance_watermark_to_infinity()
    )
    panes, late = run_stream(stream, SessionConfig(gap=30))
    assert sorted(simple(panes)) == [
        # 50 bridged [0, 59) and [59, 89): one session of four events.
        ("u", 0, 59, 4, "/a", "/c", "ON_TIME", 0, True),
        ("v", 5, 5, 1, "/a", "/a", "ON_TIME", 0, True),
    ]
    assert [(key, event.page) for key, event, *_ in late] == [("v", "/b")]


def test_a_late_event_within_the_lateness_merges_two_closed_sessions_into_a_late_pane():
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(T0)
        .add_elements([ev("u", "/a", 0), ev("u", "/b", 10), ev("u", "/c", 60)])
        .advance_watermark_to(T0 + 100)  # both sessions close: [0, 40) and [60, 90)
        .add_elements([ev("u", "/x", 35)])  # late, within 600 s: bridges them
        .advance_watermark_to(T0 + 90 + 600)  # the merged session expires: a closing pane
        .add_elements([ev("u", "/y", 50)])  # beyond the lateness: dead-lettered
        .advance_watermark_to_infinity()
    )
    panes, late = run_stream(stream, SessionConfig(gap=30, allowed_lateness=600))
    assert simple(panes) == [
        ("u", 0, 10, 2, "/a", "/b", "ON_TIME", 0, False),
        ("u", 60, 60, 1, "/c", "/c", "ON_TIME", 0, False),
        # The merged session's state combines its parts: 2 + 1 + the bridging event.
        ("u", 0, 60, 4, "/a", "/c", "LATE", 1, False),
        ("u", 0, 60, 4, "/a", "/c", "LATE", 2, True),  # the closing pane, at expiry
    ]
    assert [(key, event.page, start - T0, end - T0) for key, event, _, start, end in late] == [
        ("u", "/y", 50, 80),
    ]
    letter = late_record_to_dead_letter("sessions", "Sessionize")(late[0])
    assert letter.reason_code == "late" and '"page": "/y"' in letter.payload


def test_early_panes_as_a_session_grows_and_merges():
    now = int(time.time())
    stream = (
        test_stream.TestStream()
        .advance_processing_time(now)
        .advance_watermark_to(T0)
        .add_elements([ev("u", "/a", 0)])
        .advance_processing_time(120)  # EARLY: 1 event
        .add_elements([ev("u", "/b", 20)])
        .advance_processing_time(120)  # EARLY: 2 events, pane 1
        .add_elements([ev("u", "/c", 70)])  # a second session [70, 100)
        .advance_processing_time(120)  # EARLY for it only (the first did not change)
        .add_elements([ev("u", "/d", 48)])  # [48, 78) bridges [0, 50) and [70, 100)
        .advance_processing_time(120)  # EARLY for the merged session: 4 events, pane 2
        .advance_watermark_to_infinity()  # ON_TIME, final
    )
    panes, late = run_stream(stream, SessionConfig(gap=30, early_firing=60))
    assert simple(panes) == [
        ("u", 0, 0, 1, "/a", "/a", "EARLY", 0, False),
        ("u", 0, 20, 2, "/a", "/b", "EARLY", 1, False),
        ("u", 70, 70, 1, "/c", "/c", "EARLY", 0, False),
        ("u", 0, 70, 4, "/a", "/c", "EARLY", 2, False),
        ("u", 0, 70, 4, "/a", "/c", "ON_TIME", 3, True),
    ]
    assert late == []


def test_users_are_keyed_by_the_ids_string_form_and_times_are_exact():
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(T0)
        .add_elements([
            TimestampedValue(UserEvent(123, "v", "/a", T0 + 10.7), T0 + 10),  # type: ignore[arg-type]
            TimestampedValue(UserEvent("123", "v", "/b", T0 + 40.2), T0 + 40),
        ])
        .advance_watermark_to_infinity()
    )
    panes, _ = run_stream(stream, SessionConfig(gap=30))
    # 40.2 - 10.7 = 29.5 < 30: one session, although the whole seconds are 30 apart.
    assert [(p.user_id, p.events, p.duration_seconds) for p in panes] == [("123", 2, 29.5)]
    assert panes[0].session_start == "2024-01-01T00:00:10.7Z"


def test_session_config_names_the_flag():
    with pytest.raises(ConfigError, match="--session_gap"):
        SessionConfig(gap=0)
    with pytest.raises(ConfigError, match="--allowed_lateness"):
        SessionConfig(gap=10, allowed_lateness=-1)
    with pytest.raises(ConfigError, match="--early_firing"):
        SessionConfig(gap=10, early_firing=0)


class _State:
    def __init__(self, value=None):
        self.value = value

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


class _Timer:
    def __init__(self):
        self.set_to = []

    def set(self, timestamp):
        self.set_to.append(timestamp)


def test_only_the_armed_early_deadline_fires_and_a_stale_firing_rearms_it():
    from apache_beam.utils.timestamp import Timestamp

    from transforms.windowing import arm_early_timer, early_firing_due

    deadline, timer = _State(), _Timer()
    arm_early_timer(60, deadline, timer)
    arm_early_timer(60, deadline, timer)  # already armed: not moved
    assert len(timer.set_to) == 1
    armed = timer.set_to[0]
    assert not early_firing_due(Timestamp(micros=armed.micros - 1), deadline, timer)
    assert deadline.read() == armed.micros and timer.set_to[-1] == armed
    assert early_firing_due(armed, deadline, timer)
    assert deadline.read() is None
    assert not early_firing_due(armed, deadline, timer)  # nothing armed any more
