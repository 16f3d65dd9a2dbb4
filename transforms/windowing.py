"""Windowed aggregation per key, the same definition in batch and in streaming.

``WindowedAggregate(combine_fn, config, streaming=...)`` takes ``(key, record)`` pairs
timestamped with event time and produces one :class:`WindowedResult` per key and window
(batch) or per pane (streaming).

* **Batch** uses Beam's own ``WindowInto`` + ``CombinePerKey``: every runner optimises
  it (combiner lifting), and a bounded input has no late data.
* **Streaming** uses a stateful DoFn with event-time and processing-time timers instead
  of ``WindowInto(trigger=...)``. Why: Beam's Python SDK drops data that arrives after
  the allowed lateness *silently*, with no counter (the Java SDK has
  ``droppedDueToLateness``), and our rule is that no record is ever lost silently. Here
  a too-late record goes to the ``late`` output (the pipelines dead-letter it) and is
  counted in the ``late_events_dropped`` metric. The firing rules are Beam's
  ``AfterWatermark(early=AfterProcessingTime(early_firing), late=AfterCount(1))`` with
  accumulating panes: an EARLY pane at most every ``early_firing`` seconds of processing
  time while data arrives, one ON_TIME pane when the watermark passes the window end,
  one LATE pane per late record until ``window_end + allowed_lateness``, and when the
  watermark passes that point a last LATE pane with the final value and
  ``is_final=True`` (Beam's ``ClosingBehavior.FIRE_ALWAYS``; with no allowed lateness the
  ON_TIME pane is the final one).

  Limitation, by design: a key learns the watermark from its own timers. A key with no
  open window that receives a record later than the allowed lateness counts it in a
  LATE pane instead of dropping it: we err on the side of keeping data. (On a runner that
  defers commits, the step also knows the event time up to which its windows are all
  written, and a record for such a window is late whatever its key.)

  Delivery: on a runner that keeps this state in memory (LocalStreamingRunner), each
  window holds what it counted in the run's delivery gate (:mod:`transforms.delivery`),
  its panes carry the window's token, and its expiry releases it; so no source position
  it counted is committed before its last pane is written. After a restart, a record read
  again whose window was written before the crash is skipped (``replayed_records_skipped``).
"""

# Over 500 lines: the batch and the streaming definitions of one windowed aggregation stay side by side, so they cannot drift apart.

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Iterable, NamedTuple, Optional, Tuple

import apache_beam as beam
from apache_beam import coders, typehints
from apache_beam.metrics import Metrics
from apache_beam.transforms import window as beam_window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from transforms import delivery
from transforms.base.errors import ConfigError

LATE = "late"
_MICRO = Duration(micros=1)
# Sliding windows put each event in size / period windows: beyond this many, a run does
# that much work per event only when asked to (a period of 1 s on a day makes 86,400).
MAX_WINDOWS_PER_EVENT = 1000


def is_positive_seconds(value: object) -> bool:
    """A finite number of seconds > 0 (not a bool): --early_firing may be sub-second."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    """Window and trigger settings, in whole seconds."""

    size: int = 300
    period: Optional[int] = None  # sliding windows when set
    allowed_lateness: int = 0
    early_firing: Optional[float] = None  # processing-time early panes (streaming), sub-second allowed
    allow_many_windows: bool = False  # more than MAX_WINDOWS_PER_EVENT windows per event

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size <= 0:
            raise ConfigError("--window_size", "a whole number of seconds > 0", self.size)
        if self.period is not None and (
            not isinstance(self.period, int) or not 0 < self.period <= self.size
        ):
            raise ConfigError(
                "--window_period", f"a whole number of seconds in (0, {self.size}]", self.period
            )
        if not isinstance(self.allowed_lateness, int) or self.allowed_lateness < 0:
            raise ConfigError(
                "--allowed_lateness", "a whole number of seconds >= 0", self.allowed_lateness
            )
        if self.early_firing is not None and not is_positive_seconds(self.early_firing):
            raise ConfigError("--early_firing", "a number of seconds > 0", self.early_firing)
        if self.windows_per_event > MAX_WINDOWS_PER_EVENT and not self.allow_many_windows:
            raise ConfigError.from_message(
                f"--window_period: --window_size={self.size} with --window_period={self.period} "
                f"puts every event in {self.windows_per_event} windows (more than "
                f"{MAX_WINDOWS_PER_EVENT}); pass --allow_many_windows if that is meant"
            )

    @property
    def windows_per_event(self) -> int:
        return 1 if self.period is None else -(-self.size // self.period)

    @property
    def slice_seconds(self) -> int:
        """The coarsest epoch-aligned slices whose events all fall in the same windows:
        the window size for tumbling windows, gcd(size, period) for sliding ones. Counts
        pre-aggregated per slice are exact inputs to the windowed combine."""
        return self.size if self.period is None else math.gcd(self.size, self.period)

    def window_starts(self, second: int) -> list[int]:
        """Starts of the windows holding event second ``second``, as Beam assigns them."""
        context = beam_window.WindowFn.AssignContext(Timestamp(seconds=second))
        return [int(w.start.micros // 1_000_000) for w in self.window_fn().assign(context)]

    def window_fn(self) -> beam_window.NonMergingWindowFn:
        if self.period is None:
            return beam_window.FixedWindows(self.size)
        return beam_window.SlidingWindows(self.size, self.period)


class WindowedResult(NamedTuple):
    key: Any
    window_start: float
    window_end: float
    value: Any
    pane_timing: Optional[str] = None
    pane_index: Optional[int] = None
    is_final: Optional[bool] = None


class _AttachWindow(beam.DoFn):
    def process(self, element, window=beam.DoFn.WindowParam):
        key, value = element
        yield WindowedResult(key, float(window.start), float(window.end), value)


class Partial(NamedTuple):
    """Records of one key whose event times fall in the same windows, combined before
    the streaming aggregate, which merges ``accumulator`` instead of adding the records
    one by one (see :class:`CountPerSlice`). The records themselves are only needed if
    they arrive too late: ``records_of(rows)`` gives them as (record, event second)
    pairs. ``records_of`` is a module-level function, so a Partial pickles."""

    accumulator: Any
    rows: Any
    records_of: Callable[[Any], list[tuple[Any, int]]]


class _WindowState:
    """Per-window state of one key: accumulator and pane bookkeeping."""

    __slots__ = ("accumulator", "next_pane", "on_time_done", "dirty")

    def __init__(self, accumulator: Any) -> None:
        self.accumulator = accumulator
        self.next_pane = 0
        self.on_time_done = False
        self.dirty = False

    def __getstate__(self):
        return (self.accumulator, self.next_pane, self.on_time_done, self.dirty)

    def __setstate__(self, state):
        self.accumulator, self.next_pane, self.on_time_done, self.dirty = state


class _StreamingAggregateFn(beam.DoFn):
    WINDOWS = ReadModifyWriteStateSpec("windows", coders.PickleCoder())
    WATERMARK = ReadModifyWriteStateSpec("watermark_seen", coders.PickleCoder())
    KEY = ReadModifyWriteStateSpec("key", coders.PickleCoder())
    # When the armed early timer is due (micros); empty when none is armed.
    EARLY_DEADLINE = ReadModifyWriteStateSpec("early_deadline", coders.VarIntCoder())
    EVENT_TIMER = TimerSpec("event_time", TimeDomain.WATERMARK)
    EARLY_TIMER = TimerSpec("early", TimeDomain.REAL_TIME)

    def __init__(self, combine_fn: beam.CombineFn, config: WindowConfig, metrics_ns: str):
        self._combine_fn = combine_fn
        self._config = config
        self._window_fn = config.window_fn()
        self._lateness = Duration(seconds=config.allowed_lateness)
        # How a runner that defers commits (transforms.delivery) names this step's windows;
        # stable across restarts, since a restart's floor is looked up by it.
        self._step = (f"{metrics_ns}/windows/{config.size}/{config.period or config.size}/"
                      f"{config.allowed_lateness}")
        self._replayed = Metrics.counter(metrics_ns, "replayed_records_skipped")

    def setup(self):
        self._combine_fn.setup()

    def _windows_of(self, timestamp: Timestamp) -> Iterable[Any]:
        context = beam_window.WindowFn.AssignContext(timestamp)
        return self._window_fn.assign(context)

    def _expiry(self, w: beam_window.IntervalWindow) -> Timestamp:
        return w.max_timestamp() + self._lateness

    def process(
        self,
        element,
        timestamp=beam.DoFn.TimestampParam,
        windows_state=beam.DoFn.StateParam(WINDOWS),
        watermark_state=beam.DoFn.StateParam(WATERMARK),
        key_state=beam.DoFn.StateParam(KEY),
        early_deadline=beam.DoFn.StateParam(EARLY_DEADLINE),
        event_timer=beam.DoFn.TimerParam(EVENT_TIMER),
        early_timer=beam.DoFn.TimerParam(EARLY_TIMER),
    ):
        key, record = element
        windows: dict[float, _WindowState] = windows_state.read() or {}
        seen = watermark_state.read()
        if key_state.read() is None:
            key_state.write(key)
        scope = delivery.current()
        closed = replayed = None
        if scope is not None:
            # Windows of this step already written (or, after a restart, written before
            # it) are closed; a record read again after a restart whose window was
            # written has been counted (or dead-lettered) already.
            closed = scope.closed_before(self._step)
            replayed = scope.replay_floor(self._step) if scope.replayed() else None
        changed = False
        partial = record if isinstance(record, Partial) else None
        for w in self._windows_of(timestamp):
            expiry = self._expiry(w).micros
            if replayed is not None and expiry <= replayed:
                self._replayed.inc(len(partial.rows) if partial is not None else 1)
                continue
            if (seen is not None and seen.micros >= expiry) or (closed is not None and expiry <= closed):
                late = (
                    partial.records_of(partial.rows) if partial is not None
                    else [(record, timestamp)]
                )
                for one, event_second in late:
                    yield beam.pvalue.TaggedOutput(
                        LATE, (key, one, float(event_second), float(w.start), float(w.end))
                    )
                continue
            start = float(w.start)
            state = windows.get(start)
            if state is None:
                state = windows[start] = _WindowState(self._combine_fn.create_accumulator())
            if partial is not None:
                state.accumulator = self._combine_fn.merge_accumulators(
                    [state.accumulator, partial.accumulator]
                )
            else:
                state.accumulator = self._combine_fn.add_input(state.accumulator, record)
            changed = True
            owner = (self._step, key, start)
            if scope is not None:
                scope.hold(self._step, owner, expiry)
            if seen is not None and seen >= w.max_timestamp():
                # The watermark has passed this window: every late record fires a LATE pane.
                state.on_time_done = True
                if scope is not None:
                    scope.attach(owner)
                yield self._pane(key, start, state, "LATE", final=False)
            else:
                state.dirty = True
        if not changed:
            return
        windows_state.write(windows)
        self._arm_event_timer(windows, event_timer)
        if self._config.early_firing and any(s.dirty for s in windows.values()):
            arm_early_timer(self._config.early_firing, early_deadline, early_timer)

    def _arm_event_timer(self, windows: dict[float, _WindowState], event_timer) -> None:
        deadlines = []
        for start, state in windows.items():
            w = self._window(start)
            deadlines.append(self._expiry(w) if state.on_time_done else w.max_timestamp())
        if deadlines:
            event_timer.set(min(deadlines))

    def _window(self, start: float) -> beam_window.IntervalWindow:
        size = self._config.size
        return beam_window.IntervalWindow(start, start + size)

    def _pane(self, key, start: float, state: _WindowState, timing: str, final: bool):
        index = state.next_pane
        state.next_pane += 1
        state.dirty = False
        value = self._combine_fn.extract_output(
            self._combine_fn.compact(state.accumulator)
        )
        return WindowedResult(
            key, start, start + self._config.size, value, timing, index, final
        )

    @on_timer(EVENT_TIMER)
    def on_event_time(
        self,
        fire_time=beam.DoFn.TimestampParam,
        windows_state=beam.DoFn.StateParam(WINDOWS),
        watermark_state=beam.DoFn.StateParam(WATERMARK),
        key_state=beam.DoFn.StateParam(KEY),
        event_timer=beam.DoFn.TimerParam(EVENT_TIMER),
    ):
        key = key_state.read()
        watermark_state.write(fire_time)
        windows: dict[float, _WindowState] = windows_state.read() or {}
        scope = delivery.current()
        if scope is not None:
            scope.closed_before(self._step)  # this step's watermark moved: note it
        for start in sorted(windows):
            state = windows[start]
            w = self._window(start)
            owner = (self._step, key, start)
            expired = fire_time >= self._expiry(w)
            if not state.on_time_done and fire_time >= w.max_timestamp():
                state.on_time_done = True
                if scope is not None:
                    scope.attach(owner)
                yield self._pane(key, start, state, "ON_TIME", final=expired)
            elif expired:
                # The window closes (watermark past end + allowed lateness): its last pane
                # says so, repeating the count, so a consumer knows the value is final.
                if scope is not None:
                    scope.attach(owner)
                yield self._pane(key, start, state, "LATE", final=True)
            if expired:
                del windows[start]
                if scope is not None:  # its last pane is out: what it counted may commit
                    scope.release(owner)
        if windows:
            windows_state.write(windows)
            self._arm_event_timer(windows, event_timer)
        else:
            windows_state.clear()

    @on_timer(EARLY_TIMER)
    def on_early(
        self,
        fire_time=beam.DoFn.TimestampParam,
        windows_state=beam.DoFn.StateParam(WINDOWS),
        key_state=beam.DoFn.StateParam(KEY),
        early_deadline=beam.DoFn.StateParam(EARLY_DEADLINE),
        early_timer=beam.DoFn.TimerParam(EARLY_TIMER),
    ):
        # A stale firing fires nothing (ten EARLY panes a second with --early_firing=1).
        if not early_firing_due(fire_time, early_deadline, early_timer):
            return
        windows: dict[float, _WindowState] = windows_state.read() or {}
        key = key_state.read()
        fired = False
        scope = delivery.current()
        for start in sorted(windows):
            state = windows[start]
            if state.dirty and not state.on_time_done:
                fired = True
                if scope is not None:
                    scope.attach((self._step, key, start))
                yield self._pane(key, start, state, "EARLY", final=False)
        if fired:
            windows_state.write(windows)


def arm_early_timer(early_firing: float, early_deadline, early_timer) -> None:
    """Arm the processing-time EARLY timer ``early_firing`` seconds from now, unless one
    is armed; ``early_deadline`` (state) remembers when it is due."""
    if early_deadline.read() is None:
        deadline = Timestamp.now() + Duration(seconds=early_firing)
        early_timer.set(deadline)
        early_deadline.write(deadline.micros)


def keyed_by_strings(pcoll: beam.PCollection) -> beam.PCollection:
    """``pcoll`` typed as (str, value) pairs, so the stateful step it feeds has a
    deterministic key coder. Beam checks the input PCollection's element type (not the
    ParDo's type hint) and a WindowInto keeps its input's, often Any: without this every
    streaming start logs "Key coder ... may not be deterministic". Keys are strings (page,
    device, user, service)."""
    hint = pcoll.element_type
    pair = getattr(hint, "tuple_types", None)  # Tuple[K, V]: (K, V)
    if hint in (None, typehints.Any):
        pcoll.element_type = typehints.KV[str, typehints.Any]
    elif pair is not None and len(pair) == 2 and pair[0] == typehints.Any:
        pcoll.element_type = typehints.KV[str, pair[1]]
    return pcoll


def early_firing_due(fire_time: Timestamp, early_deadline, early_timer) -> bool:
    """Whether an EARLY timer firing is the armed one (its deadline is then cleared).

    Beam's bundle-based direct runner delivers an expired timer again while its
    callback's bundle is in flight; only the armed deadline may fire panes, and it is set
    again in case the runner dropped it with the stale one. Every stateful DoFn with
    EARLY panes (windows, sessions) asks this first."""
    deadline = early_deadline.read()
    if deadline is None or fire_time.micros < deadline:
        if deadline is not None:
            early_timer.set(Timestamp(micros=deadline))
        return False
    early_deadline.clear()
    return True


class _CountLate(beam.DoFn):
    """Counts too-late records here, in a plain DoFn: the bundle-based DirectRunner does
    not commit metrics of bundles that fire timers, so counting inside the stateful
    DoFn would under-report."""

    def __init__(self, metrics_ns: str) -> None:
        self._dropped = Metrics.counter(metrics_ns, "late_events_dropped")

    def process(self, late):
        self._dropped.inc()
        yield late


class WindowedAggregate(beam.PTransform):
    """(key, record) timestamped by event time -> WindowedResult per key and window/pane.

    In streaming, records later than the allowed lateness come out of the ``late``
    output as ``(key, record, event_seconds, window_start, window_end)``; in batch that
    output is empty. Access both with ``result.results`` and ``result.late``.
    """

    def __init__(
        self,
        combine_fn: beam.CombineFn,
        config: WindowConfig,
        *,
        streaming: bool,
        metrics_namespace: str = "beam_pipelines",
    ) -> None:
        super().__init__()
        self._combine_fn = combine_fn
        self._config = config
        self._streaming = streaming
        self._ns = metrics_namespace

    def expand(self, keyed: beam.PCollection):
        if not self._streaming:
            results = (
                keyed
                | "Window" >> beam.WindowInto(self._config.window_fn())
                | "Combine" >> beam.CombinePerKey(self._combine_fn)
                | "AttachWindow" >> beam.ParDo(_AttachWindow())
            )
            late = results.pipeline | "NoLateData" >> beam.Create([])
            return _Aggregated(results, late)
        windowed = keyed | "GlobalWindow" >> beam.WindowInto(beam_window.GlobalWindows())
        outputs = (
            keyed_by_strings(windowed)
            | "FirePanes"
            >> beam.ParDo(_StreamingAggregateFn(self._combine_fn, self._config, self._ns))
            .with_input_types(Tuple[str, Any])  # state is keyed: keys are strings (page, device)
            .with_outputs(LATE, main="results")
        )
        late = outputs[LATE] | "CountLate" >> beam.ParDo(_CountLate(self._ns))
        return _Aggregated(outputs["results"], late)


class _Aggregated(NamedTuple):
    results: beam.PCollection
    late: beam.PCollection


class CountPerWindow(beam.DoFn):
    """Arrow tables of events -> ``((window_start, key), count)`` for every window and
    key, counted inside the tables: events are grouped per (key, slice) with numpy (see
    :attr:`WindowConfig.slice_seconds`), each slice's count goes to every window of the
    slice, as Beam's own window function assigns them, and the counts of a bundle's
    tables are added up before they leave (in ``finish_bundle``, in the global window:
    for bounded inputs). Combining these counts per key in the global window gives
    exactly what windowing and counting the events one by one gives, without a windowed
    GroupByKey, and the runner handles one element per (window, key) and bundle instead
    of one per (window, key) and table.

    ``where`` optionally keeps only rows whose column equals a value (``("action", "click")``).
    """

    def __init__(
        self, key_column: str, config: WindowConfig, where: Optional[Tuple[str, str]] = None
    ) -> None:
        self._key = key_column
        self._config = config
        self._where = where
        self._starts: dict[int, list[int]] = {}  # slice -> its windows' starts (few slices)
        self._counts: dict[tuple[int, Any], int] = {}

    def start_bundle(self):
        self._counts = {}

    def process(self, table):

        rows = _keys_and_slices(table, self._key, self._config.slice_seconds, self._where)
        if rows is None:
            return
        size, n_keys = self._config.slice_seconds, len(rows.keys)
        first = int(rows.slices.min())
        combined = (rows.slices - first) // size * n_keys + rows.codes
        found, counts = _count_values(combined)
        totals = self._counts
        for code, count in zip(found.tolist(), counts.tolist(), strict=True):
            start = first + (code // n_keys) * size
            starts = self._starts.get(start)
            if starts is None:
                starts = self._starts[start] = self._config.window_starts(start)
            key = rows.keys[code % n_keys]
            for window_start in starts:
                totals[(window_start, key)] = totals.get((window_start, key), 0) + count

    def finish_bundle(self):
        counts, self._counts = self._counts, {}
        for window_and_key, count in counts.items():
            yield WindowedValue(
                (window_and_key, count), MIN_TIMESTAMP, (beam_window.GlobalWindow(),)
            )


class CountPerSlice(beam.DoFn):
    """An Arrow table of events -> ``(key, Partial(count, rows, records_of))`` per key and
    slice (:attr:`WindowConfig.slice_seconds`) of the table, timestamped at the earliest
    event of the group: the streaming counterpart of :class:`CountPerWindow`.
    The streaming :class:`WindowedAggregate` assigns each Partial's windows from its
    timestamp (all of a slice's events share their windows) and adds the count to each,
    or, when a window has closed, sends ``records_of(rows)`` to its late output.
    A count can only be merged where its records would all have gone: lateness is
    decided per window, so the result is the one the records give one by one, except that
    late records of one batch fire one LATE pane together (as Beam's triggers fire once
    per bundle).

    ``where`` optionally keeps only rows whose column equals a value.
    """

    def __init__(
        self,
        key_column: str,
        config: WindowConfig,
        records_of: Callable[[Any], list[tuple[Any, int]]],
        where: Optional[Tuple[str, str]] = None,
    ) -> None:
        self._key = key_column
        self._config = config
        self._records_of = records_of
        self._where = where

    def process(self, table):
        import numpy as np
        import pyarrow as pa

        rows = _keys_and_slices(table, self._key, self._config.slice_seconds, self._where)
        if rows is None:
            return
        order = np.lexsort((rows.slices, rows.codes))
        codes, slices, seconds = rows.codes[order], rows.slices[order], rows.seconds[order]
        grouped = rows.table.take(pa.array(order))
        bounds = np.flatnonzero((np.diff(codes) != 0) | (np.diff(slices) != 0)) + 1
        starts = np.concatenate(([0], bounds)).tolist()
        ends = np.concatenate((bounds, [len(order)])).tolist()
        first_seconds = np.minimum.reduceat(seconds, starts).tolist()
        for start, end, second in zip(starts, ends, first_seconds, strict=True):
            partial = Partial(end - start, grouped.slice(start, end - start), self._records_of)
            yield beam_window.TimestampedValue((rows.keys[codes[start]], partial), second)


def _count_values(values):
    """(distinct values, how often each occurs) of a non-negative int numpy array.
    A table's events span few slices, so the codes are dense: counting them into a
    bincount is several times faster than np.unique's sort."""
    import numpy as np

    top = int(values.max()) + 1
    if top > 4 * len(values) + 1024:  # sparse (events far apart in time): sort instead
        return np.unique(values, return_counts=True)
    counts = np.bincount(values, minlength=top)
    found = np.flatnonzero(counts)
    return found, counts[found]


class _KeysAndSlices(NamedTuple):
    table: Any  # the rows ``where`` kept
    keys: list  # the distinct key values
    codes: Any  # per row: its key's index in ``keys`` (numpy)
    slices: Any  # per row: the start of its epoch-aligned slice, in seconds (numpy)
    seconds: Any  # per row: its event second (numpy)


def _keys_and_slices(
    table, key_column: str, slice_seconds: int, where: Optional[Tuple[str, str]]
) -> Optional[_KeysAndSlices]:
    """What :class:`CountPerWindow` and :class:`CountPerSlice` group by, for an Arrow table
    of events; None when ``where`` leaves no row."""
    import numpy as np
    import pyarrow.compute as pc

    if where is not None:
        column, value = where
        table = table.filter(pc.equal(table.column(column), value))
    if table.num_rows == 0:
        return None
    seconds = table.column("event_second").to_numpy()
    encoded = pc.dictionary_encode(table.column(key_column)).combine_chunks()
    return _KeysAndSlices(
        table, encoded.dictionary.to_pylist(), encoded.indices.to_numpy(),
        seconds - np.mod(seconds, slice_seconds), seconds,
    )
