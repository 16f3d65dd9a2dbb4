"""Streaming semantics of the windowed page-view count, driven deterministically by TestStream.

Processing time in TestStream starts at 0; the early-firing timer uses wall-clock time
(as on real runners), so each test first moves the test clock to "now" and then
advances it by more than --early_firing.
"""

import time

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream  # not by name: pytest would collect TestStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.pageviews import CountPageViews
from beam_pipelines.testing.collect import collect
from transforms.base.errors import ConfigError
from transforms.io.synthetic.events import SyntheticEvents
from transforms.records import UserEvent
from transforms.windowing import WindowConfig, _CountLate

pytestmark = pytest.mark.unit

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z, a window boundary for 300 s windows


def ev(page, seconds):
    return TimestampedValue(UserEvent("u", "page_view", page, float(seconds)), seconds)


def run_stream(stream: test_stream.TestStream, config: WindowConfig):
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    pipeline = beam.Pipeline(options=options)
    counted = pipeline | stream | CountPageViews(config, streaming=True)
    panes, late = collect(counted.counts), collect(counted.late)
    pipeline.run().wait_until_finish()
    return panes.items, late.items


def simplify(panes):
    return [(p.window_start[11:19], p.page, p.count, p.pane_timing, p.pane_index, p.is_final) for p in panes]


def test_on_time_counts_and_out_of_order_events():
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(T0)
        .add_elements([ev("/a", T0 + 10), ev("/a", T0 + 310), ev("/b", T0 + 20)])
        .add_elements([ev("/a", T0 + 299)])  # out of order, still in the first window
        .advance_watermark_to(T0 + 600)
        .advance_watermark_to_infinity()
    )
    panes, late = run_stream(stream, WindowConfig(size=300))
    assert sorted(simplify(panes)) == [
        ("00:00:00", "/a", 2, "ON_TIME", 0, True),
        ("00:00:00", "/b", 1, "ON_TIME", 0, True),
        ("00:05:00", "/a", 1, "ON_TIME", 0, True),
    ]
    assert late == []


def test_early_panes_accumulate_like_spark_update_mode():
    now = int(time.time())
    stream = (
        test_stream.TestStream()
        .advance_processing_time(now)
        .advance_watermark_to(T0)
        .add_elements([ev("/a", T0 + 1), ev("/a", T0 + 2)])
        .advance_processing_time(120)  # > --early_firing: an EARLY pane with 2
        .add_elements([ev("/a", T0 + 3)])
        .advance_processing_time(120)  # another EARLY pane, accumulating: 3
        .advance_watermark_to(T0 + 300)  # the window closes: ON_TIME with 3
        .advance_watermark_to_infinity()
    )
    panes, _ = run_stream(stream, WindowConfig(size=300, early_firing=60))
    assert simplify(panes) == [
        ("00:00:00", "/a", 2, "EARLY", 0, False),
        ("00:00:00", "/a", 3, "EARLY", 1, False),
        ("00:00:00", "/a", 3, "ON_TIME", 2, True),
    ]


def test_sub_second_early_firing_arms_its_timer_that_far_ahead(monkeypatch):
    """--early_firing=0.1: the EARLY deadline is 0.1 s of processing time away, not 1 s.

    (TestStream's processing time is not the wall clock the timer is armed from, so the
    deadline is checked here rather than through a pipeline.)"""
    from transforms import windowing

    class Cell:
        value = None

        def read(self):
            return self.value

        def write(self, value):
            self.value = value

        def set(self, value):
            self.value = value

    monkeypatch.setattr(windowing.Timestamp, "now", classmethod(lambda cls: Timestamp(100)))
    deadline, timer = Cell(), Cell()
    windowing.arm_early_timer(0.1, deadline, timer)
    assert timer.value == Timestamp(100.1) and deadline.value == Timestamp(100.1).micros
    windowing.arm_early_timer(0.1, deadline, Cell())  # armed already: kept
    assert deadline.value == Timestamp(100.1).micros


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "1"])
def test_early_firing_must_be_a_positive_number_of_seconds(bad):
    with pytest.raises(ConfigError, match="--early_firing: expected a number of seconds > 0"):
        WindowConfig(size=300, early_firing=bad)


def test_late_data_inside_lateness_updates_and_later_data_is_dead_lettered():
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(T0)
        .add_elements([ev("/a", T0 + 5)])
        .advance_watermark_to(T0 + 400)  # ON_TIME pane for [00:00, 00:05) with 1
        .add_elements([ev("/a", T0 + 6)])  # late but within 600 s: LATE pane with 2
        .advance_watermark_to(T0 + 300 + 600 + 1)  # the window expires
        .add_elements([ev("/a", T0 + 7)])  # too late: dropped, counted, dead-lettered
        .advance_watermark_to_infinity()
    )
    panes, late = run_stream(stream, WindowConfig(size=300, allowed_lateness=600))
    assert simplify(panes) == [
        ("00:00:00", "/a", 1, "ON_TIME", 0, False),
        ("00:00:00", "/a", 2, "LATE", 1, False),
        ("00:00:00", "/a", 2, "LATE", 2, True),  # the window expired: its final value
    ]
    assert [(key, record.timestamp) for key, record, *_ in late] == [("/a", T0 + 7)]


def test_the_last_pane_is_final_when_the_window_expires():
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(T0)
        .add_elements([ev("/a", T0 + 5), ev("/b", T0 + 6)])
        .advance_watermark_to(T0 + 310)  # ON_TIME panes: not final, late data may come
        .advance_watermark_to(T0 + 300 + 61)  # the window expires: final panes
        .add_elements([ev("/a", T0 + 400)])  # the next window
        .advance_watermark_to_infinity()  # the end of the stream closes it too
    )
    panes, _ = run_stream(stream, WindowConfig(size=300, allowed_lateness=60))
    assert sorted(simplify(panes), key=lambda pane: pane[:2] + pane[4:5]) == [
        ("00:00:00", "/a", 1, "ON_TIME", 0, False),
        ("00:00:00", "/a", 1, "LATE", 1, True),
        ("00:00:00", "/b", 1, "ON_TIME", 0, False),
        ("00:00:00", "/b", 1, "LATE", 1, True),
        ("00:05:00", "/a", 1, "ON_TIME", 0, False),
        ("00:05:00", "/a", 1, "LATE", 1, True),
    ]
    # Without allowed lateness the ON_TIME pane is the last one, and says so.
    stream = (test_stream.TestStream().advance_watermark_to(T0).add_elements([ev("/a", T0 + 5)])
              .advance_watermark_to_infinity())
    panes, _ = run_stream(stream, WindowConfig(size=300))
    assert simplify(panes) == [("00:00:00", "/a", 1, "ON_TIME", 0, True)]


def test_too_late_records_are_counted_in_a_metric():
    # The counting DoFn on its own: the bundle-based DirectRunner that runs TestStream
    # loses metric updates of bundles that follow timer firings (a Beam bug), so the
    # metric is checked on the FnApiRunner, where metrics are reliable.
    pipeline = beam.Pipeline()
    late = [("/a", UserEvent("u", "v", "/a", 1.0), 1.0, 0.0, 300.0)] * 3
    pipeline | beam.Create(late) | beam.ParDo(_CountLate("pageviews"))
    result = pipeline.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_name("late_events_dropped"))["counters"]
    assert sum(c.committed for c in found) == 3


def test_sliding_windows_count_an_event_in_each_window():
    stream = (
        test_stream.TestStream()
        .advance_watermark_to(T0)
        .add_elements([ev("/a", T0 + 30)])
        .advance_watermark_to_infinity()
    )
    panes, _ = run_stream(stream, WindowConfig(size=120, period=60))
    assert sorted(p.window_start for p in panes) == ["2023-12-31T23:59:00Z", "2024-01-01T00:00:00Z"]
    assert {p.count for p in panes} == {1}


def test_streaming_and_batch_paths_give_the_same_final_counts():
    generator = SyntheticEvents(seed=7, rate=2.0, out_of_order=0.2, max_delay=100.0)
    events = [
        TimestampedValue(
            UserEvent(e["user_id"], e["action"], e["page"], e["timestamp"]), int(e["timestamp"])
        )
        for e in generator.events(600)
    ]
    config = WindowConfig(size=60)

    stream = test_stream.TestStream().advance_watermark_to(events[0].timestamp - 200)
    for start in range(0, len(events), 50):
        chunk = events[start : start + 50]
        stream = stream.add_elements(chunk)
        # The watermark trails the newest event by more than any event is out of order.
        stream = stream.advance_watermark_to(max(e.timestamp for e in chunk) - 150)
    panes, late = run_stream(stream.advance_watermark_to_infinity(), config)
    final = {(p.window_start, p.page): p.count for p in panes if p.pane_timing == "ON_TIME"}
    assert late == []

    batch = beam.Pipeline()
    counted = batch | beam.Create(events) | CountPageViews(config, streaming=False)
    got = collect(counted.counts)
    batch.run().wait_until_finish()
    expected = {(c.window_start, c.page): c.count for c in got.items}
    assert final == expected
    assert sum(expected.values()) == len(events)


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


def test_a_stale_early_timer_firing_emits_nothing_and_keeps_the_deadline():
    """Beam's bundle-based runner re-delivers an expired processing-time timer while its
    callback runs; only the armed deadline may fire an EARLY pane."""
    from apache_beam.utils.timestamp import Timestamp

    from transforms.windowing import WindowConfig, _StreamingAggregateFn

    fn = _StreamingAggregateFn(beam.combiners.CountCombineFn(), WindowConfig(early_firing=1), "t")
    fn.setup()
    windows, watermark, key, deadline = _State(), _State(), _State(), _State()
    event_timer, early_timer = _Timer(), _Timer()
    out = list(fn.process(("/a", "event"), Timestamp(seconds=1_700_000_000), windows, watermark,
                          key, deadline, event_timer, early_timer))
    assert out == [] and len(early_timer.set_to) == 1
    armed = early_timer.set_to[0]
    assert deadline.read() == armed.micros

    stale = list(fn.on_early(Timestamp(micros=armed.micros - 1_000_000), windows, key, deadline,
                             early_timer))
    assert stale == [] and deadline.read() == armed.micros
    assert early_timer.set_to[-1] == armed  # set again, in case the runner dropped it

    due = list(fn.on_early(armed, windows, key, deadline, early_timer))
    assert [(r.pane_timing, r.value) for r in due] == [("EARLY", 1)]
    assert deadline.read() is None  # the next record arms the next pane
