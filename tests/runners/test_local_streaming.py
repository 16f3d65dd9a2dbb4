"""The local streaming runner: an unbounded source that keeps producing, windows that
fire while it does, TestStream and state/timers still working, counters that add up.
"""

from __future__ import annotations

import re
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines import pageviews
from runners.local_streaming.runner import LocalStreamingRunner
from transforms.io.synthetic.events import SyntheticEvents
from transforms.io.synthetic.read import UnboundedSynthetic
from transforms.parse import ParseUserEvents
from transforms.windowing import WindowConfig, WindowedAggregate

# What the sinks below saw, with the wall-clock time they saw it (in-process runner).
_SEEN: dict[str, list] = {}
_LOCK = threading.Lock()


class _Record(beam.DoFn):
    def __init__(self, name: str) -> None:
        self._name = name

    def process(self, element):
        with _LOCK:
            _SEEN.setdefault(self._name, []).append((time.time(), element))


def _streaming_options() -> PipelineOptions:
    options = PipelineOptions(["--streaming"])
    options.view_as(StandardOptions).streaming = True
    return options


@pytest.mark.integration
def test_unbounded_source_fires_windows_while_it_is_still_producing():
    rate, count = 25.0, 100  # four seconds of events, one-second windows
    generator = SyntheticEvents(seed=5, rate=rate, malformed=0.05, out_of_order=0.1, max_delay=0.5)
    pipeline = beam.Pipeline(runner=LocalStreamingRunner(), options=_streaming_options())
    raw = pipeline | "Source" >> UnboundedSynthetic(generator, count)
    raw | "SeenRaw" >> beam.ParDo(_Record("raw"))
    parsed = raw | "Parse" >> ParseUserEvents("localstreaming")
    counted = (
        parsed.valid
        | beam.Map(lambda e: (e.page, e))
        | WindowedAggregate(beam.combiners.CountCombineFn(),
                            WindowConfig(size=1, early_firing=1), streaming=True,
                            metrics_namespace="localstreaming")
    )
    counted.results | "SeenPanes" >> beam.ParDo(_Record("panes"))
    counted.late | "SeenLate" >> beam.ParDo(_Record("late"))
    started = time.time()  # for the failure message only
    result = pipeline.run()
    result.wait_until_finish()  # the source stops after `count` events

    raw_seen = sorted(t for t, _ in _SEEN["raw"])
    panes = _SEEN["panes"]
    assert len(raw_seen) == count
    # The source paced itself at `rate` events per wall-clock second...
    assert raw_seen[-1] - raw_seen[0] >= (count - 1) / rate - 0.5
    # ...and windows closed (ON_TIME panes) while it was still producing.
    on_time_before_end = [t for t, p in panes if p.pane_timing == "ON_TIME" and t < raw_seen[-1]]
    assert len(on_time_before_end) >= 3, (
        f"windows should fire as the watermark passes them: source ran "
        f"{raw_seen[0] - started:.1f}..{raw_seen[-1] - started:.1f}s, ON_TIME panes at "
        f"{[round(t - started, 1) for t, p in panes if p.pane_timing == 'ON_TIME']}"
    )
    # Every valid event is in exactly one final pane (the watermark never overtook data).
    finals = [p for _, p in panes if p.is_final]
    dead = count - sum(p.value for p in finals)
    assert "late" not in _SEEN
    assert 0 < dead < count * 0.2  # the malformed ones
    # Counters of every bundle add up (Beam's bundle runner kept only the first bundle's).
    from beam_pipelines.skeleton.run import counter_total

    assert counter_total(result, "localstreaming", "events_parsed") == count - dead
    assert counter_total(result, "localstreaming", "events_dead_lettered") == dead


@pytest.mark.integration
def test_pageviews_streaming_cli_prints_panes_as_they_fire(capsys):
    code = pageviews.main(["--streaming", "--synthetic_events=40", "--synthetic_rate=20",
                           "--window_size=1", "--early_firing=1", "--synthetic_malformed=0"])
    captured = capsys.readouterr()
    assert code == 0
    lines = [line for line in captured.out.splitlines() if line.startswith("window_start=")]
    assert any("pane_timing=ON_TIME" in line for line in lines)
    assert sum(int(line.split("count=")[1].split()[0]) for line in lines
               if "is_final=True" in line) == 40
    assert "pageviews: 40 valid records, 0 rejected" in captured.err


@pytest.mark.integration
def test_test_stream_state_and_timers_still_work():
    # TestStream's processing time starts at 0 and the early-firing timer uses the wall
    # clock (as on real runners): move the test clock to "now" first.
    stream = (
        test_stream.TestStream()
        .advance_processing_time(int(time.time()))
        .advance_watermark_to(0)
        .add_elements([TimestampedValue(("a", 1), 1), TimestampedValue(("a", 1), 2)])
        .advance_processing_time(5)
        .add_elements([TimestampedValue(("a", 1), 3)])
        .advance_watermark_to(15)
        .add_elements([TimestampedValue(("a", 1), 4)])  # later than the allowed lateness
        .advance_watermark_to_infinity()
    )
    pipeline = beam.Pipeline(runner=LocalStreamingRunner(), options=_streaming_options())
    counted = (
        pipeline
        | stream
        | WindowedAggregate(beam.combiners.CountCombineFn(),
                            WindowConfig(size=10, early_firing=2), streaming=True)
    )
    counted.results | "SeenTS" >> beam.ParDo(_Record("test_stream"))
    counted.late | "SeenTSLate" >> beam.ParDo(_Record("test_stream_late"))
    pipeline.run().wait_until_finish()
    panes = [(p.pane_timing, p.value) for _, p in _SEEN["test_stream"]]
    assert ("EARLY", 2) in panes
    assert ("ON_TIME", 3) in panes
    assert len(_SEEN["test_stream_late"]) == 1


@pytest.mark.unit
def test_serial_steps_take_their_oldest_bundle_first():
    from apache_beam.runners.direct import executor

    from runners.local_streaming.patches import patch_serial_fifo

    undo = patch_serial_fifo()
    submitted = []

    class _Service:
        def submit(self, work):
            submitted.append(work)

    state = executor._SerialEvaluationState(_Service(), set())
    for work in ("first", "second", "third"):
        state.schedule(work)
    assert submitted == ["first"]  # one at a time
    state.complete("first")
    state.complete("second")
    undo()
    assert submitted == ["first", "second", "third"]  # Beam's own order was first, third, second


@pytest.mark.unit
def test_dofn_specs_are_computed_once_per_class_and_stay_right():
    from apache_beam.transforms import userstate
    from apache_beam.transforms.core import CallableWrapperDoFn

    from runners import introspection
    from transforms.windowing import WindowConfig, _StreamingAggregateFn

    introspection._install_dofn_specs_cache()
    stateful = _StreamingAggregateFn(beam.combiners.CountCombineFn(), WindowConfig(), "ns")
    states, timers = userstate.get_dofn_specs(stateful)
    assert {s.name for s in states} >= {"windows", "watermark_seen"}
    assert {t.name for t in timers} == {"ts-event_time", "ts-early"}  # Beam prefixes timer names
    assert userstate.is_stateful_dofn(stateful)

    def user_fn(element, t=beam.DoFn.TimestampParam):
        return [element]

    assert userstate.get_dofn_specs(CallableWrapperDoFn(user_fn)) == (set(), set())
    assert not userstate.is_stateful_dofn(CallableWrapperDoFn(user_fn))

    entries = len(introspection._SPECS_CACHE)  # another instance, as after Beam's pickle round trip
    again = _StreamingAggregateFn(beam.combiners.CountCombineFn(), WindowConfig(), "x")
    assert userstate.get_dofn_specs(again) == (states, timers)
    assert len(introspection._SPECS_CACHE) == entries


# Lifecycle calls of _Lifecycle copies, in order (in-process runner).
_LIFECYCLE: list[str] = []


class _Lifecycle(beam.DoFn):
    def setup(self):
        _LIFECYCLE.append("setup")

    def start_bundle(self):
        _LIFECYCLE.append("start_bundle")

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        yield element, timestamp.micros // 1_000_000

    def finish_bundle(self):
        _LIFECYCLE.append("finish_bundle")

    def teardown(self):
        _LIFECYCLE.append("teardown")


@pytest.mark.integration
def test_a_step_keeps_its_set_up_dofn_between_bundles_and_tears_it_down_at_the_end():
    """Fix 6: one copy set up once serves every bundle; teardown comes after the run."""
    _LIFECYCLE.clear()
    stream = test_stream.TestStream()
    for i in range(12):  # one bundle each
        stream = stream.add_elements([TimestampedValue(i, 100 + i)])
    stream = stream.advance_watermark_to_infinity()
    pipeline = beam.Pipeline(runner=LocalStreamingRunner(), options=_streaming_options())
    out = pipeline | stream | "Lifecycle" >> beam.ParDo(_Lifecycle())
    out | "SeenLifecycle" >> beam.ParDo(_Record("lifecycle"))
    pipeline.run().wait_until_finish()
    assert sorted(e for _, e in _SEEN["lifecycle"]) == [(i, 100 + i) for i in range(12)]
    assert _LIFECYCLE.count("setup") == 1 and _LIFECYCLE[0] == "setup"
    assert _LIFECYCLE.count("start_bundle") == _LIFECYCLE.count("finish_bundle") >= 12
    assert _LIFECYCLE[-1] == "teardown" and _LIFECYCLE.count("teardown") == 1


@pytest.mark.unit
def test_function_arguments_are_inspected_once_per_function_and_stay_right():
    from apache_beam.transforms import core

    from runners import introspection

    introspection._install_signature_cache()

    def fn(element, t=beam.DoFn.TimestampParam, limit=3):
        return [element]

    first = core.get_function_args_defaults(fn)
    assert first == (["element", "t", "limit"], [beam.DoFn.TimestampParam, 3])
    first[0].append("changed by a caller")  # callers get copies
    assert core.get_function_args_defaults(fn) == (
        ["element", "t", "limit"], [beam.DoFn.TimestampParam, 3])
    bound = _Lifecycle().process  # bound: self is not an argument
    assert core.get_function_args_defaults(bound) == (
        ["element", "timestamp"], [beam.DoFn.TimestampParam])
    assert fn in introspection._ARGUMENTS and _Lifecycle.process in introspection._ARGUMENTS


@pytest.mark.unit
def test_the_executor_takes_the_most_downstream_work_first():
    """Patch downstream_first: deepest step first, first in first out among equals, the
    monitor last."""
    from runners.local_streaming.patches import DownstreamFirstQueue

    pipeline = beam.Pipeline()  # only to build applied transforms; it never runs
    source = pipeline | "Source" >> beam.Create([1])
    parse = source | "Parse" >> beam.Map(lambda x: x)
    count = parse | "Count" >> beam.Map(lambda x: x)
    side = source | "Side" >> beam.Map(lambda x: x)
    steps = {"Source": source.producer, "Parse": parse.producer, "Count": count.producer,
             "Side": side.producer}

    class _Work:
        def __init__(self, name, step=None):
            self.name = name
            if step is not None:
                self._applied_ptransform = step

    tasks = DownstreamFirstQueue()
    for work in (_Work("monitor"), _Work("source", steps["Source"]),
                 _Work("parse-1", steps["Parse"]), _Work("count", steps["Count"]),
                 _Work("side", steps["Side"]), _Work("parse-2", steps["Parse"])):
        tasks.put(work)
    order = [tasks.get_nowait().name for _ in range(6)]
    assert order == ["count", "parse-1", "side", "parse-2", "source", "monitor"]


@pytest.mark.unit
def test_the_checkpoint_watchdog_calls_what_is_due_and_not_what_was_cancelled():
    from runners.local_streaming.sdf import Watchdog

    watchdog = Watchdog()
    called: list[str] = []
    release, done = threading.Event(), threading.Event()
    watchdog.arm(0.0, lambda: release.wait(10))  # holds the watchdog's thread meanwhile
    cancelled = watchdog.arm(0.0, lambda: called.append("cancelled"))
    watchdog.cancel(cancelled)
    watchdog.arm(0.0, lambda: (called.append("due"), done.set()))
    release.set()
    assert done.wait(10)
    assert called == ["due"]  # the cancelled one was due first, and never ran


@pytest.mark.unit
def test_the_patch_list_of_the_docstring_is_the_registry():
    """patches.py's docstring names every patch of PATCHES, in order, and nothing else."""
    from runners.local_streaming import patches

    documented = re.findall(r"^\* ``(\w+)``:", patches.__doc__ or "", re.M)
    assert documented == [patch.name for patch in patches.PATCHES]
    assert all(callable(patch.install) for patch in patches.PATCHES)
    assert len({patch.install for patch in patches.PATCHES}) == len(patches.PATCHES)


@pytest.mark.unit
def test_patches_are_installed_for_a_run_and_undone_after_it():
    from apache_beam.runners.direct import executor, transform_evaluator, watermark_manager

    from runners.local_streaming import patches

    def beam_state():
        return (executor.MetricsContainer,
                executor._SerialEvaluationState._update_currently_evaluating,
                watermark_manager._TransformWatermarks.refresh,
                transform_evaluator._ParDoEvaluator.start_bundle,
                transform_evaluator._ParDoEvaluator.finish_bundle,
                executor._ExecutorService.__init__)

    assert patches._RUNS == 0, "an earlier run was neither waited for nor cancelled"
    before = beam_state()
    pipeline = beam.Pipeline(runner=LocalStreamingRunner(), options=_streaming_options())
    pipeline | beam.Create([1]) | beam.Map(lambda _: beam_state()) | beam.ParDo(_Record("patched"))
    with patches.installed():  # overlapping runs share one installation
        pipeline.run().wait_until_finish()
        assert beam_state() != before  # still installed: this block's run is not over
    (_, during), = _SEEN["patched"]
    assert all(a != b for a, b in zip(during, before, strict=True))
    assert beam_state() == before  # the last run to end put Beam back


_ROUNDS = [0]  # monitor rounds so far (patched in below)


class _AtRound(beam.DoFn):
    """Passes elements on, noting the monitor round each one was processed in."""

    def __init__(self, name: str) -> None:
        self._name = name

    def process(self, element):
        with _LOCK:
            _SEEN.setdefault(self._name, []).append((_ROUNDS[0], element))
        yield element


class _CountBundles(beam.DoFn):
    def start_bundle(self):
        with _LOCK:
            _SEEN.setdefault("bundles_after_filter", []).append(True)

    def process(self, element):
        yield element


@pytest.mark.integration
def test_a_bundle_crosses_the_pipeline_in_one_monitor_round_and_empty_ones_go_nowhere(
        monkeypatch):
    """Patch direct_handoff: each step hands its bundle to the next at once (Beam: one step
    per round of the monitor); a step whose bundle came out empty schedules nothing."""
    from apache_beam.runners.direct import executor

    monitor = executor._ExecutorServiceParallelExecutor._MonitorTask
    original = monitor.call

    def counting_call(self, state_sampler):
        _ROUNDS[0] += 1
        return original(self, state_sampler)

    monkeypatch.setattr(monitor, "call", counting_call)
    for name in ("round_a", "round_c", "bundles_after_filter"):
        _SEEN.pop(name, None)
    stream = test_stream.TestStream()
    for i in range(5):  # one bundle each
        stream = stream.add_elements([TimestampedValue(i, 100 + i)])
    stream = stream.advance_watermark_to_infinity()
    pipeline = beam.Pipeline(runner=LocalStreamingRunner(), options=_streaming_options())
    passed = (pipeline | stream | "A" >> beam.ParDo(_AtRound("round_a"))
              | "B" >> beam.Map(lambda x: x) | "C" >> beam.ParDo(_AtRound("round_c")))
    _ = passed | "DropAll" >> beam.Filter(lambda x: False) | beam.ParDo(_CountBundles())
    pipeline.run().wait_until_finish()
    at_a = {element: rounds for rounds, element in _SEEN["round_a"]}
    at_c = {element: rounds for rounds, element in _SEEN["round_c"]}
    assert sorted(at_a) == sorted(at_c) == list(range(5))
    assert at_a == at_c  # no monitor round between the first step and the third
    assert "bundles_after_filter" not in _SEEN


class _CountSamplerStates(beam.DoFn):
    """Notes how many sampler states exist in the process while each element passes."""

    def process(self, element):
        import gc

        states = sum(1 for o in gc.get_objects() if type(o).__name__ == "ScopedState")
        with _LOCK:
            _SEEN.setdefault("sampler_states", []).append((element, states))
        yield element


@pytest.mark.integration
def test_bundles_do_not_grow_the_state_samplers_and_counters_still_add_up():
    """Patch metrics_containers: one container per step, reset per bundle. The first fix
    made three sampler states per bundle, kept for ever: a leak that made the garbage
    collector's full collections stall a live stream for up to 180 ms."""
    _SEEN.pop("sampler_states", None)
    stream = test_stream.TestStream()
    for i in range(30):  # one bundle each
        stream = stream.add_elements([TimestampedValue(i, 100 + i)])
    stream = stream.advance_watermark_to_infinity()
    pipeline = beam.Pipeline(runner=LocalStreamingRunner(), options=_streaming_options())
    counter = beam.metrics.Metrics.counter("sampler_test", "elements")

    def count(element):
        counter.inc()
        return element

    _ = pipeline | stream | beam.Map(count) | beam.ParDo(_CountSamplerStates())
    result = pipeline.run()
    result.wait_until_finish()
    seen = dict(_SEEN["sampler_states"])
    assert sorted(seen) == list(range(30))
    assert seen[29] == seen[10]  # no new states once every step has run a bundle
    query = result.metrics().query(beam.metrics.MetricsFilter().with_name("elements"))
    assert sum(c.committed for c in query["counters"]) == 30
