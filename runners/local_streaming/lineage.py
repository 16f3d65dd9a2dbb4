"""Lineage of every element the local streaming runner moves, so sources commit what is safe.

The runner keeps in-flight elements and window state in memory: when the process dies,
they are gone. A source may therefore commit a position (a Kafka offset, a Pub/Sub ack,
an Event Hubs checkpoint) only once nothing in the run depends on it any more. This patch
(``delivery_lineage`` in ``patches.PATCHES``) gives the runner that knowledge, through
the run's :class:`~transforms.delivery.Gate`:

* every bundle is processed inside a :class:`~transforms.delivery.BundleScope`; each
  element's outputs carry the element's lineage (the tokens of the reads it derives
  from), recorded per element as the bundle is filled, and a ``finish_bundle`` output
  carries the whole bundle's;
* when the runner commits a bundle, its outputs' tokens are counted in flight once per
  step they go to, the processed bundle's are let go, and what the bundle's steps staged
  (new read tickets, window holds and releases) is applied, in one step;
* the splittable-DoFn driver (``sdf.ProcessFn``) turns a read's finalization callbacks
  into tickets instead of calling them; the gate calls them when they are done.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Optional

from apache_beam.runners.direct import bundle_factory, evaluation_context, executor
from apache_beam.utils.timestamp import Timestamp

from runners.local_streaming.hooks import Undo, replace_all
from transforms.delivery import EMPTY, BundleScope, Gate, current, entered

__all__ = ["gate_of", "patch_delivery_lineage", "union"]

_GATES_LOCK = threading.Lock()


def gate_of(context) -> Gate:
    """The gate of the run ``context`` (an EvaluationContext) belongs to."""
    gate = getattr(context, "_beam_pipelines_gate", None)
    if gate is None:
        with _GATES_LOCK:
            gate = getattr(context, "_beam_pipelines_gate", None)
            if gate is None:
                gate = context._beam_pipelines_gate = Gate()
    return gate


def union(lineages: Optional[Iterable[frozenset]]) -> frozenset:
    """The tokens of all ``lineages`` (each distinct frozenset is merged once)."""
    if not lineages:
        return EMPTY
    distinct = {id(lineage): lineage for lineage in lineages if lineage}
    if len(distinct) == 1:
        return next(iter(distinct.values()))
    return frozenset().union(*distinct.values())


def _micros(moment: Any) -> Optional[int]:
    return moment.micros if isinstance(moment, Timestamp) else None


def patch_delivery_lineage() -> Undo:
    """Install the three hooks of the module docstring; returns what undoes them."""
    bundle = bundle_factory._Bundle
    original_add = bundle.add
    original_handle = evaluation_context.EvaluationContext.handle_result

    def add(self, element):
        original_add(self, element)
        scope = current()
        lineage = self.__dict__.get("_delivery_lineage")
        if lineage is None:
            lineage = self._delivery_lineage = []
        lineage.append(scope.output_lineage() if scope is not None else EMPTY)

    def attempt_call(self, metrics_container, side_input_values, start_state, process_state,
                     finish_state):
        context = self._evaluation_context
        applied = self._applied_ptransform
        watermarks = context._watermark_manager.get_watermarks(applied)
        scope = BundleScope(gate_of(context), _micros(watermarks.input_watermark))
        source = self._input_bundle
        lineages = source.__dict__.get("_delivery_lineage") if source is not None else None
        with entered(scope):
            evaluator = self._transform_evaluator_registry.get_evaluator(
                applied, source, side_input_values)
            with start_state:
                evaluator.start_bundle()
            with process_state:
                for timer_firing in self._fired_timers or ():
                    scope.start_element(EMPTY)
                    evaluator.process_timer_wrapper(timer_firing)
                if source:
                    elements = source.get_elements_iterable()
                    if lineages:
                        for value, lineage in zip(elements, lineages, strict=True):
                            scope.start_element(lineage)
                            evaluator.process_element(value)
                    else:
                        for value in elements:
                            scope.start_element(EMPTY)
                            evaluator.process_element(value)
            scope.start_element(union(lineages))  # what finish_bundle outputs derive from
            with finish_state:
                result = evaluator.finish_bundle()
                result.logical_metric_updates = metrics_container.get_cumulative()
            self._completion_callback.handle_result(self, self._input_bundle, result)
        return result

    def handle_result(self, completed_bundle, completed_timers, result):
        scope = current()
        if scope is not None:
            added = []
            for output in result.uncommitted_output_bundles:
                tokens = union(output.__dict__.get("_delivery_lineage"))
                output._delivery_tokens = tokens
                if tokens and output.has_elements():
                    added.append((tokens, len(self._value_to_consumers.get(output.pcollection, ()))))
            for output in result.unprocessed_bundles:
                tokens = union(output.__dict__.get("_delivery_lineage"))
                output._delivery_tokens = tokens
                if tokens and output.has_elements():
                    added.append((tokens, 1))  # pushed back to the same step
            removed = None
            if completed_bundle is not None and completed_bundle.has_elements():
                removed = completed_bundle.__dict__.get("_delivery_tokens")
            scope.staged.ops.extend(scope.observations())
            # Before Beam's own commit: the outputs are counted before any step can take them.
            scope.gate.commit(added, removed, scope.staged)
        return original_handle(self, completed_bundle, completed_timers, result)

    # _Bundle.output and .receive call add(); one hook covers all three.
    return replace_all([(bundle, "add", add),
                        (evaluation_context.EvaluationContext, "handle_result", handle_result),
                        (executor.TransformExecutor, "attempt_call", attempt_call)])
