"""No secret in any output of a run whose endpoints fail on purpose (and echo the secrets
back): stdout, stderr, every log record down to DEBUG (HTTP request lines included), the
dead letters, the pushed metrics."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from beam_pipelines import error_rate
from transforms.io.synthetic.logs import SyntheticLogs

from .support import T0

pytestmark = pytest.mark.integration

KEY = "SECRETKEY0123456789abcdefABCDEFG"[:32]
SLACK_TOKEN = "SLACKTOKENabc123xyz"
PATH_TOKEN = "HOOKPATHTOKEN77"
QUERY_TOKEN = "QUERYTOKEN88"
HMAC = "hmac-super-secret-99"
HEADER_TOKEN = "HEADERTOKEN66"
SECRETS = (KEY, SLACK_TOKEN, PATH_TOKEN, QUERY_TOKEN, HMAC, HEADER_TOKEN)


class _Gateway(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_PUT(self):  # noqa: N802 (http.server's naming)
        type(self).bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT  # noqa: N815

    def log_message(self, *args):
        pass


def test_failing_endpoints_leak_no_secret(http_receiver, tmp_path, monkeypatch, capfd, caplog):
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    pager = http_receiver.pagerduty(KEY)
    pager.fail(400, times=100, body='{"status": "invalid event", "errors": '
               f'["routing key {KEY} is disabled"]}}')
    slack = http_receiver.slack(f"/services/T0/B0/{SLACK_TOKEN}")
    slack.fail(500, times=100, body=f"upstream failed for /services/T0/B0/{SLACK_TOKEN}: "
               f"invalid token {SLACK_TOKEN}")  # the path, and the bare token, echoed
    hook = http_receiver.webhook(HMAC, path=f"/hooks/{PATH_TOKEN}")
    # A timeout, then answers: urllib3 logs the path with its query at DEBUG.
    hook.hold(times=1).fail(503, times=100, body=f"no route for {QUERY_TOKEN}")
    hook_file = tmp_path / "hook_url"
    hook_file.write_text(f"{hook.url}?token={QUERY_TOKEN}\n")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.url)
    lines = list(SyntheticLogs(seed=1, rate=8.0, start=T0, incident=("checkout", 0, 600, 0.5))
                 .payloads(1200))
    (tmp_path / "logs.jsonl").write_bytes(b"\n".join(lines))
    caplog.set_level(logging.DEBUG)

    code = error_rate.main([
        "--source=file", f"--input={tmp_path / 'logs.jsonl'}", "--sink=pagerduty",
        f"--pagerduty_routing_key={KEY}", f"--pagerduty_url={pager.url}",
        "--notify=slack,webhook", f"--webhook_url=file:{hook_file}", f"--webhook_secret={HMAC}",
        f"--webhook_header=Authorization=Bearer {HEADER_TOKEN}", "--notify_on=alerts",
        "--notify_attempts=2", "--notify_timeout=0.3", "--notify_retry_budget=5",
        f"--dead_letter={tmp_path / 'dead'}",
        f"--pushgateway=http://127.0.0.1:{gateway.server_port}",
    ])
    gateway.shutdown()
    captured = capfd.readouterr()

    assert code == 0
    # The endpoints did get the secrets (the requests were real) ...
    assert pager.requests and slack.requests and hook.requests
    assert all(r.json["routing_key"] == KEY for r in pager.requests)
    assert all(r.header("Authorization") == f"Bearer {HEADER_TOKEN}" for r in hook.requests)
    # ... and every alert came back as a dead letter: refused, failed, timed out.
    letters = "\n".join(p.read_text() for p in Path(tmp_path / "dead").glob("*.jsonl"))
    sinks = {json.loads(line)["origin"].get("sink") for line in letters.splitlines() if line}
    assert {"pagerduty", "slack", "webhook"} <= sinks
    assert "notification_refused" in letters and "notification_failed" in letters
    assert "disabled" in letters and "upstream failed" in letters  # the bodies, redacted
    assert "no route for" in letters  # the webhook answered after its timeout
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # HTTP lines were logged
    outputs = {
        "stdout": captured.out,
        "stderr": captured.err,
        "logs": "\n".join(r.getMessage() for r in caplog.records),
        "dead letters": letters,
        "metrics": b"\n".join(_Gateway.bodies).decode(),
    }
    assert "notifications_failed_total" in outputs["metrics"]
    for what, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} in {what}"
