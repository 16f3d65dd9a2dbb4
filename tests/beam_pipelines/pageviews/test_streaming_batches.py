"""Kafka polls as batches in streaming: the batched path decides, counts and dead-letters
exactly as the per-record path does.

* :func:`transforms.batches.parse_payloads` maps every row and every handed-over payload
  back to its payload index, whatever payloads hold newlines, are empty or blank.
* :class:`ParseUserEventBatches` on a RawBatch gives the valid events and dead letters
  (reasons, payloads, origins) that :func:`ParseUserEvents` gives on its records.
* Driven by TestStream on the local streaming runner, RawBatches through
  ``ParseUserEventBatches`` + ``CountPageViewTables`` give the same ON_TIME panes, final
  counts and late dead letters as RawRecords through ``ParseUserEvents`` +
  ``CountPageViews``; late records of one batch may fire one LATE pane together.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing import test_stream  # not by name: pytest would collect TestStream
from apache_beam.transforms.window import TimestampedValue
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines.pageviews import CountPageViews, CountPageViewTables
from beam_pipelines.testing.collect import collect
from runners.local_streaming.runner import LocalStreamingRunner
from tests.transforms.test_batches import json_line, reference
from transforms.batches import events_table, parse_json_block, parse_payloads, user_events
from transforms.io.synthetic.events import SyntheticEvents
from transforms.parse import (
    ParseUserEventBatches,
    ParseUserEvents,
    _ParseDoFn,
    _ParseRawBatchesDoFn,
    parse_user_event,
)
from transforms.records import DeadLetter, DeadLetterBatch, RawBatch, RawRecord, UserEvent
from transforms.sinks.dead_letter_sink import each_dead_letter, late_record_to_dead_letter
from transforms.validation import InvalidRecord, decode_json_object
from transforms.windowing import WindowConfig

pytestmark = pytest.mark.unit

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z, a window boundary
ORIGIN = {"source": "kafka", "topic": "events", "partition": 3}


def event(page: str, seconds: float, action: str = "page_view", user="u") -> bytes:
    return json.dumps({"user_id": user, "action": action, "page": page,
                       "timestamp": seconds}).encode()


def raw_batch(payloads: list[bytes], first_offset: int = 100) -> RawBatch:
    return RawBatch(list(payloads), dict(ORIGIN), "offset",
                    list(range(first_offset, first_offset + len(payloads))))


# ---- parse_payloads: payload indexes -------------------------------------------------

GOOD = [event(f"/p{i % 3}", T0 + 17 * i, user=f"u{i}") for i in range(8)]


def test_raw_batch_records_and_origins():
    batch = RawBatch([b"a", b"b"], {"source": "kafka", "topic": "t", "partition": 1}, "offset",
                     [41, 57])
    assert batch.origin_of(1) == {"source": "kafka", "topic": "t", "partition": 1, "offset": 57}
    assert batch.records() == [
        RawRecord(b"a", {"source": "kafka", "topic": "t", "partition": 1, "offset": 41}),
        RawRecord(b"b", {"source": "kafka", "topic": "t", "partition": 1, "offset": 57}),
    ]
    assert batch.origin == {"source": "kafka", "topic": "t", "partition": 1}  # not mutated


def _check_mapping(payloads: list[bytes]):
    """Every payload index is a row, handed over or blank (exactly one of them); rows map
    to the payload whose values they hold; handed-over payloads are the payloads as given."""
    parsed = parse_payloads(payloads)
    rows = parsed.lines.tolist()
    handed = [i for i, _ in parsed.handed_over]
    assert parsed.line_count == len(payloads)
    assert len(rows) == parsed.events.num_rows
    assert len(set(rows)) == len(rows) and len(set(handed)) == len(handed)
    assert not set(rows) & set(handed)
    assert handed == sorted(handed)
    for i, payload in parsed.handed_over:
        assert payload == payloads[i], (i, payload, payloads[i])
    for i, row in zip(rows, parsed.events.to_pylist(), strict=True):
        want = reference(payloads[i])
        assert want not in (None, "blank"), (i, payloads[i])
        assert (row["user_id"], row["action"], row["page"], row["event_second"]) == (
            want[0], want[1], want[2], want[4])
        assert math.isclose(row["timestamp"], want[3], rel_tol=1e-15, abs_tol=1e-6)
    # What is neither a row nor handed over was skipped as blank.
    skipped = set(range(len(payloads))) - set(rows) - set(handed)
    assert len(skipped) == parsed.blank
    assert all(not payloads[i].strip() for i in skipped)
    return parsed


def _decisions(payloads: list[bytes]) -> dict[int, str]:
    parsed = parse_payloads(payloads)
    decided = {i: "row" for i in parsed.lines.tolist()}
    decided.update({i: "handed" for i, _ in parsed.handed_over})
    for i in range(len(payloads)):
        decided.setdefault(i, "blank")
    return decided


@pytest.mark.parametrize(
    "payloads",
    [
        GOOD,
        [GOOD[0], b"", GOOD[1], b"   ", GOOD[2], b"\t", GOOD[3]],
        [b"", GOOD[0], b"\n", GOOD[1], b"", b""],
        [GOOD[0], GOOD[1].replace(b", ", b",\n"), GOOD[2], GOOD[3] + b"\n", GOOD[4],
         b"\n" + GOOD[5], GOOD[6] + b"\r\n", GOOD[7]],
        [b'{"user_id": 1, "action": "a", "page": "/x", "timestamp": 1704067200}', GOOD[0],
         b"", b"not json", GOOD[1], b'{"user_id": "u", "action": "a"}', b"\r", GOOD[2],
         b'{"user_id": "a\nb", "action": "a", "page": "/x", "timestamp": 1704067200}', GOOD[3]],
        [b"", b" ", b"\n"],
        [b"\n".join(GOOD[:3])],
        [],
    ],
    ids=["all-good", "empty-and-blank", "leading-empty", "newlines", "mixed", "nothing-valid",
         "one-multiline", "none"],
)
def test_parse_payloads_decides_each_payload_as_the_record_contract_does(payloads):
    """Each message is decoded on its own: a newline or a carriage return in it is JSON
    whitespace or a control character, as for the per-record parser, never a line break."""
    _check_mapping(payloads)
    want = {}
    for i, payload in enumerate(payloads):
        decided = reference(payload)
        want[i] = "blank" if decided == "blank" else ("handed" if decided is None else "row")
    got = _decisions(payloads)
    # A valid payload may be handed over (the per-record path then accepts it); an
    # invalid one never becomes a row, and blanks are blank on both paths.
    assert {i for i, d in want.items() if d == "blank"} == {i for i, d in got.items() if d == "blank"}
    assert all(got[i] == "handed" for i, d in want.items() if d == "handed")
    if payloads and all(b"\n" not in p and b"\r" not in p for p in payloads):
        block = parse_json_block(b"\n".join(payloads))
        assert _decisions(payloads) == {
            **{i: "row" for i in block.lines.tolist()},
            **{i: "handed" for i, _ in block.handed_over},
            **{i: "blank" for i in range(len(payloads))
               if i not in set(block.lines.tolist()) | {j for j, _ in block.handed_over}},
        }


def test_parse_payloads_rows_of_a_mixed_poll():
    payloads = [GOOD[0], b"", GOOD[1], b"  ", GOOD[2] + b"\n", GOOD[3], b"\t", GOOD[4],
                b'{"user_id": 7}']
    parsed = _check_mapping(payloads)
    assert parsed.lines.tolist() == [0, 2, 4, 5, 7]  # a trailing newline is JSON whitespace
    assert [i for i, _ in parsed.handed_over] == [8]
    assert parsed.blank == 3
    assert parsed.events.column("user_id").to_pylist() == ["u0", "u1", "u2", "u3", "u4"]


# ---- ParseUserEventBatches == ParseUserEvents on the batch's records -----------------

def run_batch_dofn(batches: list[RawBatch], fn: _ParseRawBatchesDoFn | None = None):
    """(UserEvent, second) pairs and dead letters the batched DoFn gives, in order."""
    fn = fn or _ParseRawBatchesDoFn("pageviews", "parse")
    fn.setup()
    valid, dead = [], []
    for batch in batches:
        tables = 0
        for out in fn.process(batch):
            if isinstance(out, beam.pvalue.TaggedOutput):
                assert out.tag == "dead_letters"
                assert isinstance(out.value, DeadLetterBatch)  # one element per poll
                dead.extend(each_dead_letter(out.value))
                continue
            tables += 1
            pairs = user_events(out.value)
            assert pairs, "an empty table is never emitted"
            assert out.timestamp.micros == min(s for _, s in pairs) * 1_000_000
            valid += pairs
        assert tables <= 1  # one table per batch
    return valid, dead


def run_record_dofn(batches: list[RawBatch]):
    fn = _ParseDoFn(parse_user_event, "pageviews", "parse")
    valid, dead = [], []
    for batch in batches:
        for record in batch.records():
            for out in fn.process(record):
                if isinstance(out, beam.pvalue.TaggedOutput):
                    dead.append(out.value)
                else:
                    valid.append((out.value, out.timestamp.micros // 1_000_000))
    return valid, dead


def letter_key(letter: DeadLetter) -> tuple:
    """A dead letter without its rejected_at time."""
    return (letter.pipeline, letter.step, letter.reason, letter.reason_code, letter.payload,
            letter.payload_encoding, json.dumps(letter.origin, sort_keys=True))


def assert_same_events(got: list[tuple[UserEvent, int]], want: list[tuple[UserEvent, int]]):
    """Same multiset of (UserEvent, second). The float seconds may differ in the last bit
    between the vectorized and the per-record parser; the whole second may not."""
    def key(pair):
        e, second = pair
        return (e.user_id, e.action, e.page, second, e.timestamp)

    got, want = sorted(got, key=key), sorted(want, key=key)
    assert len(got) == len(want)
    for (g, gs), (w, ws) in zip(got, want, strict=True):
        assert (g.user_id, g.action, g.page, gs) == (w.user_id, w.action, w.page, ws), (g, w)
        assert type(g.user_id) is str and type(g.timestamp) is float
        assert math.isclose(g.timestamp, w.timestamp, rel_tol=1e-15, abs_tol=1e-6), (g, w)


def assert_batches_parse_as_records(batches: list[RawBatch]) -> None:
    got_valid, got_dead = run_batch_dofn(batches)
    want_valid, want_dead = run_record_dofn(batches)
    assert_same_events(got_valid, want_valid)
    assert Counter(map(letter_key, got_dead)) == Counter(map(letter_key, want_dead))


@st.composite
def kafka_payload(draw) -> bytes:
    """A message as a producer may send it: mostly one dirty JSON line, sometimes empty,
    blank, holding newlines (inside or between values) or several lines."""
    raw = draw(json_line())
    kind = draw(st.integers(0, 14))
    if kind == 0:
        raw = draw(st.sampled_from([b"", b" ", b"\t", b"\r", b"\n", b" \n ", b"\r\n", b"\n\n"]))
    elif kind == 1:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + b"\n" + raw[at:]
    elif kind == 2:
        raw = raw + b"\n" + draw(json_line())
    elif kind == 3:
        raw = raw + draw(st.sampled_from([b"\n", b"\r\n", b" \n"]))
    return raw


polls = st.lists(kafka_payload(), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(polls, min_size=1, max_size=3))
def test_random_dirty_polls_parse_as_their_records(payload_lists):
    batches, offset = [], 0
    for payloads in payload_lists:  # consecutive polls, one DoFn (kinds learned carry over)
        batches.append(raw_batch(payloads, offset))
        offset += len(payloads)
    assert_batches_parse_as_records(batches)
    for batch in batches:
        _check_mapping(batch.payloads)


def test_a_poll_of_synthetic_events_with_malformed_ones():
    payloads = list(SyntheticEvents(seed=4, rate=5.0, malformed=0.1).payloads(1500))
    payloads[5:5] = [b"", b"  ", GOOD[0].replace(b", ", b",\n"), b"\n", GOOD[1] + b"\r\n",
                     b'{"user_id": 7, "action": "a", "page": "/x", "timestamp": 1704067200}',
                     b'{"user_id": true, "action": "a", "page": "/x", "timestamp": 1704067200}']
    batches = [raw_batch(payloads[i:i + 400], 1000 + i) for i in range(0, len(payloads), 400)]
    assert_batches_parse_as_records(batches)
    valid, dead = run_batch_dofn(batches)
    assert len(valid) > 1200 and len(dead) > 100
    # Each dead letter names its own offset.
    by_offset = {o: p for b in batches for o, p in zip(b.positions, b.payloads, strict=True)}
    for letter in dead:
        assert letter.origin["partition"] == 3 and letter.origin["topic"] == "events"
        assert letter.payload_bytes() == by_offset[letter.origin["offset"]]


def test_events_table_and_user_events_round_trip():
    pairs = [(UserEvent("u1", "click", "/a", 1704067200.5), 1704067200),
             (UserEvent("42", "page_view", "/b", 1704067299.0), 1704067299)]
    table = events_table(pairs)
    assert user_events(table) == pairs
    assert user_events(events_table([])) == []


# ---- streaming: batches and records give the same panes and late dead letters ---------

def _streaming_options() -> PipelineOptions:
    options = PipelineOptions(["--streaming"])
    options.view_as(StandardOptions).streaming = True
    return options


def _second_of(payload: bytes):
    try:
        return parse_user_event(decode_json_object(payload))[1]
    except InvalidRecord:
        return None


def _streams(steps: list) -> tuple[test_stream.TestStream, test_stream.TestStream]:
    """The same input as a TestStream of RawRecords and one of RawBatches.

    ``steps`` holds watermarks (numbers) and polls (lists of payloads). A record is
    timestamped at its event second (an invalid one at its poll's earliest), a batch at
    the earliest event of its poll: on Kafka both would be log times; what matters here
    is that they are what the watermark is compared with downstream."""
    records, batches = test_stream.TestStream(), test_stream.TestStream()
    offset = 0
    for step in steps:
        if isinstance(step, (int, float)):
            records = records.advance_watermark_to(step)
            batches = batches.advance_watermark_to(step)
            continue
        batch = raw_batch(step, offset)
        offset += len(step)
        seconds = [_second_of(p) for p in step]
        earliest = min(s for s in seconds if s is not None)
        records = records.add_elements([
            TimestampedValue(record, earliest if second is None else second)
            for record, second in zip(batch.records(), seconds, strict=True)
        ])
        batches = batches.add_elements([TimestampedValue(batch, earliest)])
    return records.advance_watermark_to_infinity(), batches.advance_watermark_to_infinity()


def _run(stream: test_stream.TestStream, batched: bool, config: WindowConfig, action: str | None):
    pipeline = beam.Pipeline(runner=LocalStreamingRunner(), options=_streaming_options())
    raw = pipeline | stream
    if batched:
        parsed = raw | ParseUserEventBatches("pageviews")
        counted = parsed.valid | CountPageViewTables(config, action=action)
    else:
        parsed = raw | ParseUserEvents("pageviews")
        counted = parsed.valid | CountPageViews(config, streaming=True, action=action)
    late = counted.late | beam.Map(late_record_to_dead_letter("pageviews", "window"))
    rejected = collect(parsed.dead_letters | beam.FlatMap(each_dead_letter))
    panes, late_letters = collect(counted.counts), collect(late)
    pipeline.run().wait_until_finish()
    return panes.items, late_letters.items, rejected.items


def _summary(panes):
    assert not [p for p in panes if p.pane_timing == "EARLY"]  # no early firing configured
    on_time = sorted((p.window_start, p.page, p.count, p.pane_index, p.is_final)
                     for p in panes if p.pane_timing == "ON_TIME")
    final: dict[tuple[str, str], int] = {}
    for p in panes:  # accumulating panes: the last pane of a window holds the largest count
        final[(p.window_start, p.page)] = max(final.get((p.window_start, p.page), 0), p.count)
    late = {(p.window_start, p.page, p.count) for p in panes if p.pane_timing == "LATE"}
    return on_time, final, late


def assert_batches_stream_as_records(steps: list, config: WindowConfig, action=None):
    as_records, as_batches = _streams(steps)
    r_panes, r_late, r_rejected = _run(as_records, False, config, action)
    b_panes, b_late, b_rejected = _run(as_batches, True, config, action)
    r_on_time, r_final, r_late_panes = _summary(r_panes)
    b_on_time, b_final, b_late_panes = _summary(b_panes)
    assert b_on_time == r_on_time
    assert b_final == r_final
    # The late records of one batch fire one LATE pane together, with the count the
    # per-record path reaches after the batch's last one.
    assert b_late_panes <= r_late_panes
    assert Counter(map(letter_key, b_late)) == Counter(map(letter_key, r_late))
    assert Counter(map(letter_key, b_rejected)) == Counter(map(letter_key, r_rejected))
    return r_panes, r_late, r_rejected


def test_tumbling_windows_late_panes_and_too_late_events():
    steps = [
        T0,
        [event("/a", T0 + 10), event("/b", T0 + 20), event("/a", T0 + 310), b"{not json",
         event("/a", T0 + 299.5)],
        [event("/b", T0 + 305), event("/c", T0 + 100), event("/a", T0 + 11)],
        T0 + 400,  # ON_TIME for [00:00, 00:05)
        [event("/a", T0 + 6), event("/b", T0 + 7), event("/a", T0 + 320), event("/a", T0 + 8),
         b'{"user_id": "u", "page": "/a", "timestamp": 1704067201}'],  # late, within lateness
        T0 + 1000,  # [00:00, 00:05) expires; ON_TIME for [00:05, 00:10)
        [event("/a", T0 + 9), event("/b", T0 + 299), event("/a", T0 + 650),
         event("/c", T0 + 350), event("/a", T0 + 1)],  # too late for the first window
        T0 + 1100,
        [event("/b", T0 + 610), event("/a", T0 + 12)],
    ]
    panes, late, rejected = assert_batches_stream_as_records(
        steps, WindowConfig(size=300, allowed_lateness=600))
    on_time, final, late_panes = _summary(panes)
    assert ("2024-01-01T00:00:00Z", "/a", 3, 0, False) in on_time
    assert final[("2024-01-01T00:00:00Z", "/a")] == 5 and final[("2024-01-01T00:00:00Z", "/b")] == 2
    assert len(late_panes) >= 3
    assert sorted(json.loads(d.payload)["timestamp"] for d in late) == [
        T0 + 1, T0 + 9, T0 + 12, T0 + 299]
    assert {d.reason_code for d in late} == {"late"}
    assert sorted(d.reason_code for d in rejected) == ["invalid_json", "missing_field"]


def test_sliding_windows_with_an_action_filter_and_partly_expired_batches():
    steps = [
        T0 - 100,
        # /a at T0+30 and T0+100: one 120 s block, two 60 s slices (different windows).
        [event("/a", T0 + 30), event("/a", T0 + 31, "click"), event("/b", T0 + 70),
         event("/a", T0 - 50), event("/b", T0 + 71, "scroll"), b"[1, 2]", event("/a", T0 + 100)],
        T0 + 125,
        # /a at T0+40: its window [-60, 60) has expired, [0, 120) still takes it (LATE).
        [event("/a", T0 + 40), event("/a", T0 + 45), event("/a", T0 + 46, "click"),
         event("/b", T0 + 75), event("/c", T0 + 10), event("/a", T0 + 130)],
        T0 + 300,
        [event("/b", T0 + 80), event("/b", T0 + 81, "click"), event("/a", T0 + 170),
         event("/a", T0 + 290)],
        T0 + 301,
        [event("/a", T0 + 400), event("/c", T0 + 20)],
    ]
    config = WindowConfig(size=120, period=60, allowed_lateness=60)
    panes, late, rejected = assert_batches_stream_as_records(steps, config, action="page_view")
    assert {p.page for p in panes} == {"/a", "/b", "/c"}
    late_records = [json.loads(d.payload) for d in late]
    assert late_records and {r["action"] for r in late_records} == {"page_view"}
    # /a at T0+40 is late for one of its two windows and counted in the other.
    assert [r["timestamp"] for r in late_records].count(T0 + 40) == 1
    assert any(p.pane_timing == "LATE" and p.page == "/a" for p in panes)
    assert [d.reason_code for d in rejected] == ["not_an_object"]


@pytest.mark.parametrize(
    "config, action",
    [(WindowConfig(size=60, allowed_lateness=60), None),
     (WindowConfig(size=120, period=40, allowed_lateness=30), "page_view")],
    ids=["tumbling", "sliding-one-action"],
)
def test_out_of_order_synthetic_polls(config, action):
    generator = SyntheticEvents(seed=21, rate=4.0, out_of_order=0.3, max_delay=150.0,
                                malformed=0.05)
    payloads = list(generator.payloads(900))
    steps: list = [T0 - 200]
    newest = T0 - 200
    for start in range(0, len(payloads), 45):
        poll = payloads[start:start + 45]
        if all(_second_of(p) is None for p in poll):
            continue
        steps.append(poll)
        newest = max([newest] + [s for s in map(_second_of, poll) if s is not None])
        steps.append(newest - 60)  # trails the newest event by less than the delays
    panes, late, rejected = assert_batches_stream_as_records(steps, config, action)
    assert late and rejected  # the run has too-late events and dead letters
    assert sum(1 for p in panes if p.pane_timing == "LATE") > 0


def test_partials_of_a_batch_group_per_page_and_slice():
    """The batched count keys Partials per (page, slice): a table spanning several slices
    and pages gives one Partial per group, timestamped at its earliest event."""
    from transforms.windowing import CountPerSlice

    pairs = [(UserEvent("u", "page_view", page, float(s)), s)
             for page, s in [("/a", T0 + 70), ("/b", T0 + 10), ("/a", T0 + 61), ("/a", T0 + 5),
                             ("/a", T0 + 119), ("/b", T0 - 1)]]
    table = events_table(pairs)
    out = list(CountPerSlice("page", WindowConfig(size=120, period=60), user_events).process(table))
    got = sorted((tv.value[0], int(tv.timestamp), tv.value[1].accumulator,
                  sorted(s for _, s in user_events(tv.value[1].rows))) for tv in out)
    assert got == [
        ("/a", T0 + 5, 1, [T0 + 5]),
        ("/a", T0 + 61, 3, [T0 + 61, T0 + 70, T0 + 119]),
        ("/b", T0 - 1, 1, [T0 - 1]),
        ("/b", T0 + 10, 1, [T0 + 10]),
    ]


def test_a_payload_ending_in_cr_is_handed_over_as_it_is():
    # A file line loses a trailing "\r" (as iter_lines strips it); a message must not.
    parsed = parse_payloads([b'{"a":1}\r', GOOD[0], b" \r", GOOD[1] + b"\r"])
    assert parsed.handed_over == [(0, b'{"a":1}\r')]
    assert parsed.blank == 1 and parsed.lines.tolist() == [1, 3]


@pytest.mark.parametrize(
    "payload",
    [b'{"a":1}\r', b'{"user_id": "x\r', b"\xff\r", b'{"user_id":"u","action":"a"}\r\r'],
    ids=["missing-field", "unterminated-string", "invalid-utf8", "two-cr"],
)
def test_dead_letters_of_payloads_ending_in_cr_are_the_per_record_ones(payload):
    # b'{"user_id": "x\r' is "Invalid control character" per record; without its "\r",
    # it would be "Unterminated string", with another payload.
    assert_batches_parse_as_records([raw_batch([GOOD[0], payload, GOOD[1]])])
