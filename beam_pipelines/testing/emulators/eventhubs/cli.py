"""``python -m beam_pipelines.testing.emulators.eventhubs --port P --hub NAME:N``."""

from __future__ import annotations

import argparse

from beam_pipelines.testing.emulators.eventhubs.server import EventHubsEmulator

__all__ = ["main"]


def _hub_spec(text: str) -> tuple[str, int]:
    name, _, count = text.partition(":")
    try:
        partitions = int(count or "4")
    except ValueError:
        partitions = 0
    if not name or partitions < 1:
        raise argparse.ArgumentTypeError(f"expected NAME or NAME:PARTITIONS (PARTITIONS > 0), got {text!r}")
    return name, partitions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beam_pipelines.testing.emulators.eventhubs",
        description="Local Azure Event Hubs emulator (AMQP 1.0, plain TCP).",
    )
    parser.add_argument("--port", type=int, default=5672, help="TCP port to listen on (default 5672).")
    parser.add_argument("--host", default="127.0.0.1", help="Interface to listen on (default 127.0.0.1).")
    parser.add_argument("--hub", type=_hub_spec, action="append", default=[],
                        help="A hub to create, NAME or NAME:PARTITIONS (default 4); repeatable.")
    args = parser.parse_args(argv)
    emulator = EventHubsEmulator(args.port, host=args.host, hubs=dict(args.hub)).start()
    print(f"Event Hubs emulator listening on {args.host}:{args.port}", flush=True)
    print(f"connection string: {emulator.connection_string}", flush=True)
    try:
        while emulator._thread is not None and emulator._thread.is_alive():
            emulator._thread.join(1)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
