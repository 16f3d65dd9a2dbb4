"""The REST layer: Confluent's Schema Registry API over a threaded ``http.server``.

Routes (``{v}`` is a version number, ``latest`` or ``-1``)::

    GET    /                                          {}
    GET    /schemas/types                             ["AVRO", "JSON", "PROTOBUF"]
    GET    /schemas/ids/{id}[?subject=&format=]       {schema, schemaType?, references?, guid}
    GET    /schemas/ids/{id}/schema                   the schema text itself
    GET    /schemas/ids/{id}/subjects                 [subject...]
    GET    /schemas/ids/{id}/versions                 [{subject, version}...]
    GET    /schemas/guids/{guid}                      as /schemas/ids/{id}
    GET    /subjects[?deleted=&subjectPrefix=]        [subject...]
    POST   /subjects/{s}[?deleted=]                   lookup: {subject, id, version, schema...}
    DELETE /subjects/{s}[?permanent=]                 [version...]
    GET    /subjects/{s}/versions[?deleted=]          [version...]
    POST   /subjects/{s}/versions                     register: {id}
    GET    /subjects/{s}/versions/{v}[?format=]       {subject, id, version, schema...}
    GET    /subjects/{s}/versions/{v}/schema          the schema text itself
    GET    /subjects/{s}/versions/{v}/referencedby    [id...]
    DELETE /subjects/{s}/versions/{v}[?permanent=]    version
    GET    /config | /config/{s}[?defaultToGlobal=]   {compatibilityLevel}
    PUT    /config | /config/{s}                      {compatibility}
    DELETE /config/{s}                                {compatibilityLevel} (the one removed)
    POST   /compatibility/subjects/{s}/versions[/{v}][?verbose=]  {is_compatible, messages?}
    GET    /mode | /mode/{s};  PUT /mode | /mode/{s}  {mode}
    GET    /contexts                                  ["."]
    GET    /associations/resources/...                [] (no topic-subject associations)

Errors are ``{"error_code": N, "message": "..."}`` with Confluent's codes; every answer
has the content type ``application/vnd.schemaregistry.v1+json``. With ``users`` (basic
auth) or ``tokens`` (bearer), requests without valid credentials get 401.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from beam_pipelines.testing.emulators.schema_registry.store import (
    SUBJECT_COMPATIBILITY_NOT_CONFIGURED,
    SUBJECT_MODE_NOT_CONFIGURED,
    SUBJECT_NOT_FOUND,
    RegistryError,
    Store,
)

_LOG = logging.getLogger(__name__)
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_RAW = object()  # marks an answer whose body is the schema text itself

Route = tuple[str, "re.Pattern[str]", Callable[..., Any]]


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return (query.get(name) or ["false"])[-1].lower() == "true"


def _one(query: dict[str, list[str]], name: str) -> Optional[str]:
    values = query.get(name)
    return values[-1] if values else None


class _Api:
    """Route handlers: (method, path pattern) -> function(store, query, body, *groups)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        seg = r"([^/]+)"
        self.routes: list[Route] = [
            ("GET", re.compile(r"^/?$"), lambda q, b: {}),
            ("GET", re.compile(r"^/schemas/types$"), lambda q, b: ["JSON", "PROTOBUF", "AVRO"]),
            ("GET", re.compile(rf"^/schemas/ids/{seg}$"), self.get_schema),
            ("GET", re.compile(rf"^/schemas/ids/{seg}/schema$"), self.get_schema_text),
            ("GET", re.compile(rf"^/schemas/ids/{seg}/subjects$"), self.get_schema_subjects),
            ("GET", re.compile(rf"^/schemas/ids/{seg}/versions$"), self.get_schema_versions),
            ("GET", re.compile(rf"^/schemas/guids/{seg}$"), self.get_schema_by_guid),
            ("GET", re.compile(r"^/subjects$"), self.get_subjects),
            ("POST", re.compile(rf"^/subjects/{seg}$"), self.lookup),
            ("DELETE", re.compile(rf"^/subjects/{seg}$"), self.delete_subject),
            ("GET", re.compile(rf"^/subjects/{seg}/versions$"), self.get_versions),
            ("POST", re.compile(rf"^/subjects/{seg}/versions$"), self.register),
            ("GET", re.compile(rf"^/subjects/{seg}/versions/{seg}$"), self.get_version),
            ("GET", re.compile(rf"^/subjects/{seg}/versions/{seg}/schema$"), self.get_version_text),
            ("GET", re.compile(rf"^/subjects/{seg}/versions/{seg}/referencedby$"), self.referenced_by),
            ("DELETE", re.compile(rf"^/subjects/{seg}/versions/{seg}$"), self.delete_version),
            ("GET", re.compile(r"^/config$"), lambda q, b: {"compatibilityLevel": store.global_level}),
            ("PUT", re.compile(r"^/config$"), lambda q, b: {"compatibility": store.set_level(None, b)}),
            ("GET", re.compile(rf"^/config/{seg}$"), self.get_config),
            ("PUT", re.compile(rf"^/config/{seg}$"),
             lambda q, b, s: {"compatibility": store.set_level(s, b)}),
            ("DELETE", re.compile(rf"^/config/{seg}$"), self.delete_config),
            ("POST", re.compile(rf"^/compatibility/subjects/{seg}/versions$"), self.compatibility),
            ("POST", re.compile(rf"^/compatibility/subjects/{seg}/versions/{seg}$"), self.compatibility),
            ("GET", re.compile(r"^/mode$"), lambda q, b: {"mode": store.global_mode}),
            ("PUT", re.compile(r"^/mode$"), lambda q, b: {"mode": store.set_mode(None, b)}),
            ("GET", re.compile(rf"^/mode/{seg}$"), self.get_mode),
            ("PUT", re.compile(rf"^/mode/{seg}$"), lambda q, b, s: {"mode": store.set_mode(s, b)}),
            ("GET", re.compile(r"^/contexts$"), lambda q, b: ["."]),
            # Confluent's serializers ask which subject a topic is associated with; none is.
            ("GET", re.compile(r"^/associations/resources/.+$"), lambda q, b, *_: []),
        ]

    # ---- schemas --------------------------------------------------------------------

    def get_schema(self, query: dict, body: Any, schema_id: str) -> Any:
        with self.store.lock:
            stored = self.store.schema(schema_id)
            return self.store.schema_answer(stored, _one(query, "format"))

    def get_schema_text(self, query: dict, body: Any, schema_id: str) -> Any:
        with self.store.lock:
            stored = self.store.schema(schema_id)
            return _RAW, self.store.schema_answer(stored, _one(query, "format"))["schema"]

    def get_schema_by_guid(self, query: dict, body: Any, guid: str) -> Any:
        with self.store.lock:
            return self.store.schema_answer(self.store.schema_by_guid(guid), _one(query, "format"))

    def _uses(self, schema_id: str, deleted: bool) -> list[Any]:
        stored = self.store.schema(schema_id)
        return [v for versions in self.store.subjects.values() for v in versions
                if v.schema_id == stored.schema_id and (deleted or not v.deleted)]

    def get_schema_subjects(self, query: dict, body: Any, schema_id: str) -> Any:
        with self.store.lock:
            uses = self._uses(schema_id, _flag(query, "deleted"))
            return list(dict.fromkeys(v.subject for v in uses))

    def get_schema_versions(self, query: dict, body: Any, schema_id: str) -> Any:
        with self.store.lock:
            return [{"subject": v.subject, "version": v.version}
                    for v in self._uses(schema_id, _flag(query, "deleted"))]

    # ---- subjects -------------------------------------------------------------------

    def get_subjects(self, query: dict, body: Any) -> Any:
        deleted, only = _flag(query, "deleted"), _flag(query, "deleted_only")
        prefix = _one(query, "subjectPrefix") or ""
        with self.store.lock:
            out = []
            for subject, versions in self.store.subjects.items():
                live = any(not v.deleted for v in versions)
                if only:
                    keep = not live
                else:
                    keep = live or deleted
                if keep and subject.startswith(prefix):
                    out.append(subject)
            return sorted(out)

    def lookup(self, query: dict, body: Any, subject: str) -> Any:
        with self.store.lock:
            version = self.store.lookup(subject, body, _flag(query, "deleted"))
            return self.store.version_answer(version, _one(query, "format"))

    def register(self, query: dict, body: Any, subject: str) -> Any:
        return {"id": self.store.register(subject, body)}

    def get_versions(self, query: dict, body: Any, subject: str) -> Any:
        with self.store.lock:
            return [v.version for v in self.store._subject_versions(subject, _flag(query, "deleted"))]

    def get_version(self, query: dict, body: Any, subject: str, version: str) -> Any:
        with self.store.lock:
            found = self.store.version(subject, version, _flag(query, "deleted"))
            return self.store.version_answer(found, _one(query, "format"))

    def get_version_text(self, query: dict, body: Any, subject: str, version: str) -> Any:
        return _RAW, self.get_version(query, body, subject, version)["schema"]

    def referenced_by(self, query: dict, body: Any, subject: str, version: str) -> Any:
        with self.store.lock:
            found = self.store.version(subject, version)
            return self.store._referenced(subject, found.version)

    def delete_subject(self, query: dict, body: Any, subject: str) -> Any:
        return self.store.delete_subject(subject, _flag(query, "permanent"))

    def delete_version(self, query: dict, body: Any, subject: str, version: str) -> Any:
        return self.store.delete_version(subject, version, _flag(query, "permanent"))

    # ---- config, compatibility, mode ------------------------------------------------

    def get_config(self, query: dict, body: Any, subject: str) -> Any:
        with self.store.lock:
            if subject in self.store.subject_levels:
                return {"compatibilityLevel": self.store.subject_levels[subject]}
            if _flag(query, "defaultToGlobal"):
                return {"compatibilityLevel": self.store.global_level}
            raise RegistryError(404, SUBJECT_COMPATIBILITY_NOT_CONFIGURED,
                                f"Subject '{subject}' does not have subject-level compatibility "
                                "configured")

    def delete_config(self, query: dict, body: Any, subject: str) -> Any:
        with self.store.lock:
            if subject not in self.store.subjects and subject not in self.store.subject_levels:
                raise RegistryError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
            previous = self.store.subject_levels.pop(subject, self.store.global_level)
            return {"compatibilityLevel": previous}

    def compatibility(self, query: dict, body: Any, subject: str, version: Optional[str] = None) -> Any:
        found = self.store.test_compatibility(subject, version, body)
        answer: dict[str, Any] = {"is_compatible": not found}
        if _flag(query, "verbose"):
            answer["messages"] = found
        return answer

    def get_mode(self, query: dict, body: Any, subject: str) -> Any:
        with self.store.lock:
            if subject in self.store.subject_modes:
                return {"mode": self.store.subject_modes[subject]}
            if _flag(query, "defaultToGlobal"):
                return {"mode": self.store.global_mode}
            raise RegistryError(404, SUBJECT_MODE_NOT_CONFIGURED,
                                f"Subject '{subject}' does not have subject-level mode configured")

    def dispatch(self, method: str, path: str, query: dict, body: Any) -> tuple[int, Any]:
        allowed = False
        for route_method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            allowed = True
            if route_method != method:
                continue
            groups = [unquote(g) for g in match.groups()]
            return 200, handler(query, body, *groups)
        if allowed:
            return 405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed"}
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        _LOG.debug("schema registry: %s", format % args)

    def _authorized(self) -> bool:
        users, tokens = self.server.users, self.server.tokens
        if not users and not tokens:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic" and users:
            try:
                user, _, password = base64.b64decode(credentials).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return users.get(user) == password
        if scheme.lower() == "bearer" and tokens:
            return credentials in tokens
        return False

    def _send(self, status: int, answer: Any) -> None:
        if isinstance(answer, tuple) and answer and answer[0] is _RAW:
            data = answer[1].encode("utf-8")
        else:
            data = json.dumps(answer).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="SchemaRegistry"')
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        self.server.requests.append((method, self.path))
        if not self._authorized():
            self._send(401, {"error_code": 401, "message": "Unauthorized"})
            return
        parts = urlsplit(self.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            self._send(400, {"error_code": 400, "message": f"Unrecognized JSON body: {exc}"})
            return
        try:
            status, answer = self.server.api.dispatch(method, parts.path.rstrip("/") or "/", query, body)
        except RegistryError as exc:
            status, answer = exc.status, {"error_code": exc.code, "message": exc.message}
        except Exception as exc:  # a bug here must not look like a registry answer
            _LOG.exception("schema registry emulator failed on %s %s", method, self.path)
            status, answer = 500, {"error_code": 50001, "message": f"Error in the emulator: {exc}"}
        self._send(status, answer)

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: _Api, users: dict[str, str],
                 tokens: set[str]) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.users = users
        self.tokens = tokens
        self.requests: list[tuple[str, str]] = []


class SchemaRegistryEmulator:
    """A Confluent-compatible schema registry in this process, on a free port.

    Args:
      host: the address to listen on.
      port: the port; 0 picks a free one.
      users: basic-auth users (name -> password); requests without them get 401.
      tokens: accepted bearer tokens; with ``users`` either kind is accepted.
      compatibility: the global compatibility level at start (BACKWARD, as Confluent's).

    Use as a context manager, or :meth:`start` / :meth:`stop`; ``url`` is its base URL.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 users: Optional[dict[str, str]] = None, tokens: Optional[set[str]] = None,
                 compatibility: str = "BACKWARD") -> None:
        self.store = Store(compatibility)
        self._server = _Server((host, port), _Api(self.store), dict(users or {}), set(tokens or ()))
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request served, for tests that count round trips."""
        return self._server.requests

    def start(self) -> SchemaRegistryEmulator:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever,
                                            name="schema-registry-emulator", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> SchemaRegistryEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
