"""The recommender's benchmark: model quality, inference formats, stream latency and throughput.

    python -m benchmarks.recommendations                       # every mode, default sizes
    python -m benchmarks.recommendations --mode quality --users 2000
    python -m benchmarks.recommendations --mode inference --items 500,2000,5000
    python -m benchmarks.recommendations --mode latency --rate 1000 --duration 20
    python -m benchmarks.recommendations --mode throughput --clicks 50000
    python -m benchmarks.recommendations --json out/recommendations.json

Modes (a measurement, never a test: the targets are printed beside the numbers):

* **quality**: on seeded events with planted "A then B" pairs and Zipf noise
  (``transforms.recommend.generate.PlantedEvents``), the trainer's method
  (``train_in_memory``: sessions, co-visitation, temporal hold-out, profile replay) with
  each normalisation, and a factorisation (scikit-learn's ``TruncatedSVD`` of the
  normalised matrix, rank 16/32/64), against the most-popular baseline: precision@5.
* **inference**: the model handler's work per click, ``sklearn`` (the joblib estimator,
  scipy sparse product) against ``onnx`` (ONNX Runtime, one thread, a dense MatMul), by
  vocabulary size and batch size: the scoring call alone and the whole
  vectorise-score-top-k step RunInference runs.
* **latency**: ``recommendations`` on the local streaming runner, Kafka in and Kafka out,
  at ``--rate`` clicks/s for ``--duration`` s after a warm-up click. A producer process
  stamps each click with the wall-clock time just before ``send()``; a consumer process
  reads the recommendations topic and matches each record (user, event time) to its
  click: click-to-recommendation latency p50/p90/p99/max. The pipeline runs in this
  process (``launch``), so RunInference's own metrics give the inference time per batch
  and per click, reported apart from the rest.
* **throughput**: ``--clicks`` clicks are produced first (a backlog), then the pipeline
  starts from the earliest offset; sustained clicks/s = records / (last record - first
  record) as the consumer reads them.

It starts the test broker (``noida-db``, as ``benchmarks.streaming`` does) and trains the served model with ``train_recommender`` on planted events first (``--users``).
Targets (issue 19): precision@5 at least twice the baseline's; p99 under 500 ms at 1,000
clicks/s; at least 5,000 clicks/s from a backlog.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any, Optional

import numpy as np

from beam_pipelines.testing.kafka import KafkaBroker
from benchmarks.streaming import machine
from transforms.recommend.generate import PlantedEvents
from transforms.records import UserEvent, utc_iso

TARGET_P99 = 0.5
TARGET_RATE = 1000.0
TARGET_THROUGHPUT = 5000.0


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [columns] + [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---- quality -----------------------------------------------------------------------------

def quality(users: int, seed: int) -> list[dict[str, Any]]:
    import scipy.sparse as sp
    from sklearn.decomposition import TruncatedSVD

    from transforms.recommend.estimator import CoVisitationRecommender
    from transforms.recommend.train import TrainConfig, train_in_memory

    generator = PlantedEvents(seed=seed, users=users)
    events = [UserEvent(e["user_id"], e["action"], e["page"], e["timestamp"])
              for e in generator.events()]
    rows = []
    for similarity in ("conditional", "cosine", "lift", "count"):
        for weight in (0.1, 0.0):
            started = time.perf_counter()
            _, precision, baseline, cases = train_in_memory(
                events, TrainConfig(similarity=similarity, popularity_weight=weight))
            rows.append({"model": f"co-visitation {similarity}", "popularity_weight": weight,
                         "precision@5": precision, "baseline@5": baseline,
                         "ratio": precision / baseline if baseline else None,
                         "clicks": cases, "seconds": time.perf_counter() - started})
    original_fit = CoVisitationRecommender.fit
    for rank in (16, 32, 64):
        def low_rank_fit(self, X, y=None, _rank=rank, **kwargs):
            original_fit(self, X, y, **kwargs)
            svd = TruncatedSVD(_rank, random_state=0).fit(self.similarity_)
            dense = svd.inverse_transform(svd.transform(self.similarity_))
            self.similarity_ = sp.csr_matrix(np.maximum(dense, 0).astype(np.float32))
            return self

        CoVisitationRecommender.fit = low_rank_fit  # type: ignore[method-assign]
        try:
            started = time.perf_counter()
            _, precision, baseline, cases = train_in_memory(events, TrainConfig())
        finally:
            CoVisitationRecommender.fit = original_fit  # type: ignore[method-assign]
        rows.append({"model": f"TruncatedSVD rank {rank} (conditional)",
                     "popularity_weight": 0.1, "precision@5": precision, "baseline@5": baseline,
                     "ratio": precision / baseline if baseline else None, "clicks": cases,
                     "seconds": time.perf_counter() - started})
    return rows


# ---- inference ---------------------------------------------------------------------------

def _random_version(directory: str, items: int, rng: np.random.Generator) -> str:
    import joblib
    import scipy.sparse as sp

    from transforms.recommend import store
    from transforms.recommend.estimator import CoVisitationRecommender, to_onnx

    path = os.path.join(directory, f"items{items}", "v1")
    os.makedirs(path)
    nnz = items * 60
    counts = sp.csr_matrix((rng.random(nnz), (rng.integers(0, items, nnz),
                                               rng.integers(0, items, nnz))), shape=(items, items))
    model = CoVisitationRecommender().fit(counts, popularity=rng.random(items))
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    store.write_version(path, {
        store.ITEMS: json.dumps([f"/p/{i}" for i in range(items)]).encode(),
        store.MODEL_FILES["sklearn"]: buffer.getvalue(),
        store.MODEL_FILES["onnx"]: to_onnx(model)}, {})
    return path


def inference(item_counts: list[int], batches: list[int]) -> list[dict[str, Any]]:
    from transforms.recommend.handler import load_version
    from transforms.recommend.profile import Query

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for items in item_counts:
            path = _random_version(directory, items, rng)
            for model_format in ("sklearn", "onnx"):
                scorer = load_version(path, model_format).scorer
                for batch in batches:
                    queries = [Query(tuple(f"/p/{j}" for j in rng.integers(0, items, 10)),
                                     tuple(rng.random(10)), (f"/p/{rng.integers(0, items)}",))
                               for _ in range(batch)]
                    vectors = scorer.vectors(queries)
                    repeats = max(5, 4000 // batch)
                    started = time.perf_counter()
                    for _ in range(repeats):
                        scorer.predict(vectors)
                    predict = (time.perf_counter() - started) / repeats
                    started = time.perf_counter()
                    for _ in range(repeats):
                        scorer.recommend(queries, 5)
                    whole = (time.perf_counter() - started) / repeats
                    rows.append({"items": items, "format": model_format, "batch": batch,
                                 "score us/click": predict * 1e6 / batch,
                                 "handler us/click": whole * 1e6 / batch,
                                 "batch ms": whole * 1e3})
    return rows


# ---- the stream: producer and consumer processes ----------------------------------------

def _clicks(users: int, seed: int) -> list[tuple[str, str]]:
    """(user, page) in the order the planted generator's users click."""
    return [(e["user_id"], e["page"]) for e in PlantedEvents(seed=seed + 1, users=users).events()]


def _produce(servers: str, topic: str, rate: Optional[float], duration: Optional[float],
             count: Optional[int], users: int, seed: int, out: Any) -> None:
    """Child: send clicks (live event times), put {(user, event time): send time} on ``out``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks=1,
                             linger_ms=5 if rate else 50, batch_size=256 * 1024)
    producer.partitions_for(topic)
    clicks = _clicks(users, seed)
    sent: dict[tuple[str, str], float] = {}
    started = time.time()
    total = count if count is not None else int(rate * duration)  # type: ignore[operator]
    last_ms = 0
    for i in range(total):
        if rate:
            due = started + i / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)  # pacing the producer against the wall clock
        user, page = clicks[i % len(clicks)]
        now = time.time()
        ms = max(int(now * 1000), last_ms + 1)  # unique event times (to the ms)
        last_ms = ms
        seconds = ms / 1000
        producer.send(topic, json.dumps({"user_id": user, "action": "page_view", "page": page,
                                         "timestamp": seconds}).encode())
        sent[(user, utc_iso(seconds))] = now
    producer.flush()
    out.put({"sent": sent, "started": started, "finished": time.time()})


def _consume(servers: str, topic: str, expected: int, timeout: float, out: Any,
             ready: Any) -> None:
    """Child: read recommendations, put {(user, event time): receive time} on ``out``."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest",
                             consumer_timeout_ms=200, session_timeout_ms=6000,
                             fetch_max_wait_ms=10)
    received: dict[tuple[str, str], float] = {}
    ready.set()
    deadline = time.time() + timeout
    while len(received) < expected and time.time() < deadline:
        for message in consumer:
            now = time.time()
            record = json.loads(message.value)
            received.setdefault((record["user_id"], record["event_timestamp"]), now)
            if len(received) >= expected:
                break
    consumer.close()
    out.put(received)


def _model(workdir: str, users: int, seed: int, formats: str) -> str:
    from beam_pipelines import train_recommender

    models = os.path.join(workdir, f"models-{users}-{seed}")
    if not os.path.exists(os.path.join(models, "LATEST")):
        events = os.path.join(workdir, f"planted-{users}-{seed}.jsonl")
        with open(events, "w", encoding="utf-8") as handle:
            for line in PlantedEvents(seed=seed, users=users).lines():
                handle.write(line + "\n")
        code = train_recommender.main(["--source=file", f"--input={events}",
                                       f"--output={models}", f"--model_formats={formats}"])
        if code:
            raise SystemExit(f"training the benchmark's model failed ({code})")
    return models


def _inference_metrics(result) -> dict[str, Any]:
    """RunInference's own timing, summed over model versions: per batch and per click."""
    found = result.metrics().query()["distributions"]
    latency = [m.committed for m in found
               if m.key.metric.name.endswith("inference_batch_latency_micro_secs")]
    sizes = [m.committed for m in found
             if m.key.metric.name.endswith("inference_request_batch_size")]
    micros = sum(d.sum for d in latency)
    batches = sum(d.count for d in latency)
    clicks = sum(d.sum for d in sizes)
    return {"batches": batches, "clicks": clicks,
            "mean batch ms": micros / batches / 1000 if batches else None,
            "max batch ms": max((d.max for d in latency), default=0) / 1000,
            "mean batch size": clicks / batches if batches else None,
            "ms per click": micros / clicks / 1000 if clicks else None}


def stream(mode: str, servers: str, models: str, model_format: str, rate: float,
           duration: float, clicks: int, users: int, seed: int, partitions: int,
           broker) -> dict[str, Any]:
    from beam_pipelines.recommendations import RECOMMENDATIONS

    context = multiprocessing.get_context("spawn")
    clicks_topic, recs_topic = f"clicks_{uuid.uuid4().hex[:8]}", f"recs_{uuid.uuid4().hex[:8]}"
    broker.create_topic(clicks_topic, partitions)
    broker.create_topic(recs_topic, 1)
    produced, consumed, ready = context.Queue(), context.Queue(), context.Event()
    total = int(rate * duration) if mode == "latency" else clicks
    if mode == "throughput":  # the backlog first
        producer = context.Process(target=_produce, args=(
            servers, clicks_topic, None, None, total, users, seed, produced))
        producer.start()
        sent_info = produced.get()
        producer.join()
    flags = ["--source=kafka", f"--bootstrap_servers={servers}", f"--topic={clicks_topic}",
             "--start_at=earliest", f"--model={models}", f"--model_format={model_format}",
             "--sink=kafka", f"--output={recs_topic}",
             "--kafka_config=receive_message_max_bytes=1073741824"]
    launched_at = time.time()
    run = RECOMMENDATIONS.launch(flags)
    try:
        if mode == "latency":  # warm-up: one click through the whole pipeline
            warm = context.Process(target=_produce, args=(
                servers, clicks_topic, None, None, 1, users, seed + 99, produced))
            waiter = context.Process(target=_consume, args=(
                servers, recs_topic, 1, 120.0, consumed, ready))
            waiter.start()
            warm.start()
            produced.get()
            warm.join()
            if not consumed.get():
                raise SystemExit("the pipeline produced nothing within 120 s")
            waiter.join()
            ready.clear()
        consumer = context.Process(target=_consume, args=(
            servers, recs_topic, total + (1 if mode == "latency" else 0),
            duration + 120.0 if mode == "latency" else 600.0, consumed, ready))
        consumer.start()
        ready.wait(60)
        if mode == "latency":
            producer = context.Process(target=_produce, args=(
                servers, clicks_topic, rate, duration, None, users, seed, produced))
            producer.start()
            sent_info = produced.get()
            producer.join()
        received = consumed.get()
        consumer.join()
        timing = _inference_metrics(run.result)
    finally:
        run.result.cancel()
    sent = sent_info["sent"]
    matched = [received[k] - sent[k] for k in sent if k in received]
    out: dict[str, Any] = {"mode": mode, "format": model_format, "clicks": len(sent),
                           "recommended": len(matched), "lost": len(sent) - len(matched),
                           "startup s": None, **{f"inference {k}": v for k, v in timing.items()}}
    if mode == "latency":
        matched.sort()
        pct = statistics.quantiles(matched, n=100) if len(matched) > 1 else matched * 99
        out.update({"rate": rate, "produced/s": len(sent) / max(
            sent_info["finished"] - sent_info["started"], 1e-9),
            "p50 ms": pct[49] * 1000, "p90 ms": pct[89] * 1000, "p99 ms": pct[98] * 1000,
            "max ms": matched[-1] * 1000 if matched else None})
        if timing.get("max batch ms") is not None and matched:
            out["rest p99 ms"] = pct[98] * 1000 - timing["mean batch ms"]
    else:
        times = sorted(received.values())
        span = times[-1] - times[0] if len(times) > 1 else 0.0
        out.update({"sustained clicks/s": (len(times) - 1) / span if span else None,
                    "drain s": span, "startup s": times[0] - launched_at if times else None})
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recommendations",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mode", default="quality,inference,latency,throughput",
                        help="Comma list of quality, inference, latency, throughput.")
    parser.add_argument("--users", type=int, default=2000,
                        help="Users of the planted events (quality, the served model).")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--items", default="500,2000,5000", help="Vocabulary sizes (inference).")
    parser.add_argument("--batches", default="1,8,64,512", help="Batch sizes (inference).")
    parser.add_argument("--formats", default="sklearn,onnx",
                        help="Model formats of the stream runs (latency, throughput).")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="Clicks/s (latency).")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds (latency).")
    parser.add_argument("--clicks", type=int, default=50_000, help="Backlog size (throughput).")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "beam-pipelines-recs-bench"))
    parser.add_argument("--json", default=None, help="Write the results as JSON here.")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    os.makedirs(args.workdir, exist_ok=True)
    results: dict[str, Any] = {"machine": machine()}
    print(f"machine: {results['machine']}", flush=True)
    if "quality" in modes:
        rows = quality(args.users, args.seed)
        results["quality"] = rows
        print(f"\nquality: planted events, {args.users} users, seed {args.seed}; target: ratio >= 2")
        print(_table(rows, ["model", "popularity_weight", "precision@5", "baseline@5", "ratio",
                            "clicks", "seconds"]), flush=True)
    if "inference" in modes:
        rows = inference([int(x) for x in args.items.split(",")],
                         [int(x) for x in args.batches.split(",")])
        results["inference"] = rows
        print("\ninference: the model handler per click (vectorise, score, top 5)")
        print(_table(rows, ["items", "format", "batch", "score us/click", "handler us/click",
                            "batch ms"]), flush=True)
    stream_modes = [m for m in modes if m in ("latency", "throughput")]
    if stream_modes:
        formats = [f.strip() for f in args.formats.split(",") if f.strip()]
        models = _model(args.workdir, args.users, args.seed, ",".join(sorted(set(formats))))
        rows = []
        with KafkaBroker() as broker:
            for mode in stream_modes:
                for model_format in formats:
                    row = stream(mode, broker.bootstrap_servers, models, model_format,
                                 args.rate, args.duration, args.clicks, args.users, args.seed,
                                 args.partitions, broker)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        results["stream"] = rows
        latency = [r for r in rows if r["mode"] == "latency"]
        if latency:
            print(f"\nlatency: {args.rate:g} clicks/s for {args.duration:g} s, Kafka in and out, "
                  f"local streaming runner; target p99 < {TARGET_P99 * 1000:.0f} ms")
            print(_table(latency, ["format", "clicks", "recommended", "lost", "produced/s",
                                   "p50 ms", "p90 ms", "p99 ms", "max ms",
                                   "inference mean batch ms", "inference max batch ms",
                                   "inference mean batch size", "inference ms per click",
                                   "rest p99 ms"]))
        backlog = [r for r in rows if r["mode"] == "throughput"]
        if backlog:
            print(f"\nthroughput: a backlog of {args.clicks} clicks; target >= "
                  f"{TARGET_THROUGHPUT:g} clicks/s")
            print(_table(backlog, ["format", "clicks", "recommended", "lost",
                                   "sustained clicks/s", "drain s", "startup s",
                                   "inference mean batch size", "inference ms per click"]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())

