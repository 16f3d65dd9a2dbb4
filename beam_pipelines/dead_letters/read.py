"""Reading dead letters: from a directory, a file, a glob (any Beam filesystem) or a topic."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.wiring.kafka import config_from_options
from transforms.base.errors import ConfigError, SourceError
from transforms.io.files import iter_lines
from transforms.io.kafka import client
from transforms.records import DeadLetter

__all__ = ["KafkaTopic", "Location", "Unreadable", "dead_letter_files", "kafka_config",
           "read_dead_letters"]

_FIELDS = set(DeadLetter._fields)


class Unreadable(NamedTuple):
    file: str
    line: int
    problem: str


# ---- reading ------------------------------------------------------------------------------

def dead_letter_files(location: str) -> list[str]:
    """The files of a dead-letter location: a directory, a file or a glob."""
    if not isinstance(location, str) or not location.strip():
        raise ConfigError("LOCATION", "a dead-letter directory, file or glob", location)
    scheme = location.split("://", 1)[0] if "://" in location else ""
    if scheme in ("postgresql", "postgres"):
        raise ConfigError.from_message(
            f"LOCATION: reading dead letters from {scheme}:// is not supported: pipelines write "
            "them to a directory or to kafka://TOPIC (--dead_letter)"
        )
    from apache_beam.io.filesystems import FileSystems

    patterns = [location]
    if not any(ch in location for ch in "*?[") and not _is_file(location):
        base = location.rstrip("/")
        patterns = [f"{base}/dead_letters-*", f"{base}/*.jsonl"]
    found: set[str] = set()
    for pattern in patterns:
        try:
            matches = FileSystems.match([pattern])[0].metadata_list
        except Exception:  # Beam raises BeamIOError for a pattern matching nothing
            continue
        found.update(m.path for m in matches if not os.path.basename(m.path).startswith("."))
    if not found:
        raise SourceError(f"LOCATION: no dead-letter files at {location!r} "
                          "(expected DIR/dead_letters-*.jsonl, a file or a glob)")
    return sorted(found)


def _is_file(path: str) -> bool:
    if "://" not in path:
        return os.path.isfile(path)
    from apache_beam.io.filesystems import FileSystems

    try:
        matches = FileSystems.match([path])[0].metadata_list
    except Exception:
        return False
    return len(matches) == 1 and matches[0].path.rstrip("/") == path.rstrip("/")


def kafka_config(servers: str | None, settings: Sequence[str] = ()) -> dict[str, Any]:
    """kafka-python client settings from the CLI's --bootstrap_servers / --kafka_config."""
    flags = [f"--bootstrap_servers={servers}"] if servers else []
    flags += [f"--kafka_config={pair}" for pair in settings]
    return config_from_options(PipelineOptions(flags))


class KafkaTopic:
    """A dead-letter topic (``--dead_letter kafka://TOPIC``), read from its start to its end."""

    def __init__(self, location: str, config: dict[str, Any], timeout: float = 60.0) -> None:
        self.topic = location.split("://", 1)[1].strip("/")
        if not self.topic:
            raise ConfigError("LOCATION", "kafka://TOPIC", location)
        self.name = f"kafka://{self.topic}"
        self._config = config
        self._timeout = timeout

    def _client(self):
        # bootstrap_timeout_ms unless the config sets it: fail in seconds, not minutes
        settings = client.settings("consumer", self._config,
                                   defaults={"bootstrap_timeout_ms": 10000},
                                   group_id=None, enable_auto_commit=False)
        try:
            return client.build("consumer", settings)
        except Exception as exc:
            raise SourceError(f"LOCATION: cannot reach Kafka at "
                              f"{settings.get('bootstrap_servers')}: {exc}") from None

    def lines(self) -> Iterator[tuple[str, int, bytes]]:
        """(partition name, offset, value) of every record up to the end offsets seen now."""
        import time

        kafka = client.kafka_module()
        consumer = self._client()
        try:
            numbers = consumer.partitions_for_topic(self.topic)
            if not numbers:
                raise SourceError(f"LOCATION: Kafka topic {self.topic!r} does not exist")
            partitions = [kafka.TopicPartition(self.topic, p) for p in sorted(numbers)]
            ends = consumer.end_offsets(partitions)
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            deadline = time.monotonic() + self._timeout
            while any(consumer.position(tp) < ends[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise SourceError(f"LOCATION: reading {self.name} did not reach its end "
                                      f"within {self._timeout:.0f}s")
                for tp, records in consumer.poll(timeout_ms=500).items():
                    for record in records:
                        if record.offset < ends[tp] and record.value is not None:
                            yield f"{self.name}/{tp.partition}", record.offset, record.value
        finally:
            consumer.close()


Location = Sequence["str | KafkaTopic"]


def _raw_records(sources: Iterable[str | KafkaTopic]) -> Iterator[tuple[str, int, bytes]]:
    for source in sources:
        if isinstance(source, KafkaTopic):
            yield from source.lines()
        else:
            for number, raw in iter_lines(source):
                yield source, number, raw


def read_dead_letters(
    paths: Iterable[str | KafkaTopic], unreadable: list[Unreadable] | None = None
) -> Iterator[DeadLetter]:
    """Every DeadLetter in ``paths``; lines that are not dead letters go to ``unreadable``."""
    for path, number, raw in _raw_records(paths):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict) or not _FIELDS <= obj.keys():
                missing = sorted(_FIELDS - set(obj)) if isinstance(obj, dict) else "all"
                raise ValueError(f"not a dead letter (missing {missing})")
            yield DeadLetter(**{name: obj[name] for name in DeadLetter._fields})
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
            if unreadable is not None:
                unreadable.append(Unreadable(path, number, str(exc)[:200]))
