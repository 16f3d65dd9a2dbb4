"""The fraud rules as the benchmark's peers run them: plain Python, written apart from the
engine (transforms/fraud) from docs/fraud.md, the way a team without a framework would.

Floats, not exact decimals, and the per-card state as a small JSON-able dict (Quix Streams
keeps it in RocksDB): ``{"t": [times in the longest window], "a": [[time, amount]...],
"p": [time, lat, lon], "l": latest}``. Rules keyed by another field than ``card_id`` are
refused (the peers keep state per message key, and the benchmark keys by card).
"""

from __future__ import annotations

import datetime
import json
import math
import os
from typing import Any, Optional

__all__ = ["PeerRules", "parse"]

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
TTL = 30 * 86400.0
_OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
        "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b}


def _seconds(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            return None
        return (moment - EPOCH).total_seconds()
    return None


def parse(value: bytes) -> Optional[dict[str, Any]]:
    """A transaction, or None when it breaks the contract (roughly: the peers' check)."""
    try:
        tx = json.loads(value)
    except ValueError:
        return None
    if not isinstance(tx, dict):
        return None
    for name in ("tx_id", "card_id", "merchant", "currency", "country"):
        if not isinstance(tx.get(name), str) or not tx[name]:
            return None
    for name in ("amount", "lat", "lon"):
        if isinstance(tx.get(name), bool) or not isinstance(tx.get(name), (int, float)):
            return None
    t = _seconds(tx.get("timestamp"))
    if t is None or not tx["amount"] > 0:
        return None
    tx["t"] = t
    return tx


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (math.sin(math.radians(lat2 - lat1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 6371.0 * 2 * math.asin(math.sqrt(min(h, 1.0)))


class PeerRules:
    """The rules of a rules file, deciding one card's transactions against its state."""

    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as handle:
            rules = json.load(handle)
        self.rules = rules["rules"] if isinstance(rules, dict) else rules
        for rule in self.rules:
            if rule.get("key", "card_id") != "card_id":
                raise ValueError(f"peer rules: rule {rule['name']}: only card_id keys")
            if rule["kind"] == "blocklist":
                with open(os.path.join(os.path.dirname(path), rule["list"]), encoding="utf-8") as f:
                    rule["values"] = {line.strip() for line in f
                                      if line.strip() and not line.strip().startswith("#")}
            if rule["kind"] == "threshold" and rule["op"] in ("in", "not_in"):
                rule["value"] = set(rule["value"])
        self.window = max((r["window"] for r in self.rules if r["kind"] == "velocity"), default=0)
        self.history = max((r["history"] for r in self.rules if r["kind"] == "amount_spike"),
                           default=0)

    def decide(self, tx: dict[str, Any], state: Optional[dict]) -> tuple[dict, dict]:
        """(the decision, the card's new state)."""
        state = state or {"t": [], "a": [], "p": None, "l": None}
        t = tx["t"]
        latest = t if state["l"] is None or t > state["l"] else state["l"]
        horizon = latest - TTL
        times = [x for x in state["t"] if x > latest - self.window]
        amounts = [pair for pair in state["a"] if pair[0] > horizon]
        previous = state["p"] if state["p"] and state["p"][0] > horizon else None
        fired = []
        for rule in self.rules:
            kind = rule["kind"]
            if kind == "threshold":
                value = tx["t"] if rule["field"] == "timestamp" else tx[rule["field"]]
                hit = _OPS[rule["op"]](value, rule["value"])
            elif kind == "blocklist":
                hit = tx[rule["field"]] in rule["values"]
            elif kind == "velocity":
                hit = 1 + sum(t - rule["window"] < x <= t for x in times) > rule["max_count"]
            elif kind == "amount_spike":
                recent = [a for _, a in amounts[-rule["history"]:]]
                hit = (len(recent) >= rule["min_history"]
                       and tx["amount"] > rule["factor"] * sum(recent) / len(recent))
            else:  # geo_velocity
                hit = previous is not None and _haversine(
                    previous[1], previous[2], tx["lat"], tx["lon"]) * 3600 / max(
                    t - previous[0], 1) > rule["max_kmh"]
            if hit:
                fired.append(rule["name"])
        actions = {r["action"] for r in self.rules if r["name"] in fired}
        decision = "block" if "block" in actions else "review" if actions else "allow"
        times.append(t)
        amounts = (amounts + [[t, tx["amount"]]])[-self.history:] if self.history else []
        new_state = {"t": times, "a": amounts, "p": [t, tx["lat"], tx["lon"]], "l": latest}
        return {"tx_id": tx["tx_id"], "card_id": tx["card_id"], "decision": decision,
                "rules": sorted(fired), "timestamp": tx["timestamp"]}, new_state
