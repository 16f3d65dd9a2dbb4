"""Sessions against a plain-Python reference: the combiner on its own, batch sessions over
random events (property tests), and streaming with in-order input equal to batch."""

from __future__ import annotations

import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream  # not by name: pytest would collect TestStream
from apache_beam.transforms.window import TimestampedValue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines.testing.collect import collect
from beam_pipelines.testing.sessions import reference_sessions as reference
from transforms.io.synthetic.events import SyntheticEvents
from transforms.records import UserEvent, utc_iso
from transforms.session_windows import SessionConfig, event_micros
from transforms.sessions import Sessionize, SessionStatsFn

pytestmark = pytest.mark.unit

T0 = 1_704_067_200


def reference_sessions(events, gap: int) -> list[tuple]:
    """The plain-Python reference (beam_pipelines.testing.sessions) over UserEvents, as
    UserSession tuples."""
    timed = [(str(e.user_id), event_micros(e.timestamp), e.page) for e in events]
    return sorted(_as_row(s) for s in reference(timed, gap))


def _as_row(s) -> tuple:
    return (s.user_id, utc_iso(s.start / 1e6), utc_iso(s.end / 1e6), s.events,
            s.distinct_pages, s.first_page, s.last_page, s.duration_seconds)


def as_tuples(sessions) -> list[tuple]:
    return sorted(tuple(s)[:8] for s in sessions)


def batch_sessions(events, gap: int):
    pipeline = beam.Pipeline()
    out = pipeline | beam.Create(events) | Sessionize(SessionConfig(gap=gap), streaming=False)
    got = collect(out.sessions)
    pipeline.run().wait_until_finish()
    return got.items


USERS = st.sampled_from([1, "1", 2, "u3", "ü"])  # 1 and "1" are one user
PAGES = st.sampled_from(["/", "/a", "/b", "/checkout"])
# Whole seconds make exact gaps (and ties) likely; milliseconds make near-gaps.
OFFSETS = st.one_of(st.integers(0, 400), st.integers(0, 400_000).map(lambda ms: ms / 1000))
EVENTS = st.lists(
    st.builds(lambda u, p, o: UserEvent(u, "page_view", p, T0 + o), USERS, PAGES, OFFSETS),
    min_size=1, max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.randoms(use_true_random=False))
def test_the_combiner_gives_the_same_stats_in_any_order_and_grouping(events, rnd):
    """One session of all events, added in a random order into random partial
    accumulators merged in a random order, equals the reference summary."""
    fn = SessionStatsFn()
    shuffled = list(events)
    rnd.shuffle(shuffled)
    parts = [fn.create_accumulator() for _ in range(rnd.randint(1, 4))]
    for event in shuffled:
        index = rnd.randrange(len(parts))
        parts[index] = fn.add_input(parts[index], event)
    rnd.shuffle(parts)
    stats = fn.extract_output(fn.merge_accumulators(parts))
    one_session = reference([("", event_micros(e.timestamp), e.page) for e in events], 10**6)
    expected = _as_row(one_session[0])[1:]
    got = (utc_iso(stats.session_start), utc_iso(stats.session_end), stats.events,
           stats.distinct_pages, stats.first_page, stats.last_page, stats.duration_seconds)
    assert got == expected


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EVENTS, st.sampled_from([1, 5, 30, 90]))
def test_batch_sessions_equal_the_reference_on_random_events(events, gap):
    assert as_tuples(batch_sessions(events, gap)) == reference_sessions(events, gap)


def test_streaming_with_in_order_input_equals_batch_final_sessions():
    generator = SyntheticEvents(seed=11, rate=2.0, users=20)
    events = [
        UserEvent(e["user_id"], e["action"], e["page"], e["timestamp"])
        for e in generator.events(500)
    ]
    events.sort(key=lambda e: e.timestamp)
    gap = 30
    watermark = int(events[0].timestamp) - 1
    stream = test_stream.TestStream().advance_watermark_to(watermark)
    rnd = random.Random(3)
    position = 0
    while position < len(events):
        chunk = events[position : position + rnd.randint(1, 40)]
        position += len(chunk)
        stream = stream.add_elements([TimestampedValue(e, int(e.timestamp)) for e in chunk])
        if int(chunk[-1].timestamp) > watermark:  # in order: nothing is ever late
            watermark = int(chunk[-1].timestamp)
            stream = stream.advance_watermark_to(watermark)
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    out = pipeline | stream.advance_watermark_to_infinity() | Sessionize(
        SessionConfig(gap=gap), streaming=True
    )
    panes, late = collect(out.sessions), collect(out.late)
    pipeline.run().wait_until_finish()

    assert late.items == []
    assert {(p.pane_timing, p.pane_index, p.is_final) for p in panes.items} == {("ON_TIME", 0, True)}
    batch = as_tuples(batch_sessions(events, gap))
    assert as_tuples(panes.items) == batch == reference_sessions(events, gap)
    assert len(batch) > 40  # many users with several sessions each


def run_out_of_order(events, gap: int, rnd: random.Random, delay: int = 20):
    """Events arrive up to ``delay`` seconds after their time, and the watermark runs
    ``delay / 2`` behind the newest arrival, so some events are late (LATE panes, merges
    into closed sessions) but none beyond the allowed lateness (``delay``)."""
    arrivals = sorted(((e.timestamp + rnd.uniform(0, delay), i) for i, e in enumerate(events)))
    watermark = T0 - delay
    stream = test_stream.TestStream().advance_watermark_to(watermark)
    position = 0
    while position < len(arrivals):
        chunk = arrivals[position : position + rnd.randint(1, 6)]
        position += len(chunk)
        stream = stream.add_elements(
            [TimestampedValue(events[i], int(events[i].timestamp)) for _, i in chunk]
        )
        ahead = int(chunk[-1][0] - delay / 2)
        if ahead > watermark:
            watermark = ahead
            stream = stream.advance_watermark_to(watermark)
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    out = pipeline | stream.advance_watermark_to_infinity() | Sessionize(
        SessionConfig(gap=gap, allowed_lateness=delay), streaming=True
    )
    panes, late = collect(out.sessions), collect(out.late)
    pipeline.run().wait_until_finish()
    assert late.items == []
    return panes.items


DENSE_EVENTS = st.lists(
    st.builds(
        lambda u, p, ms: UserEvent(u, "page_view", p, T0 + ms / 1000),
        st.sampled_from(["1", "2"]), PAGES, st.integers(0, 120_000),
    ),
    min_size=1, max_size=40,
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DENSE_EVENTS, st.sampled_from([5, 30]), st.randoms(use_true_random=False))
def test_streaming_out_of_order_within_the_lateness_ends_with_the_batch_sessions(events, gap, rnd):
    """The final pane of every session that survives equals the batch answer; sessions
    that merged into another never get a final pane."""
    panes = run_out_of_order(events, gap, rnd)
    assert as_tuples(p for p in panes if p.is_final) == reference_sessions(events, gap)


def test_late_events_merge_into_closed_sessions_and_the_final_panes_equal_batch():
    generator = SyntheticEvents(seed=5, rate=1.0, users=8)
    events = [
        UserEvent(e["user_id"], e["action"], e["page"], e["timestamp"])
        for e in generator.events(200)
    ]
    panes = run_out_of_order(events, 12, random.Random(9))
    assert as_tuples(p for p in panes if p.is_final) == reference_sessions(events, 12)
    # Late events did arrive after their sessions had fired ON_TIME, and updated them
    # (LATE panes of sessions that grew or merged; their earlier rows are superseded):
    assert any(p.pane_timing == "LATE" and not p.is_final for p in panes)
    final = {(p.user_id, p.session_start) for p in panes if p.is_final}
    assert any((p.user_id, p.session_start) not in final or p.pane_index > 1 for p in panes)
