"""The process-wide patches of Beam's bundle-based direct runner: one function per patch.

Each ``patch_*`` function replaces something in Beam's runner modules and returns the
function that puts it back. :func:`installed` installs every patch of :data:`PATCHES`
for one run and undoes them after it (runs that overlap share one installation), so a
process that also runs other pipelines on Beam's own runners gets Beam unchanged.

The patches, as ``PATCHES`` lists them (a test checks this list against the code):

* ``metrics_containers``: each bundle's counters land in the container that gets
  committed (Beam kept the step's first bundle's container: a streaming run reported 1
  parsed event out of 60), one container per step and worker thread, reset per bundle;
* ``serial_fifo``: a step executed serially (a stateful DoFn such as the windowed count)
  takes its queued bundles oldest first (Beam took the newest: while a source kept sending
  new bundles, the oldest, holding events already read and committed, waited forever);
* ``watermark_refresh``: each pending bundle's minimum timestamp is computed once, not
  at every watermark refresh (the same answer, without re-reading every bundle);
* ``dofn_reuse``: ParDo steps keep their set-up DoFn copies between bundles, torn down
  when the run ends (Beam pickled, inspected, set up and tore down a DoFn per bundle:
  milliseconds a bundle, most of a live run's time when bundles are small);
* ``dofn_introspection``: Beam's DoFn introspection (``inspect.signature``, state and
  timer specs) computed once per DoFn class and function (``runners/introspection.py``);
* ``downstream_first``: the executor runs the most downstream work first (Beam's queue
  was first in, first out, so a serial step got one bundle per trip through a queue the
  source kept full, and fell further behind every second: backpressure, as a streaming
  runner applies it);
* ``idle_monitor``: the monitor (which hands finished bundles to the next steps and fires
  timers) waits up to a millisecond for news when it has nothing to do (Beam's monitor
  resubmitted itself at once, forever: an idle stream kept a core busy, and every step's
  work shared the GIL with that loop in 5 ms slices);
* ``triggered_side_inputs``: a side input in the global window with a trigger (the
  slowly-updating side input; RunInference's model refresh) is available from its first
  pane and each pane replaces the last (Beam blocked the main input until the end of
  the global window: forever on a stream). See ``side_inputs.py``.
* ``delivery_lineage``: every element carries the lineage of the reads it derives from,
  and a read's finalization (its offset commit, acknowledgement or checkpoint) waits
  until everything derived from it has been written (``lineage.py``; Beam finalized,
  when at all, as soon as the read's outputs were handed over);
* ``direct_handoff``: a finished bundle is handed to the steps that consume it at once,
  and an empty one to none (``handoff.py``; Beam sent every bundle through its monitor,
  so an element moved one step per round of the whole pipeline).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterator, NamedTuple, Optional

from apache_beam import coders, pvalue
from apache_beam.internal import pickler
from apache_beam.runners import common
from apache_beam.runners.direct import executor, transform_evaluator, watermark_manager
from apache_beam.runners.direct.watermark_manager import WatermarkManager
from apache_beam.transforms import userstate
from apache_beam.utils import counters
from apache_beam.utils.timestamp import Timestamp

from runners import introspection
from runners.local_streaming.handoff import patch_direct_handoff
from runners.local_streaming.hooks import Undo, replace
from runners.local_streaming.lineage import patch_delivery_lineage
from runners.local_streaming.side_inputs import patch_triggered_side_inputs

__all__ = ["PATCHES", "Patch", "installed"]

_LOG = logging.getLogger(__name__)

_CONTAINERS = threading.local()  # per worker thread: step name -> its MetricsContainer


def patch_metrics_containers() -> Undo:
    """Make each bundle's counters land in the container that gets committed, without
    a new sampler state per bundle.

    Beam's ``TransformExecutor.call`` creates a fresh MetricsContainer per bundle, but
    ``StateSampler.scoped_state`` returns the state cached for the step, which still
    points at the first bundle's container: counters were lost. The first fix (forget
    the cached states so each bundle binds its own container) made three new sampler
    states per bundle, which the sampler keeps in a list for ever: a live stream grew
    by thousands of objects a second, and the garbage collector's full collections,
    which walk them all, stalled every step for 50-180 ms. Now each worker thread keeps
    one container per step, the one the cached states point at, emptied at the start of
    each bundle: Beam still commits exactly that bundle's updates.
    """
    original = executor.MetricsContainer

    def bundle_container(step_name):
        containers = _CONTAINERS.__dict__.setdefault("by_step", {})
        container = containers.get(step_name)
        if container is None:
            container = containers[step_name] = original(step_name)
        else:
            container.reset()
        return container

    return replace(executor, "MetricsContainer", bundle_container)


def patch_serial_fifo() -> Undo:
    """Serially executed steps take their queued bundles oldest first (Beam: newest)."""
    state_class = executor._SerialEvaluationState

    def _update_currently_evaluating(self, new_work, completed_work):
        with self._lock:
            if new_work:
                self.serial_queue.append(new_work)
            if completed_work:
                assert self.currently_evaluating == completed_work
                self.currently_evaluating = None
            if self.serial_queue and not self.currently_evaluating:
                next_work = self.serial_queue.popleft()  # Beam: pop(), the newest
                self.currently_evaluating = next_work
                executor._TransformEvaluationState.schedule(self, next_work)

    return replace(state_class, "_update_currently_evaluating", _update_currently_evaluating)


_NOT_COMPUTED = object()


def _min_pending_timestamp(bundle) -> Optional[Timestamp]:
    """The smallest element timestamp of a committed bundle (None when it is empty),
    computed once: a committed bundle never changes."""
    cached = getattr(bundle, "_beam_pipelines_min", _NOT_COMPUTED)
    if cached is _NOT_COMPUTED:
        cached = None
        for value in bundle.get_elements_iterable():
            if cached is None or value.timestamp < cached:
                cached = value.timestamp
        bundle._beam_pipelines_min = cached
    return cached  # type: ignore[return-value]


def patch_watermark_refresh() -> Undo:
    """Beam's ``_TransformWatermarks.refresh`` with each pending bundle's minimum timestamp
    computed once instead of at every refresh. Same result."""
    tw_class = watermark_manager._TransformWatermarks
    granularity = watermark_manager.TIME_GRANULARITY

    def refresh(self) -> bool:
        with self._lock:
            pending = [_min_pending_timestamp(bundle) for bundle in self._pending]
            pending_minimums = [m for m in pending if m is not None]
            pending_holder = WatermarkManager.WATERMARK_POS_INF
            if pending_minimums:
                pending_holder = min(pending_minimums) - granularity
            input_watermarks = [tw.output_watermark for tw in self._input_transform_watermarks]
            input_watermarks.append(WatermarkManager.WATERMARK_POS_INF)
            producer_watermark = min(input_watermarks)
            self._input_watermark = max(
                self._input_watermark, min(pending_holder, producer_watermark)
            )
            earliest_hold = min(
                self._keyed_earliest_holds.values(), default=WatermarkManager.WATERMARK_POS_INF
            )
            new_output_watermark = min(self._input_watermark, earliest_hold)
            advanced = new_output_watermark > self._output_watermark
            self._output_watermark = new_output_watermark
            return advanced

    return replace(tw_class, "refresh", refresh)


class DoFnPool:
    """Set-up copies of each step's DoFn, kept between bundles (patch ``dofn_reuse``).

    Beam's ``_ParDoEvaluator`` gives every bundle a fresh copy of the DoFn (a pickle
    round trip), inspects its signature, calls ``setup`` and, at the end of the bundle,
    ``teardown``: several milliseconds a bundle, which is most of a live pipeline's time
    when bundles are small. Runners in production keep a DoFn instance for many bundles
    (``setup`` once, ``start_bundle``/``finish_bundle`` per bundle, ``teardown`` when the
    worker is done); so does this one. A copy serves one bundle at a time; a copy whose
    bundle failed is dropped; the rest are torn down when the run ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[Any, list] = {}
        self._copies: list = []  # (DoFn copy, its DoFnRunner) of every copy made

    @classmethod
    def of(cls, evaluation_context) -> DoFnPool:
        with _POOLS_LOCK:
            pool = getattr(evaluation_context, "_beam_pipelines_dofns", None)
            if pool is None:
                pool = cls()
                evaluation_context._beam_pipelines_dofns = pool
            return pool

    def take(self, step) -> Any:
        with self._lock:
            idle = self._idle.get(step)
            return idle.pop() if idle else None

    def give(self, step, dofn, runner) -> None:
        with self._lock:
            self._idle.setdefault(step, []).append((dofn, runner))

    def made(self, dofn, runner) -> None:
        with self._lock:
            self._copies.append((dofn, runner))

    def teardown(self) -> None:
        with self._lock:
            copies, self._copies, self._idle = self._copies, [], {}
        for _dofn, runner in copies:
            try:
                runner.teardown()
            except Exception:  # a failing teardown must not hide the run's result
                _LOG.warning("teardown of a DoFn failed", exc_info=True)


_POOLS_LOCK = threading.Lock()


def patch_dofn_reuse() -> Undo:
    """ParDo steps keep their set-up DoFn copies between bundles (see :class:`DoFnPool`)."""
    evaluator = transform_evaluator._ParDoEvaluator
    original_start, original_finish = evaluator.start_bundle, evaluator.finish_bundle

    def start_bundle(self):
        if not self._perform_dofn_pickle_test:  # the SDF driver shares its DoFn: Beam's way
            return original_start(self)
        pool = DoFnPool.of(self._evaluation_context)
        step = self._applied_ptransform
        reused = pool.take(step)
        # Beam's start_bundle, with the copy taken from the pool when there is one.
        self._tagged_receivers = transform_evaluator._TaggedReceivers(self._evaluation_context)
        for output_tag in step.outputs:
            output_pcollection = pvalue.PCollection(None, tag=output_tag)
            output_pcollection.producer = step
            self._tagged_receivers[output_tag] = self._evaluation_context.create_bundle(
                output_pcollection
            )
            self._tagged_receivers[output_tag].tag = output_tag
        self._counter_factory = counters.CounterFactory()
        transform = step.transform
        dofn = reused[0] if reused else pickler.roundtrip(transform.dofn)
        args = transform.args if hasattr(transform, "args") else []
        kwargs = transform.kwargs if hasattr(transform, "kwargs") else {}
        self.user_state_context = None
        self.user_timer_map = {}
        if userstate.is_stateful_dofn(dofn):
            kv_type_hint = step.inputs[0].element_type
            if kv_type_hint and kv_type_hint != Any:
                self.key_coder = coders.registry.get_coder(kv_type_hint).key_coder()
            else:
                self.key_coder = coders.registry.get_coder(Any)
            self.user_state_context = transform_evaluator.DirectUserStateContext(
                self._step_context, dofn, self.key_coder
            )
            _, all_timer_specs = userstate.get_dofn_specs(dofn)
            for timer_spec in all_timer_specs:
                self.user_timer_map[f"user/{timer_spec.name}"] = timer_spec
        self.runner = common.DoFnRunner(
            dofn,
            args,
            kwargs,
            self._side_inputs,
            step.inputs[0].windowing,
            tagged_receivers=self._tagged_receivers,
            step_name=step.full_label,
            state=common.DoFnState(self._counter_factory),
            user_state_context=self.user_state_context,
        )
        if reused is None:
            pool.made(dofn, self.runner)
            self.runner.setup()
        self._beam_pipelines_copy = dofn
        self.runner.start()

    def finish_bundle(self):
        dofn = getattr(self, "_beam_pipelines_copy", None)
        if dofn is None:
            return original_finish(self)
        self.runner.finish()
        DoFnPool.of(self._evaluation_context).give(self._applied_ptransform, dofn, self.runner)
        bundles = list(self._tagged_receivers.values())
        result_counters = self._counter_factory.get_counters()
        if self.user_state_context:
            self.user_state_context.commit()
            self.user_state_context.reset()
        return transform_evaluator.TransformResult(self, bundles, [], result_counters, None)

    undo_start = replace(evaluator, "start_bundle", start_bundle)
    undo_finish = replace(evaluator, "finish_bundle", finish_bundle)

    def undo() -> None:
        undo_finish()
        undo_start()

    return undo


_DEPTHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _depth(applied) -> int:
    """How many steps lie upstream of ``applied`` on its longest path from a root."""
    depth = _DEPTHS.get(applied)
    if depth is None:
        producers = [p.producer for p in applied.inputs if getattr(p, "producer", None)]
        depth = 1 + max((_depth(p) for p in producers if p is not applied), default=-1)
        _DEPTHS[applied] = depth
    return depth


class DownstreamFirstQueue(queue.Queue):
    """The executor's task queue, most downstream step first (patch ``downstream_first``).

    Beam's queue is first in, first out, and a step executed serially (a stateful DoFn
    such as the windowed count) puts its next bundle at the back of the queue only when
    the previous one is done: it gets one bundle per trip through a queue that the
    source and the steps next to it keep full. Under a steady stream, it fell further
    behind every second (a live run at 1,000 events/s counted events 10 s late while
    every other step kept up). Taking the deepest step's work first drains what has
    been read before more is read: the way a streaming runner applies backpressure.
    The monitor (which schedules new work and fires timers) runs when the queue is
    empty of step work; equal depths stay first in, first out.
    """

    def _init(self, maxsize: int) -> None:
        self._heap: list = []
        self._order = itertools.count()

    def _qsize(self) -> int:
        return len(self._heap)

    def _put(self, task) -> None:
        applied = getattr(task, "_applied_ptransform", None)
        depth = _depth(applied) if applied is not None else -1
        heapq.heappush(self._heap, (-depth, next(self._order), task))

    def _get(self):
        return heapq.heappop(self._heap)[2]


def patch_downstream_first() -> Undo:
    """The executor runs its most downstream work first (:class:`DownstreamFirstQueue`)."""
    service = executor._ExecutorService

    def __init__(self, num_workers):
        self.queue = DownstreamFirstQueue()
        self.workers = [service._ExecutorServiceWorker(self.queue, i) for i in range(num_workers)]
        self.shutdown_requested = False

    return replace(service, "__init__", __init__)


MONITOR_IDLE_WAIT = 0.001  # seconds: the lateness this adds to a due processing-time timer


def patch_idle_monitor() -> Undo:
    """The monitor waits for news while idle, instead of spinning (``idle_monitor``).

    News is a finished bundle (``all_updates``: the wait ends at once) or a timer that
    falls due: timers are looked at again after at most :data:`MONITOR_IDLE_WAIT`. Work
    the executor service still has queued, or executing, makes no difference: only their
    completion is news to the monitor.
    """
    monitor = executor._ExecutorServiceParallelExecutor._MonitorTask
    call = monitor.call

    def waiting_call(self, state_sampler):
        updates = self._executor.all_updates._queue
        with updates.not_empty:  # a peek: the update stays queued for Beam's call
            updates.not_empty.wait_for(updates._qsize, MONITOR_IDLE_WAIT)
        return call(self, state_sampler)

    return replace(monitor, "call", waiting_call)


def patch_dofn_introspection() -> Undo:
    """Beam's DoFn introspection computed once (runners/introspection.py)."""
    return introspection.remember_dofn_introspection()


class Patch(NamedTuple):
    name: str
    install: Callable[[], Undo]


# Every process-wide patch, in the order they are installed (undone in reverse).
PATCHES: tuple[Patch, ...] = (
    Patch("metrics_containers", patch_metrics_containers),
    Patch("serial_fifo", patch_serial_fifo),
    Patch("watermark_refresh", patch_watermark_refresh),
    Patch("dofn_reuse", patch_dofn_reuse),
    Patch("dofn_introspection", patch_dofn_introspection),
    Patch("downstream_first", patch_downstream_first),
    Patch("idle_monitor", patch_idle_monitor),
    Patch("triggered_side_inputs", patch_triggered_side_inputs),
    Patch("delivery_lineage", patch_delivery_lineage),
    Patch("direct_handoff", patch_direct_handoff),
)

_LOCK = threading.Lock()
_RUNS = 0  # runs that have the patches installed now
_UNDO: list[Undo] = []


def install() -> None:
    """Install every patch for one more run (the first run installs them)."""
    global _RUNS
    with _LOCK:
        if _RUNS == 0:
            _UNDO[:] = [patch.install() for patch in PATCHES]
        _RUNS += 1


def uninstall() -> None:
    """One run ended; the last one to end puts Beam back as it was."""
    global _RUNS
    with _LOCK:
        _RUNS -= 1
        if _RUNS == 0:
            for undo in reversed(_UNDO):
                undo()
            _UNDO.clear()


@contextmanager
def installed() -> Iterator[None]:
    """Every patch installed for the duration of the block."""
    install()
    try:
        yield
    finally:
        uninstall()
