"""Hand a finished bundle straight to the next steps (patch ``direct_handoff``).

In Beam's bundle-based direct runner a step's finished bundle goes to the monitor (an
update on ``all_updates``), and the monitor, on its next round, schedules the steps that
consume it. The monitor runs on the same single worker thread as every step, after the
work already queued, so an element moves one step per round of the whole pipeline: on
the fraud pipeline (11 steps from the Kafka read to the Kafka write) every round also ran
the reader's next poll, and a transaction took ~90 ms to cross a pipeline whose steps
cost well under a millisecond each.

Here the completion callback schedules the consumers itself, at once: with the
executor's queue taking the most downstream work first (patch ``downstream_first``), a
bundle runs through the pipeline back to back, before the source reads again. What the
monitor did with such an update was exactly this call; it still fires timers, takes
unprocessed bundles and exceptions, and decides when the run is over (a step that
schedules its consumers is still executing, so the run never looks idle in between).

Empty bundles go nowhere: Beam's watermark manager already ignores them ("they do not
impact watermarks and should not trigger downstream execution"), but its executor still
scheduled every step below a source that read nothing, a dozen no-op bundles for every
idle poll. Timers reach their step as before (the monitor schedules them directly).
"""

from __future__ import annotations

from typing import Any

from apache_beam.runners.direct import executor

from runners.local_streaming.hooks import Undo, replace_all

__all__ = ["patch_direct_handoff"]

_EXECUTOR = "_beam_pipelines_executor"


def patch_direct_handoff() -> Undo:
    """Install the hand-off; returns what undoes it."""
    parallel = executor._ExecutorServiceParallelExecutor
    callback = executor._CompletionCallback
    original_init = parallel.__init__
    original_handle = callback.handle_result

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        # Every completion callback of this run offers to this queue: it names the run.
        setattr(self.all_updates, _EXECUTOR, self)

    def handle_result(self, transform_executor, input_committed_bundle, transform_result):
        run = getattr(self._all_updates, _EXECUTOR, None)
        if run is None:  # a run started before the patch was installed: Beam's way
            return original_handle(self, transform_executor, input_committed_bundle,
                                   transform_result)
        committed = self._evaluation_context.handle_result(
            input_committed_bundle, self._timer_firings, transform_result)
        for bundle in committed:
            if bundle.has_elements():
                run.schedule_consumers(bundle)
        for unprocessed in transform_result.unprocessed_bundles:
            self._all_updates.offer(parallel._ExecutorUpdate(
                transform_executor, unprocessed_bundle=unprocessed))
        return committed

    return replace_all([(parallel, "__init__", __init__),
                        (callback, "handle_result", handle_result)])
