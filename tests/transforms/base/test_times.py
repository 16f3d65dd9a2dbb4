"""The one time parser: every caller's floors, offsets and refusals, exactly as before it."""

from __future__ import annotations

import datetime as dt

import pytest

from transforms.base import times

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, seconds", [
    ("2024-01-01T00:00:00Z", 1_704_067_200.0),
    ("2024-01-01T00:00:00z", 1_704_067_200.0),
    ("2024-01-01T00:00:00+00:00", 1_704_067_200.0),
    ("2024-01-01T02:00:00+02:00", 1_704_067_200.0),
    ("2023-12-31T19:00:00-05:00", 1_704_067_200.0),
    ("2024-01-01T00:00:00.250Z", 1_704_067_200.25),
])
def test_iso_with_an_offset(text, seconds):
    moment = times.parse_iso(text)
    assert moment.tzinfo is not None
    assert times.epoch_seconds(moment) == seconds == moment.timestamp()


def test_a_time_without_offset_is_refused_unless_the_caller_takes_it_as_utc():
    with pytest.raises(times.NoOffset):
        times.parse_iso("2024-01-01T00:00:00")
    assert times.parse_iso("2024-01-01T00:00:00", naive_utc=True) == dt.datetime(
        2024, 1, 1, tzinfo=dt.timezone.utc)
    assert isinstance(times.NoOffset("x"), ValueError)  # callers catching ValueError see it


@pytest.mark.parametrize("text", ["yesterday", "", "2024-13-01T00:00:00Z", " 2024-01-01T00:00:00Z",
                                  "1704067200"])
def test_what_is_not_iso_8601_is_a_value_error(text):
    with pytest.raises(ValueError):
        times.parse_iso(text)


def test_the_whole_second_is_exact_where_a_float_would_round_up():
    moment = times.parse_iso("2024-01-01T00:04:59.999999+00:00")
    whole, micros = times.whole_and_micros(moment)
    assert (whole, micros) == (1_704_067_499, 999_999)
    before_epoch = times.parse_iso("1969-12-31T23:59:59.5Z")
    assert times.whole_and_micros(before_epoch) == (-1, 500_000)  # floor, micros >= 0


def test_the_ends_of_the_datetime_range_stay_exact():
    first = times.parse_iso("0001-01-01T00:00:00+01:00")
    assert times.whole_and_micros(first) == (-62_135_600_400, 0)


def test_every_caller_uses_it_with_its_own_words():
    """The pipelines' contract, the flags, Pub/Sub attributes and quality rules agree."""
    from transforms.io.eventhubs.rules import parse_time as eventhubs_time
    from transforms.io.kafka.rules import parse_time as kafka_time
    from transforms.io.pubsub.serde import timestamp_seconds
    from transforms.quality import event_seconds
    from transforms.validation import InvalidRecord, event_time

    text = "2024-01-01T02:00:00.5+02:00"
    assert kafka_time(f" {text} ") == eventhubs_time(text).timestamp() == 1_704_067_200.5
    assert timestamp_seconds(text) == event_seconds(text) == 1_704_067_200.5
    assert timestamp_seconds("1704067200500") == 1_704_067_200.5  # epoch milliseconds
    assert event_time({"t": text}, "t") == (1_704_067_200.5, 1_704_067_200)
    assert kafka_time("2024-01-01T00:00:00") == 1_704_067_200.0  # flags: naive is UTC
    assert event_seconds("2024-01-01T00:00:00") is None  # data: naive is refused
    with pytest.raises(InvalidRecord, match="has no timezone offset") as info:
        event_time({"t": "2024-01-01T00:00:00"}, "t")
    assert info.value.code == "invalid_time"
    with pytest.raises(InvalidRecord, match="is not epoch seconds or an ISO-8601 time") as info:
        event_time({"t": "soon"}, "t")
    assert info.value.code == "invalid_time"
    with pytest.raises(InvalidRecord, match="is out of range") as info:
        event_time({"t": "0001-01-01T00:00:00+01:00"}, "t")
    assert info.value.code == "out_of_range"
