"""Kafka connector pieces that need no broker: flags, validation, watermarks, shares."""

from __future__ import annotations

import pickle

import pytest
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp

from beam_pipelines import options as opts
from beam_pipelines.wiring import kafka as wiring
from transforms.base.errors import ConfigError
from transforms.io import kafka as k
from transforms.io.kafka import offsets, rules
from transforms.io.kafka.records import NEVER
from transforms.io.kafka.watermark import WatermarkProvider

pytestmark = pytest.mark.unit


def parse(*flags):
    return opts.parse(list(flags), [opts.IOOptions], prog="test")


def test_flags_parse_and_bad_values_name_the_flag():
    options = parse("--source=kafka", "--bootstrap_servers=h1:9092,h2:9093",
                    "--topic=a,b", "--topic", "c", "--topic=a", "--start_at=2024-01-01T00:00:00Z",
                    "--stop_at=end", "--kafka_config", "request_timeout_ms=1234",
                    "--security_protocol=SASL_SSL", "--sasl_mechanism=PLAIN",
                    "--sasl_username=$ConnectionString", "--sasl_password=s3cret")
    read = wiring.read_from_options(options)
    assert read._topics == ["a", "b", "c"]
    assert read.bounded and read._start_at == 1704067200.0 and read._stop_at == "end"
    config = wiring.config_from_options(options)
    assert config["request_timeout_ms"] == 1234 and config["sasl_plain_password"] == "s3cret"
    assert config["bootstrap_servers"] == ["h1:9092", "h2:9093"]
    assert "s3cret" not in str(rules.redact(config))

    bad = [
        (["--start_at=yesterday"], "--start_at: expected earliest|latest|committed or an ISO"),
        (["--stop_at=latest"], "--stop_at: expected end|never or an ISO"),
        (["--topic=bad topic"], "--topic: expected a topic name"),
        (["--security_protocol=TLS"], "--security_protocol: expected one of PLAINTEXT"),
        (["--kafka_config=sasl_plain_password"], "--kafka_config: expected KEY=VALUE"),
        (["--max_records=0"], "--max_records: expected a whole number > 0"),
    ]
    for flags, message in bad:
        with pytest.raises(ConfigError) as info:
            parse(*flags)
        assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(ConfigError, match="--bootstrap_servers: expected HOST:PORT"):
        wiring.read_from_options(parse("--bootstrap_servers=nohost", "--topic=t"))
    with pytest.raises(ConfigError, match="--topic: expected one or more topic names"):
        wiring.read_from_options(parse("--bootstrap_servers=h:1"))
    with pytest.raises(ConfigError, match="--start_at: committed needs --consumer_group"):
        wiring.read_from_options(parse("--topic=t", "--start_at=committed"))
    with pytest.raises(ConfigError, match="--output: expected the topic"):
        wiring.sink_from_options(parse("--sink=kafka"), pipeline="p", streaming=False)
    with pytest.raises(ConfigError) as info:  # a bad pair with a secret: the secret is redacted
        parse("--kafka_config=ssl password=hunter2")
    assert "hunter2" not in str(info.value) and "ssl password=***" in str(info.value)


def test_constructor_validation():
    with pytest.raises(ConfigError, match="value_deserializer: expected bytes|utf-8|json"):
        k.ReadFromKafka("h:1", "t", value_deserializer="avro")
    with pytest.raises(ConfigError, match="--stop_at"):
        k.ReadFromKafka("h:1", "t", stop_at="tomorrow")
    with pytest.raises(ConfigError, match="--output: expected a Kafka topic name"):
        k.WriteToKafka("h:1", "no spaces allowed")
    assert not k.ReadFromKafka("h:1", "t").bounded
    assert k.ReadFromKafka("h:1", "t", max_read_time=5).bounded
    assert k.ReadFromKafka("h:1", "t", max_records=5).bounded


def test_shares_and_event_time():
    assert offsets.shares(10, 3) == [4, 3, 3] and sum(offsets.shares(7, 7)) == 7
    assert offsets.allot(50, [100, 100, 100, 0]) == [17, 17, 16, 0]  # never waits on an empty one
    assert offsets.allot(10, [2, 100, 0]) == [2, 8, 0]
    assert offsets.allot(10, [1, 1, 1]) == [4, 3, 3]  # fewer than asked: the rest is waited for
    record = k.KafkaRecord("t", 0, 5, 99.0, 0, None, b'{"timestamp": 12.5}', ())
    assert k.json_event_time()(record) == 12.5
    assert k.json_event_time()(record._replace(value=b"garbage")) == 99.0
    raw = k.to_raw_record(record)
    assert raw.origin == {"source": "kafka", "topic": "t", "partition": 0, "offset": 5}


def test_partition_watermark_advances_and_idles():
    read = k.PartitionRead("t", 0, 0, NEVER, None, max_delay=2.0, idle_timeout=10.0)
    estimator = WatermarkProvider().create_watermark_estimator(
        WatermarkProvider().initial_estimator_state(read, None))
    assert estimator.current_watermark() == Timestamp(micros=MIN_TIMESTAMP.micros)
    estimator.record(Timestamp.of(100), now=1000.0)
    estimator.record(Timestamp.of(90), now=1000.5)  # out of order: never moves back
    assert estimator.current_watermark() == Timestamp.of(98)
    estimator.idle(now=1005.0)  # idle less than idle_timeout: held
    assert estimator.current_watermark() == Timestamp.of(98)
    estimator.idle(now=1030.5)  # idle 30 s: event time assumed to have kept pace
    assert estimator.current_watermark() == Timestamp.of(128)
    # the state alone rebuilds the estimator (a runner resuming a checkpoint)
    again = WatermarkProvider().create_watermark_estimator(estimator.get_estimator_state())
    assert again.current_watermark() == Timestamp.of(128)


def test_caught_up_partition_polls_again_soon_then_backs_off_until_records_come():
    """A live partition is caught up between two producer batches: it must look again
    within milliseconds (a fixed 0.1 s put 50 ms on the median record), while an idle
    one backs off to IDLE_RESUME and each partition keeps its own wait."""
    from transforms.io.kafka.read import _ReadPartitionFn
    from transforms.io.kafka.records import IDLE_FIRST, IDLE_RESUME

    fn = _ReadPartitionFn({}, None, False, "log_time", 100, 1.0)
    waits = [fn._idle_wait(("t", 0)) for _ in range(12)]  # doubling reaches IDLE_RESUME
    assert waits[0] == IDLE_FIRST
    assert waits == sorted(waits) and waits[-1] == waits[-2] == IDLE_RESUME
    assert fn._idle_wait(("t", 1)) == IDLE_FIRST
    fn._idle_waits.pop(("t", 0))  # what a poll with records does
    assert fn._idle_wait(("t", 0)) == IDLE_FIRST
    assert pickle.loads(pickle.dumps(fn))._idle_wait(("t", 1)) <= IDLE_RESUME
