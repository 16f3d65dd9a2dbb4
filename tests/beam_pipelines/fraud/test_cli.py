"""``python -m beam_pipelines.fraud`` as a user meets it: a bad rules file or flag is one
line (exit 2) before anything runs, --help shows the pipeline's own flags, the default
synthetic run prints a readable table and a summary."""

from __future__ import annotations

import json

import pytest

from beam_pipelines import fraud
from beam_pipelines.skeleton import ResultSpec
from transforms.fraud import Decision

from .support import EXAMPLE_RULES

pytestmark = pytest.mark.unit


def one_error_line(argv: list[str], capsys) -> str:
    assert fraud.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def write(tmp_path, rules) -> str:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    return str(path)


BURST = {"name": "burst", "kind": "velocity", "action": "block", "window": 60, "max_count": 3}


@pytest.mark.parametrize("rules, line", [
    ([{"name": "big", "kind": "threshold", "action": "review", "field": "amount", "op": "=>",
       "value": 5}],
     "error: --rules: rule 'big': field 'op': expected one of >, >=, <, <=, ==, !=, in, not_in, "
     "got '=>'"),
    ([{**BURST, "windw": 60}],
     "error: --rules: rule 'burst': field 'windw': not a field of a velocity rule"),
    ([{"name": "bl", "kind": "blocklist", "action": "block", "field": "merchant",
       "list": "missing.txt"}],
     "error: --rules: rule 'bl': field 'list': cannot read the blocklist"),
    ([BURST, BURST], "error: --rules: rule 'burst': field 'name': expected a unique name"),
])
def test_a_bad_rules_file_is_one_line_naming_the_rule_and_field(tmp_path, capsys, rules, line):
    assert one_error_line([f"--rules={write(tmp_path, rules)}"], capsys).startswith(line)


@pytest.mark.parametrize("argv, start", [
    ([], "error: --rules: expected the rules file"),
    (["--rules=/nonexistent/rules.json"], "error: --rules:"),
    ([f"--rules={EXAMPLE_RULES}", "--state_ttl=30"],
     "error: --state_ttl: expected at least the longest velocity window (60 s, rule 'card_burst')"),
    ([f"--rules={EXAMPLE_RULES}", "--state_ttl=soon"], "error: --state_ttl:"),
    ([f"--rules={EXAMPLE_RULES}", "--warmup=-5"], "error: --warmup:"),
    ([f"--rules={EXAMPLE_RULES}", "--route_decisions=block"],
     "error: --route_decisions: expected block=TOPIC and/or review=TOPIC, comma-separated"),
    ([f"--rules={EXAMPLE_RULES}", "--route_decisions=allow=t"], "error: --route_decisions:"),
    ([f"--rules={EXAMPLE_RULES}", "--quality_rules=q.json"],
     "error: --quality_rules: the fraud pipeline does not take data-quality rules"),
    ([f"--rules={EXAMPLE_RULES}", "--streaming"],
     "error: --streaming: the streaming synthetic source generates user events only"),
    ([f"--rules={EXAMPLE_RULES}", "--sink=kafka"], "error: --output:"),
])
def test_bad_flags_are_one_line_before_anything_runs(capsys, argv, start):
    assert one_error_line(argv, capsys).startswith(start)


def test_help_shows_the_fraud_flags(capsys):
    with pytest.raises(SystemExit) as stop:
        fraud.main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m beam_pipelines.fraud")
    group = out[out.index("FraudOptions:"):]
    for flag in ("--rules", "--state_ttl", "--warmup", "--route_decisions"):
        assert flag in group


def test_the_default_run_decides_synthetic_transactions_in_a_readable_table(capsys):
    assert fraud.main([f"--rules={EXAMPLE_RULES}", "--synthetic_events=400"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("fraud decisions (")
    assert lines[1].split() == ["tx_id", "card_id", "decision", "rules", "timestamp", "decided_at"]
    blocked = [line for line in lines[3:] if " block " in line]
    assert blocked and all("," in line or "_" in line for line in blocked)  # rules a,b: no brackets
    assert "[" not in captured.out
    summary = captured.err.strip().splitlines()[-1]
    assert summary.startswith("fraud: ") and " decisions: " in summary and " allow, " in summary


def test_the_result_record_keys_kafka_messages_and_postgres_rows_by_tx_id():
    assert fraud.RESULTS.message_key == "tx_id" and fraud.RESULTS.postgres_key == ["tx_id"]
    assert dict(fraud.RESULTS.postgres_columns)["rules"] == "text[] NOT NULL"
    assert dict(fraud.RESULTS.postgres_columns)["timestamp"] == "timestamptz NOT NULL"
    with pytest.raises(ValueError, match="message_key"):
        ResultSpec.of(Decision, name="x", key=["tx_id"], title="t", message_key="nope")


def test_route_decisions_flag_values():
    assert fraud.route_decisions("block=blocked") == {"block": "blocked"}
    assert fraud.route_decisions(" review=r , block=b ") == {"review": "r", "block": "b"}
    for bad in ("", "block=", "block=a,block=b", "deny=x", "block=a b"):
        with pytest.raises(ValueError):
            fraud.route_decisions(bad)
