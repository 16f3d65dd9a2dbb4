"""kill -9 and restart: after a restart from the committed offsets every transaction has a
decision, and the decisions equal an uninterrupted run's (and the reference); a
transaction decided twice has the same decision twice.

The job runs as a subprocess (Kafka in, Kafka out) on the local streaming runner, which
keeps the cards' state in memory only. It is killed with SIGKILL twice: once when it has
caught up (everything read is decided and committed) and more transactions arrive while
it is down, whose decisions need the history it lost; once while it is busy deciding a
backlog. Each restart rebuilds the cards' state from the topic (the warm-up, docs/fraud.md
"Restart"). With ``--state_ttl=600`` the warm-up (1200 s of log time) starts inside the
topic, not at its beginning. Nothing sleeps: the test waits for decisions on the output
topic and for the group's committed offsets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from beam_pipelines.testing.polling import wait_for

from .kafka_support import TopicReader, committed_total, ordered_lines, produce
from .support import (
    EXAMPLE_RULES,
    ROOT,
    decision_table,
    expected_table,
    fresh_seed,
    parse_line,
    reference,
    transactions,
)

pytestmark = pytest.mark.integration

TTL = 600
GROUP = "fraud_restart"


def start(servers: str, source: str, output: str, log: Path):
    flags = [sys.executable, "-m", "beam_pipelines.fraud", f"--rules={EXAMPLE_RULES}",
             "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={source}",
             f"--consumer_group={GROUP}", "--start_at=committed", f"--state_ttl={TTL}",
             "--sink=kafka", f"--output={output}"]
    handle = open(log, "wb")
    job = subprocess.Popen(flags, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                           start_new_session=True)
    return job, handle


def kill(job, handle) -> None:
    if job.poll() is None:
        os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    handle.close()


def wait_on(job, log: Path, condition, what: str, timeout: float = 120.0, lost=None):
    """wait_for ``condition``, failing at once when the job exits, or when ``lost`` says
    decisions were lost, with the job's log."""

    def exited():
        if job.poll() is not None:
            return f"the job exited ({job.returncode})"
        return lost() if lost is not None else None

    try:
        return wait_for(condition, timeout=timeout, what=what, interval=0.1, abort=exited)
    except AssertionError as exc:
        pytest.fail(f"{exc}:\n{log.read_text(errors='replace')[-3000:]}")


def _sample(seed: int) -> tuple[list, dict]:
    lines = transactions(seed, 2400, cards=40, rate=2.0)  # cards come back within the TTL
    return ordered_lines(lines), expected_table(reference(lines, state_ttl=TTL))


def _needs_history(seed: int, later: list, want: dict) -> None:
    """The later part's decisions need the earlier part's history: without a warm-up they
    would differ (so the test fails if a restart forgets the cards' state)."""
    alone = expected_table(reference([line for line, _ in later], state_ttl=TTL))
    assert any(alone[tx_id] != entry for tx_id, entry in want.items() if tx_id in alone), (
        f"seed {seed}: the sample needs no history")


def test_a_restart_rebuilds_the_cards_state_and_decides_as_an_uninterrupted_run(
        kafka_broker, kafka_topic, tmp_path):
    seed = fresh_seed()
    ordered, want = _sample(seed)
    first, second = ordered[:900], ordered[900:]
    _needs_history(seed, second, want)
    first_ids = {tx["tx_id"] for line, _ in first if (tx := parse_line(line))}
    servers = kafka_broker.bootstrap_servers
    source, output = kafka_topic(2, "tx"), kafka_topic(1, "decisions")
    reader = TopicReader(servers, output)
    try:
        # Run 1 decides the first part, commits it, and is killed once caught up.
        produce(servers, source, first)
        job, handle = start(servers, source, output, tmp_path / "run1.log")
        try:
            wait_on(job, tmp_path / "run1.log",
                    lambda: {v["tx_id"] for _, v in reader.poll()} >= first_ids,
                    f"decisions of the first {len(first_ids)} transactions")
            wait_on(job, tmp_path / "run1.log",
                    lambda: (lambda c, e: c == e)(*committed_total(servers, source, GROUP)),
                    "the group's offsets at the end of the topic")
        finally:
            kill(job, handle)
        # The rest arrives while the job is down; run 2 restarts from the committed offsets.
        produce(servers, source, second)
        job, handle = start(servers, source, output, tmp_path / "run2.log")
        try:
            wait_on(job, tmp_path / "run2.log",
                    lambda: {v["tx_id"] for _, v in reader.poll()} >= set(want),
                    f"a decision for every one of the {len(want)} transactions")
        finally:
            kill(job, handle)
    finally:
        reader.close()
    assert decision_table(value for _, value in reader.messages) == want, f"seed {seed}"
    assert all(key == value["tx_id"].encode() for key, value in reader.messages)


def test_kill_9_while_busy_loses_no_decision(kafka_broker, kafka_topic, tmp_path):
    seed = fresh_seed()
    ordered, want = _sample(seed)
    servers = kafka_broker.bootstrap_servers
    source, output = kafka_topic(2, "tx"), kafka_topic(1, "decisions")
    reader = TopicReader(servers, output)
    try:
        produce(servers, source, ordered)
        # Run 1 is killed while busy deciding the backlog, twice over.
        for run, part in (("run1", 4), ("run2", 2)):
            job, handle = start(servers, source, output, tmp_path / f"{run}.log")
            try:
                wait_on(job, tmp_path / f"{run}.log",
                        lambda part=part: len(reader.poll()) >= len(want) // part,
                        f"1/{part} of the backlog decided",
                        lost=lambda: _lost(reader, want, servers, source))
            finally:
                kill(job, handle)
        job, handle = start(servers, source, output, tmp_path / "run3.log")
        try:
            wait_on(job, tmp_path / "run3.log",
                    lambda: {v["tx_id"] for _, v in reader.poll()} >= set(want),
                    f"a decision for every one of the {len(want)} transactions",
                    lost=lambda: _lost(reader, want, servers, source))
        finally:
            kill(job, handle)
    finally:
        reader.close()
    assert decision_table(value for _, value in reader.messages) == want, f"seed {seed}"


def _lost(reader, want: dict, servers: str, source: str):
    """A message when the group has committed every offset while some transactions have
    no decision written: a kill -9 now would lose them, since a restart resumes after the
    committed offsets (an offset may be committed only once its decision is written)."""
    committed, end = committed_total(servers, source, GROUP)
    if committed < end:
        return None
    missing = set(want) - {v["tx_id"] for _, v in reader.read_to_end()}
    if not missing:
        return None
    return (f"every offset is committed but {len(missing)} transactions have no decision "
            f"written (e.g. {sorted(missing)[:3]}): a kill -9 now would lose them")
