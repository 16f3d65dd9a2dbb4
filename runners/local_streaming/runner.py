"""A local streaming runner: Beam's bundle-based direct runner with a few small fixes.

Why it exists: with ``--streaming`` on a laptop, Beam's default DirectRunner tries to
download the Prism binary, then falls back to the batch FnApiRunner, which reads an
unbounded source to the end before any window fires. The older bundle-based direct
runner does run streaming pipelines (processing-time timers, watermarks, state,
TestStream), but not unbounded splittable DoFns such as our Kafka and synthetic readers,
and it has a few bugs and slow spots on a live stream. The fixes, each in one place:

* two overrides of the pipeline (``sdf.py``): the override order, and an SDF driver that
  defers, checkpoints, holds watermarks and finalizes bundles;
* process-wide patches of Beam's runner modules (``patches.py``: one function each,
  listed in ``PATCHES``), installed when a run starts and undone when it ends.

Everything else is Beam's runner as is. Use it with ``--runner=LocalStreamingRunner``;
``runners.prepare`` also picks it for ``--runner=DirectRunner --streaming``. Bounded
pipelines without ``--streaming`` run on Beam's FnApiRunner (see the class). The story
of each fix, with measurements: docs/runners.md.
"""

from __future__ import annotations

import gc

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pipeline import Pipeline
from apache_beam.runners.direct import direct_runner
from apache_beam.runners.runner import PipelineState

from runners.local_streaming import patches
from runners.local_streaming.sdf import ordered_overrides

__all__ = ["LocalStreamingRunner"]


def _uses_test_stream(pipeline: Pipeline) -> bool:
    from apache_beam.pipeline import PipelineVisitor
    from apache_beam.testing.test_stream import TestStream

    class _Finder(PipelineVisitor):
        found = False

        def visit_transform(self, applied_ptransform) -> None:
            if isinstance(applied_ptransform.transform, TestStream):
                self.found = True

    finder = _Finder()
    pipeline.visit(finder)
    return finder.found


class LocalStreamingRunner(direct_runner.BundleBasedDirectRunner):
    """Runs streaming pipelines in this process, unbounded sources included.

    Without ``--streaming`` (and without TestStream) a pipeline runs on Beam's batch
    FnApiRunner, as on the DirectRunner: the bundle-based runner loses the output of a
    combine that follows a side-input step in batch (``WriteToText`` then ``ToList``).
    """

    def run_pipeline(self, pipeline: Pipeline, options: PipelineOptions):
        if not options.view_as(StandardOptions).streaming and not _uses_test_stream(pipeline):
            from apache_beam.runners.portability.fn_api_runner import FnApiRunner

            return FnApiRunner().run_pipeline(pipeline, options)
        # Applied here, the fixed overrides leave nothing for the parent's own pass to
        # replace (apart from TestStream); the rest of the run is Beam's code unchanged.
        pipeline.replace_all(ordered_overrides(options))
        patches.install()
        try:
            result = super().run_pipeline(pipeline, options)
        except BaseException:
            patches.uninstall()
            raise
        _finish_with(result)
        if not _uses_test_stream(pipeline):  # a finite test run has no pauses to spare
            _freeze_start_up_heap()
        return result


def _freeze_start_up_heap() -> None:
    """Keep the objects that exist once a streaming run has started (Beam's modules, the
    pipeline graph, the runner) out of the garbage collector's full collections.

    A full collection walks every tracked object and stalls every step while it does. In
    the fraud pipeline about 190,000 objects exist once the run has started, nearly all
    alive until the end; the run itself keeps some 20,000 more (its state, clients,
    bundles). Measured at 2,000 tx/s: full collections of everything took 100-180 ms
    each (the p99 of the decision latency); with the start-up objects frozen
    (``gc.freeze``, the usual fix for long-running servers) they take 50-60 ms. What the
    run creates is collected as before. Unfrozen when the run ends.
    """
    gc.collect()
    gc.freeze()


def _finish_with(result) -> None:
    """Once the run has ended (waited for, or cancelled): tear down its pooled DoFn copies
    (patch ``dofn_reuse``) and undo the patches (when no other run still uses them)."""
    pool = patches.DoFnPool.of(result._evaluation_context)
    wait, cancel = result.wait_until_finish, result.cancel
    finished: list[bool] = []

    def finish() -> None:
        # A wait with a duration may return while the run goes on: finish only an ended run.
        if not finished and PipelineState.is_terminal(result.state):
            finished.append(True)
            try:
                pool.teardown()
            finally:
                gc.unfreeze()
                patches.uninstall()

    def wait_until_finish(duration=None):
        try:
            return wait(duration)
        finally:
            finish()

    def cancel_run():
        try:
            return cancel()
        finally:
            finish()

    result.wait_until_finish = wait_until_finish
    result.cancel = cancel_run
