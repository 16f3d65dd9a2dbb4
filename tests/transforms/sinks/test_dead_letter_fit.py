"""fit_dead_letter: a letter larger than the limit keeps a prefix of its payload that fits,
and origin.truncated with the original's size and SHA-256; WriteDeadLetters fits every
letter, in batches too."""

import hashlib
import json

import apache_beam as beam
import pytest

from beam_pipelines.testing.files import read_jsonl_dir
from transforms.records import DeadLetter, DeadLetterBatch
from transforms.sinks.dead_letter_sink import WriteDeadLetters, fit_dead_letter


@pytest.mark.unit
@pytest.mark.parametrize("payload", [
    b"x" * 2_000_000,
    ('"\\\x01é' * 400_000).encode(),  # characters JSON escapes to 2-6 bytes
    bytes(range(256)) * 8_000,  # base64
])
def test_fit_dead_letter_keeps_within_the_limit(payload):
    letter = DeadLetter.of("p", "parse", "bad", payload, {"source": "file", "line": 7}, "bad")
    for limit in (1 << 20, 100_000, 4_000):
        fitted = fit_dead_letter(letter, limit)
        assert len(json.dumps(fitted._asdict(), ensure_ascii=False).encode()) <= limit
        assert payload.startswith(fitted.payload_bytes())
        assert fitted.origin["truncated"]["original_sha256"] == hashlib.sha256(payload).hexdigest()
        assert fitted.origin["line"] == 7 and fitted.reason == "bad"
    small = DeadLetter.of("p", "parse", "bad", b"{}", {}, "bad")
    assert fit_dead_letter(small, 4_000) is small


@pytest.mark.unit
def test_letters_in_batches_are_fitted_too(tmp_path):
    big = DeadLetter.of("p", "parse", "bad", b"y" * 3_000_000, {"line": 1}, "bad")
    small = DeadLetter.of("p", "parse", "bad", b"z", {"line": 2}, "bad")
    with beam.Pipeline() as pipeline:
        (pipeline | beam.Create([DeadLetterBatch([big, small])])
         | WriteDeadLetters(str(tmp_path / "dead"), pipeline="p", streaming=False))
    rows = sorted(read_jsonl_dir(str(tmp_path / "dead")), key=lambda row: row["origin"]["line"])
    assert rows[0]["origin"]["truncated"]["original_bytes"] == 3_000_000
    assert rows[1] == small._asdict()
