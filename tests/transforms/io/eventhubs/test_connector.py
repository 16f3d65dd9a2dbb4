"""ReadFromEventHubs / WriteToEventHubs against the emulator, checkpoints in Azurite."""

from __future__ import annotations

import json
import logging
import uuid

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

from beam_pipelines import pageviews
from beam_pipelines.options import parse
from beam_pipelines.options.eventhubs import EventHubsOptions, redact
from beam_pipelines.testing import SyntheticEvents
from beam_pipelines.testing.emulators.eventhubs import send_events
from beam_pipelines.testing.files import read_jsonl_dir, window_counts
from beam_pipelines.wiring.eventhubs import source_from_options
from transforms.base.errors import ConfigError
from transforms.io.eventhubs import ReadFromEventHubs, WriteToEventHubs

pytestmark = pytest.mark.integration


send = send_events


def test_bounded_read_checkpoint_resume_and_write_round_trip(eventhubs_emulator, eventhub, azurite):
    conn = eventhubs_emulator.connection_string
    source, target = eventhub(partitions=4, prefix="in"), eventhub(partitions=2, prefix="out")
    container = f"ckpt-{uuid.uuid4().hex[:12]}"
    first = [json.dumps({"n": n, "device": f"d{n % 5}"}).encode() for n in range(40)]
    send(conn, source, first, partitions=4)

    with beam.Pipeline() as pipeline:
        records = (pipeline | "Read" >> ReadFromEventHubs(
            conn, source, stop_at="end", checkpoint_store=azurite,
            checkpoint_container=container)).records
        assert_that(records | beam.Map(lambda r: r.payload), equal_to(first), label="AllOnce")
        assert_that(
            records | beam.Map(lambda r: (r.origin["partition"], 1)) | beam.CombinePerKey(sum),
            equal_to([(str(p), 10) for p in range(4)]), label="PerPartition")
        assert_that(
            records | beam.Map(lambda r: tuple(sorted(r.origin))) | beam.Distinct(),
            equal_to([tuple(sorted(["source", "eventhub", "partition", "sequence_number", "offset",
                                    "enqueued_time"]))]), label="Origin")
        (records
         | beam.Map(lambda r: json.loads(r.payload))
         | "Write" >> WriteToEventHubs(conn, target, partition_key_field="device"))

    # Checkpoints: the last sequence number of each partition, in the blob store's layout.
    store = BlobCheckpointStore.from_connection_string(azurite, container)
    namespace = conn.split("sb://")[1].split(";")[0]
    points = store.list_checkpoints(namespace, source, "$Default")
    assert sorted((c["partition_id"], c["sequence_number"]) for c in points) == \
        [(str(p), 9) for p in range(4)]

    # A restarted reader resumes after its checkpoints: exactly the new events.
    second = [json.dumps({"n": n, "device": "late"}).encode() for n in range(40, 60)]
    send(conn, source, second, partitions=4)
    with beam.Pipeline() as pipeline:
        again = (pipeline | "Resume" >> ReadFromEventHubs(
            conn, source, stop_at="end", checkpoint_store=azurite,
            checkpoint_container=container)).records
        assert_that(again | beam.Map(lambda r: r.payload), equal_to(second), label="OnlyNew")
        written = (pipeline | "ReadBack" >> ReadFromEventHubs(conn, target, stop_at="end")).records
        assert_that(written | beam.Map(lambda r: json.loads(r.payload)),
                    equal_to([json.loads(b) for b in first]), label="RoundTrip")
        # Batching by partition key: one device's events all land in one partition.
        assert_that(
            written
            | beam.Map(lambda r: (json.loads(r.payload)["device"], r.origin["partition"]))
            | beam.Distinct() | beam.combiners.Count.PerKey(),
            equal_to([(f"d{i}", 1) for i in range(5)]), label="KeyedPartitions")


def test_pageviews_from_eventhubs_counts_like_from_a_file(eventhubs_emulator, eventhub, tmp_path):
    lines = [line for line in SyntheticEvents(seed=11, rate=2.0, malformed=0.05).payloads(400)
             if line.strip()]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    hub = eventhub(partitions=3, prefix="pageviews")
    send(eventhubs_emulator.connection_string, hub, lines, partitions=3)

    from_file, from_hub = tmp_path / "file", tmp_path / "hub"
    pageviews.run(["--source=file", f"--input={tmp_path}/events.jsonl", "--sink=jsonl",
                   f"--output={from_file}"])
    pageviews.run(["--source=eventhubs", f"--eventhubs_connection_string={eventhubs_emulator.connection_string}",
                   f"--eventhub={hub}", "--eventhubs_stop_at=end", "--sink=jsonl",
                   f"--output={from_hub}"])
    expected = window_counts(read_jsonl_dir(str(from_file), "pageviews"))
    assert expected and window_counts(read_jsonl_dir(str(from_hub), "pageviews")) == expected


SECRET = "s3cr3t-Key-Value=="
CONN = f"Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey={SECRET};UseDevelopmentEmulator=true"


def test_connection_strings_never_shown(eventhubs_emulator, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    assert SECRET not in redact(CONN) and "SharedAccessKey=***" in redact(CONN)
    bad = f"Endpoint=sb://x/;SharedAccessKeyName=k;SharedAcessKey={SECRET}"  # misspelt field
    with pytest.raises(ConfigError) as error:
        parse([f"--eventhubs_connection_string={bad}"], [EventHubsOptions], prog="t")
    assert "--eventhubs_connection_string" in str(error.value) and SECRET not in str(error.value)
    with pytest.raises(ConfigError, match="--eventhubs_start_at"):
        parse(["--eventhubs_start_at=yesterday"], [EventHubsOptions], prog="t")
    with pytest.raises(ConfigError, match="--eventhub:"):
        ReadFromEventHubs(CONN)  # no hub and no EntityPath
    options = parse(["--source=eventhubs", f"--eventhubs_connection_string={CONN}",
                     "--eventhub=h", "--eventhubs_max_events=5"], [EventHubsOptions], prog="t")
    assert source_from_options(options).bounded
    assert SECRET not in repr(options.view_as(EventHubsOptions).eventhubs_connection_string)

    # A real failure (unknown hub) through the CLI: one line, key redacted.
    emulator_conn = eventhubs_emulator.connection_string.replace("emulator-key", SECRET)
    code = pageviews.main(["--source=eventhubs", f"--eventhubs_connection_string={emulator_conn}",
                           "--eventhub=no-such-hub", "--eventhubs_stop_at=end"])
    captured = capsys.readouterr()
    assert code == 1, captured.err  # the running read looks the hub up: a failed run
    assert "error: " in captured.err and "no-such-hub" in captured.err
    assert SECRET not in captured.err + captured.out + caplog.text


def test_unbounded_read_on_the_local_streaming_runner(eventhubs_emulator, eventhub, tmp_path):
    import time

    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.testing.collect import collect
    from runners import prepare
    from transforms.io.eventhubs.checkpoints import FileCheckpoints

    conn = eventhubs_emulator.connection_string
    hub = eventhub(partitions=2, prefix="stream")
    send(conn, hub, [b"a%d" % i for i in range(10)], partitions=2)
    options = prepare(PipelineOptions(["--runner=DirectRunner", "--streaming"]))
    pipeline = beam.Pipeline(options=options)
    read = ReadFromEventHubs(conn, hub, checkpoint_store=f"file://{tmp_path}")
    assert not read.bounded
    got = collect((pipeline | read).records | beam.Map(lambda r: r.payload))
    result = pipeline.run()
    try:
        deadline = time.monotonic() + 60
        while len(got.items) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the collected output with a deadline
        send(conn, hub, [b"b%d" % i for i in range(6)], partitions=2)  # while it runs
        store = FileCheckpoints(str(tmp_path))
        namespace = conn.split("sb://")[1].split(";")[0]

        def checkpointed() -> list:
            points = [store.get(namespace, hub, "$Default", p) for p in ("0", "1")]
            return [p.sequence_number if p else None for p in points]

        while (len(got.items) < 16 or checkpointed() != [7, 7]) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        result.cancel()
    assert sorted(got.items) == sorted([b"a%d" % i for i in range(10)] + [b"b%d" % i for i in range(6)])
    assert checkpointed() == [7, 7]


def test_start_positions_and_max_events(eventhubs_emulator, eventhub):
    import datetime as dt

    from azure.eventhub import EventHubConsumerClient

    conn = eventhubs_emulator.connection_string
    hub = eventhub(partitions=1, prefix="positions")
    send(conn, hub, [b"e%d" % i for i in range(4)], partitions=1)
    client = EventHubConsumerClient.from_connection_string(conn, "$Default", eventhub_name=hub)
    with client:
        middle = client.get_partition_properties("0")["last_enqueued_time_utc"]
    send(conn, hub, [b"e%d" % i for i in range(4, 8)], partitions=1)
    after_first = (middle + dt.timedelta(milliseconds=1)).isoformat()

    with beam.Pipeline() as pipeline:
        def payloads(label, **kwargs):
            return ((pipeline | label >> ReadFromEventHubs(conn, hub, **kwargs)).records
                    | f"{label}Payload" >> beam.Map(lambda r: r.payload))

        assert_that(payloads("Seq", start_at="seq:3", max_events=2), equal_to([b"e3", b"e4"]),
                    label="FromSequenceNumber")
        assert_that(payloads("Time", start_at=after_first, stop_at="end"),
                    equal_to([b"e%d" % i for i in range(4, 8)]), label="FromEnqueuedTime")
        assert_that(payloads("Latest", start_at="latest", stop_at="end"), equal_to([]),
                    label="FromLatest")
        # --eventhubs_max_events alone means "at most": a partition with fewer ends when idle.
        assert_that(payloads("AtMost", max_events=100, idle_timeout=1.0),
                    equal_to([b"e%d" % i for i in range(8)]), label="AtMost")


def test_owner_level_keeps_one_reader_per_partition(eventhubs_emulator, eventhub):
    import threading
    import time

    from azure.eventhub import EventHubConsumerClient

    from transforms.base.errors import SourceError

    conn = eventhubs_emulator.connection_string
    hub = eventhub(partitions=1, prefix="owner")
    send(conn, hub, [b"o%d" % i for i in range(3)], partitions=1)
    # Another job owns the partition with owner level 5.
    owner_errors: list = []
    owner = EventHubConsumerClient.from_connection_string(conn, "$Default", eventhub_name=hub,
                                                          retry_total=0)
    thread = threading.Thread(target=owner.receive, args=(lambda _ctx, _event: None,), kwargs={
        "partition_id": "0", "owner_level": 5, "on_error": lambda _c, e: owner_errors.append(e)},
        daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while 5 not in eventhubs_emulator.receivers(hub, "0"):
            assert time.monotonic() < deadline, "the owner's receiver never attached"
            time.sleep(0.02)  # polling the emulator's state with a deadline
        with pytest.raises(SourceError, match="epoch"):
            with beam.Pipeline() as pipeline:
                pipeline | "Lower" >> ReadFromEventHubs(conn, hub, stop_at="end", owner_level=1)
        with beam.Pipeline() as pipeline:
            higher = (pipeline | "Higher" >> ReadFromEventHubs(conn, hub, stop_at="end",
                                                               owner_level=9)).records
            assert_that(higher | beam.Map(lambda r: r.payload), equal_to([b"o0", b"o1", b"o2"]))
        assert any("higher epoch of '9'" in str(e) for e in owner_errors)
    finally:
        owner.close()
        thread.join(10)
