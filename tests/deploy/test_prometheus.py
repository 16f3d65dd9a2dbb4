"""Alert rules, their unit tests and the Grafana dashboard, checked with the real promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from beam_pipelines import metrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
# Our own families, their histogram series, and what Prometheus itself provides.
KNOWN = set(metrics.EXPORTED) | {
    "processing_time_seconds_bucket", "processing_time_seconds_sum",
    "processing_time_seconds_count", "ALERTS",
}
FUNCTIONS = {
    "sum", "rate", "deriv", "by", "on", "and", "or", "unless", "histogram_quantile",
    "label_values", "clamp_min", "le", "humanizePercentage",
}


def promtool(*args: str, cwd: Path = PROM) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool not found: install the Debian package 'prometheus' (make test does)"
    done = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def metric_names(expr: str) -> set[str]:
    """Identifiers that are metric names: outside braces and not functions or keywords."""
    expr = re.sub(r'\{[^}]*\}', "", expr)
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expr))
    labels = {"pipeline", "step", "reason", "source", "partition", "alertname", "alertstate"}
    return {n for n in names if n not in FUNCTIONS | labels and not n.startswith("__")}


def dashboard_exprs() -> list[str]:
    board = json.loads((PROM / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in board["annotations"]["list"]]
    return exprs


def test_alert_rules_are_valid_and_their_unit_tests_pass():
    assert "SUCCESS: 4 rules found" in promtool("check", "rules", "alerts.yml")
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")
    promtool("check", "config", "prometheus.yml")


def test_alerts_and_dashboard_use_only_exported_metrics():
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {
        "BeamSourceLagGrowing", "BeamDeadLetterRateHigh", "BeamNoOutput", "BeamWatermarkStuck",
    }
    for expr in [r["expr"] for r in rules] + dashboard_exprs():
        unknown = metric_names(expr) - KNOWN
        assert not unknown, f"{expr!r} uses metrics the bridge does not export: {unknown}"


def test_dashboard_queries_are_valid_promql(tmp_path):
    # promtool has no offline query check; a recording rule per query gets the PromQL parsed.
    rules = [
        {"record": f"dashboard:query{i}",
         "expr": expr.replace("$__rate_interval", "5m").replace("$pipeline", ".*")}
        for i, expr in enumerate(dashboard_exprs())
    ]
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump({"groups": [
        {"name": "dashboard", "rules": rules}]}))
    promtool("check", "rules", "dashboard.yml", cwd=tmp_path)


def test_every_runbook_link_has_a_section_in_the_docs():
    doc = (ROOT / "docs" / "production.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in doc.splitlines() if line.startswith("#")
    }
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]
    for rule in rules:
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, f"docs/production.md has no section #{anchor}"
