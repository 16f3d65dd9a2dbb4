"""A local HTTP receiver for Slack, PagerDuty and webhook notifications in tests.

It stands in for the real services and checks every request against their formats::

    with HttpReceiver() as receiver:
        slack = receiver.slack()                          # an incoming webhook
        pager = receiver.pagerduty(routing_key="a" * 32)  # Events API v2 /v2/enqueue
        hook = receiver.webhook(secret="s3cret")          # HMAC-signed generic webhook
        run_pipeline(slack.url, pager.url, hook.url)
        assert [r.problems for r in pager.requests] == [[]]
        assert pager.actions() == {"errors:api:...": ["trigger", "resolve"]}

Checks (a request that fails one is answered as the real service would, and its
``problems`` say why):

* **Slack** (200 ``ok``): a JSON object with a non-empty ``text`` or ``blocks``;
  ``blocks`` at most 50, of known types; ``section`` with a text object (<= 3000
  characters) and/or 1-10 ``fields`` (<= 2000 each); ``context`` with 1-10 elements;
  ``header`` plain text <= 150. Failures: 400 ``invalid_payload`` / ``invalid_blocks``
  / ``no_text``; an unknown path: 404 ``no_service``.
* **PagerDuty** (202 ``{"status": "success", "message": "Event processed",
  "dedup_key"}``): a JSON object of at most 512 KB with only documented fields;
  ``routing_key`` of 32 characters and the route's own; ``event_action`` trigger,
  acknowledge or resolve; ``dedup_key`` a string <= 255, required unless triggering; a
  trigger's ``payload`` with ``summary`` (1-1024), ``source``, ``severity``
  (critical|error|warning|info), an ISO-8601 ``timestamp``, string
  ``component``/``group``/``class`` and an object ``custom_details``. Failures: 400
  ``{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}``.
* **Webhook** (200): a JSON object with ``event_action`` and ``dedup_key``, an
  ``Idempotency-Key`` header, and (with a secret) a valid ``X-Signature-256``. A
  repeated Idempotency-Key is answered 200 and marked ``duplicate``. Failures: 400, or
  401 for a bad signature.

Scripting, per route, for the next N requests: :meth:`Route.fail` (any status, e.g.
500 or 400, with a body and Retry-After), :meth:`Route.rate_limit` (429 +
Retry-After), :meth:`Route.hold` (no answer until :meth:`Route.release` or the server
stops: the client times out), :meth:`Route.slow` (answer after a delay). Every request
is recorded (``route.requests``), scripted or not, with its checks.
"""

# Over 500 lines: one receiver checks three services' request formats (Slack, PagerDuty, webhooks); test support only.

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from transforms.sinks.notifications.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    idempotency_key,
    verify_signature,
)

__all__ = ["HttpReceiver", "PagerDutyRoute", "ReceivedRequest", "Route", "SlackRoute", "WebhookRoute"]

# A held request is answered at the latest after this long (or when the server stops),
# so a forgotten release() cannot hang a test suite.
MAX_HOLD = 120.0


@dataclasses.dataclass
class ReceivedRequest:
    """One request as the receiver saw it, and how it answered."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Any  # the decoded body, None if it is not JSON
    problems: list[str]  # format violations; empty when the request is valid
    received_at: float  # time.monotonic() at arrival
    status: Optional[int] = None  # the status answered (None: never answered)
    scripted: bool = False  # answered by a script (fail/rate_limit/hold/slow)
    duplicate: bool = False  # webhook: an Idempotency-Key already accepted

    @property
    def valid(self) -> bool:
        return not self.problems

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())


@dataclasses.dataclass
class _Script:
    status: Optional[int]  # None: the route's normal answer
    body: str = ""
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    hold: bool = False
    delay: float = 0.0


class Route:
    """Requests to one path: recorded, checked, answered (or scripted)."""

    kind = "route"

    def __init__(self, receiver: HttpReceiver, path: str) -> None:
        self.path = path
        self._receiver = receiver
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._script: collections.deque[_Script] = collections.deque()
        self._released = threading.Event()

    @property
    def url(self) -> str:
        return self._receiver.base_url + self.path

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def accepted(self) -> list[ReceivedRequest]:
        """Requests answered 2xx that were not duplicates."""
        return [r for r in self.requests
                if r.status is not None and 200 <= r.status < 300 and not r.duplicate]

    @property
    def problems(self) -> list[list[str]]:
        """The problems of every request that had some (empty when all were valid)."""
        return [r.problems for r in self.requests if r.problems]

    # -- scripting ----------------------------------------------------------------------
    def _add(self, script: _Script, times: int) -> Route:
        with self._lock:
            self._script.extend(dataclasses.replace(script) for _ in range(times))
        return self

    def fail(self, status: int = 500, times: int = 1, body: str = "error",
             retry_after: Optional[str] = None) -> Route:
        """Answer the next ``times`` requests with ``status`` and ``body``."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return self._add(_Script(status, body, headers), times)

    def rate_limit(self, retry_after: Optional[str] = "1", times: int = 1) -> Route:
        """Answer the next ``times`` requests 429 with ``Retry-After`` (seconds or an HTTP date)."""
        body = "rate_limited" if self.kind == "slack" else json.dumps(
            {"status": "throttle exceeded", "message": "Requests for this service are arriving too quickly"})
        return self.fail(429, times, body, retry_after)

    def hold(self, times: int = 1) -> Route:
        """Hold the next ``times`` requests without an answer until :meth:`release`
        (or the server stops), then answer normally: the client's timeout fires first."""
        self._released.clear()
        return self._add(_Script(None, hold=True), times)

    def release(self) -> None:
        """Let held requests be answered."""
        self._released.set()

    def slow(self, seconds: float, times: int = 1) -> Route:
        """Answer the next ``times`` requests normally, ``seconds`` late."""
        return self._add(_Script(None, delay=seconds), times)

    # -- handling -----------------------------------------------------------------------
    def check(self, request: ReceivedRequest) -> list[str]:
        """Format problems of a request (none for a plain route)."""
        return []

    def answer(self, request: ReceivedRequest) -> tuple[int, str, dict[str, str]]:
        """The service's normal answer to a request that passed (or failed) the checks."""
        return (400, "invalid", {}) if request.problems else (200, "ok", {})

    def _handle(self, request: ReceivedRequest) -> tuple[int, str, dict[str, str]]:
        with self._lock:
            script = self._script.popleft() if self._script else None
            self._requests.append(request)
        if script is not None:
            request.scripted = True
            if script.hold:
                self._released.wait(MAX_HOLD)
            elif script.delay:
                time.sleep(script.delay)  # the endpoint is slow: that is what is simulated
            if script.status is not None:
                return script.status, script.body, script.headers
        with self._lock:
            return self.answer(request)


def _json_object(request: ReceivedRequest, problems: list[str]) -> Optional[dict[str, Any]]:
    content_type = request.header("content-type") or ""
    if not content_type.startswith("application/json"):
        problems.append(f"Content-Type is {content_type!r}, not application/json")
    if not isinstance(request.json, dict):
        problems.append("the body is not a JSON object")
        return None
    return request.json


def _text_object(value: Any, limit: int, where: str, problems: list[str],
                 types: tuple[str, ...] = ("mrkdwn", "plain_text")) -> None:
    if not isinstance(value, dict) or value.get("type") not in types:
        problems.append(f"{where}: expected a text object of type {'|'.join(types)}")
        return
    text = value.get("text")
    if not isinstance(text, str) or not text:
        problems.append(f"{where}: text must be a non-empty string")
    elif len(text) > limit:
        problems.append(f"{where}: text is {len(text)} characters, more than {limit}")


class SlackRoute(Route):
    """An incoming webhook: checks the message format, answers 200 ``ok``."""

    kind = "slack"
    BLOCK_TYPES = {"section", "context", "header", "divider", "actions", "image", "rich_text",
                   "markdown", "input", "file", "video"}

    def check(self, request: ReceivedRequest) -> list[str]:
        problems: list[str] = []
        message = _json_object(request, problems)
        if message is None:
            return problems
        text, blocks = message.get("text"), message.get("blocks")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            problems.append("no_text: text must be a non-empty string")
        if not text and not blocks:
            problems.append("no_text: neither text nor blocks")
        if blocks is not None:
            self._check_blocks(blocks, problems)
        return problems

    def _check_blocks(self, blocks: Any, problems: list[str]) -> None:
        if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
            problems.append("invalid_blocks: blocks must be a list of 1 to 50 blocks")
            return
        for index, block in enumerate(blocks):
            where = f"invalid_blocks: blocks[{index}]"
            if not isinstance(block, dict) or block.get("type") not in self.BLOCK_TYPES:
                problems.append(f"{where}: unknown block type")
                continue
            if len(str(block.get("block_id", ""))) > 255:
                problems.append(f"{where}: block_id longer than 255")
            kind = block["type"]
            if kind == "section":
                if "text" not in block and "fields" not in block:
                    problems.append(f"{where}: a section needs text or fields")
                if "text" in block:
                    _text_object(block["text"], 3000, f"{where}.text", problems)
                if "fields" in block:
                    fields = block["fields"]
                    if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                        problems.append(f"{where}.fields: 1 to 10 text objects")
                    else:
                        for i, field in enumerate(fields):
                            _text_object(field, 2000, f"{where}.fields[{i}]", problems)
            elif kind == "context":
                elements = block.get("elements")
                if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                    problems.append(f"{where}.elements: 1 to 10 elements")
                else:
                    for i, element in enumerate(elements):
                        if not (isinstance(element, dict) and element.get("type") == "image"):
                            _text_object(element, 3000, f"{where}.elements[{i}]", problems)
            elif kind == "header":
                _text_object(block.get("text"), 150, f"{where}.text", problems, ("plain_text",))

    def answer(self, request: ReceivedRequest) -> tuple[int, str, dict[str, str]]:
        if not request.problems:
            return 200, "ok", {}
        first = request.problems[0]
        code = first.split(":", 1)[0] if first.startswith(("invalid_blocks", "no_text")) \
            else "invalid_payload"
        return 400, code, {}

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The messages Slack would have posted."""
        return [r.json for r in self.accepted]


_PD_FIELDS = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client",
              "client_url"}
_PD_PAYLOAD_FIELDS = {"summary", "source", "severity", "timestamp", "component", "group", "class",
                      "custom_details"}


class PagerDutyRoute(Route):
    """The Events API v2 enqueue endpoint for one routing key."""

    kind = "pagerduty"

    def __init__(self, receiver: HttpReceiver, path: str, routing_key: str) -> None:
        super().__init__(receiver, path)
        self.routing_key = routing_key

    def check(self, request: ReceivedRequest) -> list[str]:
        problems: list[str] = []
        if len(request.body) > 512 * 1024:
            problems.append("the event is larger than 512 KB")
        event = _json_object(request, problems)
        if event is None:
            return problems
        unknown = sorted(set(event) - _PD_FIELDS)
        if unknown:
            problems.append(f"unknown fields {unknown}")
        key = event.get("routing_key")
        if not isinstance(key, str) or len(key) != 32:
            problems.append("Length of 'routing_key' is incorrect (should be 32 characters)")
        elif key != self.routing_key:
            problems.append("Invalid routing key")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            problems.append("'event_action' must be trigger, acknowledge or resolve")
        dedup = event.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or not dedup or len(dedup) > 255):
            problems.append("'dedup_key' must be a non-empty string of at most 255 characters")
        if action in ("acknowledge", "resolve") and dedup is None:
            problems.append(f"'dedup_key' is required to {action}")
        if action == "trigger":
            self._check_payload(event.get("payload"), problems)
        return problems

    @staticmethod
    def _check_payload(payload: Any, problems: list[str]) -> None:
        if not isinstance(payload, dict):
            problems.append("'payload' is required to trigger and must be an object")
            return
        unknown = sorted(set(payload) - _PD_PAYLOAD_FIELDS)
        if unknown:
            problems.append(f"unknown payload fields {unknown}")
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary:
            problems.append("'payload.summary' is required")
        elif len(summary) > 1024:
            problems.append(f"'payload.summary' is {len(summary)} characters, more than 1024")
        source = payload.get("source")
        if not isinstance(source, str) or not source:
            problems.append("'payload.source' is required")
        if payload.get("severity") not in ("critical", "error", "warning", "info"):
            problems.append("'payload.severity' must be critical, error, warning or info")
        stamp = payload.get("timestamp")
        if stamp is not None:
            try:
                parsed = _dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
                if parsed.tzinfo is None:
                    raise ValueError
            except ValueError:
                problems.append(f"'payload.timestamp' is not an ISO-8601 time with offset: {stamp!r}")
        for name in ("component", "group", "class"):
            if name in payload and not isinstance(payload[name], str):
                problems.append(f"'payload.{name}' must be a string")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
            problems.append("'payload.custom_details' must be an object")

    def answer(self, request: ReceivedRequest) -> tuple[int, str, dict[str, str]]:
        if request.problems:
            return 400, json.dumps({"status": "invalid event", "message": "Event object is invalid",
                                    "errors": request.problems}), {}
        dedup = request.json.get("dedup_key") or uuid.uuid4().hex
        return 202, json.dumps({"status": "success", "message": "Event processed",
                                "dedup_key": dedup}), {}

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events PagerDuty accepted, in order."""
        return [r.json for r in self.accepted]

    def actions(self) -> dict[str, list[str]]:
        """dedup_key -> the event actions accepted for it, in order."""
        out: dict[str, list[str]] = {}
        for event in self.events:
            out.setdefault(str(event.get("dedup_key")), []).append(event["event_action"])
        return out


class WebhookRoute(Route):
    """A generic webhook: checks the Idempotency-Key and (with a secret) the HMAC
    signature, and marks repeated keys as duplicates."""

    kind = "webhook"

    def __init__(self, receiver: HttpReceiver, path: str, secret: Optional[str]) -> None:
        super().__init__(receiver, path)
        self.secret = secret
        self._seen: set[str] = set()

    def check(self, request: ReceivedRequest) -> list[str]:
        problems: list[str] = []
        body = _json_object(request, problems)
        key = request.header(IDEMPOTENCY_HEADER)
        if not key:
            problems.append(f"no {IDEMPOTENCY_HEADER} header")
        if self.secret is not None and not verify_signature(
                self.secret, request.body, request.header(SIGNATURE_HEADER)):
            problems.append(f"bad or missing {SIGNATURE_HEADER} signature")
        if body is not None:
            if body.get("event_action") not in ("trigger", "resolve"):
                problems.append("'event_action' must be trigger or resolve")
            if not isinstance(body.get("dedup_key"), str) or not body.get("dedup_key"):
                problems.append("'dedup_key' must be a non-empty string")
            event_id = body.get("event_id")
            if key and isinstance(event_id, str) and idempotency_key(event_id) != key:
                problems.append(f"{IDEMPOTENCY_HEADER} does not match the body's event_id")
        return problems

    def answer(self, request: ReceivedRequest) -> tuple[int, str, dict[str, str]]:
        if request.problems:
            signature = any("signature" in p for p in request.problems)
            return (401 if signature else 400), "; ".join(request.problems), {}
        key = request.header(IDEMPOTENCY_HEADER) or ""
        request.duplicate = key in self._seen
        self._seen.add(key)
        return 200, json.dumps({"ok": True, "duplicate": request.duplicate}), {}

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """Bodies accepted once each (duplicates left out)."""
        return [r.json for r in self.accepted]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 (the http.server naming)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            decoded: Any = json.loads(body)
        except ValueError:
            decoded = None
        path = self.path.split("?", 1)[0]
        request = ReceivedRequest(path, {k.lower(): v for k, v in self.headers.items()}, body,
                                  decoded, [], time.monotonic())
        route = self.server.receiver.route(path)
        if route is None:
            request.problems.append("no route")
            self.server.receiver._unrouted.append(request)
            self._send(request, 404, "no_service", {})
            return
        request.problems.extend(route.check(request))
        status, text, headers = route._handle(request)
        self._send(request, status, text, headers)

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, request: ReceivedRequest, status: int, text: str, headers: dict[str, str]) -> None:
        payload = text.encode("utf-8")
        request.status = status  # before the client can see it: tests read it right after
        try:
            self.send_response(status)
            content_type = "application/json" if text[:1] in "{[" and text else "text/plain"
            self.send_header("Content-Type", f"{content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            request.status = None  # the client gave up (it timed out while the request was held)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read route.requests, not an access log


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: HttpReceiver


class HttpReceiver:
    """A threaded HTTP server on a free local port with Slack, PagerDuty and webhook
    routes. Use as a context manager, or start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._routes: dict[str, Route] = {}
        self._unrouted: list[ReceivedRequest] = []
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("HttpReceiver is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> HttpReceiver:
        self._server = _Server(self._address, _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="http-receiver")
        self._thread.start()
        return self

    def stop(self) -> None:
        for route in self._routes.values():
            route.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _add(self, route: Route) -> Any:
        if route.path in self._routes:
            raise ValueError(f"route {route.path} exists already")
        self._routes[route.path] = route
        return route

    def route(self, path: str) -> Optional[Route]:
        return self._routes.get(path)

    def slack(self, path: str = "/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX") -> SlackRoute:
        """A Slack incoming webhook at ``path`` (the part of the URL that is secret)."""
        return self._add(SlackRoute(self, path))

    def pagerduty(self, routing_key: str, path: str = "/v2/enqueue") -> PagerDutyRoute:
        """The PagerDuty Events API v2 endpoint accepting ``routing_key``."""
        return self._add(PagerDutyRoute(self, path, routing_key))

    def webhook(self, secret: Optional[str] = None, path: str = "/hooks/alerts") -> WebhookRoute:
        """A generic webhook verifying signatures made with ``secret`` (None: unsigned)."""
        return self._add(WebhookRoute(self, path, secret))

    @property
    def unrouted(self) -> list[ReceivedRequest]:
        """Requests to paths with no route (answered 404 ``no_service``)."""
        return list(self._unrouted)
