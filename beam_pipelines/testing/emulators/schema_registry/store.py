"""The registry's state: schemas by id, subjects' versions, compatibility and modes.

Everything the REST layer does is a method here, raising :class:`RegistryError` with
the HTTP status, the Confluent error code and message; one lock serialises them (the
real registry serialises writes through its leader).
"""

from __future__ import annotations

import itertools
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

from beam_pipelines.testing.emulators.schema_registry import compatibility
from beam_pipelines.testing.emulators.schema_registry.schemas import (
    AVRO,
    SCHEMA_TYPES,
    Dependency,
    InvalidSchema,
    Parsed,
    parse,
    text_of,
)

# Confluent error codes (io.confluent.kafka.schemaregistry.rest.exceptions.Errors).
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_SOFT_DELETED = 40404
SUBJECT_NOT_SOFT_DELETED = 40405
VERSION_SOFT_DELETED = 40406
VERSION_NOT_SOFT_DELETED = 40407
SUBJECT_COMPATIBILITY_NOT_CONFIGURED = 40408
SUBJECT_MODE_NOT_CONFIGURED = 40409
INCOMPATIBLE = 409
INVALID_SCHEMA = 42201
INVALID_VERSION = 42202
INVALID_COMPATIBILITY_LEVEL = 42203
INVALID_MODE = 42204
OPERATION_NOT_PERMITTED = 42205
REFERENCE_EXISTS = 42206
MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")
MAX_VERSION = 2**31 - 1


class RegistryError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class StoredSchema:
    schema_id: int
    schema_type: str
    text: str
    references: list[dict[str, Any]]
    parsed: Parsed
    guid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def key(self) -> tuple:
        return (self.schema_type, self.parsed.identity, _ref_key(self.references))


@dataclass
class Version:
    subject: str
    version: int
    schema_id: int
    deleted: bool = False


def _ref_key(references: list[dict[str, Any]]) -> tuple:
    return tuple((r.get("name"), r.get("subject"), int(r.get("version", 0))) for r in references)


def parse_version(text: str | int) -> Optional[int]:
    """A version number, or None for latest; RegistryError 42202 otherwise."""
    if text in ("latest", "-1", -1):
        return None
    try:
        number = int(text)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= MAX_VERSION:
        raise RegistryError(422, INVALID_VERSION,
                            f"The specified version '{text}' is not a valid version id. Allowed "
                            f"values are between [1, {MAX_VERSION}] and the string \"latest\"")
    return number


class Store:
    def __init__(self, compatibility_level: str = compatibility.DEFAULT_LEVEL) -> None:
        self.lock = threading.RLock()
        self.schemas: dict[int, StoredSchema] = {}
        self.by_key: dict[tuple, int] = {}
        self.subjects: dict[str, list[Version]] = {}
        self.global_level = compatibility_level
        self.subject_levels: dict[str, str] = {}
        self.global_mode = "READWRITE"
        self.subject_modes: dict[str, str] = {}
        self._ids = itertools.count(1)

    # ---- lookups --------------------------------------------------------------------

    def _versions(self, subject: str, deleted: bool = False) -> list[Version]:
        versions = self.subjects.get(subject, [])
        return [v for v in versions if deleted or not v.deleted]

    def _subject_versions(self, subject: str, deleted: bool = False) -> list[Version]:
        versions = self._versions(subject, deleted)
        if not versions:
            raise RegistryError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
        return versions

    def version(self, subject: str, version: str | int, deleted: bool = False) -> Version:
        number = parse_version(version)
        versions = self._subject_versions(subject, deleted)
        if number is None:
            return versions[-1]
        for candidate in self._versions(subject, True):
            if candidate.version == number:
                if candidate.deleted and not deleted:
                    break
                return candidate
        raise RegistryError(404, VERSION_NOT_FOUND, f"Version {number} not found.")

    def schema(self, schema_id: int | str) -> StoredSchema:
        try:
            return self.schemas[int(schema_id)]
        except (KeyError, ValueError):
            raise RegistryError(404, SCHEMA_NOT_FOUND, f"Schema {schema_id} not found") from None

    def schema_by_guid(self, guid: str) -> StoredSchema:
        for stored in self.schemas.values():
            if stored.guid == guid:
                return stored
        raise RegistryError(404, SCHEMA_NOT_FOUND, f"Schema {guid} not found")

    def level(self, subject: Optional[str]) -> str:
        if subject is not None and subject in self.subject_levels:
            return self.subject_levels[subject]
        return self.global_level

    def mode(self, subject: Optional[str]) -> str:
        if subject is not None and subject in self.subject_modes:
            return self.subject_modes[subject]
        return self.global_mode

    # ---- parsing ----------------------------------------------------------------------

    def _dependencies(self, references: list[dict[str, Any]]) -> list[Dependency]:
        out = []
        for reference in references:
            if not isinstance(reference, dict) or not {"name", "subject", "version"} <= set(reference):
                raise RegistryError(422, INVALID_SCHEMA,
                                    "Invalid schema: a reference needs name, subject and version")
            try:
                version = self.version(reference["subject"], reference["version"], deleted=True)
            except RegistryError:
                raise RegistryError(422, INVALID_SCHEMA,
                                    f"Invalid schema: reference {reference['name']} to subject "
                                    f"'{reference['subject']}' version {reference['version']} "
                                    "does not exist") from None
            stored = self.schemas[version.schema_id]
            out += self._dependencies(stored.references)
            out.append(Dependency(reference["name"], stored.parsed, stored.text))
        return out

    def parse_request(self, body: Any) -> tuple[str, str, list[dict[str, Any]], Parsed]:
        if not isinstance(body, dict):
            raise RegistryError(422, INVALID_SCHEMA, "Invalid schema: the body is not a JSON object")
        schema_type = body.get("schemaType") or AVRO
        text = body.get("schema")
        references = body.get("references") or []
        if schema_type not in SCHEMA_TYPES:
            raise RegistryError(422, INVALID_SCHEMA, f"Invalid schema type {schema_type}")
        if not isinstance(references, list):
            raise RegistryError(422, INVALID_SCHEMA, "Invalid schema: references must be a list")
        try:
            parsed = parse(schema_type, text, self._dependencies(references))  # type: ignore[arg-type]
        except InvalidSchema as exc:
            raise RegistryError(422, INVALID_SCHEMA, str(exc)) from None
        return schema_type, str(text), references, parsed

    # ---- writes ----------------------------------------------------------------------

    def register(self, subject: str, body: Any) -> int:
        with self.lock:
            if self.mode(subject).startswith("READONLY"):
                raise RegistryError(422, OPERATION_NOT_PERMITTED,
                                    f"Subject {subject} is in read-only mode")
            schema_type, text, references, parsed = self.parse_request(body)
            key = (schema_type, parsed.identity, _ref_key(references))
            live = self._versions(subject)
            for version in live:
                if self.schemas[version.schema_id].key() == key:
                    return version.schema_id
            previous = [self.schemas[v.schema_id].parsed for v in live]
            found = compatibility.check(self.level(subject), parsed, previous)
            if found:
                raise RegistryError(
                    409, INCOMPATIBLE,
                    f"Schema being registered is incompatible with an earlier schema for subject "
                    f"\"{subject}\", details: [{'; '.join(found)}] "
                    f"(compatibility {self.level(subject)})")
            schema_id = self.by_key.get(key)
            if schema_id is None:
                schema_id = next(self._ids)
                self.schemas[schema_id] = StoredSchema(schema_id, schema_type, text, references, parsed)
                self.by_key[key] = schema_id
            versions = self.subjects.setdefault(subject, [])
            number = max((v.version for v in versions), default=0) + 1
            versions.append(Version(subject, number, schema_id))
            return schema_id

    def lookup(self, subject: str, body: Any, deleted: bool = False) -> Version:
        with self.lock:
            versions = self._subject_versions(subject, deleted)
            schema_type, _, references, parsed = self.parse_request(body)
            key = (schema_type, parsed.identity, _ref_key(references))
            for version in versions:
                if self.schemas[version.schema_id].key() == key:
                    return version
            raise RegistryError(404, SCHEMA_NOT_FOUND, "Schema not found")

    def test_compatibility(self, subject: str, version: Optional[str], body: Any) -> list[str]:
        with self.lock:
            _, _, _, parsed = self.parse_request(body)
            if not self._versions(subject):
                if version is None:
                    return []
                raise RegistryError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
            level = self.level(subject)
            if version is None:  # against all versions the level looks at
                previous = [self.schemas[v.schema_id].parsed for v in self._versions(subject)]
                return compatibility.check(level, parsed, previous)
            old = self.schemas[self.version(subject, version).schema_id].parsed
            return compatibility.check(level.replace("_TRANSITIVE", ""), parsed, [old])

    def _referenced(self, subject: str, number: int) -> list[int]:
        return sorted({
            stored.schema_id for stored in self.schemas.values()
            for reference in stored.references
            if reference.get("subject") == subject and int(reference.get("version", 0)) == number
            and any(not v.deleted and v.schema_id == stored.schema_id
                    for vs in self.subjects.values() for v in vs)
        })

    def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        with self.lock:
            everything = self.subjects.get(subject, [])
            if not everything:
                raise RegistryError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
            for version in everything:
                if not version.deleted and self._referenced(subject, version.version):
                    raise RegistryError(422, REFERENCE_EXISTS,
                                        f"One or more references exist to the schema "
                                        f"{{subject={subject},version={version.version}}}")
            if permanent:
                if any(not v.deleted for v in everything):
                    raise RegistryError(404, SUBJECT_NOT_SOFT_DELETED,
                                        f"Subject '{subject}' was not deleted first before being "
                                        "permanently deleted")
                del self.subjects[subject]
                self.subject_levels.pop(subject, None)
                self.subject_modes.pop(subject, None)
                self._forget_unused()
                return [v.version for v in everything]
            live = [v for v in everything if not v.deleted]
            if not live:
                raise RegistryError(404, SUBJECT_SOFT_DELETED,
                                    f"Subject '{subject}' was soft deleted.Set permanent=true to "
                                    "delete permanently")
            for version in live:
                version.deleted = True
            return [v.version for v in live]

    def delete_version(self, subject: str, version: str, permanent: bool) -> int:
        with self.lock:
            if not self.subjects.get(subject):
                raise RegistryError(404, SUBJECT_NOT_FOUND, f"Subject '{subject}' not found.")
            number = parse_version(version)
            target = self.version(subject, version, deleted=permanent and number is not None)
            if self._referenced(subject, target.version):
                raise RegistryError(422, REFERENCE_EXISTS,
                                    f"One or more references exist to the schema "
                                    f"{{subject={subject},version={target.version}}}")
            if permanent:
                if not target.deleted:
                    raise RegistryError(404, VERSION_NOT_SOFT_DELETED,
                                        f"Subject '{subject}' Version {target.version} was not "
                                        "deleted first before being permanently deleted")
                self.subjects[subject].remove(target)
                if not self.subjects[subject]:
                    del self.subjects[subject]
                self._forget_unused()
                return target.version
            if target.deleted:
                raise RegistryError(404, VERSION_SOFT_DELETED,
                                    f"Subject '{subject}' Version {target.version} was soft "
                                    "deleted.Set permanent=true to delete permanently")
            target.deleted = True
            return target.version

    def _forget_unused(self) -> None:
        used = {v.schema_id for versions in self.subjects.values() for v in versions}
        for schema_id in [i for i in self.schemas if i not in used]:
            stored = self.schemas.pop(schema_id)
            self.by_key.pop(stored.key(), None)

    def set_level(self, subject: Optional[str], body: Any) -> str:
        level = body.get("compatibility") if isinstance(body, dict) else None
        if not isinstance(level, str) or level.upper() not in compatibility.LEVELS:
            raise RegistryError(422, INVALID_COMPATIBILITY_LEVEL,
                                "Invalid compatibility level. Valid values are none, backward, "
                                "forward, full, backward_transitive, forward_transitive, and "
                                "full_transitive")
        with self.lock:
            if subject is None:
                self.global_level = level.upper()
            else:
                self.subject_levels[subject] = level.upper()
        return level.upper()

    def set_mode(self, subject: Optional[str], body: Any) -> str:
        mode = body.get("mode") if isinstance(body, dict) else None
        if not isinstance(mode, str) or mode.upper() not in MODES:
            raise RegistryError(422, INVALID_MODE,
                                f"Invalid mode. Valid values are {', '.join(MODES)}")
        with self.lock:
            if subject is None:
                self.global_mode = mode.upper()
            else:
                self.subject_modes[subject] = mode.upper()
        return mode.upper()

    # ---- answers --------------------------------------------------------------------

    def schema_answer(self, stored: StoredSchema, fmt: Optional[str], name: Optional[str] = None) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": text_of(stored.parsed, stored.text, fmt, name)}
        if stored.schema_type != AVRO:
            out["schemaType"] = stored.schema_type
        if stored.references:
            out["references"] = stored.references
        out["guid"] = stored.guid
        return out

    def version_answer(self, version: Version, fmt: Optional[str]) -> dict[str, Any]:
        stored = self.schemas[version.schema_id]
        return {"subject": version.subject, "version": version.version, "id": version.schema_id,
                **self.schema_answer(stored, fmt)}
