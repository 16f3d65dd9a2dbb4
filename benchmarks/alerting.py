"""The alerting benchmark: from a breaching log line in Kafka to a page, and back.

    python -m benchmarks.alerting                       # 24 incidents, early panes every 0.1 s
    python -m benchmarks.alerting --early_firing 0.1,1 --incidents 40 --json out/alerting.json

The product, unmodified, in its own process on the local streaming runner::

    python -m beam_pipelines.error_rate --streaming --source=kafka --topic=... \\
        --early_firing=E --sink=pagerduty --pagerduty_url=<local receiver> \\
        --pagerduty_routing_key=env:... --notify=webhook --webhook_url=<local receiver>

It starts the project's test broker (noida-db, unless ``--bootstrap_servers`` names one)
and the local HTTP receiver (``beam_pipelines.testing.http_receiver``: PagerDuty Events
v2 and a webhook route, requests checked and time-stamped on arrival). This process
produces live service logs (event time = the wall clock at ``send()``, which is also
the Kafka log time), keyed by service so each service's lines stay in order.

Each incident is its own service (``svc-00``, ``svc-01``...), started ``--stagger``
seconds after the previous one, at ``--rate`` lines a second: ``--healthy`` seconds of
good requests (status 200), ``--failing`` seconds of failures (status 503), then good
requests again until the resolve arrives (at most ``--max_resolve`` seconds). A
``warmup`` service goes through one incident first; measuring starts once its trigger
has arrived (the pipeline is live).

Measured per incident, on this process's monotonic clock:

* **trigger latency** = arrival of the trigger at the receiver - ``send()`` of the
  *first breaching line*: the first line after which some window holding it breaches
  by the pipeline's own definition (ratio above ``--max_error_ratio`` with at least
  ``--min_events`` lines; sliding 60 s windows every 10 s), replayed here over exactly
  the lines produced.
* **resolve after recovery** = arrival of the resolve - ``send()`` of the first good
  line after the failures. A window can only say "recovered" once it starts after the
  last failure, so this is bounded below by the wait for the next window start (up to
  one window period, 10 s) plus ``--min_events / --rate`` seconds; the target is one
  window period.
* **resolve latency** = arrival of the resolve - ``send()`` of the first *resolving
  line* (the first line after which a window starting after the last breaching one
  has enough lines and does not breach): the pipeline's own share.

Reported per channel (PagerDuty, whose 2 events/s limit the sink honours, and the
webhook, unlimited): p50/p90/p99/max of each, the incidents that triggered or resolved
more than once (none expected), and those never notified. Targets (issue 16): trigger
p99 < 1 s with sub-second early panes; resolve within one window period of recovery.
Measured, never asserted; the machine's load is printed first.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Callable, Optional, Sequence

from beam_pipelines.testing.http_receiver import HttpReceiver
from benchmarks.streaming import machine, percentile
from benchmarks.streaming.common import log_tail, on_a_broker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUTING_KEY = "BENCHKEY0123456789abcdefABCDEF01"
TARGET_TRIGGER_P99 = 1.0
WINDOW, PERIOD = 60, 10


# ---- what was produced, and when it breached --------------------------------------------

@dataclass
class Script:
    """One service's incident: what it produced and when."""

    service: str
    start: float  # monotonic time its first line is due
    healthy: float
    failing: float
    sent: list[tuple[float, float, bool]] = field(default_factory=list)  # (monotonic, epoch, error)
    recovered_at: Optional[float] = None  # send() of the first good line after the failures
    done: bool = False

    def phase_error(self, now: float) -> bool:
        return self.healthy <= now - self.start < self.healthy + self.failing


def first_breach(sent: Sequence[tuple[float, float, bool]], max_ratio: float,
                 min_events: int) -> tuple[Optional[float], Optional[float]]:
    """(send time of the first breaching line, send time of the first resolving line),
    replaying the pipeline's definition over the lines of one service in order."""
    counts: dict[int, list[int]] = {}
    breached_starts: list[int] = []
    breach_at: Optional[float] = None
    for mono, epoch, error in sent:
        second = math.floor(epoch)
        last = second - second % PERIOD
        starts = range(last, second - WINDOW, -PERIOD)
        for start in starts:
            tally = counts.setdefault(start, [0, 0])
            tally[0] += 1
            tally[1] += int(error)
        for start in starts:
            events, errors = counts[start]
            breaching = events >= min_events and errors / events > max_ratio
            if breaching:
                breached_starts.append(start)
                if breach_at is None:
                    breach_at = mono
            elif breach_at is not None and events >= min_events and start > max(breached_starts):
                return breach_at, mono
    return breach_at, None


# ---- the pipeline process ---------------------------------------------------------------

class Pipeline:
    def __init__(self, args: list[str], log_path: str, env: dict[str, str]) -> None:
        self.command = [sys.executable, "-m", "beam_pipelines.error_rate", *args]
        self.log_path = log_path
        self._env = env
        self._process: Optional[subprocess.Popen] = None
        self._log: Optional[IO[bytes]] = None

    def start(self) -> Pipeline:
        self._log = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            self.command, cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1", **self._env),
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        return self

    def exited(self) -> Optional[int]:
        return None if self._process is None else self._process.poll()

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            for signum, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(process.pid, signum)  # its own session: the pipeline only
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)


# ---- producing ------------------------------------------------------------------------------

class Producer:
    """Lines of every active script, at ``rate`` a second each, paced on the clock."""

    def __init__(self, servers: str, topic: str, rate: float) -> None:
        from kafka import KafkaProducer

        self._producer = KafkaProducer(bootstrap_servers=servers, acks=1, linger_ms=2)
        self._topic = topic
        self._rate = rate

    def tick(self, scripts: Sequence[Script], now: float) -> None:
        for script in scripts:
            if script.done or now < script.start:
                continue
            due = int((now - script.start) * self._rate) + 1
            while len(script.sent) < due:
                error = script.phase_error(now)
                recovering = not error and bool(script.sent) and script.sent[-1][2]
                epoch, mono = time.time(), time.monotonic()
                line = json.dumps({"service": script.service, "status": 503 if error else 200,
                                   "timestamp": round(epoch, 3), "path": "/api"}).encode()
                self._producer.send(self._topic, line, key=script.service.encode(),
                                    timestamp_ms=int(epoch * 1000))
                script.sent.append((mono, epoch, error))
                if recovering and script.recovered_at is None:
                    script.recovered_at = mono
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()


# ---- one run --------------------------------------------------------------------------------

@dataclass
class ChannelResult:
    channel: str
    trigger: list[float]
    resolve_after_recovery: list[float]
    resolve_latency: list[float]
    duplicates: int
    never_triggered: int
    never_resolved: int


@dataclass
class Run:
    early_firing: str
    incidents: int
    status: str
    channels: list[ChannelResult]
    details: dict[str, Any]


def _arrivals(route, service_of: Callable[[dict], Optional[str]]) -> dict[tuple[str, str], list[float]]:
    out: dict[tuple[str, str], list[float]] = {}
    for request in route.accepted:
        body = request.json or {}
        service = service_of(body)
        if service is not None:
            out.setdefault((service, body.get("event_action", "")), []).append(request.received_at)
    return out


def _service_of_dedup(body: dict) -> Optional[str]:
    key = str(body.get("dedup_key", ""))
    parts = key.split(":")
    return parts[1] if len(parts) >= 3 and parts[0] == "error_rate" else None


def run_once(servers: str, create: Callable[[str, int], str], args: argparse.Namespace,
             early_firing: str, workdir: str) -> Run:
    topic = create(f"service_logs_{uuid.uuid4().hex[:8]}", args.partitions)
    with HttpReceiver() as receiver:
        pager = receiver.pagerduty(ROUTING_KEY)
        hook = receiver.webhook()
        flags = [
            "--streaming", "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
            "--start_at=earliest", f"--early_firing={early_firing}",
            f"--max_error_ratio={args.max_error_ratio}", f"--min_events={args.min_events}",
            "--sink=pagerduty", f"--pagerduty_url={pager.url}",
            "--pagerduty_routing_key=env:BENCH_PAGERDUTY_KEY",
            "--notify=webhook", f"--webhook_url={hook.url}", "--notify_timeout=5",
        ]
        log_path = os.path.join(workdir, f"pipeline-{early_firing}.log")
        pipeline = Pipeline(flags, log_path, {"BENCH_PAGERDUTY_KEY": ROUTING_KEY}).start()
        producer = Producer(servers, topic, args.rate)
        try:
            return _measure(pipeline, producer, pager, hook, args, early_firing)
        finally:
            producer.close()
            pipeline.stop()


def _measure(pipeline: Pipeline, producer: Producer, pager, hook, args: argparse.Namespace,
             early_firing: str) -> Run:
    def failed(status: str) -> Run:
        return Run(early_firing, args.incidents, status, [],
                   {"pipeline_log_tail": pipeline.log_tail()})

    warmup = Script("warmup", time.monotonic(), args.healthy, 1e9)
    deadline = time.monotonic() + args.startup_timeout
    while not any(_service_of_dedup(e) == "warmup" for e in pager.events):
        if pipeline.exited() is not None:
            return failed(f"exited ({pipeline.exited()})")
        if time.monotonic() > deadline:
            return failed("warm-up: no trigger")
        producer.tick([warmup], time.monotonic())
        time.sleep(0.02)  # pacing the producer against the clock, not synchronising
    warmup.done = True
    origin = time.monotonic() + 0.5
    scripts = [Script(f"svc-{i:02d}", origin + i * args.stagger, args.healthy, args.failing)
               for i in range(args.incidents)]
    deadline = origin + args.incidents * args.stagger + args.healthy + args.failing + args.max_resolve + 30
    while not all(s.done for s in scripts):
        now = time.monotonic()
        if pipeline.exited() is not None:
            return failed(f"exited ({pipeline.exited()})")
        if now > deadline:
            break
        resolved = [{_service_of_dedup(e) for e in events if e.get("event_action") == "resolve"}
                    for events in (pager.events, hook.deliveries)]
        for script in scripts:
            over = script.start + script.healthy + script.failing + args.max_resolve
            if now > over or all(script.service in seen for seen in resolved):
                script.done = True
        producer.tick(scripts, now)
        time.sleep(0.02)  # pacing, as above
    channels = [_channel("pagerduty", pager, scripts, args), _channel("webhook", hook, scripts, args)]
    problems = pager.problems + hook.problems
    return Run(early_firing, args.incidents, "ok" if not problems else f"bad requests: {problems[:2]}",
               channels, {"pipeline_log_tail": pipeline.log_tail(5)})


def _channel(name: str, route, scripts: Sequence[Script], args: argparse.Namespace) -> ChannelResult:
    arrivals = _arrivals(route, _service_of_dedup)
    trigger, after_recovery, latency = [], [], []
    duplicates = never_triggered = never_resolved = 0
    for script in scripts:
        breach, resolving = first_breach(script.sent, args.max_error_ratio, args.min_events)
        triggers = arrivals.get((script.service, "trigger"), [])
        resolves = arrivals.get((script.service, "resolve"), [])
        duplicates += max(0, len(triggers) - 1) + max(0, len(resolves) - 1)
        if not triggers or breach is None:
            never_triggered += 1
        else:
            trigger.append(triggers[0] - breach)
        if not resolves or script.recovered_at is None:
            never_resolved += 1
            continue
        after_recovery.append(resolves[0] - script.recovered_at)
        if resolving is not None:
            latency.append(resolves[0] - resolving)
    return ChannelResult(name, sorted(trigger), sorted(after_recovery), sorted(latency),
                         duplicates, never_triggered, never_resolved)


# ---- reporting ------------------------------------------------------------------------------

def _stats(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return " / ".join(f"{percentile(values, q):.2f}" for q in (0.5, 0.9, 0.99)) + f" / {values[-1]:.2f}"


def table(runs: Sequence[Run]) -> str:
    head = ("| early panes | channel | incidents | trigger s p50/p90/p99/max | resolve after "
            "recovery s p50/p90/p99/max | resolve latency s p50/p90/p99/max | duplicates | "
            "never triggered / resolved |")
    lines = [head, "|" + "---|" * 8]
    for run in runs:
        if not run.channels:
            lines.append(f"| {run.early_firing} s | - | {run.incidents} | {run.status} | | | | |")
        for c in run.channels:
            lines.append(f"| {run.early_firing} s | {c.channel} | {run.incidents} | "
                         f"{_stats(c.trigger)} | {_stats(c.resolve_after_recovery)} | "
                         f"{_stats(c.resolve_latency)} | {c.duplicates} | "
                         f"{c.never_triggered} / {c.never_resolved} |")
    return "\n".join(lines)


def targets(runs: Sequence[Run]) -> list[str]:
    out = []
    for run in runs:
        for c in run.channels:
            if not c.trigger:
                continue
            p99 = percentile(c.trigger, 0.99)
            resolve = percentile(c.resolve_after_recovery, 0.99) if c.resolve_after_recovery else math.inf
            out.append(f"early panes {run.early_firing} s, {c.channel}: trigger p99 {p99:.2f} s "
                       f"({'meets' if p99 < TARGET_TRIGGER_P99 else 'misses'} < {TARGET_TRIGGER_P99:g} s); "
                       f"resolve p99 {resolve:.2f} s after recovery "
                       f"({'meets' if resolve <= PERIOD else 'misses'} <= {PERIOD} s, one window period)")
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.alerting", description=__doc__.splitlines()[0])
    p.add_argument("--early_firing", default="0.1",
                   help="--early_firing values to run, comma-separated (seconds). Default 0.1: "
                   "the trigger target needs sub-second early panes.")
    p.add_argument("--incidents", type=int, default=24, help="Incidents (services). Default 24.")
    p.add_argument("--stagger", type=float, default=1.5,
                   help="Seconds between two incidents' starts. Default 1.5 (PagerDuty's limit "
                   "is 2 events/s: a trigger and a resolve per incident).")
    p.add_argument("--rate", type=float, default=20.0, help="Lines per second per service. Default 20.")
    p.add_argument("--healthy", type=float, default=4.0, help="Seconds of good lines first. Default 4.")
    p.add_argument("--failing", type=float, default=3.0, help="Seconds of failures. Default 3.")
    p.add_argument("--max_resolve", type=float, default=30.0,
                   help="Give up on an incident's resolve after this many seconds. Default 30.")
    p.add_argument("--max_error_ratio", type=float, default=0.05)
    p.add_argument("--min_events", type=int, default=20)
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--startup_timeout", type=float, default=120.0)
    p.add_argument("--bootstrap_servers", default=None, help="Use this broker instead of a local one.")
    p.add_argument("--json", default=None, help="Write the results as JSON here.")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    info = machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, load average "
          f"{' '.join(map(str, info['load_average']))}; Python {info['python']}, "
          f"Beam {info['apache_beam']}", flush=True)
    runs: list[Run] = []
    workdir = tempfile.mkdtemp(prefix="bench-alerting-")

    def run_all(servers: str, create: Callable[[str, int], str]) -> None:
        for early in [e.strip() for e in args.early_firing.split(",") if e.strip()]:
            run = run_once(servers, create, args, early, workdir)
            runs.append(run)
            print(table([run]), flush=True)
            if run.status != "ok":
                print(f"pipeline log tail:\n{run.details.get('pipeline_log_tail', '')}", flush=True)

    on_a_broker(args.bootstrap_servers, run_all)
    print(f"\nalerting benchmark (error_rate, LocalStreamingRunner, {args.incidents} incidents, "
          f"{args.rate:g} lines/s per service; {info['cpu']}, {info['cores']} cores)\n")
    print(table(runs))
    for line in targets(runs):
        print(line)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": info, "args": vars(args), "runs": [asdict(r) for r in runs]},
                      handle, indent=2, default=str)
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
