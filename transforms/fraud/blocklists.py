"""Blocklist sources: the values a ``blocklist`` rule checks, possibly changing while a
stream runs.

:class:`FileBlocklist` re-reads its file when its modification time or size changes
(checked at most every ``reload_seconds``), so a running stream picks up a new list
without a restart; :class:`StaticBlocklist` is a fixed set; other sources (a compacted
Kafka topic) plug in by URL scheme with :func:`register_blocklist_source`.

File format (:func:`parse_blocklist`): one value per line, surrounding whitespace
stripped; blank lines and lines starting with ``#`` are skipped; no trailing comments.
"""

from __future__ import annotations

import abc
import logging
import re
import time
from typing import Any, Callable, Iterable

__all__ = [
    "DEFAULT_RELOAD_SECONDS",
    "BlocklistSource",
    "FileBlocklist",
    "StaticBlocklist",
    "blocklist_source_factory",
    "parse_blocklist",
    "register_blocklist_source",
]

_LOG = logging.getLogger(__name__)

DEFAULT_RELOAD_SECONDS = 30


class BlocklistSource(abc.ABC):
    """The values of a blocklist, possibly changing while a stream runs.

    ``current()`` is called for every transaction a blocklist rule checks, so it must be
    cheap; a source refreshes itself inside it (at most every few seconds) or from a
    thread of its own. Sources are pickled into the workers' DoFns.
    """

    description: str = "blocklist"

    @abc.abstractmethod
    def current(self) -> frozenset[str]:
        """The blocked values now."""

    def __contains__(self, value: object) -> bool:
        return value in self.current()


class StaticBlocklist(BlocklistSource):
    """A fixed set of values (tests, or lists built in code)."""

    def __init__(self, values: Iterable[str], description: str = "static blocklist") -> None:
        self._values = frozenset(values)
        self.description = description

    def current(self) -> frozenset[str]:
        return self._values


def parse_blocklist(text: str) -> frozenset[str]:
    """A blocklist file's values: one per line, surrounding whitespace stripped; blank lines
    and lines whose first non-blank character is ``#`` are skipped. There are no trailing
    comments (``#`` inside a value is part of the value)."""
    values = set()
    for line in text.splitlines():
        value = line.strip()
        if value and not value.startswith("#"):
            values.add(value)
    return frozenset(values)


def _read_text(path: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8-sig")


def _version(path: str) -> tuple[float, int]:
    from apache_beam.io.filesystems import FileSystems

    meta = FileSystems.match([path])[0].metadata_list
    if not meta:
        raise FileNotFoundError("no such file")
    return float(meta[0].last_updated_in_seconds), int(meta[0].size_in_bytes)


class FileBlocklist(BlocklistSource):
    """A text file of values (:func:`parse_blocklist`), re-read when it changes.

    The file is read once when constructed (a missing or unreadable file is an error
    then). Afterwards, at most every ``reload_seconds`` of ``clock`` time, its
    modification time and size are checked and, when either changed, it is read again. A
    failed re-read (the file is being replaced, a network filesystem hiccups) keeps the
    values read last and logs a warning: a stream does not stop for it.

    :param path: local path or any Beam filesystem path (``gs://...``).
    :param reload_seconds: the least time between two checks of the file; 0 checks on
        every lookup.
    :param clock: a monotonic clock in seconds (``time.monotonic``); tests pass their own.
    """

    def __init__(self, path: str, reload_seconds: float = DEFAULT_RELOAD_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if reload_seconds < 0:
            raise ValueError(f"reload_seconds must be >= 0, got {reload_seconds!r}")
        self.path = path
        self.reload_seconds = float(reload_seconds)
        self.description = f"blocklist file {path}"
        self._clock = clock
        self._version = _version(path)
        self._values = parse_blocklist(_read_text(path))
        self._checked_at: float | None = clock()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_checked_at"] = None  # another process's clock: check on first use there
        return state

    def current(self) -> frozenset[str]:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self.reload_seconds:
            self._checked_at = now
            self._refresh()
        return self._values

    def _refresh(self) -> None:
        try:
            version = _version(self.path)
            if version == self._version:
                return
            values = parse_blocklist(_read_text(self.path))
        except Exception as exc:  # any filesystem error: keep serving the last good list
            _LOG.warning("%s: re-reading failed, keeping the %d values read last: %s",
                         self.description, len(self._values), exc)
            return
        self._version = version
        if values != self._values:
            _LOG.info("%s: reloaded, %d values (was %d)", self.description, len(values),
                      len(self._values))
        self._values = values


# scheme -> factory(target, reload_seconds) for blocklists that are not files.
_SOURCES: dict[str, Callable[[str, float], BlocklistSource]] = {}


def register_blocklist_source(scheme: str, factory: Callable[[str, float], BlocklistSource]) -> None:
    """Make ``"list": "SCHEME://..."`` in a rules file build its source with ``factory``.

    The hook for blocklists that are not files: the Kafka wiring registers ``kafka`` with a
    source that follows a compacted topic. ``factory(target, reload_seconds)`` gets the
    whole ``list`` value.
    """
    if not re.fullmatch(r"[a-z][a-z0-9+.\-]*", scheme):
        raise ValueError(f"scheme must be a URL scheme like 'kafka', got {scheme!r}")
    _SOURCES[scheme] = factory


def blocklist_source_factory(scheme: str | None) -> Callable[[str, float], BlocklistSource] | None:
    """The factory registered for ``scheme`` (None when there is none)."""
    return _SOURCES.get(scheme) if scheme else None
