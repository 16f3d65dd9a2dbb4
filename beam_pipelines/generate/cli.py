"""The command line of ``python -m beam_pipelines.generate`` (see the package docstring)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Iterator, Optional, Sequence

from beam_pipelines.generate.files import check_path, write_lines
from beam_pipelines.generate.kinds import KINDS, records
from beam_pipelines.generate.progress import Progress
from beam_pipelines.program import program_name
from transforms.base import times
from transforms.base.errors import BeamPipelinesError, ConfigError

__all__ = ["main", "parser", "run"]

PROG_MODULE = "beam_pipelines.generate"
DEFAULT_DIRTY = 0.01
_KIND_HELP = "; ".join(f"{k.name}: {k.contract} (read by {k.readers})" for k in KINDS.values())

EPILOG = """\
examples:
  python -m beam_pipelines.generate events --count 10000 events.jsonl
  python -m beam_pipelines.generate events --count 50000 --start 2024-12-01T00:00:00Z \\
      events/2024-12-01/part-0.jsonl.gz
  python -m beam_pipelines.generate readings --count 2000 --dirty 0.05 readings.jsonl
  python -m beam_pipelines.generate transactions --count 5000 transactions/day-1.jsonl.gz
  python -m beam_pipelines.generate logs --count 5000 logs.jsonl
  python -m beam_pipelines.generate events --count 100000 --rate 2000 \\
      --to kafka://user_events --bootstrap_servers=localhost:9092 --partitions 3

The same arguments always give the same lines (with --to, event time starts now unless
--start is given). A summary line goes to stderr; on a terminal a progress bar too."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=program_name(PROG_MODULE),
        description="Make sample input for the pipelines: seeded records as JSON lines, to a "
        "file (compressed when OUT ends in .gz, .bz2 or .xz) or a Kafka topic. A --dirty "
        "fraction is malformed on purpose (bad JSON, wrong types, missing fields, bad "
        "timestamps, ...), so the pipelines' dead letters have something to show.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=tuple(KINDS), metavar="KIND",
                   help=f"what to generate: {_KIND_HELP}")
    p.add_argument("out", nargs="?", default=None, metavar="OUT",
                   help="the file to write (missing folders are created; the file appears "
                   "only when complete); '-' for standard output. Not with --to")
    p.add_argument("--count", type=int, default=10_000, metavar="N",
                   help="how many lines, malformed ones included (default 10000)")
    p.add_argument("--dirty", type=float, default=DEFAULT_DIRTY, metavar="F",
                   help=f"the fraction of lines that break the input contract, in [0, 1] "
                   f"(default {DEFAULT_DIRTY}; 0 for clean data): each a realistic mistake "
                   "(truncated JSON, invalid UTF-8, wrong types, missing or empty fields, "
                   "timestamps without a zone or out of range, ...), one dead letter each")
    p.add_argument("--seed", type=int, default=42, metavar="S",
                   help="the random seed (default 42); another seed, other data")
    p.add_argument("--start", default=None, metavar="TIME",
                   help="event time of the first record: ISO-8601 (2024-12-01T00:00:00Z), "
                   "epoch seconds, or now. Default 2024-01-01T00:00:00Z for a file, now with --to")
    p.add_argument("--to", default=None, metavar="kafka://TOPIC",
                   help="send to this Kafka topic instead of a file (needs the [kafka] extra); "
                   "each message keyed by its user_id, DeviceId, card_id or service")
    p.add_argument("--rate", type=float, default=None, metavar="R",
                   help="with --to: send R records a second (default: as fast as possible); "
                   "event time then advances R records a second too, so a stream sees them "
                   "on time")
    p.add_argument("--bootstrap_servers", default=None, metavar="HOST:PORT[,...]",
                   help="with --to: the Kafka brokers (default localhost:9092)")
    p.add_argument("--partitions", type=int, default=None, metavar="P",
                   help="with --to: create the topic with P partitions if it does not exist "
                   "(default 1); an existing topic is left as it is")
    return p


def _start(text: Optional[str], live: bool) -> Optional[float]:
    if text is None:
        return time.time() if live else None
    if text == "now":
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return times.epoch_seconds(times.parse_iso(text, naive_utc=True))
    except ValueError:
        raise ConfigError("--start", "ISO-8601 (2024-12-01T00:00:00Z), epoch seconds or now",
                          text) from None


def _check(args: argparse.Namespace) -> None:
    """Every flag that does nothing in the chosen mode, or has a bad value, is an error."""
    if args.count < 1:
        raise ConfigError("--count", "a whole number >= 1", args.count)
    if not 0.0 <= args.dirty <= 1.0:
        raise ConfigError("--dirty", "a fraction in [0, 1]", args.dirty)
    if args.to is None:
        if args.out is None:
            raise ConfigError("OUT", "a file to write (or --to kafka://TOPIC)", None)
        for flag in ("rate", "bootstrap_servers", "partitions"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag}", "only with --to kafka://TOPIC (a file is written "
                                  "as fast as possible)", getattr(args, flag))
        check_path(args.out)
        return
    if args.out is not None:
        raise ConfigError("OUT", "no file with --to (one destination per run)", args.out)
    if args.rate is not None and args.rate <= 0:
        raise ConfigError("--rate", "records per second > 0", args.rate)
    if args.partitions is not None and args.partitions < 1:
        raise ConfigError("--partitions", "a whole number >= 1", args.partitions)


def _counted(lines: Iterator[tuple[Optional[dict], bytes]], malformed: list[int]):
    for record, payload in lines:
        if record is None:
            malformed[0] += 1
        yield record, payload


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Generate as the flags say; returns the number of lines written or sent."""
    p = parser()

    def error(message: str):
        raise ConfigError.from_message(message)

    p.error = error  # type: ignore[method-assign]
    args = p.parse_intermixed_args(argv)  # OUT may follow the flags
    _check(args)
    live = args.to is not None
    start = _start(args.start, live)
    if live:
        # Imported only for --to: the Kafka client (and Beam, which its package imports)
        # takes seconds to load, and a file needs neither.
        from beam_pipelines.generate import kafka as kafka_out

        topic: Optional[str] = kafka_out.topic_of(args.to)
        servers = kafka_out.servers_of(args.bootstrap_servers)
    else:
        topic, servers = None, ""
    spec = KINDS[args.kind]
    malformed = [0]
    lines = _counted(records(args.kind, args.count, seed=args.seed, dirty=args.dirty,
                             start=start, rate=args.rate), malformed)
    progress = Progress(args.count)
    try:
        if topic is None:
            write_lines(args.out, (payload for _, payload in lines), on_line=progress.update)
            where = args.out
        else:
            config = kafka_out.config_for(servers)
            kafka_out.ensure_topic(config, topic, args.partitions or 1)
            kafka_out.send(config, topic, lines, spec.key_field, rate=args.rate,
                           on_record=progress.update)
            where = f"kafka://{topic} at {servers}"
    finally:
        progress.close()
    if args.out != "-":
        print(f"wrote {args.count:,} {args.kind} to {where} ({malformed[0]:,} malformed on "
              f"purpose); read them with python -m beam_pipelines."
              f"{spec.readers.split(',')[0]}", file=sys.stderr)
    return args.count


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line: a bad flag, or a broker that cannot be reached, is one line and exit
    code 2, as for the pipelines. (Not ``beam_pipelines.skeleton.run.main``: the skeleton
    imports Beam, seconds before the first line is written, and nothing here runs Beam.)"""
    try:
        run(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BeamPipelinesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
