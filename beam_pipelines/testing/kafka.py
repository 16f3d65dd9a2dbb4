"""A throw-away Kafka-protocol broker for tests: ``noida-db`` on a free port.

    with KafkaBroker() as broker:
        broker.create_topic("user_events", partitions=3)
        run_my_pipeline(bootstrap_servers=broker.bootstrap_servers)

``noida-db start --only kafka`` is a single-binary broker that speaks the Kafka wire
protocol (produce, fetch, consumer-group offsets, ``offsets_for_times``), starts in about
a second and needs no JVM. The helper waits until it answers a metadata request, not just
until the port is open, so the first test never races the broker's start-up.
Consumers talking to it need ``session_timeout_ms >= 6000`` (its minimum).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import IO, Optional

from beam_pipelines.testing.servers import ServerUnavailable, free_port, wait_for_port
from transforms.io.kafka import client_config
from transforms.io.kafka import discovery as kafka_discovery
from transforms.io.kafka.client import close_pooled_consumers

__all__ = ["KafkaBroker", "NOIDA_DB", "committed_count", "committed_offsets", "read_topic", "wait_for_partitions"]

NOIDA_DB = "noida-db"


def _noida_db() -> str:
    found = shutil.which(NOIDA_DB)
    if not found:
        raise ServerUnavailable(
            "noida-db (the Kafka-protocol test broker) is not installed: "
            "pip install noida-db (or pip install -e '.[dev]', which make test does)"
        )
    return found


class KafkaBroker:
    """``noida-db start --only kafka --kafka-port P --data-dir D`` for the duration of a block."""

    def __init__(self, port: Optional[int] = None, host: str = "127.0.0.1",
                 start_timeout: float = 60.0) -> None:
        self.host = host
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self._dir: Optional[str] = None
        self._process: Optional[subprocess.Popen] = None
        self._log: Optional[IO[bytes]] = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> KafkaBroker:
        binary = _noida_db()
        self._dir = tempfile.mkdtemp(prefix="beam-pipelines-kafka-")
        self._log = open(os.path.join(self._dir, "broker.log"), "w+b")
        self._process = subprocess.Popen(
            [binary, "start", "--only", "kafka", "--kafka-port", str(self.port),
             "--host", self.host, "--data-dir", os.path.join(self._dir, "data")],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in pytest must not reach the broker first
        )
        try:
            wait_for_port(self.host, self.port, timeout=self.start_timeout, process=self._process)
            self._wait_for_metadata()
        except BaseException as exc:
            log = self.log_tail()
            self.stop()
            if isinstance(exc, ServerUnavailable):
                raise ServerUnavailable(f"{exc}; broker log: {log}") from None
            raise
        return self

    def _wait_for_metadata(self) -> None:
        from kafka import KafkaAdminClient

        deadline = time.monotonic() + self.start_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers,
                                         bootstrap_timeout_ms=2000, request_timeout_ms=5000)
                try:
                    admin.list_topics()
                    return
                finally:
                    admin.close()
            except Exception as exc:  # not answering yet: poll again until the deadline
                last = exc
                time.sleep(0.1)
        raise ServerUnavailable(
            f"Kafka broker on {self.bootstrap_servers} did not answer metadata requests "
            f"within {self.start_timeout:.0f}s: {last}"
        )

    def log_tail(self, chars: int = 2000) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-chars:].strip()

    def admin(self):
        from kafka import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=10000)

    def create_topic(self, name: str, partitions: int = 1, retention_ms: int = -1) -> str:
        """Create ``name`` with ``partitions`` partitions and wait until its leaders are known.

        Retention is unlimited by default: tests produce records with historical
        timestamps (backfills), which a 7-day time retention would delete at once.
        """
        from kafka.admin import NewTopic

        admin = self.admin()
        try:
            admin.create_topics([NewTopic(name, partitions, 1,
                                          topic_configs={"retention.ms": str(retention_ms)})])
        finally:
            admin.close()
        wait_for_partitions(self.bootstrap_servers, name, partitions)
        return name

    def stop(self) -> None:
        close_pooled_consumers()  # idle readers' consumers would retry the stopped broker
        process, self._process = self._process, None
        if process is not None:
            # The noida-db command is a launcher with the broker as its child; both are in
            # the session started for them, so signal the group: no orphaned broker.
            _signal_group(process, signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # start_new_session: the group id is the launcher's pid
    except ProcessLookupError:
        pass  # already gone


def wait_for_partitions(bootstrap_servers: str, topic: str, partitions: int,
                        timeout: float = 30.0) -> None:
    """Poll metadata until ``topic`` shows ``partitions`` partitions (or fail)."""
    kafka_discovery.wait_for_partitions(client_config(bootstrap_servers), topic, partitions,
                                        timeout, error=ServerUnavailable)


def read_topic(bootstrap_servers: str, topic: str, timeout: float = 30.0) -> list[bytes]:
    """Every value of ``topic`` up to its end offsets now, partition by partition (fails
    after ``timeout`` seconds)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers.split(","),
                             enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        end = consumer.end_offsets(partitions)
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise ServerUnavailable(f"could not read {topic} back in {timeout:g} s")
            for batch in consumer.poll(timeout_ms=500).values():
                values += [record.value for record in batch]
        return values
    finally:
        consumer.close()


def committed_offsets(bootstrap_servers: str, topic: str, group: str) -> dict[int, Optional[int]]:
    """The offsets ``group`` has committed on each partition of ``topic`` (None where it
    has committed nothing yet)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers.split(","), group_id=group,
                             enable_auto_commit=False, session_timeout_ms=6000)
    try:
        return {p: consumer.committed(TopicPartition(topic, p))
                for p in sorted(consumer.partitions_for_topic(topic) or ())}
    finally:
        consumer.close()


def committed_count(bootstrap_servers: str, topic: str, group: str) -> int:
    """How many records of ``topic`` ``group`` has committed, over all partitions."""
    return sum(offset or 0 for offset in committed_offsets(bootstrap_servers, topic, group).values())
