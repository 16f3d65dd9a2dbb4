"""The command line: ``python -m beam_pipelines.dead_letters inspect|replay LOCATION``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from beam_pipelines.dead_letters.inspection import inspect, print_inspection
from beam_pipelines.dead_letters.read import KafkaTopic, Location, dead_letter_files, kafka_config
from beam_pipelines.dead_letters.replay import CONTRACTS, load_fix, replay
from transforms.base.errors import BeamPipelinesError, ConfigError

__all__ = ["PROG", "build_parser", "main", "run"]

PROG = "python -m beam_pipelines.dead_letters"


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
    if report.truncated:
        print(f"warning: {report.truncated} dead letter(s) were truncated to fit their "
              "destination and were not replayed: find the originals by origin.truncated."
              "original_sha256 at their origin", file=out)
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
