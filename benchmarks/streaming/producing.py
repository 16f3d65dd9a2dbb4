"""Producing the benchmark's events into Kafka, in a child process."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import random
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from typing import Callable, Optional

from benchmarks.streaming.common import WARMUP_PAGE
from transforms.io.synthetic.events import PAGES

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


