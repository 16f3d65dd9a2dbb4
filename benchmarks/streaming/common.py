"""What every part of the streaming benchmark shares: paths, targets, and the machine it ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any, Callable

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




# ---- a broker to run on ------------------------------------------------------------------

TopicMaker = Callable[[str, int], str]  # (name, partitions) -> the topic, created


def on_a_broker(bootstrap_servers: str | None, run: Callable[[str, TopicMaker], None]) -> None:
    """``run(servers, create_topic)`` against ``bootstrap_servers``, or against the project's
    test broker (noida-db on a free port) started for the run when none is given."""
    if bootstrap_servers:
        from kafka.admin import KafkaAdminClient, NewTopic

        from beam_pipelines.testing.kafka import wait_for_partitions

        def create(name: str, partitions: int) -> str:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","))
            try:
                admin.create_topics([NewTopic(name, partitions, 1)])
            finally:
                admin.close()
            wait_for_partitions(bootstrap_servers, name, partitions)
            return name

        run(bootstrap_servers, create)
    else:
        from beam_pipelines.testing.kafka import KafkaBroker

        with KafkaBroker() as broker:
            run(broker.bootstrap_servers, broker.create_topic)


def log_tail(path: str, lines: int) -> str:
    """The last ``lines`` lines of a child process's log ('' when it cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:]).rstrip()
    except OSError:
        return ""
