"""Triggered side inputs in the global window, on the local streaming runner.

The slowly-updating side input (Beam's side-input patterns; RunInference's model refresh
through ``model_metadata_pcoll``, ``WatchFilePattern``): a side input in the global
window whose windowing has a trigger, each firing bringing the new value. On Dataflow and
Flink the main input sees the side input as soon as its first pane has fired, and the
latest pane after each firing. Beam's bundle-based direct runner instead blocks a main
input element until the side input's watermark passes the end of the element's window
projected on the side input's: for the global window, the end of time. On a stream the
main input waited forever (and after a bounded side input ended, the view held every
pane at once, so a singleton view failed with "more than one element").

:func:`patch_triggered_side_inputs` gives such side inputs the production runners'
semantics in the bundle runner: the view is available once a pane has arrived, each
committed bundle of the side input is a pane that replaces the view's elements, and
main-input work blocked on the view resumes when the first pane arrives. Every other side
input (not global, or not triggered) keeps Beam's behaviour exactly.
"""

from __future__ import annotations

from typing import Any

from apache_beam.runners.direct import evaluation_context
from apache_beam.transforms.trigger import DefaultTrigger
from apache_beam.transforms.window import GlobalWindows

from runners.local_streaming.hooks import Undo, replace_all

__all__ = ["is_triggered_global", "patch_triggered_side_inputs"]


def is_triggered_global(side_input: Any) -> bool:
    """A side input in the global window whose windowing has a (non-default) trigger."""
    windowing = side_input.pvalue.windowing
    return isinstance(windowing.windowfn, GlobalWindows) and not isinstance(
        windowing.triggerfn, DefaultTrigger)


def patch_triggered_side_inputs() -> Undo:
    """Triggered global-window side inputs are available from their first pane, and each
    pane replaces the last (see the module docstring). Returns the undo."""
    container = evaluation_context._SideInputsContainer
    context = evaluation_context.EvaluationContext
    original_get = container.get_value_or_block_until_ready
    original_add = container.add_values
    original_update = context._update_side_inputs_container

    def get_value_or_block_until_ready(self, side_input, task, block_until):
        if not is_triggered_global(side_input):
            return original_get(self, side_input, task, block_until)
        with self._lock:
            view = self._views[side_input]
            if view.elements:
                view.value = self._pvalue_to_value(side_input, view.elements)
                return view.value
            view.blocked_tasks.append((task, block_until))
            task.blocked = True
            return None

    def add_values(self, side_input, values):
        if not is_triggered_global(side_input):
            return original_add(self, side_input, values)
        values = list(values)
        if values:  # an empty bundle is no pane: the view keeps its value
            with self._lock:
                self._views[side_input].elements = values
        return None

    def _update_side_inputs_container(self, committed_bundles, result):
        original_update(self, committed_bundles, result)
        views = self._side_inputs_container._views
        for side_input, view in views.items():
            if view.blocked_tasks and view.elements and is_triggered_global(side_input):
                with self._side_inputs_container._lock:
                    tasks = [task for task, _ in view.blocked_tasks]
                    view.blocked_tasks.clear()
                for task in tasks:
                    task.blocked = False
                self._pending_unblocked_tasks.extend(tasks)

    return replace_all([(container, "get_value_or_block_until_ready",
                         get_value_or_block_until_ready),
                        (container, "add_values", add_values),
                        (context, "_update_side_inputs_container",
                         _update_side_inputs_container)])
