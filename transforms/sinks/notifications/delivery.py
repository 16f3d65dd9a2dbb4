"""Delivery shared by every notification sink: retries, rate limits, delivery threads.

**Retries.** One alert gets at most ``max_attempts`` attempts within ``retry_budget``
seconds (counted from its first attempt). Timeouts, connection errors, 408, 429 and
5xx are retried with exponential backoff and full jitter (a random wait in
``[0, min(max_backoff, initial_backoff * 2**n)]``), or after exactly ``Retry-After``
when the endpoint says so (seconds or an HTTP date). A ``Retry-After`` longer than what
is left of the budget ends the attempts at once rather than sleeping past it. Any other
4xx is a refusal and is not retried; 3xx is not followed. What is not delivered ends
as an :class:`Outcome` with the last status, body or error, and the sink dead-letters
the alert.

**Threads.** Each endpoint (one webhook URL, one routing key) has its own small set of
delivery threads ("lanes", ``concurrency``), each with a bounded queue
(``queue_size``): a slow or dead endpoint only ever holds up its own alerts, never
another endpoint's, and never the pipeline's other steps for longer than it takes the
DoFn to wait for its own in-flight alerts at the end of a bundle. Alerts with the same
``lane_key`` (an incident's dedup key) always go to the same lane, so an incident's
trigger is sent before its resolve. A full queue blocks the caller: backpressure
instead of unbounded memory.

**A dead endpoint.** An alert that uses up its whole budget marks its endpoint down
for ``retry_budget`` seconds: alerts queued behind it are dead-lettered at once ("not
tried") rather than each waiting out a budget of its own, so a dead endpoint holds a
bundle up for about one budget (plus one attempt's timeout), not one per alert. Then
alerts are tried again, and the first one delivered clears the mark.

**No second send.** An endpoint remembers the ``event_id`` of the last ``remember``
alerts it delivered (an LRU per process) and of those in flight: submitting one again
(a retried bundle) returns the earlier outcome or joins the in-flight attempt instead
of sending again. Across processes and restarts the receiver's dedup key (PagerDuty's
``dedup_key``, the webhook ``Idempotency-Key``) is what recognises a re-delivery; Slack
has no such key, so a Slack message can repeat after a worker restart or when Slack
accepted a request whose response timed out (an ambiguous failure is retried: a
duplicate message is better than a lost alert).

**Rate limits.** An endpoint's :class:`RateLimiter` (a token bucket, shared by its
lanes and by every DoFn instance in the process) spaces requests (Slack: one message
per second per webhook) and is paused by a 429's ``Retry-After`` for all lanes at once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import queue
import random
import threading
import time
import zlib
from collections import OrderedDict
from concurrent.futures import Future
from typing import Callable, NamedTuple, Optional

from transforms.base.errors import ConfigError
from transforms.sinks.notifications.http import HttpClient, HttpRequest, HttpResponse

__all__ = [
    "DeliverySettings",
    "Endpoint",
    "Outcome",
    "RateLimiter",
    "deliver",
    "endpoint",
    "is_retryable",
]


@dataclasses.dataclass(frozen=True)
class DeliverySettings:
    """How hard a sink tries to deliver one alert, and with how many threads.

    ``timeout``: seconds to connect and, separately, to wait for the response, per
    attempt. ``max_attempts``: attempts per alert (1 = no retry). ``retry_budget``:
    seconds from an alert's first attempt after which no new attempt starts.
    ``initial_backoff`` / ``max_backoff``: the exponential backoff's first and largest
    ceiling, in seconds. ``concurrency``: delivery threads per endpoint. ``queue_size``:
    alerts waiting per thread before the DoFn blocks. ``remember``: delivered alert ids
    kept per endpoint to suppress re-sends from retried bundles.
    """

    timeout: float = 10.0
    max_attempts: int = 5
    retry_budget: float = 60.0
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    concurrency: int = 4
    queue_size: int = 1000
    remember: int = 10_000

    def __post_init__(self) -> None:
        for name in ("timeout", "retry_budget", "max_backoff"):
            value = getattr(self, name)
            if not _positive_number(value):
                raise ConfigError(name, "a number of seconds > 0", value)
        if not _positive_number(self.initial_backoff) or self.initial_backoff > self.max_backoff:
            raise ConfigError("initial_backoff", f"seconds in (0, max_backoff={self.max_backoff}]",
                              self.initial_backoff)
        for name in ("max_attempts", "concurrency", "queue_size", "remember"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, "a whole number >= 1", value)

    def backoff(self, retry: int, rand: Callable[[float, float], float] = random.uniform) -> float:
        """Full jitter: a random wait below the ``retry``-th exponential ceiling (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** min(retry - 1, 62))
        return rand(0.0, ceiling)


def _positive_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0)


class Outcome(NamedTuple):
    """How the delivery of one alert ended."""

    delivered: bool
    status: int  # the last HTTP status; 0 when the last attempt got no response
    body: str  # the last response body (truncated)
    error: Optional[str]  # the last attempt's network error, if any
    attempts: int
    elapsed: float  # seconds from the first attempt to the end
    retryable: bool  # True: the budget ran out on retryable failures; False: refused
    suppressed: bool = False  # True: an earlier attempt in this process delivered it
    gave_up: str = ""  # why no further attempt was made, when not delivered


def is_retryable(response: HttpResponse) -> bool:
    """No response (timeout, connection error), 408, 429 or 5xx."""
    return response.status == 0 or response.status in (408, 429) or response.status >= 500


class RateLimiter:
    """A token bucket: ``rate`` requests per second with bursts of ``burst``; ``rate``
    None means no limit (the limiter then only honours :meth:`pause`). Thread-safe."""

    def __init__(
        self,
        rate: Optional[float],
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and not _positive_number(rate):
            raise ConfigError("rate_limit", "requests per second > 0, or None", rate)
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ConfigError("burst", "a whole number >= 1", burst)
        self._interval = 1.0 / rate if rate else 0.0
        self._burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._next_free = -math.inf  # when the bucket is full again ("theoretical arrival")
        self._paused_until = -math.inf

    def reserve(self) -> float:
        """Take the next slot and return how long to wait before using it."""
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            if self._interval:
                earliest = self._next_free - (self._burst - 1) * self._interval
                start = max(start, earliest)
                self._next_free = max(self._next_free, start) + self._interval
            return max(0.0, start - now)

    def pause(self, seconds: float) -> None:
        """Let no request start for ``seconds`` (a 429's Retry-After), on every lane."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


def deliver(
    send: Callable[[], HttpResponse],
    settings: DeliverySettings,
    *,
    limiter: Optional[RateLimiter] = None,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[float, float], float] = random.uniform,
) -> Outcome:
    """Call ``send`` until it succeeds (2xx), is refused, or the attempts or the budget
    run out. ``sleep``/``clock``/``rand`` are parameters so tests run without waiting."""
    if limiter is not None:
        sleep(limiter.reserve())
    started = clock()
    attempt = 0
    while True:
        attempt += 1
        response = send()
        elapsed = clock() - started
        if 200 <= response.status < 300:
            return Outcome(True, response.status, response.body, None, attempt, elapsed, False)
        if not is_retryable(response):
            return Outcome(False, response.status, response.body, response.error, attempt,
                           elapsed, False, gave_up=f"HTTP {response.status} is not retried")
        wait, why = _next_wait(response, attempt, elapsed, settings, rand)
        if why is None and limiter is not None:
            if response.status == 429 and response.retry_after is not None:
                limiter.pause(response.retry_after)
            wait = max(wait, limiter.reserve())  # the slot after the pause or backoff
            if wait >= settings.retry_budget - elapsed:
                why = f"the rate limit leaves no time in the {settings.retry_budget:g}s retry budget"
        if why is not None:
            return Outcome(False, response.status, response.body, response.error, attempt,
                           elapsed, True, gave_up=why)
        sleep(wait)


def _next_wait(
    response: HttpResponse,
    attempt: int,
    elapsed: float,
    settings: DeliverySettings,
    rand: Callable[[float, float], float],
) -> tuple[float, Optional[str]]:
    """(seconds to wait before the next attempt, None) or (0, why there is none)."""
    if attempt >= settings.max_attempts:
        return 0.0, f"{attempt} attempts made (max_attempts)"
    left = settings.retry_budget - elapsed
    if response.retry_after is not None:
        wait, what = response.retry_after, "Retry-After"
    else:
        wait, what = settings.backoff(attempt, rand), "the next backoff"
    if wait >= left:
        return 0.0, (f"{what} ({wait:.1f}s) exceeds the {max(left, 0.0):.1f}s left of the "
                     f"{settings.retry_budget:g}s retry budget")
    return wait, None


class _Job(NamedTuple):
    event_id: str
    request: HttpRequest
    future: Future


_STOP = object()


class _Memory:
    """What an endpoint delivered (an LRU of event ids), what is in flight to it, and
    whether it is down (its circuit: see :meth:`Endpoint._deliver`)."""

    def __init__(self, remember: int) -> None:
        self.lock = threading.Lock()
        self.remember = remember
        self.delivered: OrderedDict[str, Outcome] = OrderedDict()
        self.in_flight: dict[str, Future] = {}
        self.down_until = -math.inf
        self.down_since = -math.inf
        self.down_cause: Optional[Outcome] = None


class Endpoint:
    """Delivery threads for one endpoint, with its shared rate limiter and memory.

    Get one with :func:`endpoint`. The rate limiter and the memory of delivered alerts
    are shared per process by ``fingerprint`` (one per webhook URL / routing key), so
    every DoFn instance writing to the same endpoint shares them.
    """

    def __init__(
        self,
        fingerprint: str,
        settings: DeliverySettings,
        limiter: RateLimiter,
        memory: _Memory,
        client_factory: Callable[[float], HttpClient] = HttpClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fingerprint = fingerprint
        self._clock = clock
        self.settings = settings
        self.limiter = limiter
        self._memory = memory
        self._client_factory = client_factory
        self._lock = threading.Lock()
        self._queues: list[queue.Queue] = []
        self._threads: list[threading.Thread] = []
        self._users = 0

    # -- lifecycle: DoFn.setup acquires, DoFn.teardown releases -----------------------
    def acquire(self) -> Endpoint:
        with self._lock:
            self._users += 1
            if not self._threads:
                self._start()
        return self

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or not self._threads:
                return
            queues, self._queues, self._threads = self._queues, [], []
        for lane in queues:  # after queued alerts: the threads finish them, then stop
            lane.put(_STOP)

    def _start(self) -> None:
        for index in range(self.settings.concurrency):
            lane: queue.Queue = queue.Queue(maxsize=self.settings.queue_size)
            thread = threading.Thread(
                target=self._run, args=(lane,), daemon=True,
                name=f"notify-{self.fingerprint[:8]}-{index}",
            )
            self._queues.append(lane)
            self._threads.append(thread)
            thread.start()

    # -- submitting -------------------------------------------------------------------
    def submit(self, event_id: str, lane_key: str, request: HttpRequest) -> Future:
        """Deliver ``request`` on the lane of ``lane_key``; a Future of its :class:`Outcome`.

        An ``event_id`` already delivered to this endpoint by this process, or in
        flight, is not sent again: the Future gives the earlier outcome
        (``suppressed=True``) or joins the attempt in flight."""
        memory = self._memory
        with memory.lock:
            done = memory.delivered.get(event_id)
            if done is not None:
                memory.delivered.move_to_end(event_id)
                future: Future = Future()
                future.set_result(done._replace(suppressed=True, attempts=0, elapsed=0.0))
                return future
            running = memory.in_flight.get(event_id)
            if running is not None:
                return running
            with self._lock:
                if not self._queues:
                    raise RuntimeError("Endpoint.submit() before acquire()")
                lane = self._queues[_lane_of(lane_key, len(self._queues))]
            future = Future()
            memory.in_flight[event_id] = future
        lane.put(_Job(event_id, request, future))  # blocks while the lane is full
        return future

    def _run(self, lane: queue.Queue) -> None:
        client = self._client_factory(self.settings.timeout)
        try:
            while True:
                job = lane.get()
                if job is _STOP:
                    return
                try:
                    outcome = self._deliver(client, job)
                except BaseException as exc:  # never leave a DoFn waiting on a dead future
                    self._finish(job, None)
                    job.future.set_exception(exc)
                    continue
                self._finish(job, outcome)
                job.future.set_result(outcome)
        finally:
            client.close()

    def _deliver(self, client: HttpClient, job: _Job) -> Outcome:
        """Deliver one job, unless the endpoint is down.

        An alert that used up its whole retry budget on retryable failures marks the
        endpoint down for ``retry_budget`` seconds: alerts queued meanwhile are not
        tried (they are dead-lettered with the failure that marked it down) instead of
        each waiting out its own budget, so a dead endpoint holds a bundle up for about
        one budget, not one per alert. After that time alerts are tried again; the
        first delivered one clears the mark.
        """
        memory = self._memory
        with memory.lock:
            now, cause = self._clock(), memory.down_cause
            if cause is not None and now < memory.down_until:
                return cause._replace(attempts=0, elapsed=0.0, gave_up=(
                    f"not tried: the endpoint failed another alert's whole retry budget "
                    f"{now - memory.down_since:.0f}s ago; it is tried again in "
                    f"{memory.down_until - now:.0f}s"))
        outcome = deliver(functools.partial(client.post, job.request), self.settings,
                          limiter=self.limiter)
        with memory.lock:
            if outcome.delivered:
                memory.down_cause, memory.down_until = None, -math.inf
            elif outcome.retryable:
                memory.down_cause, memory.down_since = outcome, self._clock()
                memory.down_until = memory.down_since + self.settings.retry_budget
        return outcome

    def _finish(self, job: _Job, outcome: Optional[Outcome]) -> None:
        memory = self._memory
        with memory.lock:
            memory.in_flight.pop(job.event_id, None)
            if outcome is not None and outcome.delivered:
                memory.delivered[job.event_id] = outcome
                while len(memory.delivered) > memory.remember:
                    memory.delivered.popitem(last=False)


def _lane_of(key: str, lanes: int) -> int:
    # crc32 is stable across processes and runs, unlike hash() of a str.
    return zlib.crc32(key.encode("utf-8")) % lanes


_ENDPOINTS: dict[tuple, Endpoint] = {}
_LIMITERS: dict[str, RateLimiter] = {}
_MEMORIES: dict[str, _Memory] = {}
_REGISTRY_LOCK = threading.Lock()


def endpoint(
    fingerprint: str,
    settings: DeliverySettings,
    rate_limit: Optional[float] = None,
    burst: int = 1,
) -> Endpoint:
    """The process-wide :class:`Endpoint` for ``fingerprint`` and these settings.

    Sinks writing to the same endpoint share its rate limiter (the first one's
    ``rate_limit``/``burst`` apply) and its memory of delivered alerts."""
    with _REGISTRY_LOCK:
        limiter = _LIMITERS.get(fingerprint)
        if limiter is None:
            limiter = _LIMITERS[fingerprint] = RateLimiter(rate_limit, burst)
        memory = _MEMORIES.get(fingerprint)
        if memory is None:
            memory = _MEMORIES[fingerprint] = _Memory(settings.remember)
        key = (fingerprint, settings)
        found = _ENDPOINTS.get(key)
        if found is None:
            found = _ENDPOINTS[key] = Endpoint(fingerprint, settings, limiter, memory)
        return found
