"""The Prometheus bridge: one real batch run, scraped over HTTP and pushed to a fake gateway."""

from __future__ import annotations

import io
import json
import queue
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import apache_beam as beam
import pytest

from beam_pipelines import metrics, pageviews
from beam_pipelines import options as opts
from beam_pipelines.options.metrics import MetricsOptions
from transforms.base.errors import ConfigError
from transforms.io.files import ReadLinesWithOrigin
from transforms.parse import ParseUserEvents
from transforms.sinks.dead_letter_sink import WriteDeadLetters
from transforms.sinks.files import WriteJsonLines

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def write_events(path) -> None:
    lines = [
        json.dumps({"user_id": i % 7, "action": "page_view", "page": f"/p{i % 3}",
                    "timestamp": T0 + i})
        for i in range(120)
    ]
    lines += ["{not json"] * 4 + [json.dumps({"user_id": 1, "page": "/x", "timestamp": T0})] * 2
    path.write_text("\n".join(lines) + "\n")


class _Gateway(BaseHTTPRequestHandler):
    pushes: list = []

    def do_PUT(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).pushes.append((self.command, self.path, body.decode()))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def sample(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {prefix!r} in:\n{text}")


@pytest.fixture(scope="module")
def run_with_metrics(tmp_path_factory):
    """pageviews over a file with MeasureOutput, served while a scraper polls the endpoint."""
    tmp = tmp_path_factory.mktemp("metrics")
    write_events(tmp / "events.jsonl")
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    options = opts.parse(
        [f"--input={tmp / 'events.jsonl'}", "--source=file", f"--dead_letter={tmp / 'dl'}",
         "--metrics_port=0", "--metrics_address=127.0.0.1", "--metrics_linger=60",
         "--metrics_poll_interval=0.2", f"--pushgateway=http://127.0.0.1:{gateway.server_port}"],
        [opts.IOOptions, opts.WindowOptions, MetricsOptions], prog="test",
    )
    pipeline = beam.Pipeline(options=options)
    parsed = (pipeline | "Read" >> ReadLinesWithOrigin(str(tmp / "events.jsonl"))
              | "Parse" >> ParseUserEvents(pageviews.PIPELINE))
    counted = parsed.valid | "Count" >> pageviews.CountPageViews(
        pageviews.PAGEVIEWS.window_config(options), streaming=False)
    (counted.counts | "Measure" >> metrics.MeasureOutput(pageviews.PIPELINE)
     | "Write" >> WriteJsonLines(str(tmp / "out"), "pageviews", streaming=False))
    parsed.dead_letters | "DL" >> WriteDeadLetters(
        str(tmp / "dl"), pipeline=pageviews.PIPELINE, streaming=False)

    exporters: queue.Queue = queue.Queue()
    out = io.StringIO()
    errors: list = []

    def run() -> None:
        try:
            result = pipeline.run()
            with metrics.serve(result, options, pipeline=pageviews.PIPELINE, out=out) as exp:
                exporters.put(exp)
                result.wait_until_finish()
        except BaseException as exc:  # surfaced by the test below
            errors.append(exc)
            exporters.put(None)

    worker = threading.Thread(target=run)
    worker.start()
    exporter = exporters.get(timeout=120)
    assert exporter is not None, errors
    # Poll the endpoint until it reports the run as ended: that scrape also ends the linger.
    final = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = scrape(exporter.port)
        if 'pipeline_running{pipeline="pageviews"} 0.0' in text:
            final = text
            break
        time.sleep(0.05)  # polling a condition with a deadline
    worker.join(timeout=60)
    gateway.shutdown()
    assert not errors, errors
    assert final, "the endpoint never reported the finished run"
    yield {"final": final, "out": out.getvalue(), "pushes": list(_Gateway.pushes),
           "port": exporter.port,
           "scraped_after_finish": exporter._scrapes > exporter._scrapes_at_finish,
           "worker_alive": worker.is_alive()}


@pytest.mark.integration
def test_scraped_metrics_follow_the_naming_convention(run_with_metrics):
    text = run_with_metrics["final"]
    assert sample(text, 'events_processed_total{pipeline="pageviews",step="parse"}') == 120
    # 120 events over 120 s in 300 s windows aligned to the epoch: 2 windows x 3 pages.
    assert sample(text, 'events_processed_total{pipeline="pageviews",step="output"}') == 6
    assert sample(text, 'events_dead_lettered_total{pipeline="pageviews",reason="invalid_json"}') == 4
    assert sample(text, 'events_dead_lettered_total{pipeline="pageviews",reason="missing_field"}') == 2
    # The histogram counts every output once; the data is years old, so all in +Inf only.
    assert sample(text, 'processing_time_seconds_count{pipeline="pageviews"}') == 6
    assert sample(text, 'processing_time_seconds_bucket{le="86400",pipeline="pageviews"}') == 0
    assert sample(text, 'processing_time_seconds_bucket{le="+Inf",pipeline="pageviews"}') == 6
    assert sample(text, 'processing_time_seconds_sum{pipeline="pageviews"}') > 6 * 86400
    assert sample(text, 'watermark_lag_seconds{pipeline="pageviews"}') > 86400
    # Beam counters outside the convention are kept under their own names, not dropped.
    assert 'beam_counter_total{name="events_dead_lettered",namespace="pageviews"' in text


@pytest.mark.integration
def test_linger_ends_at_the_final_scrape_and_the_endpoint_closes(run_with_metrics):
    assert not run_with_metrics["worker_alive"]
    # The linger (60 s) waits for a scrape after the run ended: there was one, and the run is over.
    assert run_with_metrics["scraped_after_finish"]
    with pytest.raises(OSError):
        scrape(run_with_metrics["port"])


@pytest.mark.integration
def test_batch_summary_and_pushgateway(run_with_metrics):
    out = run_with_metrics["out"]
    assert ("  read: 126 records\n  rejected: 6 (not valid input)\n"
            "  counted: 120 valid records\n") in out
    assert "dead letters by reason: invalid_json=4, missing_field=2" in out
    assert "result rows written: 6\n" in out
    # Batch: no "event time to output" (in a backfill of old data it is the data's age).
    assert "event time" not in out
    pushes = run_with_metrics["pushes"]
    assert len(pushes) == 1
    method, path, body = pushes[0]
    assert (method, path) == ("PUT", "/metrics/job/pageviews")
    assert 'events_processed_total{pipeline="pageviews",step="output"} 6.0' in body


@pytest.mark.unit
def test_push_failure_is_a_warning_not_a_failed_run():
    exporter = metrics.Exporter(None, pipeline="p")
    with pytest.raises(Exception, match="--pushgateway: pushing metrics to http://127.0.0.1:1"):
        exporter.push("http://127.0.0.1:1")


class _FakeKey:
    def __init__(self, namespace, name):
        self.metric = type("N", (), {"namespace": namespace, "name": name})()


class _Result:
    def __init__(self, key, committed):
        self.key, self.committed, self.attempted = key, committed, committed


class _Gauge:
    def __init__(self, value, timestamp):
        self.value, self.timestamp = value, timestamp


class _FakePipelineResult:
    def metrics(self):
        return self

    def query(self, _filter=None):
        return {
            "counters": [
                _Result(_FakeKey("p", "events_processed.enrich"), 5),
                _Result(_FakeKey("p", "events_processed.enrich"), 2),  # another step
                _Result(_FakeKey("p", "late_events_dropped"), 3),
            ],
            "distributions": [],
            "gauges": [
                _Result(_FakeKey("kafka", "source_lag.kafka.events-0"), _Gauge(17, 10.0)),
                _Result(_FakeKey("kafka", "source_lag.kafka.events-0"), _Gauge(12, 20.0)),
                _Result(_FakeKey("p", "watermark_ms"), _Gauge(1_000_000, 20.0)),
            ],
        }


@pytest.mark.unit
def test_convention_sums_steps_and_keeps_latest_gauge():
    families = metrics.to_families(metrics.read_snapshot(_FakePipelineResult()), "p", now=1030.0)
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in families.series}
    assert got[("events_processed_total", (("pipeline", "p"), ("step", "enrich")))] == 7
    assert got[("late_events_dropped_total", (("pipeline", "p"),))] == 3
    assert got[("source_lag_records",
                (("partition", "events-0"), ("pipeline", "p"), ("source", "kafka")))] == 12
    assert got[("watermark_lag_seconds", (("pipeline", "p"),))] == 30.0
    assert {s.name for s in families.series} <= set(metrics.EXPORTED)


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--metrics_port=99999", "--metrics_port: expected a TCP port between 0 and 65535"),
        ("--metrics_port=abc", "--metrics_port: expected a TCP port"),
        ("--pushgateway=not a url", "--pushgateway: expected a Pushgateway address"),
        ("--metrics_linger=-1", "--metrics_linger: expected a whole number of seconds >= 0"),
    ],
)
@pytest.mark.unit
def test_bad_metrics_flags_are_one_line_errors(flag, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        opts.parse([flag], [opts.IOOptions], prog="test")


@pytest.mark.integration
def test_port_in_use_is_a_config_error():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        exporter = metrics.Exporter(None, pipeline="p", port=busy.getsockname()[1],
                                    address="127.0.0.1")
        with pytest.raises(ConfigError, match="--metrics_port: cannot listen on 127.0.0.1"):
            exporter.start()
        exporter.finish()


@pytest.mark.integration
def test_streaming_run_is_scraped_live_while_it_runs(capsys):
    """The local streaming runner runs asynchronously: counters grow between scrapes."""
    options = opts.parse(
        ["--streaming", "--synthetic_events=60", "--synthetic_rate=20", "--window_size=1",
         "--synthetic_malformed=0", "--metrics_port=0", "--metrics_address=127.0.0.1",
         "--metrics_poll_interval=0.1"],
        [opts.IOOptions, opts.WindowOptions, MetricsOptions, pageviews.PageviewsOptions],
        prog="test",
    )
    run = pageviews.PAGEVIEWS.launch(options)
    assert run.streaming
    result, options = run.result, run.options
    seen: list[float] = []
    out = io.StringIO()
    with metrics.serve(result, options, pipeline=pageviews.PIPELINE, out=out) as exporter:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not seen or seen[-1] < 60):
            text = scrape(exporter.port)
            if 'step="parse"' in text:
                seen.append(sample(text, 'events_processed_total{pipeline="pageviews",step="parse"}'))
            time.sleep(0.05)  # polling a condition with a deadline
        result.wait_until_finish()
    assert seen and seen[-1] == 60, seen
    assert any(0 < value < 60 for value in seen), f"never saw the run in progress: {seen}"
    assert seen == sorted(seen)
    summary = out.getvalue()  # a stream's summary: late records and latency mean something
    assert "  read: 60 records\n" in summary and "result panes written:" in summary
    assert "late records: 0 accepted into their window, 0 dropped" in summary
    assert "event time to output: mean" in summary
    capsys.readouterr()  # the console sink's table


@pytest.mark.unit
def test_missing_prometheus_client_fails_at_parse_time_naming_the_extra(monkeypatch):
    from transforms.base.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    with pytest.raises(MissingExtraError, match=r"\[metrics\] extra"):
        opts.parse(["--metrics_port=9200"], [opts.IOOptions], prog="test")
    options = opts.parse([], [opts.IOOptions], prog="test")  # no flag, no client needed
    with metrics.serve(None, options, pipeline="p", out=io.StringIO()):
        pass


class _NothingCountedYet:
    """A PipelineResult of a job that has not counted anything yet."""

    def metrics(self):
        return self

    def query(self, *args):
        return {}


@pytest.mark.integration  # an HTTP endpoint
def test_families_are_present_from_the_first_scrape():
    exporter = metrics.Exporter(_NothingCountedYet(), pipeline="pageviews", port=0,
                                address="127.0.0.1").start()
    try:
        text = scrape(exporter.port)
    finally:
        exporter.finish()
        exporter.close()
    for series in ('processing_time_seconds_bucket{le="0.1",pipeline="pageviews"}',
                   'processing_time_seconds_bucket{le="+Inf",pipeline="pageviews"}',
                   'processing_time_seconds_count{pipeline="pageviews"}',
                   'processing_time_seconds_sum{pipeline="pageviews"}',
                   'events_processed_total{pipeline="pageviews",step="parse"}',
                   'events_processed_total{pipeline="pageviews",step="output"}',
                   'late_events_dropped_total{pipeline="pageviews"}',
                   'late_events_accepted_total{pipeline="pageviews"}'):
        assert sample(text, series) == 0, series
    assert sample(text, 'pipeline_running{pipeline="pageviews"}') == 1
