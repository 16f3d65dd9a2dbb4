"""The fraud benchmark: a decision per card transaction, from Kafka to Kafka, beside the peers.

    python -m benchmarks.fraud                       # everything: ~10 minutes
    python -m benchmarks.fraud --mode latency --rates 2000,10000 --duration 15
    python -m benchmarks.fraud --mode throughput --transactions 200k --partitions 1,4
    python -m benchmarks.fraud --engines beam-pipelines --pyspy out/profiles --json out/fraud.json

It starts the project's test broker (``noida-db`` via
``beam_pipelines.testing.kafka.KafkaBroker``) unless ``--bootstrap_servers`` names one,
and for every run creates fresh topics: the transactions (``--partitions`` layouts, 1 and
4) and the decisions (one partition). Each engine runs in its own process:

* ``beam-pipelines``: the product, unmodified: ``python -m beam_pipelines.fraud
  --rules=docs/examples/fraud/rules.json --source=kafka ... --sink=kafka`` (streaming, on
  the local streaming runner);
* ``floor``: a plain kafka-python consume-decide-produce loop (benchmarks/fraud_peers.py),
  the same rules written apart from our engine (benchmarks/fraud_rules.py);
* ``quix``: a Quix Streams application with the same rules in per-card state
  (``pip install quixstreams``; skipped with the reason when it is not installed);
* ``transport`` (latency only): no engine; this process reads the transactions topic
  itself: what producer -> broker -> consumer costs before anyone decides anything.

Transactions are the realistic synthetic ones (transforms/fraud/generate.py: 2,000 cards,
bursts, spikes, far-away use, blocklisted merchants, every contract form) with live event
times, keyed by card, 1% invalid (dead-lettered or skipped; not counted). They are sent
by a producer in a separate process (confluent-kafka when installed, else kafka-python;
``linger.ms=5`` as in production) and the decisions are read by a consumer in this
process.

**Latency** (``--rates``, ``--duration``): the engine starts at the topic's end and is live
once a warm-up transaction on every partition has a decision. Then transactions are
produced at the rate, paced against the wall clock. Latency of a transaction = the
wall-clock time this process reads its decision on the output topic - the time just
before it was handed to the producer. Reported: p50/p95/p99/max over every valid
transaction, and how many got a decision within ``--settle`` seconds after the last send.

**Throughput** (``--transactions``): N transactions are produced first; then the engine
starts at the earliest offset. ``sustained tx/s`` = valid transactions / (last decision
read - first decision read); ``start-up s`` = launch to first decision.

Timings depend on the machine and its load (printed); this is a measurement, not a test.
The targets (issue 22: p50 < 20 ms and p99 < 100 ms at 2,000/s, p99 < 250 ms at 10,000/s,
>= 20,000 tx/s sustained) are printed beside the numbers, never asserted.
"""

# Over 500 lines: one benchmark: our engine and each peer measured on the same transactions, in one run.

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Sequence

from beam_pipelines.testing.kafka import KafkaBroker
from benchmarks.streaming import Profiler, machine, percentile, print_profile, summarize_profile
from transforms.fraud.generate import SyntheticTransactions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(REPO, "docs", "examples", "fraud", "rules.json")
ENGINES = ("beam-pipelines", "floor", "quix")
BIG_FETCH = 1 << 30  # receive_message_max_bytes: the test broker answers with all it has
TARGETS = {2000.0: (0.020, 0.100), 10000.0: (None, 0.250)}  # rate -> (p50, p99) seconds
TARGET_THROUGHPUT = 20_000.0
_TS = b'"__TS__"'
_ID = b"__ID__"


# ---- transactions ----------------------------------------------------------------------

def templates(count: int, seed: int = 7) -> list[Optional[bytes]]:
    """Payload templates with the tx_id and the timestamp left to fill in (None: an
    invalid transaction, sent as it is)."""
    out: list[Optional[bytes]] = []
    generator = SyntheticTransactions(seed=seed, cards=2000, rate=1000.0, dirty=0.01)
    for obj, _ in generator.records(count):
        if obj is None:
            out.append(None)
            continue
        obj = {**obj, "tx_id": "__ID__", "timestamp": "__TS__"}
        out.append(json.dumps(obj, separators=(",", ":")).encode())
    return out


def _card(template: bytes) -> bytes:
    start = template.index(b'"card_id":"') + 11
    return template[start:template.index(b'"', start)]


class _Producer:
    """confluent-kafka when installed (a light load generator), else kafka-python."""

    def __init__(self, servers: str) -> None:
        try:
            import confluent_kafka
        except ImportError:
            from kafka import KafkaProducer

            self._kp = KafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
            self._ck = None
        else:
            self._ck = confluent_kafka.Producer({"bootstrap.servers": servers, "linger.ms": 5,
                                                 "acks": "all", "queue.buffering.max.messages": 2_000_000})

    def send(self, topic: str, value: bytes, key: bytes, partition: Optional[int] = None) -> None:
        if self._ck is None:
            self._kp.send(topic, value, key=key, partition=partition)
            return
        while True:
            try:
                if partition is None:
                    self._ck.produce(topic, value, key)
                else:
                    self._ck.produce(topic, value, key, partition=partition)
                break
            except BufferError:
                self._ck.poll(0.005)
        self._ck.poll(0)

    def flush(self) -> None:
        (self._kp if self._ck is None else self._ck).flush()


def _produce(servers: str, topic: str, run: str, count: int, rate: Optional[float],
             times_path: str, backlog_span: float) -> None:
    """Child process: ``count`` transactions (tx_id RUN-i), paced at ``rate`` per second,
    or as fast as possible (a backlog whose event times span the last ``backlog_span``
    seconds); send times to ``times_path``."""
    from array import array

    shapes = templates(count)
    producer = _Producer(servers)
    sent = array("d", [0.0] * count)
    started = time.time()
    for i, shape in enumerate(shapes):
        if rate:
            due = started + i / rate
            left = due - time.time()
            while left > 0:
                time.sleep(min(0.002, left))
                left = due - time.time()
        now = time.time()
        if shape is None:
            producer.send(topic, b'{"tx_id":"broken","amount":', b"broken")
            continue
        stamp = now if rate else now - backlog_span + backlog_span * i / count
        value = shape.replace(_ID, f"{run}-{i}".encode()).replace(_TS, b"%.3f" % stamp)
        sent[i] = time.time()
        producer.send(topic, value, _card(shape))
    producer.flush()
    with open(times_path, "wb") as handle:
        sent.tofile(handle)


# ---- reading decisions -----------------------------------------------------------------

class DecisionReader:
    """Reads a topic in a thread; records when each tx_id of ``run`` was first read."""

    def __init__(self, servers: str, topic: str, run: str, field_name: str = "tx_id") -> None:
        self.received: dict[int, float] = {}
        self.other: list[str] = []  # warm-up decisions
        self._prefix = f"{run}-"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(servers, topic, field_name),
                                        daemon=True)
        self._thread.start()

    def _loop(self, servers: str, topic: str, field_name: str) -> None:
        try:
            import confluent_kafka
        except ImportError:
            confluent_kafka = None
        prefix = self._prefix
        if confluent_kafka is not None:
            consumer = confluent_kafka.Consumer({
                "bootstrap.servers": servers, "group.id": f"reader-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest", "enable.auto.commit": False,
                "fetch.wait.max.ms": 5})
            consumer.subscribe([topic])
            while not self._stop.is_set():
                # poll() returns as soon as one message is there; consume(n, timeout) would
                # wait the whole timeout for n messages and add ~25 ms to every latency.
                first = consumer.poll(0.05)
                if first is None:
                    continue
                now = time.time()
                for message in [first, *consumer.consume(num_messages=10000, timeout=0)]:
                    if message.error() is None:
                        self._record(message.value(), field_name, prefix, now)
            consumer.close()
            return
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                                 enable_auto_commit=False, fetch_max_wait_ms=5,
                                 receive_message_max_bytes=BIG_FETCH)
        while not self._stop.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now = time.time()
                for record in records:
                    self._record(record.value, field_name, prefix, now)
        consumer.close()

    def _record(self, value: bytes, field_name: str, prefix: str, now: float) -> None:
        try:
            tx_id = json.loads(value)[field_name]
        except (ValueError, KeyError, TypeError):
            return  # an invalid transaction (the transport row reads the input topic)
        if tx_id.startswith(prefix):
            self.received.setdefault(int(tx_id[len(prefix):]), now)
        else:
            self.other.append(tx_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# ---- engines ----------------------------------------------------------------------------

def engine_command(engine: str, servers: str, source: str, output: str, group: str,
                   start: str) -> list[str]:
    if engine == "beam-pipelines":
        return [sys.executable, "-m", "beam_pipelines.fraud", f"--rules={RULES}",
                "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={source}",
                f"--consumer_group={group}", f"--start_at={start}", "--sink=kafka",
                f"--output={output}", f"--kafka_config=receive_message_max_bytes={BIG_FETCH}"]
    return [sys.executable, "-m", "benchmarks.fraud_peers", engine, f"--bootstrap_servers={servers}",
            f"--input={source}", f"--output={output}", f"--rules={RULES}", f"--group={group}",
            f"--start={start}"]


def available(engine: str) -> Optional[str]:
    """None when the engine can run here, else why not."""
    if engine == "quix":
        try:
            import quixstreams  # noqa: F401
        except ImportError:
            return "skipped: pip install quixstreams"
    return None


class Engine:
    """An engine process, its log, and py-spy on it when asked."""

    def __init__(self, command: list[str], log: str) -> None:
        self.log = log
        self._handle = open(log, "wb")
        self.process = subprocess.Popen(command, cwd=REPO, stdout=self._handle,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "PYTHONPATH": REPO})
        self.launched = time.time()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, 9)
        self.process.wait(timeout=30)
        self._handle.close()

    def tail(self, chars: int = 1500) -> str:
        with open(self.log, errors="replace") as handle:
            return handle.read()[-chars:]


@dataclass
class Result:
    engine: str
    mode: str
    partitions: int
    rate: Optional[float] = None
    produced: int = 0  # valid transactions
    decided: int = 0
    p50: Optional[float] = None
    p95: Optional[float] = None
    p99: Optional[float] = None
    max: Optional[float] = None
    sustained: Optional[float] = None
    startup: Optional[float] = None
    note: str = ""
    profile: dict[str, Any] = field(default_factory=dict)


def _wait(condition: Callable[[], bool], timeout: float, engine: Optional[Engine]) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        if engine is not None and not engine.alive():
            return False
        time.sleep(0.05)  # polling a condition with a deadline (a measurement, not a test)
    return False


def _producer(servers: str, topic: str, run: str, count: int, rate: Optional[float],
              span: float = 0.0) -> tuple[multiprocessing.Process, str]:
    times = os.path.join(tempfile.gettempdir(), f"fraud-bench-{run}.times")
    process = multiprocessing.get_context("spawn").Process(
        target=_produce, args=(servers, topic, run, count, rate, times, span), daemon=True)
    process.start()
    return process, times


def _send_times(producer: multiprocessing.Process, path: str, count: int) -> list[float]:
    """The send time of each transaction (0.0: invalid, not measured)."""
    from array import array

    producer.join()
    if producer.exitcode != 0:
        raise SystemExit(f"the producer process failed (exit code {producer.exitcode})")
    sent = array("d")
    with open(path, "rb") as handle:
        sent.fromfile(handle, count)
    os.unlink(path)
    return list(sent)


def latency_run(servers: str, create: Callable[[int], str], engine: str, partitions: int,
                rate: float, duration: float, settle: float, workdir: str) -> Result:
    result = Result(engine, "latency", partitions, rate)
    source, output = create(partitions), create(1)
    run = uuid.uuid4().hex[:8]
    watched = source if engine == "transport" else output
    reader = DecisionReader(servers, watched, run)
    process: Optional[Engine] = None
    try:
        if engine != "transport":
            process = Engine(engine_command(engine, servers, source, output, f"g-{run}", "latest"),
                             os.path.join(workdir, f"{engine}-latency-{partitions}-{int(rate)}.log"))
            # Live once a warm-up transaction on every partition has a decision.
            warm = _Producer(servers)
            shape = templates(1)[0]
            assert shape is not None
            deadline = time.time() + 120
            while len(set(reader.other)) < partitions:
                if time.time() > deadline or not process.alive():
                    result.note = "did not start: " + process.tail(300).replace("\n", " ")
                    return result
                for p in range(partitions):
                    value = shape.replace(_ID, f"warmup-{p}".encode()).replace(
                        _TS, b"%.3f" % time.time())
                    warm.send(source, value, b"warmup", partition=p)
                warm.flush()
                _wait(lambda: len(set(reader.other)) >= partitions, 1.0, process)
        count = int(rate * duration)
        producer, times_path = _producer(servers, source, run, count, rate)
        sent = _send_times(producer, times_path, count)
        valid = [i for i, t in enumerate(sent) if t]
        result.produced = len(valid)
        _wait(lambda: len(reader.received) >= len(valid), settle, process)
        late = [reader.received[i] - sent[i] for i in valid if i in reader.received]
        late.sort()
        result.decided = len(late)
        if late:
            result.p50, result.p95, result.p99 = (percentile(late, q) for q in (0.5, 0.95, 0.99))
            result.max = late[-1]
        if process is not None and not process.alive():
            result.note = "engine died: " + process.tail(300).replace("\n", " ")
    finally:
        reader.stop()
        if process is not None:
            process.stop()
    return result


def throughput_run(servers: str, create: Callable[[int], str], engine: str, partitions: int,
                   count: int, workdir: str, pyspy: Optional[str], stall: float) -> Result:
    result = Result(engine, "throughput", partitions)
    source, output = create(partitions), create(1)
    run = uuid.uuid4().hex[:8]
    producer, times_path = _producer(servers, source, run, count, None, span=count / 1000.0)
    valid = sum(1 for t in _send_times(producer, times_path, count) if t)
    result.produced = valid
    reader = DecisionReader(servers, output, run)
    process = Engine(engine_command(engine, servers, source, output, f"g-{run}", "earliest"),
                     os.path.join(workdir, f"{engine}-throughput-{partitions}.log"))
    profiler = None
    try:
        if not _wait(lambda: len(reader.received) > 0, 180, process):
            result.note = "no decision: " + process.tail(300).replace("\n", " ")
            return result
        if pyspy and engine == "beam-pipelines":
            os.makedirs(pyspy, exist_ok=True)
            profiler = Profiler(os.path.join(pyspy, f"fraud-{partitions}.raw")).start(
                process.process.pid)
        last, last_change = 0, time.time()
        while len(reader.received) < valid and process.alive():
            if len(reader.received) != last:
                last, last_change = len(reader.received), time.time()
            elif time.time() - last_change > stall:
                result.note = f"stalled at {last}"
                break
            time.sleep(0.1)  # progress polling of a measurement
    finally:
        if profiler is not None:
            profiler.stop()
        reader.stop()
        process.stop()
    times = sorted(reader.received.values())
    result.decided = len(times)
    if len(times) > 1:
        result.sustained = len(times) / max(times[-1] - times[0], 1e-9)
        result.startup = times[0] - process.launched
    if profiler is not None:
        result.profile = summarize_profile(profiler.path, result.decided)
    return result


# ---- the report --------------------------------------------------------------------------

def _ms(value: Optional[float]) -> str:
    return "-" if value is None else f"{value * 1000:,.1f}"


def table(results: Sequence[Result]) -> str:
    lines = []
    latency = [r for r in results if r.mode == "latency"]
    if latency:
        lines += ["latency: produce -> decision readable on the output topic (ms)",
                  f"{'engine':<16}{'partitions':>11}{'rate/s':>8}{'p50':>9}{'p95':>9}{'p99':>9}"
                  f"{'max':>9}{'decided':>16}  target"]
        for r in latency:
            p50_target, p99_target = TARGETS.get(float(r.rate or 0), (None, None))
            target = " ".join(filter(None, [
                p50_target and f"p50<{p50_target * 1000:.0f}",
                p99_target and f"p99<{p99_target * 1000:.0f}"]))
            met = ""
            if r.engine == "beam-pipelines" and target and r.p99 is not None:
                ok = (p99_target is None or r.p99 < p99_target) and (
                    p50_target is None or (r.p50 or 0) < p50_target)
                met = " met" if ok and r.decided == r.produced else " not met"
            lines.append(f"{r.engine:<16}{r.partitions:>11}{r.rate or 0:>8,.0f}{_ms(r.p50):>9}"
                         f"{_ms(r.p95):>9}{_ms(r.p99):>9}{_ms(r.max):>9}"
                         f"{f'{r.decided}/{r.produced}':>16}  {target}{met} {r.note}".rstrip())
    throughput = [r for r in results if r.mode == "throughput"]
    if throughput:
        lines += ["", "throughput: a backlog, earliest offset to the last decision",
                  f"{'engine':<16}{'partitions':>11}{'transactions':>14}{'decided':>10}"
                  f"{'sustained tx/s':>16}{'start-up s':>12}  target"]
        for r in throughput:
            met = ""
            if r.engine == "beam-pipelines" and r.sustained is not None:
                met = " met" if r.sustained >= TARGET_THROUGHPUT and r.decided == r.produced else " not met"
            lines.append(f"{r.engine:<16}{r.partitions:>11}{r.produced:>14,}{r.decided:>10,}"
                         f"{r.sustained or 0:>16,.0f}{r.startup or 0:>12.1f}  "
                         f">={TARGET_THROUGHPUT:,.0f}{met} {r.note}".rstrip())
    return "\n".join(lines)


def _numbers(text: str, kind: Callable[[str], Any]) -> list:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = 1_000_000 if part.endswith("m") else 1000 if part.endswith("k") else 1
        out.append(kind(float(part.rstrip("mk")) * scale))
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fraud", description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("both", "latency", "throughput"), default="both")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help=f"comma-separated: {', '.join(ENGINES)} (latency also runs 'transport')")
    p.add_argument("--partitions", default="1,4", help="input partition layouts (default 1,4)")
    p.add_argument("--rates", default="2000,10000", help="latency: transactions/s (default 2000,10000)")
    p.add_argument("--duration", type=float, default=15.0, help="latency: seconds per rate")
    p.add_argument("--settle", type=float, default=20.0,
                   help="latency: seconds to wait for the last decisions after the last send")
    p.add_argument("--transactions", default="200k", help="throughput: backlog size (200k)")
    p.add_argument("--stall", type=float, default=30.0, help="throughput: give up after this "
                   "many seconds without a new decision")
    p.add_argument("--bootstrap_servers", default=None, help="a running broker (default: start one)")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "fraud-bench"))
    p.add_argument("--json", default=None, help="write the results as JSON here")
    p.add_argument("--pyspy", default=None, metavar="DIR",
                   help="profile beam-pipelines' throughput runs with py-spy (--gil samples)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    layouts = _numbers(args.partitions, int)
    os.makedirs(args.workdir, exist_ok=True)
    print(json.dumps(machine()), flush=True)
    broker = None
    if args.bootstrap_servers:
        servers = args.bootstrap_servers
    else:
        broker = KafkaBroker().start()
        servers = broker.bootstrap_servers

    def create(partitions: int) -> str:
        assert broker is not None or args.bootstrap_servers
        name = f"fraud-{uuid.uuid4().hex[:10]}"
        if broker is not None:
            return broker.create_topic(name, partitions)
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=servers)
        admin.create_topics([NewTopic(name, partitions, 1)])
        admin.close()
        return name

    results: list[Result] = []
    try:
        for partitions in layouts:
            if args.mode in ("both", "latency"):
                for rate in _numbers(args.rates, float):
                    for engine in ["transport", *engines]:
                        skipped = None if engine == "transport" else available(engine)
                        if skipped:
                            results.append(Result(engine, "latency", partitions, rate, note=skipped))
                            continue
                        results.append(latency_run(servers, create, engine, partitions, rate,
                                                   args.duration, args.settle, args.workdir))
                        print(table(results[-1:]).splitlines()[-1], flush=True)
            if args.mode in ("both", "throughput"):
                for count in _numbers(args.transactions, int):
                    for engine in engines:
                        skipped = available(engine)
                        if skipped:
                            results.append(Result(engine, "throughput", partitions, note=skipped))
                            continue
                        results.append(throughput_run(servers, create, engine, partitions, count,
                                                      args.workdir, args.pyspy, args.stall))
                        print(table(results[-1:]).splitlines()[-1], flush=True)
    finally:
        if broker is not None:
            broker.stop()
    print()
    print(table(results))
    for r in results:
        if r.profile:
            print_profile(r.profile, f"{r.engine} throughput, {r.partitions} partition(s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": machine(), "results": [asdict(r) for r in results]}, handle,
                      indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
