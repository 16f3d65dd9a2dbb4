"""Beam's DaskRunner, fixed to give the same answers as every other runner (``[dask]``).

Beam 2.77's DaskRunner translates each transform into a ``dask.Bag``, but:

* each ParDo's outputs are stripped of their WindowedValue, and ops are looked up by
  exact class, so ``WindowInto`` and ``GroupAlsoByWindow`` (ParDo subclasses) are
  no-ops and GroupByKey drops windows: windowed counts were wrong (every element back
  in the global window at time 0);
* a consumer gets the bag of the *producing transform*, not of the PCollection it
  reads: with tagged outputs (``ParseRecords``: valid records + dead letters) every
  consumer saw every tag, and dead-letter writers received parsed events;
* a side input's bag is iterated inside each consuming task, recomputing its whole
  upstream graph there (``WriteToText`` left extra temporary directories behind);
* only the last transform's bag is computed, so a second sink never ran.

:class:`DaskRunner` keeps Beam's translation with small changes: ParDo outputs keep
their WindowedValue and tag, a consumer reads only its own tag, every ParDo subclass
runs as a ParDo, GroupByKey keeps windows for GroupAlsoByWindow, side inputs are
computed once, and every leaf of the graph is computed.
"""

from __future__ import annotations

from typing import Any

from apache_beam import pvalue
from apache_beam.pipeline import PipelineVisitor
from apache_beam.pvalue import TaggedOutput
from apache_beam.runners.common import DoFnContext, DoFnSignature, _OutputHandler
from apache_beam.runners.dask import dask_runner
from apache_beam.runners.dask import overrides as dask_ops
from apache_beam.runners.dask import transform_evaluator as dask_eval
from apache_beam.runners.dask.transform_evaluator import (
    TRANSLATIONS,
    DaskBagWindowedIterator,
    Flatten,
    NoOp,
    OneReceiver,
    get_windowed_value,
)
from apache_beam.transforms.core import DoFn
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.utils.windowed_value import WindowedValue


def _apply_dofn_to_bundle(items, invoker_args, invoker_kwargs, receivers):
    """Beam's ``apply_dofn_to_bundle`` without ``.value`` on the results.

    Beam's version returns ``v.value`` for every output: a main output loses its
    WindowedValue (window and timestamp: every later step sees the global window at
    time 0) and a tagged output loses its tag.
    """
    from apache_beam.runners.common import DoFnInvoker

    invoker = DoFnInvoker.create_invoker(*invoker_args, **invoker_kwargs)
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    results = list(receivers.values)
    receivers.values.clear()
    return results


class _ParDo(dask_eval.ParDo):
    def apply(self, input_bag, side_inputs=None):
        transform = self.transform
        args, kwargs = transform.raw_side_inputs
        main_input = next(iter(self.applied.main_inputs.values()))
        window_fn = main_input.windowing.windowfn if hasattr(main_input, "windowing") else None
        receivers = OneReceiver()
        invoker_args = [
            DoFnSignature(transform.fn),
            _OutputHandler(
                window_fn=window_fn,
                main_receivers=receivers[None],
                tagged_receivers=receivers,
                per_element_output_counter=None,
                output_batch_converter=None,
                process_yields_batches=False,
                process_batch_yields_elements=False,
            ),
        ]
        invoker_kwargs = dict(
            context=DoFnContext(transform.label, state=None),
            side_inputs=side_inputs,
            input_args=list(args),
            input_kwargs=kwargs,
            user_state_context=None,
            bundle_finalizer_param=DoFn.BundleFinalizerParam(),
        )
        return input_bag.map(get_windowed_value, window_fn).map_partitions(
            _apply_dofn_to_bundle, invoker_args, invoker_kwargs, receivers
        )


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


def _side_input_bag(bags: dict, pcoll: pvalue.PCollection, keep: list):
    """A side input's bag, computed once on the cluster.

    Beam iterates a side input's bag inside the consuming task, which computes the
    whole upstream graph again there, once per consumer: upstream DoFns ran several
    times (``WriteToText`` created a temporary directory per run and left the extra ones
    behind). Persisted, the consumers read the one result.
    """
    bag = _bag_of(bags, pcoll)
    if bag is None:
        return None
    persisted = bag.persist()
    keep.append(persisted)  # the cluster drops results nobody holds
    return persisted


class DaskRunner(dask_runner.DaskRunner):
    """Runs batch pipelines on a dask.distributed cluster (``--dask_client_address``)."""

    @staticmethod
    def to_dask_bag_visitor(bag_kwargs=None) -> PipelineVisitor:
        bag_kwargs = bag_kwargs or {}

        class DaskBagVisitor(PipelineVisitor):
            def __init__(self) -> None:
                self.bags: dict = {}
                self.consumed: set = set()
                self.persisted: list = []

            def leaves(self) -> list:
                return [bag for node, bag in self.bags.items() if node not in self.consumed]

            def visit_transform(self, transform_node) -> None:
                op_class = _op_class(transform_node.transform)
                op = op_class(transform_node, bag_kwargs=bag_kwargs)
                kwargs: dict[str, Any] = {"input_bag": None, "side_inputs": None}
                inputs = list(transform_node.inputs)
                if inputs:
                    bag_inputs: list[Any] = []
                    for input_value in inputs:
                        if isinstance(input_value, pvalue.PBegin):
                            bag_inputs.append(None)
                            continue
                        self.consumed.add(input_value.producer)
                        bag = _bag_of(self.bags, input_value)
                        if bag is not None:
                            bag_inputs.append(bag)
                    if len(bag_inputs) == 1 and not isinstance(op, Flatten):
                        kwargs["input_bag"] = bag_inputs[0]
                    else:
                        kwargs["input_bag"] = bag_inputs
                side_inputs = list(transform_node.side_inputs)
                if side_inputs:
                    self.consumed.update(si.pvalue.producer for si in side_inputs)
                    kwargs["side_inputs"] = [
                        SideInputMap(
                            type(si),  # type: ignore[arg-type]
                            si._view_options(),
                            DaskBagWindowedIterator(
                                _side_input_bag(self.bags, si.pvalue, self.persisted),
                                si._window_mapping_fn,
                            ),
                        )
                        for si in side_inputs
                    ]
                self.bags[transform_node] = op.apply(**kwargs)

        return DaskBagVisitor()

    def run_pipeline(self, pipeline, options):
        """Beam's ``run_pipeline``, computing every leaf of the graph.

        Beam computes only the bag of the last transform visited, "which should be
        connected to the full graph": with two sinks (results and dead letters) it is
        not, and the other branch never runs.
        """
        import dask
        from dask import distributed

        dask_options = options.view_as(dask_runner.DaskOptions).get_all_options(
            drop_default=True, current_only=True
        )
        bag_kwargs = dask_runner.DaskOptions._extract_bag_kwargs(dask_options)
        client = distributed.Client(**dask_options)
        pipeline.replace_all(dask_runner.dask_overrides())
        visitor = self.to_dask_bag_visitor(bag_kwargs)
        pipeline.visit(visitor)
        graphs = dask.optimize(*visitor.leaves())
        futures = client.compute(list(graphs))
        result = _DaskResult(client, futures)
        result.persisted = visitor.persisted
        return result


class _DaskResult(dask_runner.DaskRunnerResult):
    """Closes this run's client when the run ends, so exiting does not wait on it.

    (A client left open tries to reconnect for 30 s once the local cluster stops.)
    """

    def wait_until_finish(self, duration=None) -> str:
        try:
            return super().wait_until_finish(duration)
        finally:
            if duration is None or self.state in ("DONE", "FAILED", "CANCELLED"):
                self.client.close()
