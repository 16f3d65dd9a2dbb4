"""The user-event input contract, case by case."""

import json

import pytest

from transforms.parse import is_blank, parse_user_event
from transforms.validation import InvalidRecord, decode_json_object

pytestmark = pytest.mark.unit

BASE = {"user_id": "u1", "action": "page_view", "page": "/home", "timestamp": 1_733_000_000}


def event(**changes):
    obj = dict(BASE)
    for key, value in changes.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return json.dumps(obj).encode()


def parse(payload: bytes):
    return parse_user_event(decode_json_object(payload))


@pytest.mark.parametrize(
    "payload, whole_seconds",
    [
        (event(), 1_733_000_000),
        (event(user_id=7), 1_733_000_000),
        # JSON text a hair below a window boundary must not round up into the next window
        (b'{"user_id":"u","action":"a","page":"/p","timestamp":1733000299.9999999}', 1_733_000_299),
        (event(timestamp=1_733_000_000.5), 1_733_000_000),
        (event(timestamp="2024-12-01T00:00:00Z"), 1_733_011_200),
        (event(timestamp="2024-12-01T01:00:00+01:00"), 1_733_011_200),
        (event(timestamp="2024-11-30T23:59:59.999999+00:00"), 1_733_011_199),
        (event(timestamp="2000-01-01T00:00:00Z"), 946_684_800),
        (event(timestamp=946_684_800), 946_684_800),
        (event(extra={"nested": [1, 2]}, more="ignored"), 1_733_000_000),
        (b'{"user_id":"u","action":"a","page":"/p","timestamp":4102444799.9}', 4_102_444_799),
    ],
)
def test_valid_events(payload, whole_seconds):
    record, whole = parse(payload)
    assert whole == whole_seconds
    assert record.page in ("/home", "/p")


def test_integer_user_id_becomes_a_string():
    record, _ = parse(event(user_id=12))
    assert record.user_id == "12"


@pytest.mark.parametrize(
    "payload, code",
    [
        (b'{"user_id": "u1", "action": "a"', "invalid_json"),
        (b"\x00garbage\xff", "invalid_utf8"),
        (b'{"user_id": "\xff", "action": "a", "page": "/", "timestamp": 1733000000}', "invalid_utf8"),
        (b"[1, 2]", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"42", "not_an_object"),
        (event(page=...), "missing_field"),
        (event(user_id=...), "missing_field"),
        (event(action=...), "missing_field"),
        (event(timestamp=...), "missing_field"),
        (event(page=None), "null_field"),
        (event(page=""), "empty_field"),
        (event(action=""), "empty_field"),
        (event(user_id=""), "empty_field"),
        (event(user_id=True), "wrong_type"),
        (event(user_id=1.5), "wrong_type"),
        (event(user_id=["u"]), "wrong_type"),
        (event(page=3), "wrong_type"),
        (event(action={"a": 1}), "wrong_type"),
        (event(timestamp=True), "wrong_type"),
        (event(timestamp=[1]), "wrong_type"),
        (event(timestamp="yesterday"), "invalid_time"),
        (event(timestamp="1733000000"), "invalid_time"),
        (event(timestamp="2024-12-01T00:00:00"), "invalid_time"),  # no offset
        (event(timestamp="2024-12-01"), "invalid_time"),
        (event(timestamp=946_684_799), "out_of_range"),
        (event(timestamp=4_102_444_800), "out_of_range"),
        (event(timestamp="2100-01-01T00:00:00Z"), "out_of_range"),
        (event(timestamp="1999-12-31T23:59:59Z"), "out_of_range"),
        (event(timestamp=-5), "out_of_range"),
        (event(timestamp=10**40), "out_of_range"),
        (b'{"user_id":"u","action":"a","page":"/","timestamp":NaN}', "invalid_json"),
        (b'{"user_id":"u","action":"a","page":"/","timestamp":Infinity}', "invalid_json"),
        (b'{"user_id":"u","action":"a","page":"/","timestamp":1e999}', "out_of_range"),
    ],
)
def test_invalid_events_say_why(payload, code):
    with pytest.raises(InvalidRecord) as caught:
        parse(payload)
    assert caught.value.code == code
    assert str(caught.value)  # a reason a person can read


@pytest.mark.parametrize("line", [b"", b"   ", b"\t", b"\r"])
def test_blank_lines_are_recognised(line):
    assert is_blank(line)
