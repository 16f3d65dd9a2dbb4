"""``replay``: payloads (optionally fixed) written back for the pipeline to read again,
checked against the pipeline's input contract first."""

from __future__ import annotations

import collections
import importlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple

from beam_pipelines.dead_letters.read import Location, kafka_config, read_dead_letters
from transforms.base.errors import ConfigError, SinkError
from transforms.contracts import IOT_READINGS, TRANSACTIONS, USER_EVENTS
from transforms.io.kafka import client
from transforms.records import DeadLetter
from transforms.sinks.dead_letter_sink import TRUNCATED
from transforms.validation import InvalidRecord, decode_json_object

__all__ = ["CONTRACTS", "FixFn", "ReplayReport", "load_contract", "load_fix", "replay"]

# pipeline name -> the parse function of its input contract.
CONTRACTS: dict[str, Callable[[dict], Any]] = {
    "pageviews": USER_EVENTS.parse,
    "iot_alerts": IOT_READINGS.parse,
    "fraud": TRANSACTIONS.parse,
}

FixFn = Callable[[Any, dict], Any]


def load_fix(spec: str) -> FixFn:
    """``FILE.py`` (function ``fix``), ``FILE.py:FUNCTION`` or ``module:FUNCTION``."""
    path, _, name = spec.partition(":")
    if os.path.sep in spec.rsplit(":", 1)[0] or path.endswith(".py"):
        if not os.path.isfile(path):
            raise ConfigError("--fix", "FILE.py[:FUNCTION] naming an existing file", spec)
        module_spec = importlib.util.spec_from_file_location("_dead_letter_fix", path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError.from_message(f"--fix: loading {path} failed: {exc!r}") from None
    else:
        try:
            module = importlib.import_module(path)
        except ImportError:
            raise ConfigError("--fix", "FILE.py[:FUNCTION] or an importable module:FUNCTION",
                              spec) from None
    function = getattr(module, name or "fix", None)
    if not callable(function):
        raise ConfigError("--fix", f"a function {name or 'fix'}(payload, letter) in {path}",
                          spec)
    return function


def load_contract(name: str) -> Callable[[dict], Any] | None:
    if name == "none":
        return None
    return CONTRACTS[name]


def _decoded(letter: DeadLetter) -> Any:
    raw = letter.payload_bytes()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


def _encode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")


class ReplayReport(NamedTuple):
    written: int
    skipped_by_reason: int
    dropped_by_fix: int
    still_invalid: dict[str, int]  # reason code of the contract -> count
    fix_errors: int
    truncated: int = 0  # cut to fit the dead-letter destination: not replayable


class _FileWriter:
    """JSON lines to a temporary file renamed at the end: a pipeline never reads half a replay."""

    def __init__(self, output: str) -> None:
        self.output = output
        directory = os.path.dirname(os.path.abspath(output))
        os.makedirs(directory, exist_ok=True)
        self._handle = tempfile.NamedTemporaryFile("wb", dir=directory, prefix=".replay-",
                                                   delete=False)

    def write(self, line: bytes) -> None:
        self._handle.write(line + b"\n")

    def commit(self) -> None:
        self._handle.close()
        os.replace(self._handle.name, self.output)

    def abort(self) -> None:
        self._handle.close()
        os.unlink(self._handle.name)


class _KafkaWriter:
    """Payloads as records of a topic (e.g. the pipeline's input topic), acks=all."""

    def __init__(self, output: str, config: dict[str, Any]) -> None:
        client.kafka_module()
        self.topic = output.split("://", 1)[1].strip("/")
        if not self.topic:
            raise ConfigError("--output", "a JSON-lines file path or kafka://TOPIC", output)
        settings = client.settings("producer", config, acks="all")
        try:
            self._producer = client.build("producer", settings)
        except Exception as exc:
            raise SinkError(f"--output: cannot reach Kafka at "
                            f"{settings.get('bootstrap_servers')}: {exc}") from None
        self._pending: list = []

    def write(self, line: bytes) -> None:
        self._pending.append(self._producer.send(self.topic, value=line))

    def commit(self) -> None:
        self._producer.flush()
        try:
            for future in self._pending:
                future.get(timeout=30)  # raises if the broker refused a record
        except Exception as exc:
            raise SinkError(f"--output: writing to kafka://{self.topic} failed: {exc}") from None
        finally:
            self._producer.close()

    def abort(self) -> None:
        self._producer.close()


def _one_line(line: bytes) -> bytes:
    """One record per line: the file source splits on newlines."""
    if b"\n" not in line:
        return line
    try:
        return json.dumps(json.loads(line), ensure_ascii=False).encode("utf-8")
    except ValueError:
        return line.replace(b"\r\n", b" ").replace(b"\n", b" ")


def replay(
    paths: Location,
    output: str,
    *,
    only_reasons: Sequence[str] = (),
    fix: FixFn | None = None,
    contract: str = "auto",
    keep_invalid: bool = True,
    kafka: dict[str, Any] | None = None,
) -> ReplayReport:
    """Write the (fixed) payloads of the selected dead letters to ``output``.

    ``output`` is a JSON-lines file (written to a temporary file and renamed) or
    ``kafka://TOPIC`` (with ``kafka`` client settings), e.g. the pipeline's input topic.
    """
    written = skipped = dropped = fix_errors = truncated = 0
    invalid: collections.Counter = collections.Counter()
    contracts: dict[str, Callable | None] = {}
    writer: _FileWriter | _KafkaWriter
    if output.startswith("kafka://"):
        writer = _KafkaWriter(output, kafka or kafka_config(None))
    else:
        writer = _FileWriter(output)
    try:
        for letter in read_dead_letters(paths):
            if only_reasons and letter.reason_code not in only_reasons:
                skipped += 1
                continue
            if isinstance(letter.origin, dict) and letter.origin.get(TRUNCATED):
                truncated += 1  # only a prefix was kept (origin.truncated has its hash)
                continue
            if fix is None:
                line = letter.payload_bytes()
            else:
                try:
                    fixed = fix(_decoded(letter), letter._asdict())
                except Exception:  # a fix that fails on one record must not lose the rest
                    fix_errors += 1
                    continue
                if fixed is None:
                    dropped += 1
                    continue
                line = _encode(fixed)
            line = _one_line(line)
            name = letter.pipeline if contract == "auto" else contract
            if name not in contracts:
                contracts[name] = load_contract(name) if name in CONTRACTS else None
            check = contracts[name]
            if check is not None:
                try:
                    check(decode_json_object(line))
                except InvalidRecord as exc:
                    invalid[exc.code] += 1
                    if not keep_invalid:
                        continue
            writer.write(line)
            written += 1
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return ReplayReport(written, skipped, dropped, dict(invalid), fix_errors, truncated)
