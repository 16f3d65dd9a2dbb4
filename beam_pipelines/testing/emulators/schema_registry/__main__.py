"""``python -m beam_pipelines.testing.emulators.schema_registry --port 8081``"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from beam_pipelines.testing.emulators.schema_registry.compatibility import LEVELS
from beam_pipelines.testing.emulators.schema_registry.server import SchemaRegistryEmulator


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beam_pipelines.testing.emulators.schema_registry",
        description="A Confluent-compatible schema registry in memory, for tests and notebooks.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (127.0.0.1).")
    parser.add_argument("--port", type=int, default=8081, help="Port (8081; 0 picks a free one).")
    parser.add_argument("--compatibility", default="BACKWARD", type=str.upper, choices=LEVELS,
                        help="The global compatibility level at start (BACKWARD).")
    parser.add_argument("--basic_auth_file", default=None,
                        help="Require basic auth: a file of USER:PASSWORD lines.")
    args = parser.parse_args(argv)
    users = {}
    if args.basic_auth_file:
        with open(args.basic_auth_file, encoding="utf-8") as handle:
            for line in handle:
                user, sep, password = line.strip().partition(":")
                if sep:
                    users[user] = password
    try:
        emulator = SchemaRegistryEmulator(args.host, args.port, users=users,
                                          compatibility=args.compatibility)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"schema registry emulator listening on {emulator.url}", flush=True)
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
