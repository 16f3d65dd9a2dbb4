"""A seeded, deterministic generator of service log lines (the error_rate input contract),
with a scripted incident.

Lines come in the shapes real services write, mixed: application logs (``level``),
access logs (HTTP ``status``) and both (the status decides, see
``transforms.contracts.service_logs``), levels in any case (``ERROR``, ``Info``),
times as epoch seconds (integers and decimals) or ISO-8601 with offsets, extra fields.
Errors are rare (``baseline_errors``) except for the scripted incident: ``incident``
is ``(service, start, end, ratio)``, seconds of event time after ``start``, during
which that service's lines are errors with probability ``ratio``::

    from transforms.io.synthetic.logs import SyntheticLogs
    lines = list(SyntheticLogs(seed=7, malformed=0.02).payloads(5000))

The default ``python -m beam_pipelines.error_rate`` run reads them: at 4 lines a second,
``checkout`` fails 40% of its requests from minute 5 to minute 8, which opens one
incident and resolves it.
"""

from __future__ import annotations

import json
import random
from typing import Any, Iterator, Optional

from transforms.io.synthetic.readings import DEFAULT_START, iso_with_offset

__all__ = ["DEFAULT_INCIDENT", "DEFAULT_SERVICES", "MALFORMED_KINDS", "SyntheticLogs",
           "malformed_log"]

DEFAULT_SERVICES = ("checkout", "search", "payments")
DEFAULT_INCIDENT = ("checkout", 300.0, 480.0, 0.4)
_OFFSETS = (0, 0, 60, -300, 330)  # minutes

_ERROR_LEVELS = ("ERROR", "error", "Error", "CRITICAL", "fatal", "err")
_OK_LEVELS = ("INFO", "info", "Info", "DEBUG", "WARN", "warning", "notice")
_ERROR_STATUSES = (500, 502, 503, 504)
_OK_STATUSES = (200, 200, 200, 201, 204, 301, 304, 400, 404, 429)
_PATHS = ("/api/cart", "/api/search", "/api/pay", "/health", "/api/items/42")

MALFORMED_KINDS = (
    "truncated_json",
    "missing_service",
    "unknown_level",
    "numeric_level",
    "status_text",
    "status_out_of_range",
    "no_level_or_status",
    "naive_timestamp",
    "not_an_object",
)


class SyntheticLogs:
    """Deterministic service log lines; ``lines(n)`` yields dicts, ``payloads(n)`` bytes.

    Event time advances by ``1 / rate`` seconds per line; an ``out_of_order`` fraction is
    moved back by up to ``max_delay`` seconds.
    """

    def __init__(
        self,
        seed: int = 42,
        rate: float = 4.0,
        malformed: float = 0.0,
        services: tuple[str, ...] = DEFAULT_SERVICES,
        baseline_errors: float = 0.005,
        incident: Optional[tuple[str, float, float, float]] = DEFAULT_INCIDENT,
        out_of_order: float = 0.02,
        max_delay: float = 5.0,
        start: float = DEFAULT_START,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 lines per second of event time, got {rate!r}")
        if not services:
            raise ValueError("services must name at least one service")
        for name, value in (("malformed", malformed), ("baseline_errors", baseline_errors),
                            ("out_of_order", out_of_order)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
        if incident is not None and not 0.0 <= incident[3] <= 1.0:
            raise ValueError(f"the incident's ratio must be in [0, 1], got {incident[3]!r}")
        self.seed = seed
        self.rate = rate
        self.malformed = malformed
        self.services = tuple(services)
        self.baseline_errors = baseline_errors
        self.incident = incident
        self.out_of_order = out_of_order
        self.max_delay = max_delay
        self.start = start

    def error_odds(self, service: str, seconds: float) -> float:
        """The probability that a line of ``service`` at ``seconds`` is an error."""
        if self.incident is not None:
            name, begin, end, ratio = self.incident
            if name == service and self.start + begin <= seconds < self.start + end:
                return ratio
        return self.baseline_errors

    def line(self, index: int, rnd: random.Random) -> dict[str, Any]:
        nominal = self.start + index / self.rate
        service = self.services[rnd.randrange(len(self.services))]
        error = rnd.random() < self.error_odds(service, nominal)  # decided at the nominal time
        seconds = nominal
        if self.out_of_order and rnd.random() < self.out_of_order:
            seconds -= rnd.uniform(0, self.max_delay)
        line: dict[str, Any] = {"service": service, "timestamp": self._time(seconds, rnd)}
        shape = rnd.random()
        if shape < 0.45:  # an application log
            line["level"] = rnd.choice(_ERROR_LEVELS if error else _OK_LEVELS)
            line["message"] = "request failed" if error else "request served"
        else:  # an access log, some with a level too (the status decides)
            line["status"] = rnd.choice(_ERROR_STATUSES if error else _OK_STATUSES)
            line["method"] = rnd.choice(("GET", "POST"))
            line["path"] = rnd.choice(_PATHS)
            line["latency_ms"] = round(rnd.lognormvariate(3.0, 0.8), 1)
            if shape > 0.85:
                line["level"] = rnd.choice(("info", "INFO", "error"))
        return line

    def _time(self, seconds: float, rnd: random.Random) -> Any:
        form = rnd.random()
        if form < 0.3:
            return int(seconds)
        if form < 0.5:
            return round(seconds, 3)
        return iso_with_offset(seconds, rnd.choice(_OFFSETS), zulu=rnd.random() < 0.5)

    def records(self, count: int, first: int = 0) -> Iterator[tuple[Optional[dict], bytes]]:
        """(line or None when malformed, payload) for lines first..first+count-1; each index
        has its own random stream, so any range is reproducible on its own."""
        for index in range(first, first + count):
            rnd = random.Random(self.seed * 1_000_003 + index)
            line = self.line(index, rnd)
            if self.malformed and rnd.random() < self.malformed:
                yield None, malformed_log(line, rnd.choice(MALFORMED_KINDS))
            else:
                yield line, json.dumps(line, separators=(",", ":")).encode("utf-8")

    def lines(self, count: int, first: int = 0) -> Iterator[dict]:
        for line, _ in self.records(count, first):
            if line is not None:
                yield line

    def payloads(self, count: int, first: int = 0) -> Iterator[bytes]:
        for _, payload in self.records(count, first):
            yield payload


def malformed_log(line: dict, kind: str) -> bytes:
    """One line the contract rejects, of the given kind."""
    bad = dict(line)
    if kind == "truncated_json":
        return json.dumps(bad).encode()[:-4]
    if kind == "missing_service":
        bad.pop("service")
    elif kind == "unknown_level":
        bad["level"] = "loud"
        bad.pop("status", None)
    elif kind == "numeric_level":
        bad["level"] = 50
        bad.pop("status", None)
    elif kind == "status_text":
        bad["status"] = "ok"
    elif kind == "status_out_of_range":
        bad["status"] = 700
    elif kind == "no_level_or_status":
        bad.pop("level", None)
        bad.pop("status", None)
    elif kind == "naive_timestamp":
        bad["timestamp"] = "2024-01-01T00:00:00"
    elif kind == "not_an_object":
        return json.dumps([bad]).encode()
    else:
        raise ValueError(f"unknown malformed kind {kind!r}; expected one of {MALFORMED_KINDS}")
    return json.dumps(bad).encode()
