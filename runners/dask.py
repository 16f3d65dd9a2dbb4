"""Beam's DaskRunner, fixed to give the same answers as every other runner (``[dask]``).

Beam 2.77's DaskRunner translates each transform into a ``dask.Bag``, but:

* ``Impulse`` has no translation and Beam's ``Read`` is replaced by a step that has
  none either, so every step after them got no input (a bounded Kafka or Event Hubs
  read failed with ``'list' object has no attribute 'map'``), and a splittable DoFn
  (our Kafka, Pub/Sub and Event Hubs readers) ran as a plain DoFn over its whole initial
  restriction, its residuals dropped: a read that checkpointed lost the rest;
* ``Reshuffle`` passed the bag through and ``Create`` put up to 128 values in one
  partition: the files of a glob, a topic's partitions, Pub/Sub readers ran in one task;
* each ParDo's outputs are stripped of their WindowedValue, and ops are looked up by
  exact class, so ``WindowInto`` and ``GroupAlsoByWindow`` (ParDo subclasses) are
  no-ops and GroupByKey drops windows: windowed counts were wrong (every element back
  in the global window at time 0);
* every partition of a ParDo shares one DoFn instance and one output list (wrong
  outputs with threaded workers); bundles are never finalized (no Kafka offset commit);
* a consumer gets the bag of the *producing transform*, not of the PCollection it
  reads: with tagged outputs (``ParseRecords``: valid records + dead letters) every
  consumer saw every tag, and dead-letter writers received parsed events;
* a side input's bag is iterated inside each consuming task, recomputing its whole
  upstream graph there (``WriteToText`` left extra temporary directories behind; a
  Pub/Sub read split its messages between the computations);
* only the last transform's bag is computed, so a second sink never ran;
* a side input reached the DoFn as the ``AsSingleton`` itself, not its value, in a
  pipeline Beam does not round-trip through the runner API (one with a ``PDone``, such as
  ``--sink=eventhubs``): its dead letters' file writer failed;
* what it cannot run (unbounded reads, state and timers, TestStream) fails late, and
  the client it left open retried a lost scheduler for 30 s.

:class:`DaskRunner` keeps Beam's translation with these changes: Impulse is one
element; a splittable DoFn's restrictions are split, spread over the cluster by size
and processed to the end, residuals included (``runners.dask_bundles``); Reshuffle and
Create spread elements over every worker thread; each partition runs a fresh DoFn copy
and finalizes its bundle; ParDo outputs keep their WindowedValue and tag, a consumer
reads only its own tag, every ParDo subclass runs as a ParDo, GroupByKey keeps windows
for GroupAlsoByWindow, side inputs are arguments of the consuming tasks (one graph,
everything computed once), every leaf of the graph is computed; what Dask cannot run is refused before submission (``runners.dask_checks``)
and a failing cluster ends the run in one line (``runners.dask_cluster``).
See docs/runners.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from apache_beam import pvalue
from apache_beam.pipeline import PipelineVisitor
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners.common import DoFnSignature
from apache_beam.runners.dask import dask_runner
from apache_beam.runners.dask import overrides as dask_ops
from apache_beam.runners.dask import transform_evaluator as dask_eval
from apache_beam.runners.dask.transform_evaluator import (
    TRANSLATIONS,
    Flatten,
    NoOp,
)
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.core import Impulse
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from runners.dask_bundles import (
    DoFnBundle,
    SideInput,
    SplittableBundle,
    all_elements,
    from_values,
    map_bundles,
    redistribute,
)
from runners.dask_checks import check_pipeline
from runners.dask_cluster import close_client, cluster_failure, connect, wait_for
from runners.options import RunnerPresetOptions
from transforms.base.errors import BeamPipelinesError


def _window_fn(applied) -> Any:
    main_input: Any = next(iter(applied.main_inputs.values()), None)
    return main_input.windowing.windowfn if hasattr(main_input, "windowing") else None


def _task_name(label: str) -> str:
    """A step's label as a dask task-name prefix: errors about a task name the step."""
    return label.replace(" ", "_") or "step"


class _ParDo(dask_eval.ParDo):
    """A ParDo, one bundle per partition (``runners.dask_bundles``); a splittable DoFn
    is split into restrictions, spread over the cluster and processed to the end."""

    def apply(self, input_bag, side_inputs=None):
        transform = self.transform
        # Side inputs as placeholders (filled per window by the invoker). Not
        # ``raw_side_inputs``: those are placeholders only after Beam's round trip through
        # the runner API, which Beam skips for a pipeline with a PDone (WriteToEventHubs);
        # the AsSingleton itself then reached the DoFn (a file sink's ``open_writer``).
        args, kwargs = transform.args, transform.kwargs
        label = self.applied.full_label
        bundle_class = (SplittableBundle if DoFnSignature(transform.fn).is_splittable_dofn()
                        else DoFnBundle)
        sides = side_inputs or []
        bundle = bundle_class(label, transform.fn, list(args), kwargs,
                              _window_fn(self.applied), [side for side, _ in sides])
        name = _task_name(label)
        if isinstance(bundle, SplittableBundle):
            works = map_bundles(input_bag, bundle.restrictions, [], f"{name}/Split")
            input_bag = redistribute(works, _parallelism(self.bag_kwargs), by_size=True,
                                     label=f"{name}/Spread")
        return map_bundles(input_bag, bundle, [items for _, items in sides], name)


class _Impulse(dask_eval.DaskBagOp):
    """Impulse: one empty element (Beam's Dask runner had no translation: every step
    after an Impulse, such as the Kafka and Event Hubs reads, got no input)."""

    def apply(self, input_bag, side_inputs=None):
        impulse = WindowedValue(b"", MIN_TIMESTAMP, (GlobalWindow(),))
        return from_values([impulse], 1, _task_name(self.applied.full_label))


class _Reshuffle(dask_eval.DaskBagOp):
    """Reshuffle: the elements spread over the cluster (Beam's Dask runner passed the
    bag through, so the files of a glob or a topic's partitions ran in one task)."""

    def apply(self, input_bag, side_inputs=None):
        label = _task_name(self.applied.full_label)
        return redistribute(input_bag, _parallelism(self.bag_kwargs), label=label)


class _Create(dask_eval.DaskBagOp):
    """Create: the values in as many partitions as the cluster has threads (Beam's put
    up to 128 values in each partition, and warned about it on every run), or as
    ``--dask_npartitions`` / ``--dask_partition_size`` say."""

    def apply(self, input_bag, side_inputs=None):
        values = list(self.transform.values)
        partition_size = self.bag_kwargs.get("partition_size")
        if partition_size:
            partitions = -(-len(values) // int(partition_size))
        else:
            partitions = _parallelism(self.bag_kwargs)
        return from_values(values, partitions, _task_name(self.applied.full_label))


PARALLELISM = "parallelism"  # bag_kwargs key: the partitions a Reshuffle spreads over


def _parallelism(bag_kwargs: dict) -> int:
    return int(bag_kwargs.get("npartitions") or bag_kwargs.get(PARALLELISM) or 1)


def _raw(item: Any) -> Any:
    if isinstance(item, TaggedOutput):
        item = item.value
    return item.value if isinstance(item, WindowedValue) else item


def _first(item: Any) -> Any:
    return item[0]


def _group_values(item):
    key, pairs = item
    # The values are the WindowedValues ReifyWindows made; GroupAlsoByWindow needs them.
    return key, [pair[1] for pair in pairs]


class _GroupByKey(dask_eval.GroupByKey):
    """Group by key, keeping each value's window for GroupAlsoByWindow (Beam drops it)."""

    def apply(self, input_bag, side_inputs=None):
        return input_bag.map(_raw).groupby(_first).map(_group_values)


_TRANSLATIONS = {
    **TRANSLATIONS,
    Impulse: _Impulse,
    dask_ops._Create: _Create,
    dask_ops._Reshuffle: _Reshuffle,
    dask_eval.apache_beam.ParDo: _ParDo,
    dask_ops._GroupByKeyOnly: _GroupByKey,
}


def _op_class(transform):
    """The op for a transform; every ParDo subclass is a ParDo.

    Beam looks ops up by exact class, so ``WindowInto`` and ``GroupAlsoByWindow``
    (ParDo subclasses) became no-ops: windows were never assigned nor grouped by.
    """
    op = _TRANSLATIONS.get(transform.__class__)
    if op is None and isinstance(transform, dask_eval.apache_beam.ParDo):
        return _ParDo
    return op or NoOp


def _main_items(item: Any) -> bool:
    return not isinstance(item, TaggedOutput)


class _TagFilter:
    """Picklable predicate + unwrap for one tagged output (shipped to dask workers)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def keep(self, item: Any) -> bool:
        return isinstance(item, TaggedOutput) and item.tag == self.tag

    @staticmethod
    def unwrap(item: TaggedOutput) -> Any:
        return item.value


def _bag_of(bags: dict, pcoll: pvalue.PCollection):
    """The dask bag holding exactly the elements of ``pcoll``."""
    producer = pcoll.producer
    if producer is None or producer not in bags:
        return None
    bag = bags[producer]
    if len(producer.outputs) <= 1:
        return bag
    main = producer.outputs.get(None)
    if pcoll is main or pcoll.tag is None:
        return bag.filter(_main_items)
    tag_filter = _TagFilter(pcoll.tag)
    return bag.filter(tag_filter.keep).map(_TagFilter.unwrap)


def _overrides() -> list:
    """Beam's Dask overrides, except the one replacing ``Read``: without it a ``Read`` of
    a BoundedSource is Impulse + a splittable DoFn, which runs here; Beam's replacement
    had no translation (it produced nothing)."""
    return [o for o in dask_runner.dask_overrides() if type(o).__name__ != "ReadOverride"]


def _translatable(transform) -> bool:
    return _TRANSLATIONS.get(transform.__class__) is not None


class DaskRunner(dask_runner.DaskRunner):
    """Runs batch pipelines on a dask.distributed cluster (``--dask_client_address``)."""

    @staticmethod
    def to_dask_bag_visitor(bag_kwargs=None, lazy_side_inputs: bool = False) -> PipelineVisitor:
        # lazy_side_inputs (Beam 2.78's --dask_lazy_side_inputs): our side inputs are
        # computed once per step by all_elements below, whatever it says.
        bag_kwargs = bag_kwargs or {}

        class DaskBagVisitor(PipelineVisitor):
            def __init__(self) -> None:
                self.bags: dict = {}
                self.consumed: set = set()

            def leaves(self) -> list:
                return [bag for node, bag in self.bags.items() if node not in self.consumed]

            def _input_bag(self, pcoll: pvalue.PCollection):
                bag = _bag_of(self.bags, pcoll)
                if bag is None:  # dask_checks refuses what has no translation: a bug here
                    raise RuntimeError(
                        f"DaskRunner: no dask bag for {pcoll} (produced by "
                        f"{pcoll.producer.full_label if pcoll.producer else '?'})")
                return bag

            def visit_transform(self, transform_node) -> None:
                op_class = _op_class(transform_node.transform)
                op = op_class(transform_node, bag_kwargs=bag_kwargs)
                kwargs: dict[str, Any] = {"input_bag": None, "side_inputs": None}
                inputs = [i for i in transform_node.inputs if not isinstance(i, pvalue.PBegin)]
                if inputs:
                    self.consumed.update(i.producer for i in inputs)
                    bag_inputs = [self._input_bag(i) for i in inputs]
                    if len(bag_inputs) == 1 and not isinstance(op, Flatten):
                        kwargs["input_bag"] = bag_inputs[0]
                    else:
                        kwargs["input_bag"] = bag_inputs
                elif isinstance(op, Flatten):
                    kwargs["input_bag"] = []
                side_inputs = list(transform_node.side_inputs)
                if side_inputs:
                    self.consumed.update(si.pvalue.producer for si in side_inputs)
                    kwargs["side_inputs"] = [
                        (SideInput(type(si), si._view_options(), si._window_mapping_fn),
                         all_elements(self._input_bag(si.pvalue),
                                      _task_name(f"{si.pvalue.producer.full_label}/AsSide")))
                        for si in side_inputs
                    ]
                self.bags[transform_node] = op.apply(**kwargs)

        return DaskBagVisitor()

    def run_pipeline(self, pipeline, options):
        """Check, connect, translate, submit; every leaf of the graph is computed.

        What Dask cannot run is refused before a client connects (``runners.dask_checks``).
        Beam computed only the bag of the last transform visited, "which should be
        connected to the full graph": with two sinks (results and dead letters) it is
        not, and the other branch never ran.
        """
        pipeline.replace_all(_overrides())
        check_pipeline(pipeline, options, _translatable)
        dask_options = options.view_as(dask_runner.DaskOptions).get_all_options(
            drop_default=True, current_only=True
        )
        bag_kwargs = dask_runner.DaskOptions._extract_bag_kwargs(dask_options)
        dask_options.pop("lazy_side_inputs", None)  # not a Client argument (Beam >= 2.78)
        client, address = connect(
            dask_options, options.view_as(RunnerPresetOptions).dask_local_workers)
        try:
            bag_kwargs[PARALLELISM] = sum(client.nthreads().values()) or 1
            visitor = self.to_dask_bag_visitor(bag_kwargs)
            pipeline.visit(visitor)
            # One graph for every leaf, optimized together: dask.optimize(*leaves)
            # optimized them apart and computed shared steps (a read) once per leaf.
            futures = client.compute(visitor.leaves())
        except BaseException as exc:
            failure = cluster_failure(exc, address, client)
            close_client(client, quietly=True)
            if failure is not None:
                raise failure from None
            raise
        result = _DaskResult(client, futures)
        result.address = address
        return result


class _DaskResult(dask_runner.DaskRunnerResult):
    """Waits for every leaf, raising on a cancelled one (Beam's wait reported a run whose
    scheduler died DONE); closes this run's client when the run ends (a client left open
    tries to reconnect for 30 s once the local cluster stops); a failure of the cluster
    itself ends the run with one line (``DaskClusterError``)."""

    address = ""

    def wait_until_finish(self, duration=None) -> str:
        if self._state in (PipelineState.DONE, PipelineState.FAILED, PipelineState.CANCELLED):
            return self._state
        failed = False
        try:
            try:
                wait_for(self.client, list(self.futures),
                         None if duration is None else duration / 1000)
            except (TimeoutError, asyncio.TimeoutError):
                if duration is None:
                    raise
                return self._state  # still running after ``duration`` milliseconds
            self._state = PipelineState.DONE
        except BaseException as exc:
            failed = True
            cancelled = self._state == PipelineState.CANCELLED
            self._state = PipelineState.CANCELLED if cancelled else PipelineState.FAILED
            failure = None if cancelled or isinstance(exc, BeamPipelinesError) else (
                cluster_failure(exc, self.address, self.client))
            if failure is not None:
                close_client(self.client, quietly=True)
                raise failure from None
            raise
        finally:
            if self._state != PipelineState.RUNNING:
                close_client(self.client, quietly=failed)
        return self._state
