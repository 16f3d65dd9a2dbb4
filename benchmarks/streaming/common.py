"""What every part of the streaming benchmark shares: paths, targets, and the machine it ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WARMUP_PAGE = "/warmup"
BIG_RESPONSES = 1 << 30  # receive_message_max_bytes for the test broker's large fetch answers
TARGET_THROUGHPUT = 50_000.0
TARGET_P99_RATE = 10_000.0
TARGET_P99_SECONDS = 1.0

# ---- the machine ---------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "apache_beam": version("apache-beam"),
        "kafka_python": version("kafka-python"),
        "platform": platform.platform(),
    }


