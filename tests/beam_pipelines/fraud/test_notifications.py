"""The fraud pipeline's review and block decisions as notifications (issue 16): beside the
usual sink, one signed webhook POST per review/block decision, none for allow."""

from __future__ import annotations

import pytest

from beam_pipelines import fraud
from beam_pipelines.testing.files import read_jsonl_dir

from .support import EXAMPLE_RULES, fresh_seed, transactions

pytestmark = pytest.mark.integration

HMAC = "fraud-webhook-secret"


def test_review_and_block_decisions_are_posted_once_each(tmp_path, http_receiver):
    seed = fresh_seed()
    path = tmp_path / "transactions.jsonl"
    path.write_bytes(b"\n".join(transactions(seed, count=600)) + b"\n")
    hook = http_receiver.webhook(HMAC)
    out = tmp_path / "decisions"
    assert fraud.main([f"--rules={EXAMPLE_RULES}", "--source=file", f"--input={path}",
                       "--sink=jsonl", f"--output={out}", f"--dead_letter={tmp_path / 'dead'}",
                       "--notify=webhook", f"--webhook_url={hook.url}",
                       f"--webhook_secret={HMAC}"]) == 0, seed

    flagged = {row["tx_id"]: row for row in read_jsonl_dir(str(out), "fraud")
               if row["decision"] in ("review", "block")}
    assert flagged, f"seed {seed}: no review or block decision to notify about"
    assert hook.problems == [], seed
    posted = [d["tx_id"] for d in hook.deliveries]
    assert sorted(posted) == sorted(flagged), f"seed {seed}: one POST per flagged decision"
    for delivery in hook.deliveries:
        row = flagged[delivery["tx_id"]]
        assert (delivery["decision"], delivery["card_id"], delivery["rules"]) == (
            row["decision"], row["card_id"], row["rules"])
        assert delivery["event_action"] == "trigger"


def test_resolve_after_is_refused_where_there_are_no_incidents(tmp_path, capsys):
    code = fraud.main([f"--rules={EXAMPLE_RULES}", "--notify=webhook",
                       "--webhook_url=http://127.0.0.1:9/hook", "--resolve_after=60"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["error: --resolve_after: applies to incidents only, and fraud notifies alerts "
                   "(--notify_on=alerts)"]
