"""One HTTP POST and what came back, for the notification sinks.

Built on ``requests``, which Apache Beam itself depends on (no extra to install). Each
delivery thread owns one :class:`HttpClient` (a ``requests.Session``, so connections to
Slack or PagerDuty are kept alive between alerts: no TLS handshake per page).

Nothing here raises for an HTTP or network failure: :meth:`HttpClient.post` returns an
:class:`HttpResponse` whose ``status`` is 0 when no response came, with a short
``error`` that never contains the URL (webhook URLs are secrets, and ``requests``
quotes them in its exception messages). Redirects are not followed: a webhook that
redirects a POST is misconfigured, and following it would send the alert, and any
secret in its body, somewhere else.
"""

from __future__ import annotations

import email.utils
import math
import time
from typing import Callable, Mapping, NamedTuple, Optional

__all__ = ["HttpClient", "HttpRequest", "HttpResponse", "parse_retry_after"]

# Bodies are only kept to explain a failure in a dead letter: the first 64 KiB is plenty.
MAX_RESPONSE_BODY = 64 * 1024
USER_AGENT = "beam-pipelines-notifications/1"


class HttpRequest(NamedTuple):
    """A POST to make: the body is sent byte for byte on every attempt."""

    url: str
    body: bytes
    headers: Mapping[str, str]


class HttpResponse(NamedTuple):
    """What one attempt got: ``status`` 0 and an ``error`` when there was no response."""

    status: int
    body: str = ""
    retry_after: Optional[float] = None  # seconds, from a Retry-After header
    error: Optional[str] = None


def parse_retry_after(value: Optional[str], now: Callable[[], float] = time.time) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date.

    None when absent or unreadable (the caller then backs off as for any retryable
    failure); a date in the past means 0.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None or moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - now()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def describe_exception(exc: BaseException, timeout: float) -> str:
    """A short cause for a failed request, without the URL ``requests`` puts in its
    messages: ``timed out after 5.0s``, ``connection refused``, ``SSLError``."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connect timed out after {timeout:g}s"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no response within {timeout:g}s"
    seen: set[int] = set()
    cause: Optional[BaseException] = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return f"{type(exc).__name__}: {cause.strerror.lower()}"
        for arg in getattr(cause, "args", ()):
            if isinstance(arg, OSError) and arg.strerror:
                return f"{type(exc).__name__}: {arg.strerror.lower()}"
        inner = getattr(cause, "reason", None)
        cause = inner if isinstance(inner, BaseException) else (cause.__cause__ or cause.__context__)
    return type(exc).__name__


class HttpClient:
    """POSTs with a per-attempt timeout on one kept-alive session (one per thread)."""

    def __init__(self, timeout: float) -> None:
        import requests

        self._requests = requests
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            response = self._session.post(
                request.url, data=request.body, headers=dict(request.headers),
                timeout=(self._timeout, self._timeout), allow_redirects=False, stream=True,
            )
        except self._requests.exceptions.RequestException as exc:
            return HttpResponse(0, error=describe_exception(exc, self._timeout))
        try:
            body = self._read_body(response)
        except self._requests.exceptions.RequestException as exc:
            # The status came but the body did not: still an answer, keep the status.
            body = f"<body not read: {describe_exception(exc, self._timeout)}>"
        finally:
            response.close()
        return HttpResponse(
            response.status_code, body, parse_retry_after(response.headers.get("Retry-After"))
        )

    @staticmethod
    def _read_body(response) -> str:
        chunks, size = [], 0
        for chunk in response.iter_content(8192):
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_RESPONSE_BODY:
                break
        return b"".join(chunks)[:MAX_RESPONSE_BODY].decode("utf-8", errors="replace")

    def close(self) -> None:
        self._session.close()
