"""error_rate end to end: a batch run over a file of logs against a hand-written reference
(windows, breaches, dead letters, incidents paged to PagerDuty), and the streaming
incident rules on early panes with TestStream."""

from __future__ import annotations

import time

import apache_beam as beam
import pytest
from apache_beam.testing import test_stream

from beam_pipelines import error_rate
from beam_pipelines.skeleton import SourceSpec
from beam_pipelines.testing.collect import collect
from beam_pipelines.testing.files import read_jsonl
from beam_pipelines.testing.logs import reference_error_rates
from transforms.io.synthetic.logs import SyntheticLogs
from transforms.records import utc_iso

from .support import ROUTING_KEY, T0, log, phase, raw

pytestmark = pytest.mark.integration


def edge_lines() -> list[bytes]:
    """Lines on every edge of the definition, in shapes the generator does not write."""
    lines: list[bytes] = []
    # 20 lines, exactly 1 error: a ratio of exactly 0.05 does not breach.
    lines += [log("edge-ratio", T0 + i * 0.5, error=i == 3) for i in range(20)]
    # 20 lines, 2 errors: breaches; then 20 clean lines a minute later: recovers.
    lines += [log("edge-breach", T0 + i * 0.5, error=i in (0, 7), offset=330) for i in range(20)]
    lines += [log("edge-breach", T0 + 60 + i * 0.5, offset=-300) for i in range(20)]
    # 19 lines, all errors: too few to say anything.
    lines += [log("edge-few", T0 + i, error=True) for i in range(19)]
    # The status decides: error levels with 2xx/4xx are not errors, info with 503 is.
    lines += [log("edge-status", T0 + i, level="error", status=200 if i % 2 else "404")
              for i in range(20)]
    lines += [log("edge-status", T0 + 120 + i, level="info", status=503) for i in range(20)]
    # Window boundaries as epoch decimals: the last instant of a slice and the first of the next.
    lines += [log("edge-boundary", "1704067259.9999999", error=True, epoch=True),
              log("edge-boundary", "1704067260", epoch=True),
              log("edge-boundary", T0 + 59.999999, error=True, offset=120)]
    # Refused: each is one dead letter.
    lines += [log("edge-bad", T0, level="LOUD"), log("edge-bad", T0, status=600),
              log("edge-bad", T0, status="ok"), log("edge-bad", T0, level=None, status=None,
                                                     code=1).replace(b'"level": "info", ', b""),
              b'{"service": "edge-bad", "level": "error", "timestamp": "2024-01-01T00:00:00"}',
              b'{"service": "", "level": "error", "timestamp": 1704067200}',
              b'{"service": "edge-bad", "level": 40, "timestamp": 1704067200}',
              b'{"service": "edge-bad", "status": 500, "timestamp": 1704067200',
              b"[1, 2]", b"", b"   "]
    return lines


def test_batch_file_matches_the_reference_and_pages_each_incident_once(tmp_path, http_receiver):
    generated = SyntheticLogs(seed=99, rate=6.0, malformed=0.03,
                              incident=("search", 120.0, 300.0, 0.5), start=T0 - 3600)
    lines = list(generated.payloads(4000)) + edge_lines()
    (tmp_path / "logs.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    expected = reference_error_rates(lines, max_error_ratio="0.05", min_events=20)
    pager = http_receiver.pagerduty(ROUTING_KEY)

    assert error_rate.main([
        "--source=file", f"--input={tmp_path / 'logs.jsonl'}", "--sink=jsonl",
        f"--output={tmp_path / 'out'}", f"--dead_letter={tmp_path / 'dead'}",
        "--notify=pagerduty", f"--pagerduty_routing_key={ROUTING_KEY}",
        f"--pagerduty_url={pager.url}",
    ]) == 0

    rows = read_jsonl(str(tmp_path / "out" / "error_rate-*.jsonl"))
    got = {(r["window_start"], r["service"]): (r["events"], r["errors"], r["breaching"])
           for r in rows}
    assert len(got) == len(rows)
    assert got == {(utc_iso(start), service): value
                   for (start, service), value in expected.windows.items()}
    for row in rows:
        assert row["error_ratio"] == pytest.approx(row["errors"] / row["events"])
    assert got[(utc_iso(T0), "edge-ratio")] == (20, 1, False)
    assert got[(utc_iso(T0 - 50), "edge-breach")] == (20, 2, True)
    assert not any(v[2] for k, v in got.items() if k[1] in ("edge-few", "edge-boundary"))
    assert got[(utc_iso(T0 + 120), "edge-status")] == (20, 20, True)
    # 1704067259.9999999 is in the slice [50, 60), not in the window starting at 60.
    assert got[(utc_iso(T0 + 50), "edge-boundary")] == (3, 2, False)
    assert got[(utc_iso(T0 + 60), "edge-boundary")] == (1, 0, False)

    dead = read_jsonl(str(tmp_path / "dead" / "dead_letters-*.jsonl"))
    assert len(dead) == len(expected.invalid_lines)
    assert sorted(d["origin"]["line"] for d in dead) == expected.invalid_lines

    want: dict[str, list[str]] = {}
    opened: dict[str, str] = {}
    for service, action, start in expected.incidents:
        if action == "trigger":
            opened[service] = f"error_rate:{service}:{utc_iso(start)}"
        want.setdefault(opened[service], []).append(action)
    assert {"search", "edge-breach", "edge-status"} <= set(opened)
    assert pager.problems == []
    assert pager.actions() == want
    triggers = [e for e in pager.events if e["event_action"] == "trigger"]
    for event in triggers:
        details = event["payload"]["custom_details"]
        assert event["dedup_key"] == f"error_rate:{event['payload']['source']}:{details['window_start']}"
        assert details["record"]["breaching"] is True and event["payload"]["severity"] == "error"
        assert event["payload"]["summary"].startswith(f"Error ratio above 5% on {event['payload']['source']}")


def test_streaming_opens_on_an_early_pane_and_resolves_once(http_receiver):
    pager = http_receiver.pagerduty(ROUTING_KEY)
    now = int(time.time())
    stream = (
        test_stream.TestStream()
        .advance_processing_time(now)
        .advance_watermark_to(T0)
        .add_elements(raw(*phase("api", T0 + 1, 30)))  # healthy
        .advance_processing_time(2)  # EARLY panes: nothing breaches
        .add_elements(raw(*phase("api", T0 + 31, 30, every=2)))  # half of the requests fail
        .advance_processing_time(2)  # EARLY panes breach: one trigger
        .add_elements(raw(*phase("api", T0 + 61, 30, every=2)))  # still failing: nothing new
        .advance_processing_time(2)
        .add_elements(raw(*phase("api", T0 + 100, 60)))  # recovered
        .advance_processing_time(2)  # EARLY panes of windows after the errors: one resolve
        .advance_watermark_to(T0 + 400)  # ON_TIME panes: old windows change nothing
        .add_elements(raw(*phase("api", T0 + 401, 30, every=2)))  # a second incident
        .advance_processing_time(2)
        .advance_watermark_to_infinity()
    )
    options = error_rate.ERROR_RATE.parse_flags([
        "--streaming", "--early_firing=1", "--sink=pagerduty",
        f"--pagerduty_routing_key={ROUTING_KEY}", f"--pagerduty_url={pager.url}"])
    error_rate.ERROR_RATE.check_all(options)
    pipeline = beam.Pipeline(options=options)
    results, dead = error_rate.ERROR_RATE.build(pipeline, options,
                                                SourceSpec(stream, bounded=False), streaming=True)
    got = collect(results)
    pipeline.run().wait_until_finish()

    assert pager.problems == []
    actions = pager.actions()
    assert sorted(actions.values()) == [["trigger"], ["trigger", "resolve"]]
    first = min(actions)
    assert actions[first] == ["trigger", "resolve"]
    trigger = next(e for e in pager.events if e["dedup_key"] == first)
    assert trigger["payload"]["custom_details"]["record"]["pane_timing"] == "EARLY"
    assert {r.pane_timing for r in got.items} >= {"EARLY", "ON_TIME"}
