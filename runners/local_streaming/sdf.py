"""The splittable-DoFn driver of the local streaming runner, and the pipeline overrides
that put it (and Beam's streaming GroupByKeys) in place.

Beam's bundle-based direct runner does not run unbounded splittable DoFns such as our
Kafka and synthetic readers. Two overrides of the pipeline fix that, nothing process-wide:

* **override order** (:func:`ordered_overrides`): in streaming mode Beam applies its
  ``GroupByKey`` -> streaming GroupByKey overrides *before* the final ``GroupByKey``
  override, so the GroupByKeys introduced by the splittable-DoFn and combiner expansions
  are replaced by the *batch* GroupByKeyOnly (which waits for the end of input); here the
  same override objects are applied with the streaming ones last;
* **the SDF driver** (:class:`ProcessFn`): Beam's ``ProcessFn`` reads the SDF's outputs
  lazily, after Beam's invoker has already called ``check_done`` and looked for a deferred
  remainder; it only understands ``ProcessContinuation``, holds the output watermark at
  -infinity while an element has a remainder (so no window ever fires), and re-invokes in
  a busy loop; and the GroupByKey in front of it re-stamps the element at the end of the
  global window, which releases every downstream watermark to +infinity before the first
  invocation. This driver drains the outputs inside the invocation, honours
  ``tracker.defer_remainder(delay)`` (and ``ProcessContinuation`` and runner
  checkpoints), holds the watermark at the SDF's watermark estimator, and resumes with a
  processing-time timer after the requested delay; the element reaches it with its own
  timestamp (no GroupByKey). It also finalizes bundles (``DoFn.BundleFinalizerParam``),
  which Beam's driver never did: through the run's delivery gate, once everything
  derived from the read has been written (``lineage.py``). Checkpoints are armed on one shared thread
  (:class:`Watchdog`) instead of a ``threading.Timer`` per invocation.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable, Iterator, Optional

from apache_beam import TimeDomain
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PTransformOverride
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, OutputHandler
from apache_beam.runners.direct import direct_runner, sdf_direct_runner
from apache_beam.runners.direct.util import KeyedWorkItem
from apache_beam.runners.direct.watermark_manager import WatermarkManager
from apache_beam.transforms.core import DoFn, Map, ProcessContinuation
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from transforms import delivery

__all__ = ["MAX_INVOCATION_SECONDS", "ProcessFn", "Watchdog", "ordered_overrides"]

_LOG = logging.getLogger(__name__)

# Longest time one SDF invocation runs before the runner checkpoints it, so other
# stages get to run while a source that never returns keeps producing.
MAX_INVOCATION_SECONDS = 1.0

# Beam's streaming overrides (inner classes of _get_transform_overrides) by name.
_STREAMING_OVERRIDES = ("StreamingGroupByKeyOverride", "StreamingGroupAlsoByWindowOverride")


class _DrainingOutputHandler(OutputHandler):
    """Runs the SDF's ``process`` to completion inside the invocation.

    Beam's invoker checks the restriction tracker (done? deferred?) right after this
    call returns, so the generator must have run by then. It also notes how many
    finalization callbacks the reader had registered when each output came out (see
    :func:`_with_tickets` for which callbacks cover which outputs).
    """

    def __init__(self, finalizer) -> None:
        self.outputs: list[Any] = []
        self.marks: list[int] = []  # callbacks registered when each output came out
        self.continuation: Optional[ProcessContinuation] = None
        self.on_continuation: Callable[[], None] | None = None
        self._finalizer = finalizer

    def handle_process_outputs(self, windowed_input_element, output_iter, watermark_estimator=None):
        self.outputs, self.marks, self.continuation = [], [], None
        callbacks = self._finalizer._callbacks
        for output in output_iter or ():
            if isinstance(output, ProcessContinuation):
                self.continuation = output  # must be the last thing process() yields
                if output.should_resume and self.on_continuation:
                    self.on_continuation()
                continue
            self.outputs.append(output)
            self.marks.append(len(callbacks))


class Watchdog:
    """Calls a function after a delay unless cancelled first: ``threading.Timer`` with
    one thread for all of them (a thread per SDF invocation cost more than a small read)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def arm(self, delay: float, fn: Callable[[], None]) -> int:
        with self._cond:
            handle = next(self._ids)
            heapq.heappush(self._due, (time.monotonic() + delay, handle, fn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sdf-checkpoints",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
            return handle

    def cancel(self, handle: int) -> None:
        with self._cond:
            if any(h == handle for _, h, _ in self._due):
                self._cancelled.add(handle)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due or self._due[0][0] > time.monotonic():
                    timeout = self._due[0][0] - time.monotonic() if self._due else None
                    self._cond.wait(timeout)
                _, handle, fn = heapq.heappop(self._due)
                if handle in self._cancelled:
                    self._cancelled.discard(handle)
                    continue
            try:
                fn()
            except Exception:  # a checkpoint that fails leaves the invocation running
                _LOG.warning("an SDF checkpoint failed", exc_info=True)


WATCHDOG = Watchdog()


class ProcessFn(sdf_direct_runner.ProcessFn):
    """Beam's direct-runner SDF driver, with deferral and watermark holds that work."""

    def __init__(self, sdf, args_for_invoker, kwargs_for_invoker) -> None:
        super().__init__(sdf, args_for_invoker, kwargs_for_invoker)
        # Sources commit offsets / ack messages in bundle-finalization callbacks.
        self._finalizer = DoFn.BundleFinalizerParam()
        self._handler = _DrainingOutputHandler(self._finalizer)
        self.sdf_invoker = DoFnInvoker.create_invoker(
            DoFnSignature(self.sdf),
            context=DoFnContext("unused_context"),
            output_handler=self._handler,
            input_args=args_for_invoker,
            input_kwargs=kwargs_for_invoker,
            bundle_finalizer_param=self._finalizer,
        )
        self._split_lock = threading.Lock()
        self._split_residual = None
        self._handler.on_continuation = self._checkpoint

    def _checkpoint(self) -> None:
        """Split off everything not yet claimed (a runner-initiated checkpoint)."""
        with self._split_lock:
            if self._split_residual is not None:
                return
            split = self.sdf_invoker.try_split(0)
            if split:
                _, residuals = split
                self._split_residual = residuals[0] if residuals else None

    def process(self, element, timestamp=sdf_direct_runner.beam.DoFn.TimestampParam,
                window=sdf_direct_runner.beam.DoFn.WindowParam, *args, **kwargs):
        if isinstance(element, KeyedWorkItem):  # a resume timer fired
            key, value = element.encoded_key, None
        else:
            key, values = element
            values = list(values)
            if len(values) != 1:
                raise RuntimeError("splittable DoFn input keys must be unique (internal error)")
            value = values[0]
        state = self._step_context.get_keyed_state(key)
        if state.get_state(window, self._element_tag):  # resuming a deferred remainder
            item = state.get_state(window, self._element_tag)
            restriction = state.get_state(window, self._restriction_tag)
            estimator_state = state.get_state(window, self._watermark_state_tag)
            windowed = WindowedValue(item, timestamp, [window])
        elif value is not None:
            item, restriction = value.element, value.restriction
            estimator_state = value.watermark_estimator_state
            windowed = WindowedValue(item, timestamp, [window])
        else:
            return  # a stale timer for finished work

        self._split_residual = None
        timer = WATCHDOG.arm(MAX_INVOCATION_SECONDS, self._checkpoint)
        try:
            deferred = self.sdf_invoker.invoke_process(
                windowed,
                restriction=restriction,
                watermark_estimator_state=estimator_state,
                additional_args=list(args),
                additional_kwargs=dict(kwargs),
            )
        finally:
            WATCHDOG.cancel(timer)
        # Finalize (commit offsets, ack messages) only once everything derived from this
        # read is written: the gate of the run calls the callbacks then (lineage.py).
        # Outside a tracked run (no gate), as soon as the outputs are handed over.
        scope = delivery.current()
        try:
            if scope is None:
                yield from self._handler.outputs
                self._finalizer.finalize_bundle()
            else:
                yield from _with_tickets(scope, self._handler, self._finalizer._callbacks)
        finally:
            self._finalizer.reset()
        with self._split_lock:
            residual = deferred[0] if deferred else self._split_residual
            self._split_residual = None

        if residual is None:
            for tag in (self._element_tag, self._restriction_tag, self._watermark_state_tag):
                state.clear_state(window, tag)
            state.add_state(window, self.watermark_hold_tag, WatermarkManager.WATERMARK_POS_INF)
            return
        (item, (restriction, estimator_state)), _size = residual.residual_value.value
        state.add_state(window, self._element_tag, item)
        state.add_state(window, self._restriction_tag, restriction)
        state.add_state(window, self._watermark_state_tag, estimator_state)
        # Hold the output watermark where the SDF's estimator says it is (Beam holds it
        # at -infinity, so no downstream window could ever close).
        hold = residual.current_watermark
        state.add_state(
            window,
            self.watermark_hold_tag,
            hold if hold is not None else WatermarkManager.WATERMARK_NEG_INF,
        )
        state.set_timer(window, "", TimeDomain.REAL_TIME, Timestamp.now() + _delay(residual))


def _with_tickets(scope: delivery.BundleScope, handler: _DrainingOutputHandler,
                  callbacks: list) -> Iterator[Any]:
    """The invocation's outputs, each carrying the tickets of the callbacks it waits for.

    The runner keeps in-flight elements and window state in memory, so a read may be
    finalized (its offsets committed, its messages acknowledged) only when everything
    derived from it has been written: the gate calls the callbacks then, not now.
    Callbacks registered before an output cover it and the outputs after it, up to the
    next registration (a Kafka poll's commit, a Pub/Sub message's ack); those registered
    after the last output cover every output of the invocation.
    """
    gate, tickets = scope.gate, []
    last = handler.marks[-1] if handler.marks else 0
    shared = gate.ticket(callbacks[last:]) if len(callbacks) > last else None
    if shared is not None:
        tickets.append(shared)
    previous, group = 0, None
    for output, mark in zip(handler.outputs, handler.marks, strict=True):
        if mark > previous:
            group = gate.ticket(callbacks[previous:mark])
            tickets.append(group)
            previous = mark
        tokens = [t.token for t in (shared, group) if t is not None]
        scope.start_element(frozenset(tokens))
        yield output
    for ticket in tickets:
        scope.staged.ops.append(("seal", ticket))


def _delay(residual) -> Duration:
    delay = residual.deferred_timestamp
    if isinstance(delay, Duration) and delay.micros > 0:
        return delay
    return Duration(0)


class _ProcessElements(sdf_direct_runner.ProcessElements):
    def new_process_fn(self, sdf):
        return ProcessFn(
            sdf,
            self._process_keyed_elements_transform.ptransform_args,
            self._process_keyed_elements_transform.ptransform_kwargs,
        )


class _ProcessKeyedElementsViaKeyedWorkItems(sdf_direct_runner.ProcessKeyedElementsViaKeyedWorkItems):
    def expand(self, pcoll):
        original = self._process_keyed_elements_transform
        process = _ProcessElements(original)
        process.args = original.ptransform_args
        process.kwargs = original.ptransform_kwargs
        process.side_inputs = original.ptransform_side_inputs
        # Beam groups here, but every key is a fresh random UUID, so the GroupByKey only
        # re-stamps the element at the end of the global window: the stage's input
        # watermark (and so every downstream watermark, which never moves back) jumps
        # to +infinity before the first invocation sets a hold. Pairing each element
        # with a one-element list keeps its timestamp and so holds the watermark.
        return pcoll | "AsKeyedWorkItem" >> Map(_single_value) | process


def _single_value(keyed: tuple) -> tuple:
    key, value = keyed
    return key, [value]


class _ProcessKeyedElementsOverride(PTransformOverride):
    def matches(self, applied_ptransform) -> bool:
        return isinstance(applied_ptransform.transform, sdf_direct_runner.ProcessKeyedElements)

    def get_replacement_transform_for_applied_ptransform(self, applied_ptransform):
        return _ProcessKeyedElementsViaKeyedWorkItems(applied_ptransform.transform)


def ordered_overrides(options: PipelineOptions) -> list[PTransformOverride]:
    """Beam's direct-runner overrides, reordered so the streaming GroupByKeys come last.

    TestStream's override is left to the runner, which must still see the TestStream to
    choose its test clock.
    """
    overrides: list[PTransformOverride] = []
    streaming: list[PTransformOverride] = []
    for override in direct_runner._get_transform_overrides(options):
        name = type(override).__name__
        if name == "TestStreamOverride":
            continue
        if isinstance(override, sdf_direct_runner.ProcessKeyedElementsViaKeyedWorkItemsOverride):
            override = _ProcessKeyedElementsOverride()
        (streaming if name in _STREAMING_OVERRIDES else overrides).append(override)
    return overrides + streaming
