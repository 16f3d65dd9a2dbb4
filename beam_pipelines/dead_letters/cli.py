"""Inspect and replay dead letters: ``python -m beam_pipelines.dead_letters inspect|replay``.

A pipeline's ``--dead_letter DIR`` holds JSON lines of
:class:`~transforms.records.DeadLetter` (``DIR/dead_letters-*.jsonl``); with
``--dead_letter kafka://TOPIC`` they are the records of a topic, read from its start to
the end offsets seen when the command starts. ``inspect`` says
why records were rejected (counts per reason_code, first and last rejection, samples);
``replay`` writes the payloads back as a JSON-lines file the pipeline reads with
``--source=file --input=FILE``, optionally only some reasons and after a fix function,
and checks the result against the pipeline's input contract first, so a fix that does
not fix is seen before the pipeline runs::

    python -m beam_pipelines.dead_letters inspect rejected/
    python -m beam_pipelines.dead_letters replay rejected/ --output fixed.jsonl \\
        --only-reason missing_field --fix fixes.py:add_action
    python -m beam_pipelines.dead_letters inspect kafka://rejected --bootstrap_servers=K:9092
    python -m beam_pipelines.dead_letters replay kafka://rejected --output kafka://user_events

Any Beam filesystem path works (local, gs://, s3://...). Records are read one file at a
time and the counts kept per reason, so a large dead-letter directory needs little memory.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, NamedTuple, TextIO

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.wiring.kafka import config_from_options
from transforms.base.errors import BeamPipelinesError, ConfigError, SinkError, SourceError
from transforms.contracts import IOT_READINGS, USER_EVENTS
from transforms.io.files import iter_lines
from transforms.io.kafka import client
from transforms.records import DeadLetter
from transforms.validation import InvalidRecord, decode_json_object

PROG = "python -m beam_pipelines.dead_letters"
# pipeline name -> the parse function of its input contract.
CONTRACTS: dict[str, Callable[[dict], Any]] = {
    "pageviews": USER_EVENTS.parse,
    "iot_alerts": IOT_READINGS.parse,
}
_FIELDS = set(DeadLetter._fields)

FixFn = Callable[[Any, dict], Any]


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


# ---- inspect ------------------------------------------------------------------------------

class ReasonStats(NamedTuple):
    total: int
    pipelines: frozenset
    steps: frozenset
    first: str
    last: str
    samples: tuple


def inspect(
    paths: Location, *, reasons: Sequence[str] = (), samples: int = 3
) -> tuple[dict[str, ReasonStats], list[Unreadable]]:
    stats: dict[str, ReasonStats] = {}
    unreadable: list[Unreadable] = []
    for letter in read_dead_letters(paths, unreadable):
        if reasons and letter.reason_code not in reasons:
            continue
        old = stats.get(letter.reason_code)
        if old is None:
            old = ReasonStats(0, frozenset(), frozenset(), letter.rejected_at,
                              letter.rejected_at, ())
        stats[letter.reason_code] = ReasonStats(
            old.total + 1,
            old.pipelines | {letter.pipeline},
            old.steps | {letter.step},
            min(old.first, letter.rejected_at),
            max(old.last, letter.rejected_at),
            old.samples + (letter,) if len(old.samples) < samples else old.samples,
        )
    return stats, unreadable


def _where(origin: dict) -> str:
    if origin.get("source") == "file":
        return f"{origin.get('file')}:{origin.get('line', origin.get('row', '?'))}"
    return ", ".join(f"{k}={v}" for k, v in origin.items())


def _short(text: str, width: int = 100) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def print_inspection(location: str, paths: Location, stats: dict[str, ReasonStats],
                     unreadable: list[Unreadable], out: TextIO) -> None:
    total = sum(s.total for s in stats.values())
    if paths and isinstance(paths[0], KafkaTopic):
        print(f"{location}: {total} dead letters in the topic", file=out)
    else:
        print(f"{location}: {total} dead letters in {len(paths)} file(s)", file=out)
    if stats:
        width = max(len("reason_code"), *(len(code) for code in stats))
        print(f"  {'reason_code':<{width}}  {'count':>7}  pipeline/step  first .. last rejected",
              file=out)
        for code, item in sorted(stats.items(), key=lambda kv: (-kv[1].total, kv[0])):
            where = ",".join(sorted(f"{p}/{s}" for p in item.pipelines for s in item.steps))
            print(f"  {code:<{width}}  {item.total:>7}  {where}  {item.first} .. {item.last}",
                  file=out)
        for code, item in sorted(stats.items(), key=lambda kv: (-kv[1].total, kv[0])):
            print(f"samples of {code}:", file=out)
            for letter in item.samples:
                print(f"  [{_where(letter.origin)}] {_short(letter.reason)}", file=out)
                print(f"      payload: {_short(letter.payload)}", file=out)
    if unreadable:
        first = unreadable[0]
        print(f"warning: {len(unreadable)} line(s) are not dead letters and were skipped, "
              f"first {first.file}:{first.line}: {first.problem}", file=out)


# ---- replay -------------------------------------------------------------------------------

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
    written = skipped = dropped = fix_errors = 0
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
    return ReplayReport(written, skipped, dropped, dict(invalid), fix_errors)


# ---- command line -------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise ConfigError.from_message(message)


def _samples(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def _contract(text: str) -> str:
    allowed = ("auto", "none", *CONTRACTS)
    if text not in allowed:
        raise argparse.ArgumentTypeError(f"expected one of {'|'.join(allowed)}, got {text!r}")
    return text


def _kafka_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap_servers", default=None, metavar="HOST:PORT[,...]",
                        help="Kafka brokers, for kafka://TOPIC locations and outputs. "
                        "Default localhost:9092.")
    parser.add_argument("--kafka_config", action="append", default=[], metavar="KEY=VALUE",
                        help="Any other kafka-python client setting (security, SASL...), "
                        "repeatable, as the pipelines' --kafka_config.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="inspect|replay", parser_class=_Parser)
    commands.required = True
    where = "A --dead_letter directory, a file, a glob, or kafka://TOPIC."
    show = commands.add_parser("inspect", help="Counts per reason_code and samples.")
    show.add_argument("location", help=where)
    show.add_argument("--reason", action="append", default=[], metavar="CODE",
                      help="Only these reason codes (repeatable).")
    show.add_argument("--samples", type=_samples, default=3,
                      help="Samples shown per reason code. Default 3.")
    show.add_argument("--json", action="store_true", help="Print the counts as JSON.")
    _kafka_flags(show)
    again = commands.add_parser("replay", help="Write payloads back for the pipeline to re-read.")
    again.add_argument("location", help=where)
    again.add_argument("--output", required=True,
                       help="A JSON-lines file (replaced atomically; read it back with "
                       "--source=file --input=FILE) or kafka://TOPIC (e.g. the input topic).")
    again.add_argument("--only-reason", "--only_reason", dest="only_reason", action="append",
                       default=[], metavar="CODE", help="Only these reason codes (repeatable).")
    again.add_argument("--fix", default=None, metavar="FILE.py[:FUNCTION]",
                       help="A function fix(payload, letter) returning the fixed payload, or "
                       "None to leave the record out.")
    again.add_argument("--contract", type=_contract, default="auto",
                       help="Check replayed records against this pipeline's input contract: "
                       "auto (the letter's pipeline), none, " + ", ".join(CONTRACTS) + ".")
    again.add_argument("--drop-invalid", "--drop_invalid", dest="drop_invalid",
                       action="store_true",
                       help="Leave out records that still fail the contract (default: keep "
                       "them, the pipeline dead-letters them again).")
    _kafka_flags(again)
    return parser


def run(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    uses_kafka = args.location.startswith("kafka://") or (
        args.command == "replay" and args.output.startswith("kafka://"))
    config = kafka_config(args.bootstrap_servers, args.kafka_config) if uses_kafka else None
    if args.command == "replay":  # check the cheap things before reading anything
        if args.output.startswith("kafka://"):
            if args.output == args.location:
                raise ConfigError("--output", "a different place than the dead letters read",
                                  args.output)
        elif os.path.isdir(args.output) or "://" in args.output:
            raise ConfigError("--output", "a local file path for the JSON lines, or "
                              "kafka://TOPIC", args.output)
        fix = load_fix(args.fix) if args.fix else None
    if args.location.startswith("kafka://"):
        assert config is not None
        paths: Location = [KafkaTopic(args.location, config)]
    else:
        paths = dead_letter_files(args.location)
    if args.command == "inspect":
        stats, unreadable = inspect(paths, reasons=args.reason, samples=args.samples)
        if args.json:
            json.dump({code: s.total for code, s in sorted(stats.items())}, out)
            out.write("\n")
        else:
            print_inspection(args.location, paths, stats, unreadable, out)
        return 0
    report = replay(paths, args.output, only_reasons=args.only_reason, fix=fix,
                    contract=args.contract, keep_invalid=not args.drop_invalid, kafka=config)
    line = f"replayed {report.written} record(s) to {args.output}"
    if report.skipped_by_reason:
        line += f"; {report.skipped_by_reason} with other reasons left out"
    if report.dropped_by_fix:
        line += f"; {report.dropped_by_fix} left out by the fix"
    print(line, file=out)
    if report.fix_errors:
        print(f"warning: the fix raised an exception on {report.fix_errors} record(s); they "
              "were not replayed", file=out)
    if report.still_invalid:
        counts = ", ".join(f"{code}={n}" for code, n in sorted(report.still_invalid.items()))
        verb = "left out" if args.drop_invalid else "the pipeline will dead-letter them again"
        print(f"warning: {sum(report.still_invalid.values())} record(s) still fail the input "
              f"contract ({counts}); {verb}", file=out)
    if args.output.startswith("kafka://"):
        print(f"next: --source=kafka --topic={args.output[len('kafka://'):]}", file=out)
    else:
        print(f"next: --source=file --input={Path(args.output).resolve()}", file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except BeamPipelinesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
