"""What the fraud pipeline's tests share: unseen transactions (a fresh seed per run,
printed on failure) and the independent reference of tests/transforms/fraud.

``FRAUD_TEST_SEED=N`` replays a run's data."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any, Iterable

from tests.transforms.fraud.reference import Result, parse_line, reference_decisions
from transforms.fraud.generate import SyntheticTransactions

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_RULES = str(ROOT / "docs" / "examples" / "fraud" / "rules.json")


def fresh_seed() -> int:
    return int(os.environ.get("FRAUD_TEST_SEED") or random.SystemRandom().randrange(10**6))


def _variant(obj: dict[str, Any], rnd: random.Random) -> bytes:
    """A valid transaction written in one of the contract's rarer forms."""
    kind = rnd.randrange(7)
    text = json.dumps(obj)
    if kind == 0:  # the amount as an exponent
        return text.replace(f'"amount": {json.dumps(obj["amount"])}',
                            f'"amount": {obj["amount"]}e0').encode()
    if kind == 1:  # a key given twice: the last one counts
        return (text[:-1] + f', "amount": {json.dumps(obj["amount"])}}}').replace(
            '"amount": ', '"amount": 999999, "amount": ', 1).encode()
    if kind == 2:  # non-ASCII merchant, raw UTF-8 and escaped
        return json.dumps({**obj, "merchant": obj["merchant"] + "-café"},
                          ensure_ascii=rnd.random() < 0.5).encode()
    if kind == 3 and isinstance(obj["timestamp"], (int, float)):  # many decimals
        return text.replace(f'"timestamp": {json.dumps(obj["timestamp"])}',
                            f'"timestamp": {int(obj["timestamp"])}.1234567', 1).encode()
    if kind == 4:  # pretty-printed keys in another order, spaces
        return json.dumps(dict(reversed(list(obj.items()))), indent=None,
                          separators=(" , ", " : ")).encode()
    if kind == 5:  # a Windows line ending (the file reader drops the \r)
        return text.encode() + b"\r"
    return text.encode()


def transactions(seed: int, count: int = 2500, *, cards: int | None = None,
                 rate: float | None = None) -> list[bytes]:
    """Unseen lines: realistic traffic with bursts, spikes, far-away use, blocklisted
    merchants, ties, lines out of event-time order, every contract form, invalid lines of
    every kind, blank lines and rarer valid forms mixed in. ``cards`` and ``rate``
    (transactions per second of event time) are drawn from the seed unless given."""
    rnd = random.Random(seed)
    generator = SyntheticTransactions(
        seed=seed, cards=cards or rnd.randint(60, 120), merchants=rnd.randint(30, 80),
        rate=rate or rnd.choice([0.5, 1.0, 2.0]), dirty=0.06, burst=0.04, spike=0.03,
        far_away=0.02, blocked=0.02, tie=0.03, out_of_order=0.05)
    lines: list[bytes] = []
    for obj, payload in generator.records(count):
        if obj is not None and rnd.random() < 0.05:
            payload = _variant(obj, rnd)
        lines.append(payload)
        if rnd.random() < 0.005:
            lines.append(rnd.choice([b"", b"   ", b"\t"]))
    return lines


def file_lines(lines: Iterable[bytes]) -> list[bytes]:
    """The lines as the file reader yields them (a trailing \\r dropped)."""
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def reference(lines: list[bytes], rules: str = EXAMPLE_RULES, **args: Any) -> Result:
    return reference_decisions(file_lines(lines), rules, **args)


def decision_table(rows: Iterable[dict[str, Any]]) -> dict[str, tuple]:
    """tx_id -> (decision, rules, timestamp, card_id); a tx_id seen twice must agree."""
    out: dict[str, tuple] = {}
    for row in rows:
        entry = (row["decision"], list(row["rules"]), row["timestamp"], row["card_id"])
        assert out.setdefault(row["tx_id"], entry) == entry, f"{row['tx_id']}: two decisions"
    return out


def expected_table(result: Result) -> dict[str, tuple]:
    return decision_table(result.decisions)


def in_event_time_order_per_card(lines: list[bytes]) -> list[tuple[bytes, str]]:
    """(line, card) in the order a topic keyed by card delivers them when producers send
    each card's transactions in event-time order; an invalid line keeps its place after
    its predecessor. Ties keep file order."""
    keyed = []
    last = (-math.inf, 0)
    for number, line in enumerate(file_lines(lines), start=1):
        if not line.strip():
            continue
        tx = parse_line(line)
        if tx is not None:
            last = (tx["t"], number)
        keyed.append((last, number, line, tx["card_id"] if tx else f"invalid-{number}"))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [(line, card) for _, _, line, card in keyed]


__all__ = ["EXAMPLE_RULES", "ROOT", "decision_table", "expected_table", "file_lines",
           "fresh_seed", "in_event_time_order_per_card", "parse_line", "reference",
           "transactions"]
