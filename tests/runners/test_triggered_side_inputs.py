"""Triggered global-window side inputs on the local streaming runner (runners/local_streaming/
side_inputs.py): available from the first pane, replaced by each later pane, as on
Dataflow and Flink. Beam's bundle runner blocked the main input until the end of the
global window, then failed the singleton view with every pane at once."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream
from apache_beam.transforms import trigger, window

from beam_pipelines.testing import collect
from runners.local_streaming import LocalStreamingRunner
from runners.local_streaming.side_inputs import is_triggered_global

pytestmark = pytest.mark.unit


def _streaming_pipeline() -> beam.Pipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return beam.Pipeline(runner=LocalStreamingRunner(), options=options)


def _both(stream, to: float, tags=("main", "side")):
    for tag in tags:
        stream = stream.advance_watermark_to(to, tag=tag)
    return stream


def test_each_main_element_sees_the_latest_pane_of_a_triggered_side_input():
    stream = test_stream.TestStream(output_tags=["main", "side"]).add_elements(["v1"], tag="side")
    stream = _both(stream, 10).add_elements(["a"], tag="main")
    stream = _both(stream, 20).add_elements(["v2"], tag="side")
    stream = _both(stream, 30).add_elements(["b", "c"], tag="main")
    stream = stream.advance_watermark_to_infinity(tag="main").advance_watermark_to_infinity(tag="side")
    pipeline = _streaming_pipeline()
    streams = pipeline | stream
    side = streams["side"] | "Panes" >> beam.WindowInto(
        window.GlobalWindows(), trigger=trigger.Repeatedly(trigger.AfterCount(1)),
        accumulation_mode=trigger.AccumulationMode.DISCARDING)
    main = streams["main"] | "Global" >> beam.WindowInto(window.GlobalWindows())
    seen = collect(main | beam.Map(lambda x, latest: (x, latest), beam.pvalue.AsSingleton(side)))
    pipeline.run().wait_until_finish()
    assert sorted(seen.items) == [("a", "v1"), ("b", "v2"), ("c", "v2")]


def test_an_untriggered_side_input_keeps_beams_behaviour():
    pipeline = _streaming_pipeline()
    side = pipeline | "Side" >> beam.Create(["s1", "s2"])
    main = pipeline | test_stream.TestStream().add_elements(["a"]).advance_watermark_to_infinity()
    seen = collect(main | beam.Map(lambda x, all_: (x, sorted(all_)), beam.pvalue.AsList(side)))
    pipeline.run().wait_until_finish()
    assert seen.items == [("a", ["s1", "s2"])]
    assert not is_triggered_global(beam.pvalue.AsList(side))
