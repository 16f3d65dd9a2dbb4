"""How the DaskRunner runs a ParDo: one dask bag partition is one bundle.

:class:`DoFnBundle` runs a DoFn over the elements of a partition: a fresh copy of the
DoFn per partition (``setup``, ``start_bundle``, every element, ``finish_bundle``, bundle
finalization, ``teardown``), because a worker may run several partitions at once in its
threads and our DoFns keep clients and per-bundle state on ``self``. Its outputs are
``WindowedValue`` s, tagged outputs wrapped in ``TaggedOutput``.

:class:`SplittableBundle` runs a splittable DoFn (our Kafka, Pub/Sub and Event Hubs
readers; Beam's ``Read`` of a ``BoundedSource``) the way Beam's portable runners
expand one: each element is paired with its initial restriction, which the DoFn's
``split`` may cut into several, each sized (``restriction_size``); the restrictions are
spread over the cluster (:func:`redistribute`, by size); and each is processed until
it is done: whenever the DoFn checkpoints (``tracker.defer_remainder(delay)``), its
residual is processed next, after the delay it asked for, with the watermark estimator
state it left. Beam's Dask runner instead ran an SDF as a
plain DoFn over its whole initial restriction and dropped every residual.

Bundle finalization (``DoFn.BundleFinalizerParam``: Kafka offset commits, Pub/Sub acks,
Event Hubs checkpoints) runs when a partition's outputs are complete, before
``teardown``, as on Beam's batch FnApiRunner: a dask task's result is the bundle's
committed output. Beam's Dask runner never finalized.
"""

from __future__ import annotations

import collections
import time
from typing import Any, NamedTuple, Optional

from apache_beam.internal import pickler
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, _OutputHandler
from apache_beam.runners.dask.transform_evaluator import OneReceiver, get_windowed_value
from apache_beam.transforms.core import DoFn
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

__all__ = [
    "DoFnBundle", "SideInput", "SplittableBundle", "Work", "all_elements", "from_values",
    "map_bundles", "redistribute",
]


class SideInput(NamedTuple):
    """How a step sees one side input; its elements arrive as an argument of the task."""

    view_class: Any  # AsList, AsIter, AsSingleton, AsDict, ...
    view_options: dict
    window_mapping_fn: Any


class _Elements:
    """A side input's elements (WindowedValues) for ``SideInputMap``, re-iterable."""

    def __init__(self, elements: list, window_fn: Any) -> None:
        self._elements = elements
        self._window_fn = window_fn

    def __iter__(self):
        for element in self._elements:
            yield get_windowed_value(element, self._window_fn)


def _concat(*partitions: list) -> list:
    return [element for partition in partitions for element in partition]


def all_elements(bag, label: str = "side-input"):
    """A one-partition bag whose partition is every element of ``bag``: a side input.

    The consuming step's tasks take it as an argument (:func:`map_bundles`), so it is
    part of the same graph and computed once, with the rest of the pipeline. (This
    runner used to persist it separately, which computed everything upstream of it a
    second time in the main graph; dask's ``Bag.reduction`` items passed to
    ``map_partitions`` are recomputed the same way: a Pub/Sub read then split its
    messages between the computations.)
    """
    from dask.bag import Bag
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    name = f"{label}-{tokenize(bag, 'all-elements')}"
    graph: dict[Any, Any] = {(name, 0): (_concat, *[(bag.name, i) for i in range(bag.npartitions)])}
    return Bag(HighLevelGraph.from_collections(name, graph, dependencies=[bag]), name, 1)


def map_bundles(bag, bundle, sides: list, label: str):
    """``bundle(partition, *side_elements)`` for every partition of ``bag``, where each
    of ``sides`` is a bag made by :func:`all_elements` (a plain task graph: dask's
    ``map_partitions`` would recompute those; see :func:`all_elements`)."""
    from dask.bag import Bag
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    name = f"{label}-{tokenize(bag, bundle, *sides)}"
    side_keys = [(side.name, 0) for side in sides]
    graph: dict[Any, Any] = {
        (name, i): (bundle, (bag.name, i), *side_keys) for i in range(bag.npartitions)}
    return Bag(HighLevelGraph.from_collections(name, graph, dependencies=[bag, *sides]), name,
               bag.npartitions)


class Work(NamedTuple):
    """One restriction of a splittable DoFn's element, ready to process."""

    element: WindowedValue
    restriction: Any
    estimator_state: Any
    size: float


class DoFnBundle:
    """Runs a ParDo's DoFn over one partition of a dask bag (``bag.map_partitions(bundle)``).

    Args:
        label: the step's full label (names the dask tasks, so errors name the step).
        fn: the DoFn; pickled here, unpickled once per partition.
        args: the ParDo's extra positional arguments (side input placeholders included).
        kwargs: the ParDo's extra keyword arguments.
        window_fn: the main input's WindowFn (for elements that carry no window yet).
        side_inputs: the step's side inputs, in order; their elements are the extra
            arguments of each call (see :func:`all_elements`).
    """

    def __init__(self, label: str, fn: DoFn, args: list, kwargs: dict, window_fn: Any,
                 side_inputs: Optional[list[SideInput]] = None) -> None:
        self.label = label
        self._fn = pickler.dumps(fn)
        self._args = list(args)
        self._kwargs = dict(kwargs)
        self._window_fn = window_fn
        self._side_inputs = side_inputs or []

    def __dask_tokenize__(self) -> tuple:
        return type(self).__name__, self.label, self._fn

    def _invoker(self, fn: DoFn, receivers: OneReceiver, finalizer,
                 side_values: tuple) -> DoFnInvoker:
        handler = _OutputHandler(
            window_fn=self._window_fn,
            main_receivers=receivers[None],
            tagged_receivers=receivers,
            per_element_output_counter=None,
            output_batch_converter=None,
            process_yields_batches=False,
            process_batch_yields_elements=False,
        )
        return DoFnInvoker.create_invoker(
            DoFnSignature(fn),
            handler,
            context=DoFnContext(self.label, state=None),
            side_inputs=[
                SideInputMap(side.view_class, side.view_options,
                             _Elements(values, side.window_mapping_fn))
                for side, values in zip(self._side_inputs, side_values, strict=True)
            ],
            input_args=list(self._args),
            input_kwargs=dict(self._kwargs),
            user_state_context=None,
            bundle_finalizer_param=finalizer,
        )

    def __call__(self, items, *side_values: list) -> list:
        receivers = OneReceiver()
        finalizer = DoFn.BundleFinalizerParam()
        invoker = self._invoker(pickler.loads(self._fn), receivers, finalizer, side_values)
        invoker.invoke_setup()
        try:
            invoker.invoke_start_bundle()
            self._process(invoker, items)
            invoker.invoke_finish_bundle()
            finalizer.finalize_bundle()
        finally:
            invoker.invoke_teardown()
        return receivers.values

    def _process(self, invoker: DoFnInvoker, items) -> None:
        for item in items:
            invoker.invoke_process(get_windowed_value(item, self._window_fn))


class SplittableBundle(DoFnBundle):
    """A splittable DoFn: :meth:`restrictions` pairs elements with their (split, sized)
    restrictions; calling the bundle processes a partition of :class:`Work` to the end."""

    def restrictions(self, items) -> list[Work]:
        """Elements -> one :class:`Work` per restriction that the DoFn's ``split`` gives."""
        signature = DoFnSignature(pickler.loads(self._fn))
        restrictions = signature.get_restriction_provider()
        estimators = signature.get_watermark_estimator_provider()
        works = []
        for item in items:
            element = get_windowed_value(item, self._window_fn)
            value = element.value
            initial = restrictions.initial_restriction(value)
            for part, size in restrictions.split_and_size(value, initial):
                if size < 0:
                    raise ValueError(f"{self.label}: restriction_size {size} < 0 for {part!r}")
                works.append(Work(element, part, estimators.initial_estimator_state(value, part),
                                  size))
        return works

    def _process(self, invoker: DoFnInvoker, items) -> None:
        for work in items:
            pending = collections.deque([(work.element, work.restriction, work.estimator_state)])
            while pending:
                element, restriction, state = pending.popleft()
                residuals = invoker.invoke_process(
                    element, restriction=restriction, watermark_estimator_state=state)
                for residual in residuals or ():
                    (value, (rest, rest_state)), _size = residual.residual_value.value
                    _wait(residual.deferred_timestamp)
                    pending.append((residual.residual_value.with_value(value), rest, rest_state))


def _wait(delay: Any) -> None:
    """Resume a checkpointed restriction no earlier than the DoFn asked (its poll interval:
    a source waiting for data must not be re-invoked in a busy loop)."""
    if isinstance(delay, Timestamp):
        delay = delay - Timestamp.now()
    if isinstance(delay, Duration):
        seconds = delay.micros / 1_000_000
        if seconds > 0:
            time.sleep(seconds)


# ---- spreading elements over the cluster --------------------------------------------

def from_values(values: list, partitions: int, label: str):
    """A bag of ``values`` in ``partitions`` contiguous partitions, named uniquely.

    The root of every graph (Impulse, Create) gets a name of its own per run, so no key
    of a run equals a key of another run of the same pipeline (dask's ``from_sequence``
    names a bag by its contents: a second run submitted while the first one's results
    were still held would have been given those results, reads and writes included).
    """
    import uuid

    from dask.bag import Bag

    partitions = max(1, min(int(partitions), len(values) or 1))
    size, extra = divmod(len(values), partitions)
    name = f"{label}-{uuid.uuid4().hex}"
    graph: dict[Any, Any] = {}
    start = 0
    for i in range(partitions):
        stop = start + size + (1 if i < extra else 0)
        graph[(name, i)] = list(values[start:stop])
        start = stop
    return Bag(graph, name, partitions)


def _deal(items, buckets: int, offset: int, by_size: bool) -> list[list]:
    """One partition's elements dealt into ``buckets`` lists: round robin, or (``by_size``)
    each :class:`Work` to the lightest bucket so far, largest first."""
    dealt: list[list] = [[] for _ in range(buckets)]
    if not by_size:
        for i, item in enumerate(items):
            dealt[(offset + i) % buckets].append(item)
        return dealt
    load = [0.0] * buckets
    for work in sorted(items, key=lambda w: -float(w.size)):
        # Ties go to the bucket after this partition's offset, so partitions holding one
        # restriction each do not all fill bucket 0.
        target = min(range(buckets), key=lambda b: (load[b], (b - offset) % buckets))
        dealt[target].append(work)
        load[target] += max(float(work.size), 1.0)
    return dealt


def _gather(dealt: list[list[list]], bucket: int) -> list:
    return [item for lists in dealt for item in lists[bucket]]


def redistribute(bag, partitions: int, *, by_size: bool = False, label: str = "redistribute"):
    """``bag`` spread evenly over ``partitions`` partitions (Beam's Reshuffle).

    Every element of every input partition is dealt to one output partition, so a bag
    of a few elements in one partition (the topic-partitions of a Kafka read, the files
    of a glob) becomes work for every worker instead of a single task.
    """
    from dask.bag import Bag
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    partitions = max(1, int(partitions))
    token = tokenize(bag, partitions, by_size)
    dealt_name, name = f"{label}-deal-{token}", f"{label}-{token}"
    graph: dict = {}
    for i in range(bag.npartitions):
        graph[(dealt_name, i)] = (_deal, (bag.name, i), partitions, i, by_size)
    dealt = [(dealt_name, i) for i in range(bag.npartitions)]
    for j in range(partitions):
        graph[(name, j)] = (_gather, dealt, j)
    return Bag(HighLevelGraph.from_collections(name, graph, dependencies=[bag]), name, partitions)
