"""Decisions into PostgreSQL: one row per transaction keyed by tx_id, ``rules`` a text[]
column, times timestamptz; a re-run (what a replay after a crash does) upserts, it does
not duplicate."""

from __future__ import annotations

import pytest

from beam_pipelines import fraud

from .support import EXAMPLE_RULES, expected_table, fresh_seed, reference, transactions

pytestmark = pytest.mark.integration


def test_decisions_are_upserted_on_tx_id_with_rules_as_a_text_array(postgres_dsn, tmp_path):
    import psycopg

    seed = fresh_seed()
    lines = transactions(seed, 600)
    path = tmp_path / "tx.jsonl"
    path.write_bytes(b"\n".join(lines))
    argv = [f"--rules={EXAMPLE_RULES}", "--source=file", f"--input={path}", "--sink=postgres",
            f"--output={postgres_dsn}", "--output_table=fraud_decisions"]
    assert fraud.main(argv) == 0
    assert fraud.main(argv) == 0  # again: every row replaced, none added
    want = expected_table(reference(lines))
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT tx_id, decision, rules, to_char(timestamp AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.US'), card_id FROM fraud_decisions").fetchall()
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'fraud_decisions'").fetchall())
        burst = conn.execute("SELECT count(*) FROM fraud_decisions "
                             "WHERE 'card_burst' = ANY(rules)").fetchone()[0]
    assert types["rules"] == "ARRAY" and types["timestamp"] == "timestamp with time zone"
    assert len(rows) == len(want), f"seed {seed}"
    got = {tx_id: (decision, rules, stamp, card) for tx_id, decision, rules, stamp, card in rows}
    for tx_id, (decision, rules, stamp, card) in want.items():
        assert got[tx_id][:2] == (decision, rules) and got[tx_id][3] == card, (seed, tx_id)
        assert got[tx_id][2].rstrip("0").rstrip(".") + "Z" == stamp.replace(".000", ""), tx_id
    assert burst == sum("card_burst" in rules for _, rules, _, _ in want.values())
