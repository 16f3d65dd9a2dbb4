"""The acceptance of issue 22 on files: unseen transactions (every contract form, invalid
lines, bursts, spikes, far-away use, blocklisted merchants) through
``--source=file --rules=... --sink=jsonl`` give exactly the reference's decisions and fired
rules, one per valid transaction, and one dead letter per invalid line."""

from __future__ import annotations

import gzip
import json

import pytest

from beam_pipelines import fraud
from beam_pipelines.testing.files import read_jsonl, read_jsonl_dir

from .support import (
    EXAMPLE_RULES,
    decision_table,
    expected_table,
    fresh_seed,
    reference,
    transactions,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def seed() -> int:
    return fresh_seed()


@pytest.fixture(scope="module")
def lines(seed) -> list[bytes]:
    return transactions(seed)


def test_a_file_of_transactions_gets_the_reference_decisions(tmp_path, seed, lines):
    path = tmp_path / "transactions.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out, dead = tmp_path / "decisions", tmp_path / "rejected"
    assert fraud.main([f"--rules={EXAMPLE_RULES}", "--source=file", f"--input={path}",
                       "--sink=jsonl", f"--output={out}", f"--dead_letter={dead}"]) == 0, seed

    want = reference(lines)
    rows = read_jsonl_dir(str(out), "fraud")
    assert len(rows) == len(want.decisions), f"seed {seed}: one decision per valid transaction"
    assert decision_table(rows) == expected_table(want), f"seed {seed}"
    fired = {name for row in rows for name in row["rules"]}
    assert {"card_burst", "amount_spike", "impossible_travel", "blocked_merchant"} <= fired, seed
    assert {row["decision"] for row in rows} == {"allow", "review", "block"}
    assert all(row["decided_at"].endswith("Z") and row["rules"] == sorted(row["rules"])
               for row in rows)

    letters = read_jsonl(str(dead / "*.jsonl"))
    assert sorted(letter["origin"]["line"] for letter in letters) == want.invalid, seed
    assert {letter["origin"]["file"] for letter in letters} == {str(path)}
    assert all(letter["pipeline"] == "fraud" and letter["step"] == "parse" and letter["reason"]
               for letter in letters)


def test_a_compressed_file_with_yaml_rules_gives_the_same_decisions(tmp_path, seed, lines):
    import yaml
    rules = json.loads(open(EXAMPLE_RULES, encoding="utf-8").read())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "blocked_merchants.txt").write_bytes(
        open(EXAMPLE_RULES.replace("rules.json", "blocked_merchants.txt"), "rb").read())
    part = lines[:800]
    path = tmp_path / "transactions.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(part)))
    out = tmp_path / "decisions"
    assert fraud.main([f"--rules={tmp_path / 'rules.yaml'}", "--source=file", f"--input={path}",
                       "--sink=jsonl", f"--output={out}"]) == 0
    rows = read_jsonl_dir(str(out), "fraud")
    assert decision_table(rows) == expected_table(reference(part)), f"seed {seed}"
