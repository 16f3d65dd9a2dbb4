"""The built-in synthetic source: deterministic user events, no broker, no network.

``ReadSynthetic(count=N)`` is bounded (batch): the default pageviews run uses it. The
events are generated in ranges by a DoFn, so a large count does not build a big list at
pipeline-construction time.

``unbounded_synthetic(generator, count)`` / ``UnboundedSynthetic`` is the streaming
source: an unbounded splittable DoFn that emits ``generator.rate`` events per second of
wall-clock time with event times near "now", advances a watermark and defers the rest
of its restriction between polls, like a broker reader. It stops after ``count`` events
when one is given (pageviews passes ``--synthetic_events``) and never stops otherwise.
"""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.base.errors import ConfigError
from transforms.io.synthetic.events import SyntheticEvents
from transforms.records import RawRecord

__all__ = [
    "ENDLESS", "ReadSynthetic", "STREAMING_MAX_DELAY", "unbounded_synthetic", "UnboundedSynthetic"
]

_RANGE = 10_000


class _GenerateRange(beam.DoFn):
    def __init__(self, generator: SyntheticEvents) -> None:
        self._generator = generator

    def process(self, bounds: tuple[int, int]):
        first, count = bounds
        for offset, payload in enumerate(self._generator.payloads(count, first)):
            yield RawRecord(payload, {"source": "synthetic", "index": first + offset})


class ReadSynthetic(beam.PTransform):
    """A bounded stream of ``count`` synthetic user events as RawRecords."""

    def __init__(self, count: int = 5_000, generator: SyntheticEvents | None = None) -> None:
        super().__init__()
        if not isinstance(count, int) or count <= 0:
            raise ConfigError("--synthetic_events", "a whole number > 0", count)
        self._count = count
        self._generator = generator or SyntheticEvents()

    def expand(self, pbegin):
        ranges = [(i, min(_RANGE, self._count - i)) for i in range(0, self._count, _RANGE)]
        return (
            pbegin
            | "Ranges" >> beam.Create(ranges)
            | "Generate" >> beam.ParDo(_GenerateRange(self._generator))
        )


# ---- the unbounded source (streaming) ----------------------------------------------

# A streaming generator keeps out-of-order events at most this far behind "now", so
# the watermark (which must stay below every future event time) trails the clock by
# seconds, not by the batch generator's two minutes, and windows close promptly.
STREAMING_MAX_DELAY = 2.0
# Upper bound of the restriction when no count is given: effectively endless.
ENDLESS = 2**62
# Longest pause between two polls of the clock when no event is due yet.
_MAX_PAUSE = 0.5


class _UnboundedSyntheticFn(beam.DoFn, RestrictionProvider):
    """An unbounded splittable DoFn emitting ``rate`` events per wall-clock second.

    The element is the wall-clock time the source started (event time of event 0);
    the restriction is the range of event indices. Each call emits the events that are
    due by now, sets the watermark below the earliest event still to come, and defers
    the remainder until the next event is due: the same shape as a broker reader
    (``defer_remainder`` + a manual watermark estimator), so it exercises the same
    runner path as the Kafka source.
    """

    def __init__(self, generator: SyntheticEvents, count: int | None) -> None:
        self._generator = generator
        self._stop = count if count is not None else ENDLESS
        # How far an event's timestamp may fall behind its nominal time: out of order
        # by up to max_delay, then floored to whole seconds by the parser.
        self._lag = (generator.max_delay if generator.out_of_order else 0.0) + 1.0

    # RestrictionProvider
    def initial_restriction(self, element: float) -> OffsetRange:
        return OffsetRange(0, self._stop)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element: float, restriction: OffsetRange) -> int:
        return restriction.size()

    def split(self, element, restriction):
        yield restriction  # one ordered stream: indices are emitted as they fall due

    # WatermarkEstimatorProvider, via the DoFn parameter below
    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        started: float,
        tracker=beam.DoFn.RestrictionParam(),
        watermark=beam.DoFn.WatermarkEstimatorParam(
            ManualWatermarkEstimator.default_provider()
        ),
    ):
        generator = _starting_at(self._generator, started)
        rate = generator.rate
        position = tracker.current_restriction().start
        stop = tracker.current_restriction().stop
        due = min(stop, int((time.time() - started) * rate) + 1)
        claimed_all = True
        for offset, payload in enumerate(generator.payloads(max(0, due - position), position)):
            index = position + offset
            if not tracker.try_claim(index):
                claimed_all = False  # the runner split the rest off: it resumes elsewhere
                due = index  # the watermark may only pass what was emitted
                break
            # Stamped with the earliest event time this index can carry: the parser
            # re-stamps valid events with their own time, which is never earlier, so no
            # event falls behind the watermark on its way.
            yield TimestampedValue(
                RawRecord(payload, {"source": "synthetic", "index": index}),
                started + index / rate - self._lag,
            )
        position = max(position, due)
        next_time = started + position / rate
        low = Timestamp.of(next_time - self._lag)
        current = watermark.current_watermark()
        if current is None or low > current:
            watermark.set_watermark(low)
        # At the count the restriction is done and the stream ends; before it, wait
        # until the next event is due (a generator method cannot `return` early without
        # Beam warning, hence the flags).
        if claimed_all and position < stop:
            pause = min(_MAX_PAUSE, max(0.0, next_time - time.time()))
            tracker.defer_remainder(Duration.of(pause))


def _starting_at(generator: SyntheticEvents, start: float) -> SyntheticEvents:
    return SyntheticEvents(
        seed=generator.seed,
        rate=generator.rate,
        out_of_order=generator.out_of_order,
        max_delay=generator.max_delay,
        malformed=generator.malformed,
        start=start,
        users=generator.users,
        pages=generator.pages,
    )


class _StartClock(beam.DoFn):
    """Reads the wall clock when the pipeline runs (not when it is built)."""

    def process(self, unused_impulse):
        yield time.time()


class UnboundedSynthetic(beam.PTransform):
    """Synthetic user events at ``generator.rate`` per second of wall-clock time.

    Event times start at the moment the pipeline starts running (``start`` of the
    generator is replaced by "now"); out-of-order events lag by at most
    :data:`STREAMING_MAX_DELAY` seconds. With ``count`` the stream ends after that many
    events (the watermark then reaches the end of time and every window closes);
    without it the stream never ends.
    """

    def __init__(self, generator: SyntheticEvents | None = None, count: int | None = None):
        super().__init__()
        if count is not None and (not isinstance(count, int) or count <= 0):
            raise ConfigError("--synthetic_events", "a whole number > 0", count)
        generator = _starting_at(generator or SyntheticEvents(), 0.0)  # start: set per run
        generator.max_delay = min(generator.max_delay, STREAMING_MAX_DELAY)
        self._generator = generator
        self._count = count

    def expand(self, pbegin):
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "StartClock" >> beam.ParDo(_StartClock())
            | "Generate" >> beam.ParDo(_UnboundedSyntheticFn(self._generator, self._count))
        )


def unbounded_synthetic(generator: SyntheticEvents, count: int | None = None) -> beam.PTransform:
    """The streaming synthetic source pageviews uses for ``--source=synthetic --streaming``."""
    return UnboundedSynthetic(generator, count)
