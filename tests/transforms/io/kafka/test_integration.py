"""The Kafka connector against a real broker (``kafka_broker`` fixture), bounded reads as batch."""

from __future__ import annotations

import glob
import json
import time

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines import pageviews
from beam_pipelines.metrics import counter_total
from beam_pipelines.produce import send
from beam_pipelines.skeleton import user_events
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.kafka import committed_offsets
from beam_pipelines.testing.servers import free_port
from transforms.base.errors import SourceError
from transforms.io.kafka import PartitionRead, ReadFromKafka, WriteToKafka, client_config
from transforms.io.kafka import read as read_module
from transforms.io.kafka.records import NEVER
from transforms.io.kafka.watermark import WatermarkProvider
from transforms.io.synthetic.events import SyntheticEvents

pytestmark = pytest.mark.integration


def _consume_all(servers: str, topic: str, group: str | None = None) -> list:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False,
                             session_timeout_ms=6000)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        end = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning()
        records: list = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "could not read the topic back in 30s"
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
        return records
    finally:
        consumer.close()


def _produce_timed(servers: str, topic: str, messages: list[tuple[bytes, bytes, int]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    for key, value, millis in messages:
        producer.send(topic, key=key, value=value, timestamp_ms=millis, headers=[("n", key)])
    producer.flush()
    producer.close()


def test_bounded_reads_start_at_time_commits_and_write(kafka_broker, kafka_topic):
    """One pipeline: exact bounded read, a read from a timestamp, and a write with rejects."""
    servers = kafka_broker.bootstrap_servers
    topic, out = kafka_topic(4, "read"), kafka_topic(2, "write")
    t_a, t_b = 1_700_000_000_000, 1_700_000_600_000  # log times of batches A and B (ms)
    batch_a = [(f"k{i % 9}".encode(), f"a{i}".encode(), t_a + i) for i in range(300)]
    batch_b = [(f"k{i % 9}".encode(), f"b{i}".encode(), t_b + i) for i in range(200)]
    _produce_timed(servers, topic, batch_a + batch_b)

    def unserializable(value: bytes) -> bytes:
        if value == b"a13":
            raise ValueError("refusing a13")
        return value.upper()

    with beam.Pipeline() as p:
        everything = (p | "All" >> ReadFromKafka(
            servers, topic, start_at="earliest", stop_at="end", consumer_group="g_all",
            value_deserializer="utf-8")).records
        from_b = (p | "FromB" >> ReadFromKafka(servers, [topic], start_at=t_b / 1000,
                                                stop_at="end")).records
        assert_that(everything | "Values" >> beam.Map(lambda r: (r.key, r.value, r.headers)),
                    equal_to([(k, v.decode(), (("n", k),)) for k, v, _ in batch_a + batch_b]),
                    label="ExactlyEveryRecordOnce")
        assert_that(everything | "Meta" >> beam.Map(lambda r: (r.topic, r.timestamp_type)),
                    equal_to([(topic, 0)] * 500), label="TopicAndTimestampType")
        assert_that(from_b | "BValues" >> beam.Map(lambda r: r.value),
                    equal_to([v for _, v, _ in batch_b]), label="StartAtTimestamp")
        too_big = (p | "Big" >> beam.Create([b"x" * 2_000_000, b"small"])
                   | "WriteBig" >> WriteToKafka(servers, out))  # over max_request_size (1 MB)
        assert_that(too_big.dead_letters | "BigCodes" >> beam.Map(lambda d: d.reason_code),
                    equal_to(["rejected"]), label="RejectedDeadLettered")
        assert_that(too_big.written, equal_to([b"small"]), label="SmallWritten")
        first_50 = (p | "First50" >> ReadFromKafka(servers, topic, start_at="earliest",
                                                    max_records=50, validate=False)).records
        assert_that(first_50 | "Count50" >> beam.combiners.Count.Globally(), equal_to([50]),
                    label="MaxRecords")
        as_json = ReadFromKafka(servers, topic, start_at=t_b / 1000, stop_at="end",
                                value_deserializer="json", validate=False)
        parsed = p | "AsJson" >> as_json  # "b0", "b1"... are not JSON: all dead letters
        assert_that(parsed.records, equal_to([]), label="NoJsonParsed")
        assert_that(parsed.dead_letters
                    | beam.Map(lambda d: (d.reason_code, d.origin["topic"], d.payload[0])),
                    equal_to([("deserialize", topic, "b")] * 200), label="BadJsonDeadLettered")
        written = (from_b | "Raw" >> beam.Map(lambda r: r.value)
                   | WriteToKafka(servers, out, value_fn=unserializable, key_fn=lambda v: v[:2]))
        assert_that(written.dead_letters | beam.Map(lambda d: (d.reason_code, d.payload)),
                    equal_to([]), label="NoBRejected")
        rejected = (everything | "RawA" >> beam.Map(lambda r: r.value.encode())
                    | "Only a1x" >> beam.Filter(lambda v: v.startswith(b"a1") and len(v) == 3)
                    | "WriteA" >> WriteToKafka(servers, out, value_fn=unserializable))
        assert_that(rejected.dead_letters | "Codes" >> beam.Map(lambda d: (d.reason_code, d.payload)),
                    equal_to([("serialization", "a13")]), label="UnserializableDeadLettered")

    assert sorted(r.value for r in _consume_all(servers, out)) == sorted(
        [v.upper() for _, v, _ in batch_b] + [f"A1{i}".encode() for i in range(10) if i != 3]
        + [b"small"])
    committed = committed_offsets(servers, topic, "g_all")
    # every partition that had records is committed to its end (an empty one has nothing to commit)
    assert sum(v or 0 for v in committed.values()) == 500, committed


def _write_events(path, payloads: list[bytes]) -> None:
    with open(path, "wb") as handle:
        handle.write(b"".join(p.replace(b"\n", b" ") + b"\n" for p in payloads))


def _parquet_rows(directory) -> list[dict]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for path in sorted(glob.glob(f"{directory}/pageviews-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return sorted(rows, key=lambda r: (r["window_start"], r["page"]))


def _dead_letters(directory) -> list[tuple]:
    return read_jsonl(f"{directory}/dead_letters-*.jsonl")


def test_pageviews_from_kafka_equals_from_file_and_writes_back(kafka_broker, kafka_topic, tmp_path):
    """The "done when": same counts and dead letters from a 3-partition topic as from a file."""
    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(3, "user_events")
    payloads = list(SyntheticEvents(seed=7, rate=5.0, malformed=0.05).payloads(1500))
    payloads = [p for p in payloads if b"\n" not in p and p.strip()]
    _write_events(tmp_path / "events.jsonl", payloads)
    send(client_config(servers), topic, payloads, progress=False)

    common = ["--window_size=60", "--sink=parquet"]
    from_file = pageviews.run(common + ["--source=file", f"--input={tmp_path}/events.jsonl",
                                        f"--output={tmp_path}/file_out",
                                        f"--dead_letter={tmp_path}/file_dl"])
    from_kafka = pageviews.run(common + [
        "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
        "--start_at=earliest", "--stop_at=end", f"--output={tmp_path}/kafka_out",
        f"--dead_letter={tmp_path}/kafka_dl"])

    file_rows, kafka_rows = _parquet_rows(tmp_path / "file_out"), _parquet_rows(tmp_path / "kafka_out")
    assert kafka_rows == file_rows and sum(r["count"] for r in kafka_rows) > 1000
    file_dl, kafka_dl = _dead_letters(tmp_path / "file_dl"), _dead_letters(tmp_path / "kafka_dl")
    assert sorted((d["reason_code"], d["payload"]) for d in kafka_dl) == sorted(
        (d["reason_code"], d["payload"]) for d in file_dl)
    assert len(kafka_dl) > 20
    origins = {(d["origin"]["topic"], d["origin"]["partition"], d["origin"]["offset"])
               for d in kafka_dl}
    assert len(origins) == len(kafka_dl) and {o[0] for o in origins} == {topic}
    assert len({o[1] for o in origins}) == 3  # dead letters from every partition
    for result in (from_file, from_kafka):
        assert counter_total(result, "pageviews", "events_dead_lettered") == len(file_dl)

    # Results and dead letters back to topics: --sink=kafka, --dead_letter kafka://TOPIC.
    results, dlq = kafka_topic(2, "results"), kafka_topic(1, "dlq")
    pageviews.run(["--window_size=60", "--source=kafka", f"--bootstrap_servers={servers}",
                   f"--topic={topic}", "--start_at=earliest", "--stop_at=end", "--sink=kafka",
                   f"--output={results}", f"--dead_letter=kafka://{dlq}"])
    counted = sorted(((r := json.loads(m.value))["window_start"], r["page"], r["count"])
                     for m in _consume_all(servers, results))
    assert counted == sorted(
        (r["window_start"].strftime("%Y-%m-%dT%H:%M:%SZ"), r["page"], r["count"]) for r in file_rows)
    letters = [json.loads(m.value) for m in _consume_all(servers, dlq)]
    assert sorted(d["payload"] for d in letters) == sorted(d["payload"] for d in file_dl)
    assert all(d["origin"]["topic"] == topic for d in letters)


def test_resume_from_committed_offsets_into_postgres(kafka_broker, kafka_topic, postgres_dsn):
    """Run 1 stops midway (at a log time); run 2 resumes from the group's offsets."""
    import psycopg

    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(3, "resume")
    gen = SyntheticEvents(seed=3, rate=2.0, out_of_order=0.0)
    early = list(gen.events(400))  # event times 2024-01-01T00:00 .. 00:03:20
    late = [dict(e, timestamp=e["timestamp"] + 3600) for e in gen.events(300, first=400)]
    t_mid = 1_800_000_000_000
    messages = [(e["user_id"].encode(), json.dumps(e).encode(), t_mid - 10_000 + i)
                for i, e in enumerate(early)]
    messages += [(e["user_id"].encode(), json.dumps(e).encode(), t_mid + i)
                 for i, e in enumerate(late)]
    _produce_timed(servers, topic, messages)

    flags = ["--window_size=300", "--source=kafka", f"--bootstrap_servers={servers}",
             f"--topic={topic}", "--consumer_group=resume_group", "--start_at=committed",
             "--sink=postgres", f"--output={postgres_dsn}", "--output_table=page_views"]
    first = pageviews.run(flags + ["--stop_at=2027-01-15T08:00:00Z"])  # == t_mid
    assert counter_total(first, "pageviews", "events_parsed") == len(early)
    second = pageviews.run(flags + ["--stop_at=end"])
    assert counter_total(second, "pageviews", "events_parsed") == len(late)
    assert sum(v or 0 for v in committed_offsets(servers, topic, "resume_group").values()) == len(messages)

    expected: dict[tuple[int, str], int] = {}
    for e in early + late:
        key = (int(e["timestamp"]) // 300 * 300, e["page"])
        expected[key] = expected.get(key, 0) + 1
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM window_start)::bigint, page, count FROM page_views").fetchall()
    assert {(start, page): count for start, page, count in rows} == expected


def test_clear_errors_for_unreachable_broker_and_missing_topic(kafka_broker):
    port = free_port()
    with pytest.raises(SourceError) as info:
        pageviews.run(["--source=kafka", f"--bootstrap_servers=127.0.0.1:{port}",
                       "--topic=user_events", "--stop_at=end", "--security_protocol=SASL_PLAINTEXT",
                       "--sasl_mechanism=PLAIN", "--sasl_username=u", "--sasl_password=hunter2"])
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "user_events" in message
    assert "within 5s" in message  # the launch-time check's bounded wait, not a retry loop
    assert "hunter2" not in message and "'sasl_plain_password': '***'" in message
    with pytest.raises(SourceError, match=r"--topic: topic 'no_such_topic' does not exist on Kafka at "
                       + kafka_broker.bootstrap_servers):
        pageviews.run(["--source=kafka", f"--bootstrap_servers={kafka_broker.bootstrap_servers}",
                       "--topic=no_such_topic", "--stop_at=end"])


def test_streaming_read_picks_up_new_partitions(kafka_broker, kafka_topic, tmp_path):
    """Unbounded read (--streaming, stopped by --max_read_time): a partition added mid-run
    is discovered and read from its beginning; every record is counted or dead-lettered."""
    import threading

    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewPartitions

    from beam_pipelines.testing.kafka import wait_for_partitions

    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(2, "live")
    gen = SyntheticEvents(seed=11, rate=100.0, out_of_order=0.0, start=time.time() - 30)
    send(client_config(servers), topic, list(gen.payloads(400)), progress=False)
    out = tmp_path / "live"
    failures: list[BaseException] = []

    def add_partition_once_running() -> None:
        try:
            deadline = time.monotonic() + 30
            while not glob.glob(f"{out}/*.jsonl"):  # the pipeline has produced output
                assert time.monotonic() < deadline, "the streaming pipeline wrote nothing in 30s"
                time.sleep(0.05)  # polling for a file, with a deadline
            admin = KafkaAdminClient(bootstrap_servers=servers)
            admin.create_partitions({topic: NewPartitions(3)})
            admin.close()
            wait_for_partitions(servers, topic, 3)
            producer = KafkaProducer(bootstrap_servers=servers, acks="all")
            for payload in gen.payloads(100, first=400):
                producer.send(topic, value=payload, partition=2)
            producer.flush()
            producer.close()
        except BaseException as exc:  # re-raised in the test thread
            failures.append(exc)

    helper = threading.Thread(target=add_partition_once_running)
    helper.start()
    result = pageviews.run([
        "--streaming", "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
        "--start_at=earliest", "--max_read_time=7", "--kafka_discovery_interval=0.5",
        "--idle_timeout=2", "--window_size=5", "--sink=jsonl", f"--output={out}"])
    helper.join(timeout=30)
    assert not failures, failures
    parsed = counter_total(result, "pageviews", "events_parsed")
    late = counter_total(result, "pageviews", "late_events_dropped")
    rows = read_jsonl(f"{out}/*.jsonl")
    final = sum(r["count"] for r in rows if r["is_final"])
    assert parsed == 500, parsed  # the 100 events of the new partition were read too
    assert final + late == 500, (final, late)  # each counted once, or dead-lettered as late


class _Finalizer:
    """Stands in for Beam's BundleFinalizerParam: keeps callbacks until the test finalizes."""

    def __init__(self) -> None:
        self.callbacks: list = []

    def register(self, callback) -> None:
        self.callbacks.append(callback)


def test_sdf_splits_checkpoints_and_commits_only_after_finalization(kafka_broker, kafka_topic):
    """Drive the reader DoFn directly: a split mid-read and repeated checkpoints read every
    offset exactly once, and the group's offset moves only when the bundle is finalized."""
    from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker

    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(1, "split")
    _produce_timed(servers, topic, [(b"k", b"v%d" % i, 1_700_000_000_000 + i) for i in range(1000)])
    config = client_config(servers, extra={"max_poll_records": 150})
    reader = read_module._ReadPartitionFn(config, "split_group", True, "log_time", 200, 0.0)
    reader.setup()
    try:
        def invoke(read, restriction, split_after=None):
            tracker = ThreadsafeRestrictionTracker(read_module._KafkaOffsetTracker(restriction))
            watermark = WatermarkProvider().create_watermark_estimator(
                WatermarkProvider().initial_estimator_state(read, restriction))
            finalizer, offsets, split = _Finalizer(), [], None
            for value in reader.process(read, finalizer, RestrictionTrackerView(tracker), watermark):
                offsets.append(value.value.offset)
                if split_after is not None and len(offsets) == split_after:
                    split = tracker.try_split(0.5)
            tracker.check_done()
            deferred = tracker.deferred_status()
            return offsets, split, deferred, finalizer

        # bounded: split the range while reading it, then read the residual (and split it too)
        read = PartitionRead(topic, 0, 0, 1000)
        first, (primary, residual), _, _ = invoke(read, OffsetRange(0, 1000), split_after=100)
        assert primary.stop == residual.start and first == list(range(primary.stop))
        second, (_, rest), _, _ = invoke(read, residual, split_after=10)
        third, _, _, _ = invoke(read, rest)
        assert first + second + third == list(range(1000))

        # unbounded: every invocation checkpoints (max_invocation_seconds=0) and resumes
        read = PartitionRead(topic, 0, 0, NEVER)
        restriction, offsets, invocations = OffsetRange(0, NEVER), [], 0
        while len(offsets) < 1000:
            invocations += 1
            assert invocations < 200, "the reader makes no progress"
            got, _, deferred, finalizer = invoke(read, restriction)
            offsets += got
            assert deferred is not None, "an unbounded read must defer its remainder"
            restriction = deferred[0]  # the residual range, from defer_remainder()
            if got:
                assert committed_offsets(servers, topic, "split_group")[0] in (None, got[0])
                for callback in finalizer.callbacks:  # the runner finalizes the bundle
                    callback()
                reader._committer.flush()  # unbounded reads commit on a background thread
                assert committed_offsets(servers, topic, "split_group")[0] == got[-1] + 1
        assert offsets == list(range(1000)) and invocations > 2
    finally:
        reader.teardown()


def test_producer_creates_the_topic_and_sends_synthetic_events_or_a_file(kafka_broker, tmp_path):
    from beam_pipelines import produce

    servers = kafka_broker.bootstrap_servers
    sent = produce.run([f"--bootstrap_servers={servers}", "--topic=produced", "--partitions=3",
                        "--count=120", "--malformed=0.25", "--seed=5", "--no_progress"])
    messages = _consume_all(servers, "produced")
    assert sent == 120 and len(messages) == 120
    assert len({m.partition for m in messages}) == 3  # keyed by user_id over 3 partitions
    expected = list(SyntheticEvents(seed=5, malformed=0.25).payloads(120))
    # the same seed gives the same malformed inputs (sent without a key), whatever --start
    assert sum(1 for m in messages if m.key is None) == sum(
        1 for p in expected if produce._key_of(p) is None) > 0

    _write_events(tmp_path / "in.jsonl", [b'{"user_id": "u1"}', b"not json"])
    assert produce.run([f"--bootstrap_servers={servers}", "--topic=produced",
                        f"--input={tmp_path}/in.jsonl", "--no_progress"]) == 2
    assert len(_consume_all(servers, "produced")) == 122
    assert produce.main([f"--bootstrap_servers={servers}", "--topic=missing_topic",
                         "--count=1", "--no_progress"]) == 2  # one line on stderr, exit 2


def test_bounded_read_in_batches_reads_the_same_records_as_one_by_one(kafka_broker, kafka_topic):
    """``ReadFromKafka(batches=True)``: one KafkaBatch per poll holding exactly the records
    (offsets, keys, values, timestamps, headers) the per-record read gives, each batch
    timestamped at its earliest record; a value deserializer rejects the same records."""
    from beam_pipelines.testing.collect import collect

    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(3, "batches")
    t0 = 1_700_000_000_000
    messages = [(f"k{i % 7}".encode(), f"v{i}".encode(), t0 + (i * 37) % 1000) for i in range(900)]
    _produce_timed(servers, topic, messages)

    def picky(value: bytes) -> bytes:
        if value.endswith(b"3"):
            raise ValueError(f"no values ending in 3: {value!r}")
        return value

    def fields(record) -> tuple:
        return (record.topic, record.partition, record.offset, record.timestamp,
                record.timestamp_type, record.key, record.value, record.headers)

    def stamped(record, t=beam.DoFn.TimestampParam):
        return fields(record), t.micros

    def unbatched(batch, t=beam.DoFn.TimestampParam):
        return [fields(r) for r in batch.records()], t.micros

    def letter(d) -> tuple:
        return (d.reason, d.reason_code, d.payload, json.dumps(d.origin, sort_keys=True))

    with beam.Pipeline() as p:
        reads = {}
        for batches in (False, True):
            for deserializer in ("bytes", picky):
                name = f"{'Batches' if batches else 'Records'}{'Picky' if callable(deserializer) else ''}"
                read = ReadFromKafka(servers, topic, start_at="earliest", stop_at="end",
                                     value_deserializer=deserializer, batches=batches,
                                     validate=False)
                out = p | name >> read
                shown = out.records | f"Show{name}" >> beam.Map(unbatched if batches else stamped)
                reads[name] = (collect(shown), collect(out.dead_letters | f"Letter{name}"
                                                       >> beam.Map(letter)))

    records, _ = reads["Records"]
    batches, _ = reads["Batches"]
    one_by_one = sorted(r for r, _ in records.items)
    assert len(one_by_one) == 900 and len({(r[1], r[2]) for r in one_by_one}) == 900
    assert all(micros == round(r[3] * 1_000_000) for r, micros in records.items)
    in_batches = sorted(r for rs, _ in batches.items for r in rs)
    assert in_batches == one_by_one
    assert sorted(v for *_, v, _ in one_by_one) == sorted(v for _, v, _ in messages)
    assert max(len(rs) for rs, _ in batches.items) > 1  # polls of several records
    for rs, micros in batches.items:
        assert rs and len({(r[0], r[1]) for r in rs}) == 1  # one partition per batch
        offsets = [r[2] for r in rs]
        assert offsets == sorted(offsets)
        assert micros == round(min(r[3] for r in rs) * 1_000_000)  # its earliest record

    picky_records, picky_letters = reads["RecordsPicky"]
    picky_batches, picky_batch_letters = reads["BatchesPicky"]
    kept = sorted(r for r, _ in picky_records.items)
    assert sorted(r for rs, _ in picky_batches.items for r in rs) == kept
    assert len(kept) == 900 - 90
    assert sorted(picky_batch_letters.items) == sorted(picky_letters.items)
    assert len(picky_letters.items) == 90
    assert {d[1] for d in picky_letters.items} == {"deserialize"}


def _final_counts(directory) -> dict[tuple[str, str], int]:
    """(window_start, page) -> the count of its last pane (panes accumulate)."""
    final: dict[tuple[str, str], int] = {}
    for path in glob.glob(f"{directory}/**/*.jsonl", recursive=True):
        with open(path, encoding="utf-8") as handle:
            for row in map(json.loads, filter(str.strip, handle)):
                key = (row["window_start"], row["page"])
                final[key] = max(final.get(key, 0), row["count"])
    return final


def _all_dead_letters(directory) -> list[tuple]:
    letters = read_jsonl(f"{directory}/**/*.jsonl")
    return sorted((d["reason"], d["reason_code"], d["payload"], d["payload_encoding"],
                   json.dumps(d["origin"], sort_keys=True)) for d in letters)


def test_streaming_pageviews_from_kafka_in_batches_equals_one_by_one(kafka_broker, kafka_topic,
                                                                     tmp_path, monkeypatch):
    """A live run (--streaming, stopped by --max_read_time) counts and dead-letters a topic
    with malformed events the same with --batch_engine=arrow (polls as batches) as with
    --batch_engine=records."""
    from transforms.parse import parse_user_event
    from transforms.validation import InvalidRecord, decode_json_object

    servers = kafka_broker.bootstrap_servers
    topic = kafka_topic(3, "live_batches")
    gen = SyntheticEvents(seed=17, rate=40.0, out_of_order=0.2, max_delay=5.0, malformed=0.06,
                          start=time.time() - 60)
    payloads = list(gen.payloads(600))
    payloads[3:3] = [b"", b"   ", b'{"user_id": 7, "action": "click",\n "page": "/x", '
                     b'"timestamp": ' + str(int(time.time()) - 30).encode() + b"}",
                     b'{"user_id": true, "action": "a", "page": "/x", "timestamp": 1}']
    send(client_config(servers), topic, payloads, progress=False)

    expected: dict[tuple[int, str], int] = {}
    rejected = 0
    for payload in payloads:
        if not payload.strip():
            continue
        try:
            event, second = parse_user_event(decode_json_object(payload))
        except InvalidRecord:
            rejected += 1
            continue
        key = (second // 10 * 10, event.page)
        expected[key] = expected.get(key, 0) + 1
    assert rejected > 20

    batched: list[str] = []  # the engines whose run parsed polls as batches

    class SpyParseBatches(user_events.ParseUserEventBatches):
        def expand(self, batches):
            batched.append(engine)
            return super().expand(batches)

    monkeypatch.setattr(user_events, "ParseUserEventBatches", SpyParseBatches)
    results = {}
    for engine in ("arrow", "records"):
        out, dead = tmp_path / f"out_{engine}", tmp_path / f"dead_{engine}"
        result = pageviews.run([
            "--streaming", "--source=kafka", f"--bootstrap_servers={servers}", f"--topic={topic}",
            "--start_at=earliest", "--max_read_time=4", "--idle_timeout=1",
            "--window_size=10", "--allowed_lateness=3600",  # nothing is ever too late
            "--sink=jsonl", f"--output={out}", f"--dead_letter={dead}",
            f"--batch_engine={engine}"])
        assert counter_total(result, "pageviews", "events_parsed") == sum(expected.values())
        results[engine] = (_final_counts(out), _all_dead_letters(dead))

    assert batched == ["arrow"]
    counts, letters = results["arrow"]
    assert results["arrow"] == results["records"]
    assert len(letters) == rejected
    assert {json.loads(d[4])["topic"] for d in letters} == {topic}
    from transforms.records import utc_iso

    assert counts == {(utc_iso(start), page): n for (start, page), n in expected.items()}
