"""Retries, backoff, Retry-After, rate limits and delivery threads, without a server or waiting."""

import email.utils
import threading

import pytest

from beam_pipelines.testing.polling import wait_for
from transforms.base.errors import ConfigError
from transforms.sinks.notifications.delivery import (
    DeliverySettings,
    Endpoint,
    RateLimiter,
    _Memory,
    deliver,
)
from transforms.sinks.notifications.http import HttpRequest, HttpResponse, parse_retry_after

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def scripted(*responses, clock=None, takes=0.0):
    """A send() answering the given responses in turn, each taking ``takes`` seconds."""
    answers = list(responses)
    calls = []

    def send():
        calls.append(1)
        if clock is not None:
            clock.now += takes
        return answers.pop(0)

    send.calls = calls
    return send


def run(send, clock, limiter=None, **settings):
    return deliver(send, DeliverySettings(**settings), limiter=limiter, sleep=clock.sleep,
                   clock=clock, rand=lambda low, high: high)


def test_full_jitter_backoff_grows_exponentially_up_to_the_cap():
    settings = DeliverySettings(initial_backoff=0.5, max_backoff=4.0)
    assert [settings.backoff(n, lambda lo, hi: hi) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert all(settings.backoff(n, lambda lo, hi: lo) == 0 for n in range(1, 7))


def test_5xx_and_timeouts_are_retried_until_success():
    clock = FakeClock()
    send = scripted(HttpResponse(503, "busy"), HttpResponse(0, error="no response within 1s"),
                    HttpResponse(502), HttpResponse(202, '{"status":"success"}'))
    outcome = run(send, clock, initial_backoff=1.0, max_backoff=60.0)
    assert outcome.delivered and outcome.attempts == 4 and outcome.status == 202
    assert clock.slept == [1.0, 2.0, 4.0]


def test_other_4xx_are_refused_without_retry():
    for status in (400, 401, 403, 404, 410, 422):
        clock = FakeClock()
        send = scripted(HttpResponse(status, "invalid_payload"))
        outcome = run(send, clock)
        assert (outcome.delivered, outcome.retryable, outcome.attempts) == (False, False, 1)
        assert outcome.body == "invalid_payload" and clock.slept == []


def test_429_and_408_wait_exactly_retry_after():
    clock = FakeClock()
    send = scripted(HttpResponse(429, "", retry_after=7.0), HttpResponse(408), HttpResponse(200))
    outcome = run(send, clock, initial_backoff=0.5)
    assert outcome.delivered and clock.slept == [7.0, 1.0]


def test_attempts_run_out_with_the_last_status_and_body():
    clock = FakeClock()
    send = scripted(*[HttpResponse(500, f"error {n}") for n in range(3)])
    outcome = run(send, clock, max_attempts=3)
    assert (outcome.delivered, outcome.retryable, outcome.attempts) == (False, True, 3)
    assert (outcome.status, outcome.body) == (500, "error 2")
    assert "max_attempts" in outcome.gave_up


def test_the_budget_ends_attempts_instead_of_sleeping_past_it():
    clock = FakeClock()
    send = scripted(HttpResponse(429, retry_after=120.0))
    outcome = run(send, clock, retry_budget=30.0)
    assert outcome.attempts == 1 and clock.slept == [] and "Retry-After (120.0s) exceeds" in outcome.gave_up

    clock = FakeClock()
    send = scripted(*[HttpResponse(0, error="timeout")] * 10, clock=clock, takes=10.0)
    outcome = run(send, clock, retry_budget=25.0, max_attempts=10, initial_backoff=1.0)
    # Attempts start at 0, 11 and 23 s (each takes 10 s, then waits 1, 2 s); the next
    # would start after 25 s. At worst an alert takes the budget plus one attempt.
    assert not outcome.delivered and outcome.attempts == 3 and outcome.error == "timeout"
    assert outcome.elapsed == 33.0


def test_parse_retry_after_reads_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0 and parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=lambda: 1_000_000) == 30.0
    assert parse_retry_after(date, now=lambda: 2_000_000) == 0.0  # in the past: now
    assert parse_retry_after("-5") == 0.0


def test_rate_limiter_spaces_requests_and_allows_bursts():
    clock = FakeClock()
    one_per_second = RateLimiter(1.0, 1, clock=clock)
    assert [one_per_second.reserve() for _ in range(3)] == [0.0, 1.0, 2.0]
    clock.now += 10
    assert one_per_second.reserve() == 0.0

    clock = FakeClock()
    bursty = RateLimiter(2.0, 3, clock=clock)
    assert [bursty.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]


def test_a_pause_holds_every_caller_and_an_unlimited_limiter_only_pauses():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock)
    assert limiter.reserve() == 0.0
    limiter.pause(5.0)
    assert [limiter.reserve(), limiter.reserve()] == [5.0, 5.0]
    limited = RateLimiter(1.0, clock=clock)
    limited.pause(3.0)
    assert [limited.reserve(), limited.reserve()] == [3.0, 4.0]


def test_429_pauses_the_shared_limiter():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock)
    send = scripted(HttpResponse(429, retry_after=2.0), HttpResponse(200))
    assert run(send, clock, limiter=limiter).delivered
    assert clock.slept == [0.0, 2.0]


def test_settings_are_checked_and_errors_name_the_parameter():
    for name, value in [("timeout", 0), ("max_attempts", 0), ("retry_budget", -1),
                        ("concurrency", 1.5), ("queue_size", True), ("max_backoff", float("inf"))]:
        with pytest.raises(ConfigError, match=f"^{name}:"):
            DeliverySettings(**{name: value})
    with pytest.raises(ConfigError, match="initial_backoff"):
        DeliverySettings(initial_backoff=10, max_backoff=1)
    with pytest.raises(ConfigError, match="rate_limit"):
        RateLimiter(0)


class GatedClient:
    """A fake HTTP client: requests whose URL ends in /slow wait for ``gate``."""

    gate = threading.Event()
    sent: list = []

    def __init__(self, timeout):
        pass

    def post(self, request):
        if request.url.endswith("/slow"):
            assert GatedClient.gate.wait(30)
        GatedClient.sent.append(request.body)
        return HttpResponse(200, "ok")

    def close(self):
        pass


def make_endpoint(concurrency=2):
    settings = DeliverySettings(concurrency=concurrency, queue_size=10)
    return Endpoint("fp", settings, RateLimiter(None), _Memory(100), client_factory=GatedClient)


def test_same_lane_key_keeps_order_and_a_stuck_lane_does_not_hold_others():
    GatedClient.gate.clear()
    GatedClient.sent = []
    endpoint = make_endpoint(concurrency=4).acquire()
    try:
        from transforms.sinks.notifications.delivery import _lane_of

        stuck_key = "incident-a"
        other_key = next(f"incident-{n}" for n in range(100)
                         if _lane_of(f"incident-{n}", 4) != _lane_of(stuck_key, 4))
        trigger = endpoint.submit("a:trigger", stuck_key, HttpRequest("http://x/slow", b"a-trigger", {}))
        resolve = endpoint.submit("a:resolve", stuck_key, HttpRequest("http://x/fast", b"a-resolve", {}))
        other = endpoint.submit("b:trigger", other_key, HttpRequest("http://x/fast", b"b", {}))
        assert other.result(timeout=30).delivered  # another lane is not stuck behind "a"
        assert not trigger.done() and not resolve.done()
        GatedClient.gate.set()
        assert trigger.result(timeout=30).delivered and resolve.result(timeout=30).delivered
        assert GatedClient.sent == [b"b", b"a-trigger", b"a-resolve"]  # a's order kept
    finally:
        GatedClient.gate.set()
        endpoint.release()


def test_an_event_delivered_or_in_flight_is_not_sent_again():
    GatedClient.gate.clear()
    GatedClient.sent = []
    endpoint = make_endpoint().acquire()
    try:
        first = endpoint.submit("e1", "k", HttpRequest("http://x/slow", b"e1", {}))
        again_in_flight = endpoint.submit("e1", "k", HttpRequest("http://x/slow", b"e1", {}))
        assert again_in_flight is first
        GatedClient.gate.set()
        assert first.result(timeout=30).delivered
        later = endpoint.submit("e1", "k", HttpRequest("http://x/slow", b"e1", {})).result(timeout=30)
        assert later.delivered and later.suppressed and later.attempts == 0
        assert GatedClient.sent == [b"e1"]
    finally:
        GatedClient.gate.set()
        endpoint.release()


def test_release_stops_the_threads_after_their_queued_alerts():
    GatedClient.gate.set()
    endpoint = make_endpoint(concurrency=3).acquire()
    threads = list(endpoint._threads)
    futures = [endpoint.submit(f"e{n}", f"k{n}", HttpRequest("http://x/fast", b"", {})) for n in range(5)]
    endpoint.release()
    assert all(f.result(timeout=30).delivered for f in futures)
    wait_for(lambda: not any(t.is_alive() for t in threads), what="delivery threads to stop")


class DownClient:
    """A fake client for an endpoint that is down until ``up`` is set."""

    up = False
    calls: list = []

    def __init__(self, timeout):
        pass

    def post(self, request):
        DownClient.calls.append(request.body)
        return HttpResponse(200, "ok") if DownClient.up else HttpResponse(503, "down")

    def close(self):
        pass


def test_a_dead_endpoint_fails_queued_alerts_fast_until_its_budget_has_passed():
    DownClient.up, DownClient.calls = False, []
    clock = FakeClock()
    settings = DeliverySettings(concurrency=1, max_attempts=1, retry_budget=60.0)
    endpoint = Endpoint("fp-down", settings, RateLimiter(None), _Memory(100),
                        client_factory=DownClient, clock=clock).acquire()
    try:
        outcomes = [endpoint.submit(f"e{n}", "k", HttpRequest("http://x", b"%d" % n, {})).result(30)
                    for n in range(4)]
        assert [o.attempts for o in outcomes] == [1, 0, 0, 0] and DownClient.calls == [b"0"]
        assert all(not o.delivered and o.retryable and o.status == 503 for o in outcomes)
        assert "not tried" in outcomes[1].gave_up
        clock.now += 61  # the endpoint's budget has passed: alerts are tried again
        DownClient.up = True
        again = endpoint.submit("e9", "k", HttpRequest("http://x", b"9", {})).result(30)
        later = endpoint.submit("e10", "k", HttpRequest("http://x", b"10", {})).result(30)
        assert again.delivered and later.delivered and DownClient.calls == [b"0", b"9", b"10"]
    finally:
        endpoint.release()
