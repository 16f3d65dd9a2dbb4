"""A dead letter larger than its destination takes is truncated with a marker and the
original's hash, so the dead-letter path never fails the run: a 50 MB bad line to a Kafka
dead-letter topic, a 6 MB one to a directory."""

import base64
import hashlib
import json
import uuid

import pytest

from beam_pipelines import pageviews
from beam_pipelines.dead_letters import KafkaTopic, kafka_config, read_dead_letters, replay
from beam_pipelines.testing import SyntheticEvents
from beam_pipelines.testing.files import read_jsonl_dir
from transforms.records import DeadLetter
from transforms.sinks.dead_letter_sink import FILE_LIMIT_BYTES


def bad_lines():
    """Small bad lines that must come out of the dead-letter path untouched."""
    return [b'{"user_id": "u", "act', b"[1, 2, 3]", b"\xff\xfe not utf-8"]


def write_input(path, huge: bytes):
    generator = SyntheticEvents(seed=9)
    good = list(generator.payloads(200))
    path.write_bytes(b"\n".join(good[:100] + [huge] + bad_lines() + good[100:]) + b"\n")
    return sum(1 for _ in generator.events(200))


def assert_truncated(letter, huge, limit, reason_code="invalid_json"):
    marker = letter.origin["truncated"]
    assert marker["original_bytes"] == len(huge)
    assert marker["original_sha256"] == hashlib.sha256(huge).hexdigest()
    kept = letter.payload_bytes()
    assert huge.startswith(kept) and marker["kept_bytes"] == len(kept) > limit // 2
    assert letter.reason_code == reason_code and letter.origin["line"] == 101


@pytest.mark.integration
@pytest.mark.slow
def test_a_50_mb_bad_line_to_a_kafka_dead_letter_topic(tmp_path, kafka_broker, kafka_topic, capsys):
    topic = kafka_topic(prefix="dlt")
    huge = b'{"user_id": "u", "comment": "' + b"x" * 50_000_000  # never closed: invalid JSON
    valid = write_input(tmp_path / "events.jsonl", huge)
    code = pageviews.main(["--source=file", f"--input={tmp_path}/events.jsonl",
                           f"--bootstrap_servers={kafka_broker.bootstrap_servers}",
                           f"--dead_letter=kafka://{topic}", "--sink=jsonl",
                           f"--output={tmp_path}/out"])
    assert code == 0, capsys.readouterr().err
    assert sum(r["count"] for r in read_jsonl_dir(str(tmp_path / "out"))) == valid

    location = KafkaTopic(f"kafka://{topic}", kafka_config(kafka_broker.bootstrap_servers))
    raw = [value for _, _, value in location.lines()]
    assert max(len(value) for value in raw) <= (1 << 20)  # the producer's max_request_size
    letters = sorted(read_dead_letters([location]), key=lambda letter: letter.origin["line"])
    assert [letter.origin["line"] for letter in letters] == [101, 102, 103, 104]
    assert_truncated(letters[0], huge, 1 << 20)
    assert [letter.payload_bytes() for letter in letters[1:]] == bad_lines()
    assert all("truncated" not in letter.origin for letter in letters[1:])

    report = replay([location], str(tmp_path / "replay.jsonl"))
    assert (report.written, report.truncated) == (3, 1)  # a prefix is not replayed


@pytest.mark.integration  # a block over POOL_MIN_BYTES: parsed by worker processes
def test_an_oversized_letter_in_a_dead_letter_directory(tmp_path):
    huge = b"\x00\xff" * 3_000_000  # not UTF-8: a base64 payload
    write_input(tmp_path / "events.jsonl", huge)
    assert pageviews.main(["--source=file", f"--input={tmp_path}/events.jsonl",
                           f"--dead_letter={tmp_path}/dead"]) == 0
    rows = read_jsonl_dir(str(tmp_path / "dead"))
    assert max(len(json.dumps(row, ensure_ascii=False).encode()) for row in rows) <= FILE_LIMIT_BYTES
    letters = sorted((DeadLetter(**row) for row in rows), key=lambda letter: letter.origin["line"])
    assert letters[0].payload_encoding == "base64"
    base64.b64decode(letters[0].payload, validate=True)  # whole base64 quanta
    assert_truncated(letters[0], huge, FILE_LIMIT_BYTES, "invalid_utf8")
    assert [letter.payload_bytes() for letter in letters[1:]] == bad_lines()


@pytest.mark.integration
def test_the_limit_is_the_topics_max_message_bytes_when_it_is_smaller(tmp_path, kafka_broker,
                                                                       capsys):
    """A dead-letter topic created with max.message.bytes=100000: a 300 KB bad line, which
    the producer's 1 MiB limit alone would let through to be refused by the broker, is cut
    to what the topic takes."""
    from kafka.admin import KafkaAdminClient, NewTopic

    servers = kafka_broker.bootstrap_servers
    topic = f"small_dlt_{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "100000"})])
    finally:
        admin.close()
    huge = b'{"user_id": "u", "comment": "' + b"x" * 300_000  # never closed: invalid JSON
    write_input(tmp_path / "events.jsonl", huge)
    code = pageviews.main(["--source=file", f"--input={tmp_path}/events.jsonl",
                           f"--bootstrap_servers={servers}", f"--dead_letter=kafka://{topic}",
                           "--sink=jsonl", f"--output={tmp_path}/out"])
    assert code == 0, capsys.readouterr().err
    location = KafkaTopic(f"kafka://{topic}", kafka_config(servers))
    assert max(len(value) for _, _, value in location.lines()) <= 100_000
    letters = sorted(read_dead_letters([location]), key=lambda letter: letter.origin["line"])
    assert_truncated(letters[0], huge, 100_000)
    assert [letter.payload_bytes() for letter in letters[1:]] == bad_lines()
