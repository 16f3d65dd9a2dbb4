"""A schema-registry client: Confluent's, configured from plain arguments, with our errors.

The HTTP work is done by ``confluent_kafka.schema_registry.SchemaRegistryClient`` (the
official client: retries with backoff, several URLs, TLS, basic auth and bearer tokens,
its own caches by id and by subject). This module adds what a pipeline needs around it:

* :class:`RegistryConfig` from arguments, environment variables or files, whose ``repr``
  never shows a secret (credentials in the URL are moved out of it first);
* :class:`SchemaRegistry`, picklable (the client is created on first use in each worker),
  with a cache of parsed schemas per id that decoders share, a short negative cache for
  unknown ids (a topic full of garbage ids costs one request per id per minute, not one
  per record), and errors translated to :mod:`transforms.formats.errors`;
* subject name strategies (:func:`subject_name`).

Environment variables (used when the argument is not given)::

    SCHEMA_REGISTRY_URL                  https://psrc-xxxx.region.provider.confluent.cloud
    SCHEMA_REGISTRY_BASIC_AUTH           KEY:SECRET (Confluent Cloud: the registry API key)
    SCHEMA_REGISTRY_BASIC_AUTH_FILE      a file holding KEY:SECRET
    SCHEMA_REGISTRY_BEARER_TOKEN         an OAuth/OIDC access token
    SCHEMA_REGISTRY_BEARER_TOKEN_FILE    a file holding it (re-read when the client is made)
    SCHEMA_REGISTRY_LOGICAL_CLUSTER      lsrc-xxxx, sent with bearer tokens (Confluent Cloud)
    SCHEMA_REGISTRY_CA                   a CA bundle for a self-signed registry certificate
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, NamedTuple, Optional
from urllib.parse import unquote, urlsplit, urlunsplit

from transforms.base.errors import ConfigError
from transforms.base.extras import require
from transforms.formats.errors import IncompatibleSchemaError, SchemaRegistryError

__all__ = [
    "AVRO",
    "JSON",
    "PROTOBUF",
    "RECORD_NAME",
    "Registered",
    "RegistryConfig",
    "RegistrySchema",
    "SchemaNotFoundError",
    "SchemaReference",
    "SchemaRegistry",
    "SUBJECT_NAME_STRATEGIES",
    "TOPIC_NAME",
    "TOPIC_RECORD_NAME",
    "subject_name",
]

AVRO, PROTOBUF, JSON = "AVRO", "PROTOBUF", "JSON"
TOPIC_NAME, RECORD_NAME, TOPIC_RECORD_NAME = "topic_name", "record_name", "topic_record_name"
SUBJECT_NAME_STRATEGIES = (TOPIC_NAME, RECORD_NAME, TOPIC_RECORD_NAME)
ENV_PREFIX = "SCHEMA_REGISTRY_"
# How long an id the registry did not know is not asked for again.
UNKNOWN_ID_TTL_SECONDS = 60.0
_NOT_FOUND_CODES = {40401, 40402, 40403}
_INCOMPATIBLE_CODES = {409, 40901}


class SchemaReference(NamedTuple):
    """A schema's reference to another registered schema (Avro named types, .proto imports)."""

    name: str
    subject: str
    version: int


class RegistrySchema(NamedTuple):
    """A schema as the registry holds it: its text, its type and its references."""

    text: str
    schema_type: str = AVRO
    references: tuple[SchemaReference, ...] = ()


class Registered(NamedTuple):
    """Where a schema is registered: its global id and its version under a subject."""

    schema_id: int
    version: int


class SchemaNotFoundError(SchemaRegistryError):
    """The registry answered 404: no such schema id, subject or version."""


def subject_name(strategy: str, topic: str, record_name: Optional[str] = None,
                 is_key: bool = False) -> str:
    """The subject a schema is registered under.

    Args:
      strategy: ``topic_name`` (``<topic>-value``, the default of every Confluent client),
        ``record_name`` (the record's full name, so one topic can carry several types) or
        ``topic_record_name`` (``<topic>-<record name>``).
      topic: the Kafka topic written to.
      record_name: the full name of the Avro record / Protobuf message / JSON Schema title;
        required by the two record strategies.
      is_key: the subject of the message key (``-key``) rather than of the value.
    """
    if strategy == TOPIC_NAME:
        return f"{topic}-{'key' if is_key else 'value'}"
    if strategy not in SUBJECT_NAME_STRATEGIES:
        raise ConfigError("--subject_name_strategy", "|".join(SUBJECT_NAME_STRATEGIES), strategy)
    if not record_name:
        raise ConfigError("--subject_name_strategy",
                          f"{TOPIC_NAME} for a schema without a record name (got {strategy})")
    return record_name if strategy == RECORD_NAME else f"{topic}-{record_name}"


def _read_secret_file(path: str, flag: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except OSError as exc:
        raise ConfigError(flag, "a readable file holding the secret",
                          f"{path} ({exc.strerror or exc})") from None
    if not text:
        raise ConfigError(flag, "a file holding the secret, not an empty one", path)
    return text


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, repr=False)
class RegistryConfig:
    """Where the registry is and how to authenticate; ``repr`` and ``str`` hide secrets.

    Args:
      url: the registry's base URL (several, comma-separated, are tried in turn).
      basic_auth: ``KEY:SECRET`` for HTTP basic auth (Confluent Cloud API key and secret).
      bearer_token: an OAuth access token sent as ``Authorization: Bearer``.
      logical_cluster: the ``target-sr-cluster`` header sent with bearer tokens
        (Confluent Cloud's ``lsrc-...`` id); other registries ignore it.
      identity_pool: Confluent Cloud identity pool id, sent with bearer tokens when set.
      ca_location: a CA bundle (file or directory) to verify the registry's certificate.
      timeout: seconds per HTTP request (the client retries 5xx and connection errors).
    """

    url: str
    basic_auth: Optional[str] = field(default=None, compare=False)
    bearer_token: Optional[str] = field(default=None, compare=False)
    logical_cluster: Optional[str] = None
    identity_pool: Optional[str] = None
    ca_location: Optional[str] = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.url or not all(u.strip().startswith(("http://", "https://"))
                                   for u in self.url.split(",")):
            raise ConfigError("--schema_registry_url", "http(s)://HOST[:PORT][/PATH]",
                              _redact_url(self.url or ""))
        first = urlsplit(self.url.split(",")[0].strip())
        if first.username is not None or first.password is not None:
            if self.basic_auth:
                raise ConfigError("--schema_registry_url", "credentials in the URL or "
                                  "--schema_registry_basic_auth, not both", _redact_url(self.url))
            userinfo = f"{unquote(first.username or '')}:{unquote(first.password or '')}"
            object.__setattr__(self, "basic_auth", userinfo)
            object.__setattr__(self, "url", ",".join(_strip_userinfo(u) for u in self.url.split(",")))
        if self.basic_auth is not None and ":" not in self.basic_auth:
            raise ConfigError("--schema_registry_basic_auth", "KEY:SECRET", "***")
        if self.basic_auth and self.bearer_token:
            raise ConfigError("--schema_registry_bearer_token",
                              "either basic auth or a bearer token, not both")
        if not self.timeout > 0:
            raise ConfigError("--schema_registry_timeout", "seconds > 0", self.timeout)

    @classmethod
    def resolve(
        cls,
        url: Optional[str] = None,
        *,
        basic_auth: Optional[str] = None,
        basic_auth_file: Optional[str] = None,
        bearer_token: Optional[str] = None,
        bearer_token_file: Optional[str] = None,
        logical_cluster: Optional[str] = None,
        identity_pool: Optional[str] = None,
        ca_location: Optional[str] = None,
        timeout: float = 30.0,
        env: Optional[Mapping[str, str]] = None,
    ) -> RegistryConfig:
        """A config from arguments, falling back to ``SCHEMA_REGISTRY_*`` variables.

        A ``*_file`` argument (or variable) names a file holding the secret, so the
        secret is neither on the command line nor in the environment of child processes.
        """
        environ = os.environ if env is None else env

        def pick(value: Optional[str], name: str) -> Optional[str]:
            return value if value is not None else (environ.get(ENV_PREFIX + name) or None)

        url = pick(url, "URL")
        if not url:
            raise ConfigError("--schema_registry_url",
                              f"the registry's URL (or {ENV_PREFIX}URL in the environment)")
        basic = pick(basic_auth, "BASIC_AUTH")
        basic_file = pick(basic_auth_file, "BASIC_AUTH_FILE")
        if basic is None and basic_file:
            basic = _read_secret_file(basic_file, "--schema_registry_basic_auth_file")
        token = pick(bearer_token, "BEARER_TOKEN")
        token_file = pick(bearer_token_file, "BEARER_TOKEN_FILE")
        if token is None and token_file:
            token = _read_secret_file(token_file, "--schema_registry_bearer_token_file")
        return cls(url, basic, token, pick(logical_cluster, "LOGICAL_CLUSTER"),
                   pick(identity_pool, "IDENTITY_POOL"), pick(ca_location, "CA"), timeout)

    def __repr__(self) -> str:
        auth = ("basic auth ***" if self.basic_auth else
                "bearer token ***" if self.bearer_token else "no auth")
        return f"RegistryConfig(url={self.url!r}, {auth})"

    __str__ = __repr__

    def client_config(self) -> dict[str, Any]:
        """The ``SchemaRegistryClient`` configuration (holds secrets: never log it)."""
        conf: dict[str, Any] = {"url": self.url, "timeout": self.timeout}
        if self.basic_auth:
            conf["basic.auth.user.info"] = self.basic_auth
        if self.bearer_token:
            conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
            conf["bearer.auth.token"] = self.bearer_token
            conf["bearer.auth.logical.cluster"] = self.logical_cluster or ""
            # confluent-kafka before 2.13 requires the key even when there is no pool
            conf["bearer.auth.identity.pool.id"] = self.identity_pool or ""
        if self.ca_location:
            conf["ssl.ca.location"] = self.ca_location
        return conf


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class SchemaRegistry:
    """A registry client for decoders and encoders: cached, picklable, our errors.

    Args:
      config: a :class:`RegistryConfig`, or a URL (no auth).
      client_factory: builds the HTTP client from ``config.client_config()``; the
        default is Confluent's ``SchemaRegistryClient``. Tests may pass another.
    """

    def __init__(self, config: RegistryConfig | str,
                 client_factory: Optional[Callable[[dict[str, Any]], Any]] = None) -> None:
        self.config = config if isinstance(config, RegistryConfig) else RegistryConfig(config)
        self._client_factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()
        self._by_id: dict[tuple[int, Optional[str]], RegistrySchema] = {}
        self._unknown: dict[int, float] = {}
        # Parsed forms of schemas (fastavro dicts, message classes, validators), by a key
        # each format chooses; shared by every decoder and encoder using this registry.
        self.parsed: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"SchemaRegistry({self.config!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "client_factory": self._client_factory}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["client_factory"])  # type: ignore[misc]

    def with_config(self, **changes: Any) -> SchemaRegistry:
        return SchemaRegistry(replace(self.config, **changes), self._client_factory)

    @property
    def client(self) -> Any:
        """The underlying ``SchemaRegistryClient`` (created on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    factory = self._client_factory
                    if factory is None:
                        module = require("formats", "confluent_kafka.schema_registry")
                        factory = module.SchemaRegistryClient
                    self._client = factory(self.config.client_config())
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and hasattr(client, "__exit__"):
            client.__exit__(None, None, None)

    # ---- calls ------------------------------------------------------------------------

    def _call(self, what: str, call: Callable[[], Any], subject: Optional[str] = None) -> Any:
        sr_error = require("formats", "confluent_kafka.schema_registry.error").SchemaRegistryError
        try:
            return call()
        except sr_error as exc:
            status, code = exc.http_status_code, exc.error_code
            message = exc.error_message or ""
            if status == 409 or code in _INCOMPATIBLE_CODES:
                raise IncompatibleSchemaError(subject or "?", message, status, code) from None
            kind = SchemaNotFoundError if status == 404 or code in _NOT_FOUND_CODES else SchemaRegistryError
            raise kind(f"schema registry {self.config.url}: {what} failed: {message} "
                       f"(HTTP {status}, error code {code})", status, code) from None
        except (ValueError, TypeError) as exc:
            raise SchemaRegistryError(f"schema registry {self.config.url}: {what} failed: "
                                      f"{exc}") from None
        except Exception as exc:  # httpx transport errors after the client's retries
            raise SchemaRegistryError(
                f"schema registry {self.config.url} unreachable: {what} failed: "
                f"{type(exc).__name__}: {exc}") from None

    def schema_by_id(self, schema_id: int, fmt: Optional[str] = None) -> RegistrySchema:
        """The schema with this id (``fmt='serialized'``: Protobuf as a base64
        FileDescriptorProto). Raises SchemaNotFoundError for an unknown id."""
        key = (schema_id, fmt)
        cached = self._by_id.get(key)
        if cached is not None:
            return cached
        unknown_since = self._unknown.get(schema_id)
        if unknown_since is not None and time.monotonic() - unknown_since < UNKNOWN_ID_TTL_SECONDS:
            raise SchemaNotFoundError(f"schema registry {self.config.url} has no schema with "
                                      f"id {schema_id}", 404, 40403)
        try:
            schema = self._call(f"GET /schemas/ids/{schema_id}",
                                lambda: self.client.get_schema(schema_id, fmt=fmt))
        except SchemaNotFoundError:
            self._unknown[schema_id] = time.monotonic()
            raise
        result = _from_client_schema(schema)
        self._by_id[key] = result
        return result

    def version(self, subject: str, version: int | str = "latest",
                fmt: Optional[str] = None) -> tuple[int, int, RegistrySchema]:
        """(schema id, version number, schema) of a subject's version (``latest`` too)."""
        def call() -> Any:
            if version == "latest":
                return self.client.get_latest_version(subject, fmt)
            return self.client.get_version(subject, int(version), True, fmt)

        registered = self._call(f"GET /subjects/{subject}/versions/{version}", call, subject)
        return registered.schema_id, registered.version, _from_client_schema(registered.schema)

    def register(self, subject: str, schema: RegistrySchema, normalize: bool = False) -> int:
        """Register ``schema`` under ``subject`` (the same schema again: the same id).

        Raises IncompatibleSchemaError when the subject's compatibility rule refuses it.
        """
        client_schema = _to_client_schema(schema)
        return int(self._call(f"POST /subjects/{subject}/versions",
                              lambda: self.client.register_schema(subject, client_schema, normalize),
                              subject))

    def lookup(self, subject: str, schema: RegistrySchema, normalize: bool = False) -> Registered:
        """Id and version of ``schema`` under ``subject``; SchemaNotFoundError if it is not there."""
        client_schema = _to_client_schema(schema)
        registered = self._call(f"POST /subjects/{subject}",
                                lambda: self.client.lookup_schema(subject, client_schema, normalize),
                                subject)
        return Registered(int(registered.schema_id), int(registered.version))

    def id_for(self, subject: str, schema: RegistrySchema, auto_register: bool = True,
               normalize: bool = False) -> int:
        """The schema's id under ``subject``: registered when ``auto_register`` (the
        Confluent serializers' default), else looked up (and an error if missing)."""
        if auto_register:
            return self.register(subject, schema, normalize)
        try:
            return self.lookup(subject, schema, normalize).schema_id
        except SchemaNotFoundError:
            raise SchemaRegistryError(
                f"schema registry {self.config.url}: the schema is not registered under "
                f"subject '{subject}' and auto_register is off (register it first, e.g. "
                "python -m beam_pipelines.schemas --register)", 404, 40403) from None

    def compatibility(self, subject: Optional[str] = None) -> str:
        """The compatibility level in force for ``subject`` (or the global one)."""
        if subject is not None:
            try:
                level = self._call(f"GET /config/{subject}",
                                   lambda: self.client.get_compatibility(subject), subject)
                return str(getattr(level, "value", level))
            except SchemaNotFoundError:
                pass
        level = self._call("GET /config", lambda: self.client.get_compatibility())
        return str(getattr(level, "value", level))


def _from_client_schema(schema: Any) -> RegistrySchema:
    references = tuple(SchemaReference(r.name, r.subject, int(r.version))
                       for r in (schema.references or []))
    return RegistrySchema(schema.schema_str, schema.schema_type or AVRO, references)


def _to_client_schema(schema: RegistrySchema) -> Any:
    module = require("formats", "confluent_kafka.schema_registry")
    references = [module.SchemaReference(r.name, r.subject, r.version) for r in schema.references]
    return module.Schema(schema.text, schema.schema_type, references)
