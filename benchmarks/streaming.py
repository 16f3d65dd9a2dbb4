"""The streaming benchmark: pageviews from Kafka on the local streaming runner.

    python -m benchmarks.streaming                  # both modes: 1M events; 1k, 10k, 50k/s
    python -m benchmarks.streaming --mode throughput --events 200k,1M
    python -m benchmarks.streaming --mode latency --rates 1000,10000,50000 --duration 20
    python -m benchmarks.streaming --mode throughput --profiles realistic --events 1M
    python -m benchmarks.streaming --json out/streaming.json --pyspy out/profiles

It starts the project's test broker (``beam_pipelines.testing.kafka.KafkaBroker``:
``noida-db`` on a free port, data in a temp dir) unless ``--bootstrap_servers`` names
one, and for every run creates a fresh topic with ``--partitions`` partitions (4). The
pipeline under test is the product, unmodified, in its own process::

    python -m beam_pipelines.pageviews --streaming --source=kafka --start_at=earliest \\
        --bootstrap_servers=... --topic=... --consumer_group=... \\
        --early_firing=1 --window_size=300 --kafka_config=receive_message_max_bytes=...

``--streaming`` puts it on ``LocalStreamingRunner`` (runners/local_streaming.py). The
sink is the console: in streaming it prints one line per pane as the pane fires, with
``flush=True``, so the wall-clock time at which this process reads a line is the time
the count was emitted (pipe latency is microseconds). Files of the jsonl sink would
only say when a bundle was written, not when each pane fired. ``--consumer_group`` lets
the pipeline commit offsets after each bundle; a probe here polls the committed offsets
(``KafkaConsumer.committed``, no group membership) to see how far *reading* got, apart
from counting. ``receive_message_max_bytes`` is raised because the test broker answers a
fetch with everything it has (as in ``benchmarks/kafka_read.py``).

Events are valid user events (no malformed, no out-of-order ones) whose ``timestamp`` is
the wall-clock time at which they are produced, so windows are live; ``page`` is one of
the ten synthetic pages. They are produced by kafka-python in a separate process (so the
producer, this process's pane reader and the pipeline do not share a GIL).

**Throughput** (``--events N[,N...]``, for each of ``--profiles realistic,uniform``: the
realistic mix of benchmarks/datagen.py with live times and 1.5% invalid events, or the
uniform valid events; or ``avro``: the uniform events as Confluent-framed Avro, read with
``--format=avro`` against a schema registry, the emulator of
``beam_pipelines.testing.emulators.schema_registry`` started here): N events are produced first, as fast as the
producer goes, round-robin over the partitions; then the pipeline starts and reads
them from the earliest offset. This process sums the latest count of every
(window, page) over the panes printed and stops when the sum reaches the valid events of N (or when it has
not moved for ``--stall_timeout`` seconds: then the run is reported as stalled, with the
count it reached). Reported:

* ``sustained events/s`` = N / (last count update - start of reading), where the start
  of reading is the first time the probe sees a committed offset (polled every 0.25 s;
  the first commit comes after the first bundle, so this errs towards a higher rate);
  for a stalled run, what it counted over the time to its last update;
* ``drain s`` = that interval; ``read events/s`` = N / (all offsets committed - start of
  reading), reading alone; ``end-to-end events/s`` = N / (last update - process launch),
  which includes interpreter and pipeline start-up;
* ``CPU us/event`` = CPU time the pipeline process used over the drain / N (utime + stime
  from /proc, sampled every 0.25 s): unlike the rates, it hardly moves when other processes
  share the cores, so it compares runs (JSON vs Avro) on a busy machine.

**Latency** (``--rates R[,R...]``, ``--duration D``): the pipeline is started first and
is live once a warm-up event per partition (page ``/warmup``, not measured) has been
counted. Then events are produced at R events/s for D seconds, paced in small batches
against the wall clock. Each page is pinned to one partition (page index modulo the
partitions), so the events of one (window, page) are in one partition, in production
order, and the j-th produced event of a (window, page) is covered by the first pane of
that (window, page) whose accumulated count is >= j (exact as long as the pipeline
counts each partition in offset order). Its latency = the wall-clock time this process
read that pane - the wall-clock time just before ``send()`` of the event (so the
producer's ``linger_ms=5`` batching is part of the latency, as in production). After
producing stops the run waits up to ``--settle`` seconds for the counts to reach what
was produced (panes printed after that, while the pipeline shuts down, are ignored).
Reported: p50/p90/p99/max latency over the covered events; ``sustained events/s`` =
events counted / (last count update - first send); the achieved
produce rate; ``backlog at end`` = events produced but not yet counted when the producer
finished, and the consumer lag (end offsets - committed offsets) then; ``catch-up s`` =
time from the producer's end to the last count; events never counted. A run ``kept up``
when every event was counted within ``early_firing + 2`` seconds of the producer's end.

The early panes are processing-time triggers armed by the first record after a pane
(``transforms/windowing.py``), so even an infinitely fast pipeline shows latencies
spread over [0, early_firing] seconds: with 1-second panes, the p99 target of 1 s leaves
almost no room for the pipeline itself.

Options for diagnosis (the defaults measure the product as it is):

* ``--pyspy DIR``: attach ``py-spy record`` (pip install py-spy) to the pipeline for the
  measured part of each run, keep the raw stacks in DIR, and print where the time went:
  the top functions (inclusive and self) with microseconds per event.

Timings depend on the machine's load; this is a measurement, not a test, and the
targets (at least 50k events/s sustained; p99 under 1 s at 10k events/s with 1-second
early panes) are reported, never asserted.
"""

from __future__ import annotations

import argparse
import calendar
import collections
import importlib.metadata
import json
import multiprocessing
import os
import pickle
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Callable, Optional, Sequence

from transforms.io.synthetic.events import PAGES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


# ---- producing (in a child process) ----------------------------------------------------

@dataclass
class Produced:
    """What a producer process sent. ``times`` maps (window_start, page) to send times."""

    sent: int
    started: float
    finished: float  # last send() returned
    flushed: float  # every record acknowledged
    times: dict[tuple[int, str], array] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / max(self.finished - self.started, 1e-9)


def _payload(user: int, page: str, ms: int) -> bytes:
    return (f'{{"user_id":"user_{user}","action":"page_view","page":"{page}",'
            f'"timestamp":{ms // 1000}.{ms % 1000:03d}}}').encode()


# The realistic profile's mix (benchmarks/datagen.py), with live times: every INVALID_EVERY-th
# event is invalid (1.5%), so the valid count of N events is known to the harness.
INVALID_EVERY = 67
_INVALID = [b'{"user_id":"u","action":"page_view","timest', b"\x00garbage\xff",
            b'{"user_id":true,"action":"page_view","page":"/","timestamp":1733000000}',
            b'{"user_id":"u","action":"page_view","page":"/","timestamp":"yesterday"}',
            b'{"user_id":"u","action":"","page":"/","timestamp":1733000000}',
            b'{"user_id":"u","action":"page_view","page":"/","timestamp":1' + b"0" * 399 + b"}"]
_UNICODE_PAGES = ["/café/menü", "/カート", "/naïve-bayes"]


def valid_events(profile: str, count: int) -> int:
    """How many of the first ``count`` events of ``profile`` are valid."""
    if profile in ("uniform", "avro"):
        return count
    return count - (count + INVALID_EVERY - 1) // INVALID_EVERY


# The avro profile's writer schema: the uniform events' fields, registered under the topic.
AVRO_EVENT = {"type": "record", "name": "PageView", "namespace": "bench", "fields": [
    {"name": "user_id", "type": "string"}, {"name": "action", "type": "string"},
    {"name": "page", "type": "string"}, {"name": "timestamp", "type": "double"}]}


def _avro_payloads(schema_id: int) -> Callable[[int, str, int], bytes]:
    """The uniform event as Confluent-framed Avro (magic byte, schema id, fastavro body)."""
    import io
    import struct

    import fastavro

    parsed = fastavro.parse_schema(AVRO_EVENT)
    header = b"\x00" + struct.pack(">I", schema_id)
    write = fastavro.schemaless_writer

    def payload(user: int, page: str, ms: int) -> bytes:
        out = io.BytesIO()
        out.write(header)
        write(out, parsed, {"user_id": f"user_{user}", "action": "page_view", "page": page,
                            "timestamp": ms / 1000})
        return out.getvalue()

    return payload


def _realistic_payload(i: int, user: int, page: str, ms: int) -> bytes:
    if i % INVALID_EVERY == 0:
        return _INVALID[(i // INVALID_EVERY) % len(_INVALID)]
    form = (i * 7919) % 1000  # a fixed, well-spread sequence instead of a random draw
    user_id = str(user) if form < 300 else f'"user_{user}"'
    seconds = ms // 1000
    if form % 100 < 8:
        timestamp = f"{seconds}.{ms % 1000:03d}"
    elif form % 100 < 12:
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        timestamp = f'"{moment}.{ms % 1000:03d}Z"'
    else:
        timestamp = str(seconds)
    if form % 10 == 3:
        page = _UNICODE_PAGES[form % len(_UNICODE_PAGES)]
    page_json = json.dumps(page, ensure_ascii=form % 2 == 0)
    extra = '"ctx":{"device":{"os":"ios","v":[17,2]},"ab":"B"},' if form % 20 == 5 else ""
    return (f'{{{extra}"user_id":{user_id},"action":"page_view","page":{page_json},'
            f'"timestamp":{timestamp}}}').encode()


def _produce(servers: str, topic: str, partitions: int, count: Optional[int],
             rate: Optional[float], duration: Optional[float], window_size: int,
             pin_pages: bool, seed: int, out_path: str, data: str = "uniform",
             avro_schema_id: Optional[int] = None) -> None:
    """Child process: send events, write a pickled :class:`Produced` to ``out_path``.

    ``count`` events as fast as possible (throughput), or ``rate`` events/s for
    ``duration`` seconds, recording each event's send time by (window, page) (latency).
    """
    from kafka import KafkaProducer

    latency = rate is not None
    producer = KafkaProducer(
        bootstrap_servers=servers.split(","), acks=1, linger_ms=5 if latency else 50,
        batch_size=(256 if latency else 1024) * 1024, max_request_size=16 << 20)
    producer.partitions_for(topic)  # metadata now, not at the first timed send
    rnd = random.Random(seed)
    cycle = [rnd.randrange(len(PAGES)) for _ in range(10_007)]
    users = [rnd.randrange(500) for _ in range(10_009)]
    page_partition = [i % partitions for i in range(len(PAGES))]
    times: dict[tuple[int, str], array] = {}
    send = producer.send
    clock = time.time
    sent = 0
    started = clock()
    if not latency:
        assert count is not None
        avro = _avro_payloads(avro_schema_id) if avro_schema_id is not None else None
        for i in range(count):
            ms = int(clock() * 1000)
            user, page = users[i % 10_009], PAGES[cycle[i % 10_007]]
            if avro is not None:
                value = avro(user, page, ms)
            elif data == "uniform":
                value = _payload(user, page, ms)
            else:
                value = _realistic_payload(i, user, page, ms)
            send(topic, value=value, partition=i % partitions)
        sent = count
        finished = clock()
    else:
        assert rate is not None and duration is not None
        deadline = started + duration
        while True:
            now = clock()
            if now >= deadline:
                break
            due = int((now - started) * rate)
            if due <= sent:
                time.sleep(min(0.001, (sent + 1) / rate - (now - started)))
                continue
            # At most ~10 ms worth per batch, so a producer that falls behind the rate still
            # stops at the deadline (it then reports the rate it reached).
            due = min(due, sent + max(1, int(rate / 100)))
            for i in range(sent, due):
                page_index = cycle[i % 10_007]
                page = PAGES[page_index]
                at = clock()
                ms = int(at * 1000)
                key = ((ms // 1000) // window_size * window_size, page)
                bucket = times.get(key)
                if bucket is None:
                    bucket = times[key] = array("d")
                bucket.append(at)
                send(topic, value=_payload(users[i % 10_009], page, ms),
                     partition=page_partition[page_index] if pin_pages else i % partitions)
            sent = due
        finished = clock()
    producer.flush()
    flushed = clock()
    producer.close(timeout=10)
    with open(out_path, "wb") as handle:
        pickle.dump(Produced(sent, started, finished, flushed, times), handle)


def produce(servers: str, topic: str, partitions: int, *, count: Optional[int] = None,
            rate: Optional[float] = None, duration: Optional[float] = None,
            window_size: int = 300, seed: int = 1, data: str = "uniform",
            avro_schema_id: Optional[int] = None) -> Produced:
    """Run :func:`_produce` in a spawned process and return what it sent."""
    fd, out_path = tempfile.mkstemp(prefix="bench-produced-", suffix=".pickle")
    os.close(fd)
    try:
        context = multiprocessing.get_context("spawn")
        process = context.Process(
            target=_produce,
            args=(servers, topic, partitions, count, rate, duration, window_size,
                  rate is not None, seed, out_path, data, avro_schema_id))
        process.start()
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"the producer process failed (exit code {process.exitcode})")
        with open(out_path, "rb") as handle:
            return pickle.load(handle)
    finally:
        os.unlink(out_path)


def send_warmup(servers: str, topic: str, partitions: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers.split(","), acks=1)
    try:
        for p in range(partitions):
            producer.send(topic, value=_payload(0, WARMUP_PAGE, int(time.time() * 1000)),
                          partition=p)
        producer.flush()
    finally:
        producer.close(timeout=10)


# ---- the pipeline process and what it prints -----------------------------------------

@dataclass
class Pane:
    at: float  # wall-clock time the line was read here
    window_start: int
    page: str
    count: int
    timing: str


def parse_pane(line: str, at: float) -> Optional[Pane]:
    """A console-sink streaming line (``k=v`` pairs separated by two spaces) -> Pane."""
    fields: dict[str, str] = {}
    for part in line.strip().split("  "):
        key, sep, value = part.partition("=")
        if sep:
            fields[key] = value
    try:
        start = calendar.timegm(time.strptime(fields["window_start"][:19], "%Y-%m-%dT%H:%M:%S"))
        return Pane(at, start, fields["page"], int(fields["count"]), fields.get("pane_timing", ""))
    except (KeyError, ValueError):
        return None


class PipelineProcess:
    """``python -m beam_pipelines.pageviews ...`` with its panes read as they are printed."""

    def __init__(self, args: Sequence[str], log_path: str) -> None:
        self.command = [sys.executable, "-m", "beam_pipelines.pageviews", *args]
        self.log_path = log_path
        self.panes: list[Pane] = []
        self.latest: dict[tuple[int, str], int] = {}
        self.total = 0  # sum of the latest count of every (window, page), warm-up excluded
        self.timeline: list[tuple[float, int]] = []  # (time, total) after each pane
        self.launched = 0.0
        # (time, CPU seconds the pipeline process has used), sampled every 0.25 s: its CPU
        # per event does not depend on what else the machine runs, as its wall clock does.
        self.cpu: list[tuple[float, float]] = []
        self._lock = threading.Condition()
        self._process: Optional[subprocess.Popen] = None
        self._log: Optional[IO[bytes]] = None
        self._reader: Optional[threading.Thread] = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> PipelineProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")
        self.launched = time.time()
        self._process = subprocess.Popen(
            self.command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self._log,
            stdin=subprocess.DEVNULL, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name="panes", daemon=True)
        self._reader.start()
        threading.Thread(target=self._sample_cpu, name="cpu", daemon=True).start()
        return self

    def _sample_cpu(self) -> None:
        """Linux: utime + stime of /proc/PID/stat (every thread of the process)."""
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        path = f"/proc/{self.pid}/stat"
        while self.running():
            try:
                with open(path, encoding="ascii") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                return
            self.cpu.append((time.time(), (int(fields[11]) + int(fields[12])) / ticks))
            time.sleep(0.25)

    def cpu_at(self, moment: float) -> Optional[float]:
        """CPU seconds used by ``moment`` (the last sample at or before it)."""
        before = [cpu for at, cpu in list(self.cpu) if at <= moment]
        return before[-1] if before else None

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw in self._process.stdout:
            at = time.time()
            pane = parse_pane(raw.decode("utf-8", "replace"), at)
            if pane is None:
                continue
            with self._lock:
                self.panes.append(pane)
                key = (pane.window_start, pane.page)
                previous = self.latest.get(key, 0)
                if pane.count > previous:
                    self.latest[key] = pane.count
                    if pane.page != WARMUP_PAGE:
                        self.total += pane.count - previous
                self.timeline.append((at, self.total))
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def count_of(self, key: tuple[int, str]) -> int:
        with self._lock:
            return self.latest.get(key, 0)

    def wait(self, done: Callable[[], bool], timeout: float,
             stall_timeout: Optional[float] = None) -> str:
        """Wait until ``done()``: 'done', 'timeout', 'stalled' (no new count) or 'exited'."""
        deadline = time.time() + timeout
        last_total, last_change = self.total, time.time()
        with self._lock:
            while not done():
                now = time.time()
                if self.total != last_total:
                    last_total, last_change = self.total, now
                if not self.running():
                    return "exited"
                if now >= deadline:
                    return "timeout"
                if stall_timeout is not None and now - last_change >= stall_timeout:
                    return "stalled"
                self._lock.wait(timeout=0.25)
        return "done"

    def time_total_reached(self, total: int) -> Optional[float]:
        with self._lock:
            for at, value in self.timeline:
                if value >= total:
                    return at
        return None

    def total_at(self, moment: float) -> int:
        with self._lock:
            value = 0
            for at, total in self.timeline:
                if at > moment:
                    break
                value = total
            return value

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            for signum, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(process.pid, signum)  # its own session: the pipeline and no other
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if process is not None:
            self._process = process
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:]).rstrip()
        except OSError:
            return ""


class LagProbe:
    """Polls the pipeline's committed offsets (no group membership) in a thread."""

    def __init__(self, servers: str, topic: str, group: str, partitions: int,
                 interval: float = 0.25) -> None:
        self._servers = servers
        self._topic = topic
        self._group = group
        self._partitions = partitions
        self._interval = interval
        self.samples: list[tuple[float, int]] = []  # (time, committed offsets summed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-probe", daemon=True)
        self._consumer: Any = None

    def start(self) -> LagProbe:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(
            bootstrap_servers=self._servers.split(","), group_id=self._group,
            enable_auto_commit=False, session_timeout_ms=10000)
        self._tps = [TopicPartition(self._topic, p) for p in range(self._partitions)]
        self._thread.start()
        return self

    def committed(self) -> int:
        return sum(self._consumer.committed(tp) or 0 for tp in self._tps)

    def end_offsets(self) -> int:
        return sum(self._consumer.end_offsets(self._tps).values())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self.committed()))
            except Exception:  # a slow broker answer: try again at the next tick
                pass
            self._stop.wait(self._interval)

    def first_time_at_least(self, value: int) -> Optional[float]:
        for at, committed in list(self.samples):
            if committed >= value:
                return at
        return None

    def committed_at(self, moment: float) -> int:
        value = 0
        for at, committed in list(self.samples):
            if at > moment:
                break
            value = committed
        return value

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._consumer is not None:
            self._consumer.close()


# ---- profiling -------------------------------------------------------------------------

PROFILE_RATE = 100  # py-spy samples per second


class Profiler:
    """``py-spy record --pid PID --format raw`` from ``start`` to ``stop``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._process: Optional[subprocess.Popen] = None
        self.started = 0.0
        self.stopped = 0.0

    def start(self, pid: int) -> Profiler:
        binary = shutil.which("py-spy")
        if not binary:
            raise SystemExit("--pyspy needs py-spy: pip install py-spy")
        self._process = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE), "--format", "raw",
             "--output", self.path, "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.started = time.time()
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        self.stopped = time.time()
        if process is None:
            return
        process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (file path without site-packages prefix)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    for marker in ("site-packages/", "/work/main/", REPO + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize_profile(path: str, events: int, top: int = 25) -> dict[str, Any]:
    """Inclusive and self samples per function of a raw py-spy file, in us per event."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                n = int(count)
                frames = [_frame_name(f) for f in stack.split(";") if f]
                if not frames:
                    continue
                total += n
                own[frames[-1]] += n
                for name in set(frames):
                    inclusive[name] += n
    except OSError:
        return {"error": f"no profile at {path}"}
    skip = ("_bootstrap", "Thread.run", "_ExecutorServiceWorker.run")

    def rows(counter: collections.Counter[str]) -> list[dict[str, Any]]:
        out = []
        for name, n in counter.most_common():
            if any(s in name for s in skip):
                continue
            out.append({"function": name, "samples": n, "seconds": n / PROFILE_RATE,
                        "us_per_event": n / PROFILE_RATE / max(events, 1) * 1e6})
            if len(out) >= top:
                break
        return out

    return {"path": path, "samples": total, "busy_seconds": total / PROFILE_RATE,
            "events": events, "us_per_event_total": total / PROFILE_RATE / max(events, 1) * 1e6,
            "inclusive": rows(inclusive), "self": rows(own)}


def print_profile(summary: dict[str, Any], title: str) -> None:
    if "error" in summary:
        print(f"\nprofile {title}: {summary['error']}")
        return
    print(f"\nprofile {title}: {summary['busy_seconds']:.1f} s of samples over "
          f"{summary['events']} events = {summary['us_per_event_total']:.0f} us/event "
          f"(all threads; raw stacks: {summary['path']})")
    for kind in ("inclusive", "self"):
        print(f"  {kind:<9} {'us/event':>9} {'s':>7}  function")
        for row in summary[kind][:20]:
            print(f"  {'':<9} {row['us_per_event']:>9.1f} {row['seconds']:>7.1f}  {row['function']}")


# ---- the two modes ----------------------------------------------------------------------

@dataclass
class Result:
    mode: str
    target_rate: Optional[float]
    events: int
    counted: int
    status: str  # done | stalled | timeout | exited | warm-up failed
    sustained: Optional[float] = None  # events/s, see the module docstring
    produce_rate: Optional[float] = None
    p50: Optional[float] = None
    p90: Optional[float] = None
    p99: Optional[float] = None
    max: Optional[float] = None
    kept_up: Optional[bool] = None
    details: dict[str, Any] = field(default_factory=dict)


def pipeline_args(servers: str, topic: str, group: str, args: argparse.Namespace) -> list[str]:
    return [
        "--streaming", "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
        "--start_at=earliest", f"--consumer_group={group}",
        f"--early_firing={args.early_firing}", f"--window_size={args.window_size}",
        f"--kafka_config=receive_message_max_bytes={BIG_RESPONSES}",
        *args.pipeline_arg,
    ]


def _new_topic(create: Callable[[str, int], str], prefix: str, partitions: int) -> str:
    return create(f"{prefix}_{uuid.uuid4().hex[:8]}", partitions)


def throughput_run(servers: str, create: Callable[[str, int], str], events: int,
                   args: argparse.Namespace, workdir: str, data: str = "uniform") -> Result:
    topic = _new_topic(create, f"tput_{data}_{events}", args.partitions)
    group = f"bench-{topic}"
    valid = valid_events(data, events)
    print(f"\n[throughput {data} {events}] producing {events} events ({valid} valid) to {topic} "
          "...", flush=True)
    schema_id, extra = None, []
    if data == "avro":
        from transforms.formats import SchemaRegistry
        from transforms.formats.registry import AVRO, RegistrySchema

        schema_id = SchemaRegistry(args.schema_registry_url).register(
            f"{topic}-value", RegistrySchema(json.dumps(AVRO_EVENT), AVRO))
        extra = ["--format=avro", f"--schema_registry_url={args.schema_registry_url}"]
    produced = produce(servers, topic, args.partitions, count=events,
                       window_size=args.window_size, data=data, avro_schema_id=schema_id)
    print(f"[throughput {events}] produced at {produced.rate:,.0f} events/s; starting the "
          "pipeline", flush=True)
    pipeline = PipelineProcess([*pipeline_args(servers, topic, group, args), *extra],
                               os.path.join(workdir, f"pipeline-throughput-{data}-{events}.log"))
    probe = LagProbe(servers, topic, group, args.partitions)
    profiler = None
    pipeline.start()
    probe.start()
    try:
        if args.pyspy:  # from the start of reading: interpreter and graph start-up excluded
            deadline = time.time() + args.warmup_timeout
            while probe.first_time_at_least(1) is None and time.time() < deadline \
                    and pipeline.running():
                time.sleep(0.1)
            profiler = Profiler(os.path.join(args.pyspy, f"throughput-{data}-{events}.txt"))
            profiler.start(pipeline.pid)
        status = pipeline.wait(lambda: pipeline.total >= valid, timeout=args.timeout,
                               stall_timeout=args.stall_timeout)
        if profiler is not None:
            profiler.stop()
        ended = time.time()
        counted = pipeline.total
    finally:
        probe.stop()
        pipeline.stop()
    read_start = probe.first_time_at_least(1)
    read_done = probe.first_time_at_least(events)
    last_update = pipeline.time_total_reached(counted) if counted else None
    first_pane = pipeline.timeline[0][0] if pipeline.timeline else None
    details: dict[str, Any] = {
        "topic": topic,
        "data": data,
        "valid_events": valid,
        "produce_rate": produced.rate,
        "startup_s": (read_start - pipeline.launched) if read_start else None,
        "first_pane_after_launch_s": (first_pane - pipeline.launched) if first_pane else None,
        "read_all_s": (read_done - read_start) if read_start and read_done else None,
        "read_events_per_s": events / (read_done - read_start)
        if read_start and read_done and read_done > read_start else None,
        "committed_at_end": probe.committed_at(ended),
        "drain_s": (last_update - read_start) if read_start and last_update else None,
        "end_to_end_events_per_s": counted / (last_update - pipeline.launched)
        if last_update else None,
        "progress": _progress(pipeline.timeline, read_start or pipeline.launched),
        "pipeline_log_tail": pipeline.log_tail(),
    }
    sustained = (counted / details["drain_s"]) if details["drain_s"] else None
    cpu_start = pipeline.cpu_at(read_start) if read_start else None
    cpu_end = pipeline.cpu_at(last_update) if last_update else None
    if cpu_start is not None and cpu_end is not None and counted:
        details["cpu_us_per_event"] = (cpu_end - cpu_start) / counted * 1e6
    if profiler is not None:
        details["profile"] = summarize_profile(profiler.path, max(counted, 1))
    return Result("throughput", None, events, counted, status, sustained=sustained,
                  produce_rate=produced.rate, kept_up=None, details=details)


def _progress(timeline: list[tuple[float, int]], origin: float, step: float = 5.0) -> list:
    """(seconds since origin, total counted) every ``step`` seconds: the shape of the run."""
    out: list[tuple[float, int]] = []
    next_at = origin
    for at, total in timeline:
        if at >= next_at:
            out.append((round(at - origin, 2), total))
            next_at = at + step
    if timeline and (not out or out[-1][1] != timeline[-1][1]):
        out.append((round(timeline[-1][0] - origin, 2), timeline[-1][1]))
    return out


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(q * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def latencies(produced: Produced, panes: Sequence[Pane]) -> tuple[list[float], int, list]:
    """Latency of every produced event covered by a pane; (latencies, uncovered, by time)."""
    by_key: dict[tuple[int, str], list[Pane]] = collections.defaultdict(list)
    for pane in panes:
        by_key[(pane.window_start, pane.page)].append(pane)
    out: list[float] = []
    timed: list[tuple[float, float]] = []  # (produce time, latency) for the trend
    uncovered = 0
    for key, sends in produced.times.items():
        covered = 0
        for pane in by_key.get(key, ()):
            upto = min(pane.count, len(sends))
            for j in range(covered, upto):
                out.append(pane.at - sends[j])
                timed.append((sends[j], pane.at - sends[j]))
            covered = max(covered, upto)
        uncovered += len(sends) - covered
    return out, uncovered, timed


def latency_run(servers: str, create: Callable[[str, int], str], rate: float,
                args: argparse.Namespace, workdir: str) -> Result:
    topic = _new_topic(create, f"lat_{int(rate)}", args.partitions)
    group = f"bench-{topic}"
    label = f"[latency {rate:g}/s]"
    pipeline = PipelineProcess(pipeline_args(servers, topic, group, args),
                               os.path.join(workdir, f"pipeline-latency-{int(rate)}.log"))
    probe = LagProbe(servers, topic, group, args.partitions)
    profiler = None
    print(f"\n{label} starting the pipeline on {topic}; waiting for the warm-up events",
          flush=True)
    pipeline.start()
    probe.start()
    try:
        send_warmup(servers, topic, args.partitions)
        warm = pipeline.wait(
            lambda: sum(c for (_, page), c in pipeline.latest.items() if page == WARMUP_PAGE)
            >= args.partitions, timeout=args.warmup_timeout)
        if warm != "done":
            probe.stop()
            pipeline.stop()
            return Result("latency", rate, 0, 0, f"warm-up {warm}",
                          details={"pipeline_log_tail": pipeline.log_tail()})
        warm_at = time.time()
        print(f"{label} live {warm_at - pipeline.launched:.1f} s after launch; producing for "
              f"{args.duration:g} s", flush=True)
        if args.pyspy:
            profiler = Profiler(os.path.join(args.pyspy, f"latency-{int(rate)}.txt"))
            profiler.start(pipeline.pid)
        produced = produce(servers, topic, args.partitions, rate=rate, duration=args.duration,
                           window_size=args.window_size)
        end_offsets = probe.end_offsets()
        lag_at_end = end_offsets - probe.committed_at(produced.flushed)
        backlog = produced.sent - pipeline.total_at(produced.finished)
        print(f"{label} sent {produced.sent} at {produced.rate:,.0f}/s; backlog when the "
              f"producer finished: {backlog} events; waiting up to {args.settle:g} s",
              flush=True)

        def caught_up() -> bool:
            return all(pipeline.latest.get(k, 0) >= len(v) for k, v in produced.times.items())

        status = pipeline.wait(caught_up, timeout=args.settle)
        if profiler is not None:
            profiler.stop()
    finally:
        stopping = time.time()
        probe.stop()
        pipeline.stop()
    # Panes printed while the pipeline shuts down are not counted: the wait was over.
    panes = [pane for pane in pipeline.panes if pane.at <= stopping]
    values, uncovered, timed = latencies(produced, panes)
    values.sort()
    counted = len(values)
    final_total = pipeline.total_at(stopping)
    last_count = pipeline.time_total_reached(final_total) if final_total else None
    catch_up = (last_count - produced.finished) if last_count and uncovered == 0 else None
    kept_up = catch_up is not None and catch_up <= args.early_firing + 2.0
    timed.sort()
    quarter = [lat for at, lat in timed if at >= produced.finished - args.duration / 4]
    quarter.sort()
    details = {
        "topic": topic,
        "duration_s": args.duration,
        "uncounted": uncovered,
        "backlog_at_producer_end": backlog,
        "consumer_lag_at_producer_end": lag_at_end,
        "catch_up_s": catch_up,
        "produce_window_s": produced.finished - produced.started,
        "producer_flush_s": produced.flushed - produced.finished,
        "p99_last_quarter": percentile(quarter, 0.99) if quarter else None,
        "counted_events_per_s": counted / max((last_count or produced.finished)
                                              - produced.started, 1e-9),
        "panes": len(panes),
        "pipeline_log_tail": pipeline.log_tail(),
    }
    if profiler is not None:
        details["profile"] = summarize_profile(profiler.path, max(counted, 1))
    return Result(
        "latency", rate, produced.sent, counted, status,
        sustained=details["counted_events_per_s"] if counted else None,
        produce_rate=produced.rate,
        p50=percentile(values, 0.50) if values else None,
        p90=percentile(values, 0.90) if values else None,
        p99=percentile(values, 0.99) if values else None,
        max=values[-1] if values else None, kept_up=kept_up, details=details)


# ---- reporting --------------------------------------------------------------------------

def _num(value: Optional[float], fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _secs(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(results: Sequence[Result]) -> str:
    header = ["mode", "rate", "events", "sustained events/s", "p50 s", "p99 s", "max s",
              "kept up", "notes"]
    rows = [header]
    for r in results:
        d = r.details
        if r.mode == "throughput":
            rate = "max"
            notes = (f"{d.get('data', 'uniform')} data; {r.status}; counted {r.counted} valid "
                     f"of {r.events}; drain {_num(d.get('drain_s'), '.1f')} s; "
                     f"read {_num(d.get('read_events_per_s'))}/s; end-to-end "
                     f"{_num(d.get('end_to_end_events_per_s'))}/s; CPU "
                     f"{_num(d.get('cpu_us_per_event'), '.1f')} us/event")
        else:
            rate = f"{r.target_rate:,.0f}"
            notes = (f"{r.status}; produced {_num(r.produce_rate)}/s; uncounted "
                     f"{d.get('uncounted', '-')}; backlog at end {d.get('backlog_at_producer_end', '-')}; "
                     f"lag {d.get('consumer_lag_at_producer_end', '-')}; catch-up "
                     f"{_num(d.get('catch_up_s'), '.1f')} s")
        kept = "-" if r.kept_up is None else ("yes" if r.kept_up else "no")
        rows.append([r.mode, rate, str(r.events), _num(r.sustained), _secs(r.p50),
                     _secs(r.p99), _secs(r.max), kept, notes])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(w) if i in (0, 7) else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row[:-1], widths, strict=True))]
        lines.append(" | ".join(cells) + " | " + row[-1])
        if row is header:
            lines.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * 5)
    return "\n".join(lines)


def targets(results: Sequence[Result]) -> list[str]:
    out = []
    for data in ("realistic", "uniform"):
        best = max((r.sustained or 0.0 for r in results if r.mode == "throughput"
                    and r.status == "done" and r.details.get("data") == data), default=None)
        if best is not None:
            out.append(f"throughput >= {TARGET_THROUGHPUT:,.0f} events/s sustained, {data} data: "
                       f"{'met' if best >= TARGET_THROUGHPUT else 'NOT met'} (best {best:,.0f}/s)")
    if not out and any(r.mode == "throughput" for r in results):  # none counted every event
        out.append(f"throughput >= {TARGET_THROUGHPUT:,.0f} events/s sustained: NOT met "
                   "(no throughput run counted every event)")
    for r in results:
        if r.mode == "latency" and r.target_rate == TARGET_P99_RATE:
            ok = r.p99 is not None and r.p99 < TARGET_P99_SECONDS and r.kept_up
            out.append(f"p99 < {TARGET_P99_SECONDS:g} s at {TARGET_P99_RATE:,.0f} events/s: "
                       f"{'met' if ok else 'NOT met'} (p99 {_secs(r.p99)} s, kept up: "
                       f"{'yes' if r.kept_up else 'no'})")
    return out


def _profiles(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    if not chosen or any(p not in ("realistic", "uniform", "avro") for p in chosen):
        raise argparse.ArgumentTypeError(f"expected realistic, uniform and/or avro, got {text!r}")
    return chosen


def _rates(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1000,10000, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _counts(text: str) -> list[int]:
    values = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        scale = 1
        if part[-1] in "km":
            scale = 1000 if part[-1] == "k" else 1_000_000
            part = part[:-1]
        try:
            values.append(int(float(part) * scale))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected counts like 200k,1M, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive counts, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.streaming",
                                description=(__doc__ or "").splitlines()[0])
    p.add_argument("--mode", choices=("throughput", "latency", "both"), default="both")
    p.add_argument("--events", type=_counts, default=[1_000_000],
                   help="Throughput runs: events to pre-produce, comma-separated (200k,1M; "
                   "default 1M).")
    p.add_argument("--rates", type=_rates, default=[1000.0, 10000.0, 50000.0],
                   help="Latency runs: produce rates in events/s, comma-separated (default "
                   "1000,10000,50000).")
    p.add_argument("--duration", type=float, default=20.0,
                   help="Latency runs: seconds of producing at each rate (default 20).")
    p.add_argument("--partitions", type=int, default=4, help="Partitions per topic (default 4).")
    p.add_argument("--window_size", type=int, default=300, help="Window seconds (default 300).")
    p.add_argument("--early_firing", type=int, default=1,
                   help="Seconds between early panes (default 1).")
    p.add_argument("--settle", type=float, default=30.0,
                   help="Latency runs: seconds to wait for the last counts (default 30).")
    p.add_argument("--warmup_timeout", type=float, default=180.0,
                   help="Latency runs: seconds to wait for the pipeline to count the warm-up "
                   "events (default 180).")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="Throughput runs: give up after this many seconds (default 1800).")
    p.add_argument("--stall_timeout", type=float, default=90.0,
                   help="Throughput runs: stop when the count has not moved for this many "
                   "seconds (default 90).")
    p.add_argument("--bootstrap_servers", default=None,
                   help="Use this broker instead of starting the test broker.")
    p.add_argument("--pipeline_arg", action="append", default=[],
                   help="Extra flag for the pipeline, repeatable (--pipeline_arg=--foo=1).")
    p.add_argument("--json", default=None, help="Write the results as JSON to this file.")
    p.add_argument("--profiles", type=_profiles, default=["realistic", "uniform"],
                   help="Throughput runs: the data, comma-separated: realistic (the mix of "
                   "benchmarks/datagen.py with live times, 1.5%% invalid), uniform "
                   "(string ids, float times, all valid) and/or avro (the uniform events as "
                   "Confluent-framed Avro, read with --format=avro); default realistic,uniform.")
    p.add_argument("--schema_registry_url", default=None,
                   help="The avro profile's registry (default: the emulator, started here).")
    p.add_argument("--pyspy", default=None, metavar="DIR",
                   help="Profile the pipeline with py-spy; raw stacks go to this directory.")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.partitions <= 0 or args.window_size <= 0 or args.early_firing <= 0:
        parser().error("--partitions, --window_size and --early_firing must be > 0")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the broker on kill, too
    if args.pyspy:
        os.makedirs(args.pyspy, exist_ok=True)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, load average "
          f"{' '.join(map(str, info['load_average']))}; Python {info['python']}, "
          f"Beam {info['apache_beam']}, kafka-python {info['kafka_python']}", flush=True)
    results: list[Result] = []
    workdir = tempfile.mkdtemp(prefix="bench-streaming-")
    registry = None
    if "avro" in args.profiles and not args.schema_registry_url:
        from beam_pipelines.testing.emulators.schema_registry import SchemaRegistryEmulator

        registry = SchemaRegistryEmulator().start()
        args.schema_registry_url = registry.url

    def run_all(servers: str, create: Callable[[str, int], str]) -> None:
        if args.mode in ("throughput", "both"):
            for events in args.events:
                for data in args.profiles:
                    results.append(throughput_run(servers, create, events, args, workdir, data))
                    print(table(results[-1:]), flush=True)
        if args.mode in ("latency", "both"):
            for rate in args.rates:
                results.append(latency_run(servers, create, rate, args, workdir))
                print(table(results[-1:]), flush=True)

    try:
        if args.bootstrap_servers:
            from kafka.admin import KafkaAdminClient, NewTopic

            from beam_pipelines.testing.kafka import wait_for_partitions

            def create(name: str, partitions: int) -> str:
                admin = KafkaAdminClient(bootstrap_servers=args.bootstrap_servers.split(","))
                try:
                    admin.create_topics([NewTopic(name, partitions, 1)])
                finally:
                    admin.close()
                wait_for_partitions(args.bootstrap_servers, name, partitions)
                return name

            run_all(args.bootstrap_servers, create)
        else:
            from beam_pipelines.testing.kafka import KafkaBroker

            with KafkaBroker() as broker:
                run_all(broker.bootstrap_servers, broker.create_topic)
    finally:
        if results:
            print(f"\nstreaming benchmark (pageviews, LocalStreamingRunner, {args.partitions} "
                  f"partitions, {args.window_size} s windows, early panes every "
                  f"{args.early_firing} s; {info['cpu']}, {info['cores']} cores)\n")
            print(table(results))
            for line in targets(results):
                print(line)
            for r in results:
                if r.status == "exited" or r.status.startswith("warm-up"):
                    print(f"\n{r.mode} {r.target_rate or r.events}: {r.status}; pipeline log tail:\n"
                          f"{r.details.get('pipeline_log_tail', '')}")
                if r.mode == "throughput" and r.details.get("progress"):
                    shape = ", ".join(f"{t:g}s:{n}" for t, n in r.details["progress"])
                    print(f"\nthroughput {r.events}: counted over time since reading started: {shape}")
                if "profile" in r.details:
                    print_profile(r.details["profile"], f"{r.mode} {r.target_rate or r.events}")
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump({"machine": info, "args": vars(args),
                           "results": [asdict(r) for r in results]}, handle, indent=2,
                          default=str)
            print(f"\nresults written to {args.json}")
        shutil.rmtree(workdir, ignore_errors=True)
        if registry is not None:
            registry.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
