"""Secrets for the notification sinks: routing keys, webhook URLs, HMAC keys.

A :class:`Secret` comes from an argument, an environment variable or a file, and can
never leak by accident: its ``repr``, ``str`` and format are redacted (``***``, or the
*name* of the variable or file it came from, which is not secret), so it can sit in an
exception, a log line, a metric label or a dead letter without showing its value.
Only :meth:`Secret.reveal` returns the value, and only the code that builds a request
calls it.

Secrets from an environment variable or a file are read when the sink is built (so a
missing one fails at launch, naming the variable) and read *again* on the worker: the
pickled pipeline carries the variable's name or the file's path, never the value. A
secret given as a literal argument has to travel with the pipeline; prefer ``env:`` or
``file:`` in production.

String arguments are read as specs: ``env:NAME`` (an environment variable),
``file:/path`` (a file's content, surrounding whitespace stripped, like a Kubernetes or
Docker secret mount) or anything else as the value itself.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Iterable, Optional, Union
from urllib.parse import parse_qsl, unquote, urlsplit

from transforms.base.errors import ConfigError

__all__ = ["Secret", "SecretLike", "hide_in_http_logs", "redact", "safe_endpoint"]

REDACTED = "***"
# Shorter values are not redacted inside free text: "***" for every "a" would make text
# unreadable, and a 3-character secret is not a secret.
_MIN_REDACTED_LENGTH = 4


class Secret:
    """A secret value whose text form never shows the value.

    Build one with :meth:`of` (a spec string or a Secret), :meth:`from_env`,
    :meth:`from_file` or :meth:`resolve` (argument, then file, then variable).
    """

    __slots__ = ("_kind", "_source", "_value")

    def __init__(self, value: str) -> None:
        """A secret given as a literal value (it travels with the pickled pipeline)."""
        self._kind = "value"
        self._source = ""
        self._value: Optional[str] = _checked(value, "secret")

    @classmethod
    def _from(cls, kind: str, source: str, what: str) -> Secret:
        secret = cls.__new__(cls)
        secret._kind, secret._source, secret._value = kind, source, None
        secret._value = secret._read(what)
        return secret

    @classmethod
    def from_env(cls, name: str, *, what: str = "secret") -> Secret:
        """The value of environment variable ``name``; ConfigError if unset or empty."""
        if not isinstance(name, str) or not name:
            raise ConfigError(what, "the name of an environment variable", name)
        return cls._from("env", name, what)

    @classmethod
    def from_file(cls, path: str, *, what: str = "secret") -> Secret:
        """The content of file ``path`` (whitespace around it stripped); ConfigError if
        the file cannot be read or is empty."""
        if not isinstance(path, str) or not path:
            raise ConfigError(what, "the path of a file holding the secret", path)
        return cls._from("file", path, what)

    @classmethod
    def of(cls, value: SecretLike, *, what: str = "secret") -> Secret:
        """A Secret from a Secret (as is) or a spec string: ``env:NAME``, ``file:PATH``
        or the value itself. ``what`` names the argument in errors."""
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(what, "a non-empty secret, env:NAME or file:PATH",
                              None if isinstance(value, str) else type(value).__name__)
        if value.startswith("env:"):
            return cls.from_env(value[4:], what=what)
        if value.startswith("file:"):
            return cls.from_file(value[5:], what=what)
        return cls(value)

    @classmethod
    def resolve(
        cls,
        value: Optional[SecretLike] = None,
        *,
        env: Optional[str] = None,
        file: Optional[str] = None,
        what: str = "secret",
    ) -> Secret:
        """The first of: ``value`` (an argument or flag), the file ``file``, the
        environment variable ``env`` when it is set. ConfigError naming all three places
        when none gives a value."""
        if value is not None and value != "":
            return cls.of(value, what=what)
        if file:
            return cls.from_file(file, what=what)
        if env and os.environ.get(env):
            return cls.from_env(env, what=what)
        places = [what] + ([f"file {file}"] if file else []) + ([f"${env}"] if env else [])
        raise ConfigError(what, "a value from " + " or ".join(places) + "; none was given")

    def _read(self, what: str = "secret") -> str:
        if self._kind == "env":
            value = os.environ.get(self._source, "")
            if not value:
                raise ConfigError(what, f"environment variable {self._source} to be set")
            return _checked(value.strip(), what)
        if self._kind == "file":
            try:
                with open(self._source, encoding="utf-8") as handle:
                    value = handle.read().strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigError(what, f"a readable secret file at {self._source} ({reason})") from None
            if not value:
                raise ConfigError(what, f"a non-empty secret file at {self._source}")
            return _checked(value, what)
        raise AssertionError(self._kind)

    def reveal(self) -> str:
        """The value. Call it only to build a request; never log or store the result."""
        if self._value is None:  # unpickled on a worker: read the variable or file there
            self._value = self._read()
        return self._value

    @property
    def source(self) -> str:
        """Where the value comes from, safe to show: ``env:NAME``, ``file:PATH`` or ``***``."""
        return f"{self._kind}:{self._source}" if self._kind != "value" else REDACTED

    def __getstate__(self):
        # Values from the environment or a file are read again where the pipeline runs.
        value = self._value if self._kind == "value" else None
        return (self._kind, self._source, value)

    def __setstate__(self, state) -> None:
        self._kind, self._source, self._value = state

    def __repr__(self) -> str:
        return f"Secret({self.source})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self.reveal() == other.reveal()

    def __hash__(self) -> int:
        return hash(self.reveal())


SecretLike = Union[str, Secret]


def _checked(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(what, "a non-empty string")
    if any(ch in value for ch in "\r\n\x00"):
        # A value with a line break would smuggle headers into an HTTP request.
        raise ConfigError(what, "a value without line breaks or NUL characters")
    return value


def redact(text: str, secrets: Iterable[Optional[Secret]]) -> str:
    """``text`` with every secret's value replaced by ``***``, and for URL secrets the
    parts of the URL that carry its token (see :func:`_url_parts`). Applied to every
    message that leaves a sink: errors, logs, dead letters."""
    for secret in secrets:
        if secret is None:
            continue
        value = secret.reveal()
        candidates = {value} | _url_parts(value)
        for candidate in sorted(candidates, key=len, reverse=True):
            if len(candidate) >= _MIN_REDACTED_LENGTH:
                text = text.replace(candidate, REDACTED)
    return text


# A path segment this long is taken for a token (Slack's, Discord's, a hook's own):
# shorter ones ("services", "hooks", "v2") are names, and redacting them would only
# blank words in dead letters.
_MIN_TOKEN_SEGMENT = 12


def _url_parts(value: str) -> set[str]:
    """The parts of a URL secret that can show without the rest, each of which holds
    the token of some webhook: the path and the path with its query (urllib3 quotes
    them alone in its DEBUG request lines), the query and each query value
    (``?token=``, ``?code=``, ``&sig=``), each long path segment (an endpoint echoing
    "invalid token <segment>"), and a password in the URL. Raw and percent-decoded."""
    try:
        parts = urlsplit(value) if "://" in value else None
        password = parts.password if parts is not None else None
    except ValueError:
        return set()
    if parts is None:
        return set()
    found = {parts.query, parts.path if parts.path != "/" else ""}
    if parts.query:
        found.add(f"{parts.path}?{parts.query}")
        found.update(v for _, v in parse_qsl(parts.query, keep_blank_values=True))
        found.update(pair.partition("=")[2] for pair in parts.query.split("&"))
    found.update(s for s in parts.path.split("/") if len(s) >= _MIN_TOKEN_SEGMENT)
    if password:
        found.add(password)
    return {form for part in found if part for form in (part, unquote(part))}


_USERINFO = re.compile(r"^[^@]*@")


def safe_endpoint(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: enough to tell endpoints apart in logs and
    dead letters, without the path or query where webhook URLs keep their tokens."""
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL Python can split: say nothing about it
        return "<url>"
    host = _USERINFO.sub("", parts.netloc)
    return f"{parts.scheme}://{host}" if parts.scheme and host else "<url>"


# The HTTP libraries log request lines at DEBUG ("POST /services/T/B/token HTTP/1.1"):
# their records pass through a filter that redacts every secret a sink registered.
_HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry",
                 "urllib3.response", "requests")
_REGISTERED: dict[str, Secret] = {}  # value -> Secret: one entry per distinct secret
_REGISTRY_LOCK = threading.Lock()


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        with _REGISTRY_LOCK:
            secrets = list(_REGISTERED.values())
        if secrets:
            text = record.getMessage()
            cleaned = redact(text, secrets)
            if cleaned != text:
                record.msg, record.args = cleaned, ()
        return True


_FILTER = _RedactingFilter()


def hide_in_http_logs(secrets: Iterable[Optional[Secret]]) -> None:
    """Redact these secrets from the log records of urllib3 and requests in this process
    (called by every notification sink's DoFn when it starts)."""
    with _REGISTRY_LOCK:
        for secret in secrets:
            if secret is not None:
                _REGISTERED.setdefault(secret.reveal(), secret)
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
