"""The DaskRunner's pieces without a cluster: how splittable DoFns run (split, spread by
size, residuals processed to the end, bundles finalized), and every refusal: one line
naming the runner and the reason, before anything connects to a scheduler.

A refusal must come before the client connects: the runs below point
``--dask_client_address`` at a port where nothing listens, so reaching the connection
would give a different error.
"""

from __future__ import annotations

import apache_beam as beam
import dask
import dask.bag as db
import pytest
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_stream
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.timestamp import Duration

from beam_pipelines import pageviews
from beam_pipelines.testing.servers import free_port
from runners.dask_bundles import SplittableBundle, Work, _deal, from_values, redistribute
from runners.dask_cluster import DaskClusterError, cluster_failure, step_of_task
from transforms.base.errors import ConfigError, NotAvailableError
from transforms.io.synthetic.read import UnboundedSynthetic

pytestmark = pytest.mark.unit


# ---- splittable DoFns -------------------------------------------------------------------

class _Offsets(RestrictionProvider):
    def initial_restriction(self, size: int) -> OffsetRange:
        return OffsetRange(0, size)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def split(self, size: int, restriction: OffsetRange):
        middle = (restriction.start + restriction.stop) // 2  # two halves
        yield OffsetRange(restriction.start, middle)
        yield OffsetRange(middle, restriction.stop)

    def restriction_size(self, size: int, restriction: OffsetRange) -> int:
        return restriction.size()


FINALIZED: list[tuple[int, int]] = []


class _CheckpointingRead(beam.DoFn):
    """Emits (element, offset), checkpointing after every two claims, like a source
    that returns after each poll; finalizes the offsets it read."""

    def process(self, size: int, finalizer=beam.DoFn.BundleFinalizerParam,
                tracker=beam.DoFn.RestrictionParam(_Offsets())):
        position = tracker.current_restriction().start
        claimed = 0
        while claimed < 2 and tracker.try_claim(position):
            yield size, position
            position += 1
            claimed += 1
        if claimed:
            first, last = position - claimed, position
            finalizer.register(lambda: FINALIZED.append((first, last)))
        if claimed == 2:
            tracker.defer_remainder(Duration(0))


def _windowed(values):
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import MIN_TIMESTAMP
    from apache_beam.utils.windowed_value import WindowedValue

    return [WindowedValue(v, MIN_TIMESTAMP, (GlobalWindow(),)) for v in values]


def test_a_splittable_dofn_is_split_and_every_residual_is_processed():
    FINALIZED.clear()
    bundle = SplittableBundle("Read", _CheckpointingRead(), [], {}, GlobalWindows())
    works = bundle.restrictions(_windowed([7, 4]))
    # Each element's restriction was split in two halves by the DoFn's split().
    assert sorted((w.element.value, w.restriction.start, w.restriction.stop) for w in works) == [
        (4, 0, 2), (4, 2, 4), (7, 0, 3), (7, 3, 7)]
    outputs = bundle(works)
    got = sorted(wv.value for wv in outputs)
    assert got == sorted([(7, i) for i in range(7)] + [(4, i) for i in range(4)])
    # Finalized once the bundle is complete: every offset exactly once.
    assert sorted(o for first, last in FINALIZED for o in range(first, last)) == sorted(
        list(range(7)) + list(range(4)))


def test_restrictions_are_spread_over_partitions_by_size():
    works = [Work(None, r, None, size) for r, size in
             (("a", 300), ("b", 100), ("c", 100), ("d", 100))]
    assert [[w.restriction for w in bucket] for bucket in _deal(works, 2, 0, True)] == [
        ["a"], ["b", "c", "d"]]
    even = [Work(None, r, None, 100) for r in "abcd"]
    assert [len(bucket) for bucket in _deal(even, 4, 0, True)] == [1, 1, 1, 1]
    # Partitions holding one restriction each do not all fill the same bucket.
    assert _deal(even[:1], 2, 1, True) == [[], [even[0]]]


def test_redistribute_deals_every_element_once():
    bag = db.from_sequence(range(10), npartitions=1)
    spread = redistribute(bag, 3)
    with dask.config.set(scheduler="sync"):
        partitions = spread.map_partitions(lambda part: [list(part)]).compute()
    assert spread.npartitions == 3
    assert sorted(x for part in partitions for x in part) == list(range(10))
    assert sorted(len(part) for part in partitions) == [3, 3, 4]


def test_every_run_gets_keys_of_its_own():
    first, second = from_values(list(range(10)), 3, "Create"), from_values(list(range(10)), 3, "Create")
    assert first.name != second.name  # a second run is never handed the first run's results
    with dask.config.set(scheduler="sync"):
        assert first.map_partitions(lambda part: [len(part)]).compute() == [4, 3, 3]
        assert from_values([], 4, "Empty").compute() == []


# ---- refusals, before a scheduler is contacted ----------------------------------------------

def _nowhere() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def _run(build, *flags: str):
    pipeline = beam.Pipeline(options=PipelineOptions([
        "--runner=runners.dask.DaskRunner", f"--dask_client_address={_nowhere()}", *flags]))
    build(pipeline)
    return pipeline.run()


def _refusal(build, *flags: str) -> str:
    with pytest.raises(ConfigError) as refused:
        _run(build, *flags)
    message = str(refused.value)
    assert message.startswith("--runner: DaskRunner ") and "\n" not in message
    return message


def test_an_unbounded_source_is_refused():
    message = _refusal(lambda p: p | UnboundedSynthetic(count=10) | beam.Map(str))
    assert "bounded (batch) pipelines only" in message and "'UnboundedSynthetic/Generate'" in message


def test_streaming_is_refused():
    message = _refusal(lambda p: p | beam.Create([1]) | beam.Map(str), "--streaming")
    assert "--streaming is set" in message


def test_test_stream_is_refused():
    message = _refusal(lambda p: p | test_stream.TestStream().add_elements([1]) | beam.Map(str))
    assert "TestStream needs a streaming runner" in message


class _Stateful(beam.DoFn):
    SEEN = ReadModifyWriteStateSpec("seen", beam.coders.PickleCoder())

    def process(self, element, seen=beam.DoFn.StateParam(SEEN)):
        yield element


def test_state_and_timers_are_refused():
    message = _refusal(lambda p: p | beam.Create([("k", 1)]) | "Dedupe" >> beam.ParDo(_Stateful()))
    assert "'Dedupe'" in message and "per-key state or timers" in message


class _Primitive(beam.PTransform):
    """A primitive no Dask op exists for (as a runner-specific native transform is)."""

    def expand(self, pcoll):
        return beam.pvalue.PCollection.from_(pcoll)


def test_a_transform_without_a_dask_translation_is_refused():
    message = _refusal(lambda p: p | beam.Create([1]) | "Native" >> _Primitive())
    assert "'Native'" in message and "no equivalent of _Primitive" in message


def test_cli_refusals_are_one_line_with_exit_code_2(capsys):
    nowhere = f"--dask_client_address={_nowhere()}"
    # Unbounded (no --stop_at) Kafka: refused before any broker or scheduler is contacted.
    code = pageviews.main(["--runner=DaskRunner", nowhere, "--source=kafka",
                           f"--bootstrap_servers=127.0.0.1:{free_port()}", "--topic=events"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: --runner: DaskRunner runs bounded (batch)")
    assert "unbounded source" in err[-1]
    code = pageviews.main(["--runner=DaskRunner", nowhere, "--streaming"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: --runner: DaskRunner runs bounded (batch)")


def test_a_scheduler_that_does_not_listen_is_one_line(capsys):
    address = _nowhere()
    with pytest.raises(NotAvailableError, match=f"no Dask scheduler accepts connections at {address}"):
        pipeline = beam.Pipeline(options=PipelineOptions([
            "--runner=runners.dask.DaskRunner", f"--dask_client_address={address}"]))
        _ = pipeline | beam.Create([1]) | beam.Map(str)
        pipeline.run()


# ---- cluster failures, as one line ---------------------------------------------------------

class _Worker:
    address = "tcp://10.0.0.7:40001"


def test_cluster_failures_name_what_failed():
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    key = ("Read/ReadFromKafka/ReadPartitions-0123456789abcdef0123456789abcdef", 3)
    assert step_of_task(key) == "Read/ReadFromKafka/ReadPartitions"
    killed = cluster_failure(KilledWorker(key, _Worker(), 3), "tcp://s:8786")
    assert isinstance(killed, DaskClusterError)
    assert str(killed) == (
        "DaskRunner: the Dask workers running step 'Read/ReadFromKafka/ReadPartitions' died 4 "
        "times (the last was tcp://10.0.0.7:40001); see the workers' logs (out of memory? "
        "killed?)")
    lost = cluster_failure(FutureCancelledError(key, "scheduler-connection-lost"), "tcp://s:8786")
    assert str(lost) == ("DaskRunner: lost the connection to the Dask scheduler at tcp://s:8786 "
                         "while the pipeline ran")
    restarted = cluster_failure(FutureCancelledError(key, "scheduler-restart"), "tcp://s:8786")
    assert "was restarted" in str(restarted)
    # An error raised by a step is the step's to report, even a ConnectionError.
    assert cluster_failure(ConnectionRefusedError("db down"), "tcp://s:8786") is None
    assert cluster_failure(ValueError("bad"), "tcp://s:8786") is None


def test_workers_do_not_dump_our_own_errors_only_the_client_says_them():
    import logging

    from runners.dask_cluster import _OwnErrorRecords

    def record(exception_text: str) -> logging.LogRecord:
        return logging.LogRecord(
            "distributed.worker", logging.ERROR, __file__, 1,
            "Compute Failed\nKey: %s\nState: %s\nTask: %s\nException: %r\nTraceback: %r\n",
            ("k", "executing", "task", exception_text, "tb"), None)

    quiet = _OwnErrorRecords()
    assert not quiet.filter(record("SourceError('Kafka: partition 3 is gone')"))
    assert not quiet.filter(record("DaskClusterError('x')"))
    assert quiet.filter(record("ZeroDivisionError('division by zero')"))  # a bug: keep it
