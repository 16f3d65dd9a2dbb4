"""``python -m benchmarks.streaming``."""

from benchmarks.streaming.cli import main

raise SystemExit(main())
