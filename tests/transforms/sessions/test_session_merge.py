"""The session-merging arithmetic shared by batch and streaming, and batch sessions against
Beam's own merging ``Sessions`` windows."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.transforms import window as beam_window
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines.testing.collect import collect
from transforms.records import UserEvent
from transforms.session_merge import MergeSessionsFn, SessionSet
from transforms.session_windows import SessionConfig, SessionWindowedAggregate, event_timestamp
from transforms.sessions import SessionStatsFn

pytestmark = pytest.mark.unit

COUNT = beam.combiners.CountCombineFn()
S = 1_000_000  # micros per second


def spans(sessions: SessionSet) -> list[tuple[int, int, int]]:
    return [(s.start // S, s.end // S, COUNT.extract_output(s.accumulator)) for s in sessions]


def test_windows_that_only_touch_stay_apart_and_a_bridge_merges_them():
    sessions = SessionSet()
    for second in (0, 10, 40):  # [0,30) [10,40) merge; [40,70) only touches [0,40)
        sessions.add_record(second * S, (second + 30) * S, "e", COUNT)
    assert spans(sessions) == [(0, 40, 2), (40, 70, 1)]
    sessions.add_record(100 * S, 130 * S, "e", COUNT)
    merged = sessions.add_record(39 * S, 69 * S, "e", COUNT)  # overlaps both of the first two
    assert (merged.start // S, merged.end // S) == (0, 70)
    assert spans(sessions) == [(0, 70, 4), (100, 130, 1)]


def test_a_merged_session_continues_the_pane_indices_of_its_parts():
    sessions = SessionSet()
    first = sessions.add_record(0, 30 * S, "e", COUNT)
    first.next_pane, first.was_on_time = 3, True
    second = sessions.add_record(50 * S, 80 * S, "e", COUNT)
    second.next_pane = 1
    merged = sessions.add_record(25 * S, 55 * S, "e", COUNT)
    assert (merged.next_pane, merged.was_on_time, len(sessions)) == (3, True, 1)


def test_partial_sessions_merge_into_the_sessions_of_all_events():
    fn = MergeSessionsFn(COUNT, 30 * S)
    events = [0, 5, 31, 70, 90, 61, 200]
    whole = fn.create_accumulator()
    for second in events:
        fn.add_input(whole, (second * S, "e"))
    left, right = fn.create_accumulator(), fn.create_accumulator()
    for index, second in enumerate(events):
        fn.add_input(left if index % 2 else right, (second * S, "e"))
    expected = [(0, 61 * S, 3), (61 * S, 120 * S, 3), (200 * S, 230 * S, 1)]
    assert fn.extract_output(whole) == expected
    assert fn.extract_output(fn.merge_accumulators([left, right])) == expected


T0 = 1_704_067_200
EVENTS = st.lists(
    st.builds(
        lambda user, ms, page: UserEvent(user, "v", page, T0 + ms / 1000),
        st.sampled_from(["a", "b"]), st.integers(0, 200_000), st.sampled_from(["/", "/x"]),
    ),
    max_size=30,
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS, st.sampled_from([1, 10, 25]))
def test_batch_sessions_equal_beams_own_merging_session_windows(events, gap):
    pipeline = beam.Pipeline()
    timed = (
        pipeline
        | beam.Create([(e.user_id, e) for e in events])
        | beam.Map(lambda kv: beam_window.TimestampedValue(kv, event_timestamp(kv[1].timestamp)))
    )
    ours = timed | SessionWindowedAggregate(SessionStatsFn(), SessionConfig(gap=gap), streaming=False)
    beams = (
        timed
        | "Sessions" >> beam.WindowInto(SessionConfig(gap=gap).window_fn())
        | "Combine" >> beam.CombinePerKey(SessionStatsFn())
        | "Attach" >> beam.Map(
            lambda kv, w=beam.DoFn.WindowParam: (kv[0], float(w.start), float(w.end), kv[1])
        )
    )
    got_ours, got_beams = collect(ours.results), collect(beams)
    pipeline.run().wait_until_finish()
    assert sorted((r.key, r.window_start, r.window_end, r.value) for r in got_ours.items) == sorted(
        got_beams.items
    )
