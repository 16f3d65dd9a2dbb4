"""Data-quality rules in streaming on Kafka polls (the batched path): the tables' rules
give the same panes, late records and dead letters as the per-record rules."""

from __future__ import annotations

from collections import Counter

import apache_beam as beam
import pytest

from beam_pipelines.pageviews import CountPageViews, CountPageViewTables
from beam_pipelines.testing.collect import collect
from runners.local_streaming.runner import LocalStreamingRunner
from tests.beam_pipelines.pageviews.test_streaming_batches import (
    T0,
    _streaming_options,
    _streams,
    _summary,
    event,
    letter_key,
)
from transforms.parse import ParseUserEventBatches, ParseUserEvents
from transforms.quality import CheckQuality, CheckQualityTables, Matches, OneOf, Range
from transforms.records import UserEvent
from transforms.sinks.dead_letter_sink import each_dead_letter, late_record_to_dead_letter
from transforms.windowing import WindowConfig

pytestmark = pytest.mark.unit

RULES = [OneOf("action", ["page_view", "click"]), Matches("page", r"/[a-z]+"),
         Range("timestamp", max=T0 + 900, name="before_00_15")]


def _run(stream, batched: bool, config: WindowConfig):
    pipeline = beam.Pipeline(runner=LocalStreamingRunner(), options=_streaming_options())
    raw = pipeline | stream
    if batched:
        parsed = raw | ParseUserEventBatches("pageviews")
        checked = parsed.valid | CheckQualityTables(RULES, UserEvent, pipeline="pageviews")
        counted = checked.valid | CountPageViewTables(config)
    else:
        parsed = raw | ParseUserEvents("pageviews")
        checked = parsed.valid | CheckQuality(RULES, pipeline="pageviews", streaming=True)
        counted = checked.valid | CountPageViews(config, streaming=True)
    late = counted.late | beam.Map(late_record_to_dead_letter("pageviews", "window"))
    rejected = collect((parsed.dead_letters, checked.dead_letters) | beam.Flatten()
                       | beam.FlatMap(each_dead_letter))
    panes, late_letters = collect(counted.counts), collect(late)
    pipeline.run().wait_until_finish()
    return panes.items, late_letters.items, rejected.items


def test_rules_on_polls_stream_as_rules_on_records():
    steps = [
        T0,
        [event("/a", T0 + 10), event("/b", T0 + 20, action="scroll"), event("/a b", T0 + 30),
         b"{not json", event("/a", T0 + 310)],
        [event("/b", T0 + 5), event("/c", T0 + 950), event("/a", T0 + 11, action="click")],
        T0 + 400,  # ON_TIME for [00:00, 00:05)
        [event("/a", T0 + 6), event("/B", T0 + 7), event("/a", T0 + 320)],  # /a late
        T0 + 1000,  # [00:00, 00:05) expires
        [event("/a", T0 + 9), event("/b", T0 + 650), event("/c", T0 + 2)],  # too late
    ]
    config = WindowConfig(size=300, allowed_lateness=600)
    as_records, as_batches = _streams(steps)
    r_panes, r_late, r_rejected = _run(as_records, False, config)
    b_panes, b_late, b_rejected = _run(as_batches, True, config)
    r_on_time, r_final, r_late_panes = _summary(r_panes)
    b_on_time, b_final, b_late_panes = _summary(b_panes)
    assert (b_on_time, b_final) == (r_on_time, r_final)
    assert b_late_panes <= r_late_panes  # one LATE pane per batch (as without rules)
    assert Counter(map(letter_key, b_late)) == Counter(map(letter_key, r_late))
    assert Counter(map(letter_key, b_rejected)) == Counter(map(letter_key, r_rejected))
    assert Counter(d.reason_code for d in b_rejected) == {
        "invalid_json": 1, "one_of.action": 1, "matches.page": 2, "before_00_15": 1}
    assert r_final[("2024-01-01T00:00:00Z", "/a")] == 3
