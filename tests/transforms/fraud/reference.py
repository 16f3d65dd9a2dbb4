"""A careful reference of the fraud semantics (issue 22), written apart from the engine.

Nothing here imports the project: the contract, the rules file and every rule kind are
re-read from the issue and docs/fraud.md and written as plainly as possible. Valid
transactions are sorted once per key by (event time, line number), and each rule looks
at the whole list of the key's transactions before the one decided: no state, no
expiry bookkeeping, no incremental sums. Numbers are Fractions, so every comparison is
exact; only the geo-velocity distance is floating point, with the documented formula.

    result = reference_decisions(lines, rules_path)   # lines: the input file's lines
    result.decisions   # one dict per valid line, in line order
    result.invalid     # 1-based numbers of the lines that must be dead letters
"""

from __future__ import annotations

import datetime
import json
import math
import os
from fractions import Fraction
from typing import Any, NamedTuple

STRING_FIELDS = ("tx_id", "card_id", "currency", "merchant", "country")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
UTC_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
FIRST_SECOND = 946_684_800  # 2000-01-01T00:00:00Z
END_SECOND = 4_102_444_800  # 2100-01-01T00:00:00Z
THIRTY_DAYS = 30 * 24 * 3600


class Result(NamedTuple):
    decisions: list[dict[str, Any]]
    invalid: list[int]


def _no_constants(name):
    raise ValueError(name)


def _is_number(value) -> bool:
    return isinstance(value, (int, Fraction)) and not isinstance(value, bool)


def _finite_double(value) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _time(value) -> Fraction | None:
    """Exact event time in seconds, or None when the contract rejects it."""
    if _is_number(value):
        seconds = Fraction(value)
    elif isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
            return None
        try:
            delta = moment - UTC_EPOCH
        except OverflowError:
            return None
        seconds = Fraction(delta.days * 86400 + delta.seconds) + Fraction(delta.microseconds, 10**6)
    else:
        return None
    if not FIRST_SECOND <= math.floor(seconds) < END_SECOND:
        return None
    return seconds


def parse_line(line: bytes) -> dict[str, Any] | None:
    """The transaction a line holds, with exact numbers, or None when it is invalid."""
    try:
        obj = json.loads(line.decode("utf-8"), parse_float=Fraction, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError):
        return None
    if type(obj) is not dict:
        return None
    tx: dict[str, Any] = {}
    for name in STRING_FIELDS:
        value = obj.get(name)
        if type(value) is not str or value == "":
            return None
        tx[name] = value
    if len(tx["currency"]) != 3 or any(c not in LETTERS for c in tx["currency"]):
        return None
    if len(tx["country"]) != 2 or any(c not in LETTERS for c in tx["country"]):
        return None
    for name in ("amount", "lat", "lon"):
        value = obj.get(name)
        if not _is_number(value) or not _finite_double(value):
            return None
        number = Fraction(value)  # type: ignore[arg-type]  # checked by _is_number
        if name == "amount" and not number > 0:
            return None
        if name == "lat" and not -90 <= number <= 90:
            return None
        if name == "lon" and not -180 <= number <= 180:
            return None
        tx[name] = number
    t = _time(obj.get("timestamp"))
    if t is None:
        return None
    tx["t"] = t
    return tx


def read_rules(path: str) -> list[dict[str, Any]]:
    """The rules of a (valid) rules file, with blocklists read into sets."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        rules = yaml.safe_load(text)
    else:
        rules = json.loads(text, parse_float=Fraction)
    if isinstance(rules, dict):
        rules = rules["rules"]
    for rule in rules:
        if rule["kind"] == "blocklist":
            list_path = os.path.join(os.path.dirname(os.path.abspath(path)), rule["list"])
            with open(list_path, encoding="utf-8-sig") as handle:
                values = set()
                for line in handle.read().splitlines():
                    line = line.strip()
                    if line and line[0] != "#":
                        values.add(line)
            rule["values"] = values
    return rules


def _exact(value) -> Fraction:
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def distance_km(lat1, lon1, lat2, lon2) -> float:
    """Haversine, Earth radius 6371.0 km (the textbook formula docs/fraud.md gives)."""
    lat1, lon1, lat2, lon2 = float(lat1), float(lon1), float(lat2), float(lon2)
    d_lat = math.radians(lat2 - lat1)
    d_lon = math.radians(lon2 - lon1)
    h = (math.sin(d_lat / 2) ** 2
         + math.cos(math.radians(lat1)) * math.cos(math.radians(lat2)) * math.sin(d_lon / 2) ** 2)
    return 6371.0 * 2 * math.asin(math.sqrt(min(h, 1.0)))


def _fires(rule: dict[str, Any], tx: dict[str, Any], before: list[dict[str, Any]],
           ttl: Fraction) -> bool:
    """Whether ``rule`` fires for ``tx``; ``before``: the key's transactions decided
    before it, in order (for a stateless rule, unused)."""
    kind = rule["kind"]
    if kind == "threshold":
        actual = tx[rule["field"]] if rule["field"] != "timestamp" else tx["t"]
        op, value = rule["op"], rule["value"]
        if op in ("in", "not_in"):
            values = [v if isinstance(v, str) else _exact(v) for v in value]
            return (actual in values) == (op == "in")
        value = value if isinstance(value, str) else _exact(value)
        if op == ">":
            return actual > value
        if op == ">=":
            return actual >= value
        if op == "<":
            return actual < value
        if op == "<=":
            return actual <= value
        if op == "==":
            return actual == value
        return actual != value
    if kind == "blocklist":
        return tx[rule["field"]] in rule["values"]
    t = tx["t"]
    recent = [e for e in before if e["t"] > t - ttl]  # within the state TTL
    if kind == "velocity":
        window = _exact(rule["window"])
        count = 1 + len([e for e in recent if t - window < e["t"] <= t])
        return count > rule["max_count"]
    if kind == "amount_spike":
        history = recent[-rule["history"]:]
        if len(history) < rule["min_history"]:
            return False
        mean = sum(e["amount"] for e in history) / len(history)
        return tx["amount"] > _exact(rule["factor"]) * mean
    if kind == "geo_velocity":
        if not before or before[-1]["t"] <= t - ttl:
            return False
        previous = before[-1]
        seconds = max(t - previous["t"], 1)
        km = distance_km(previous["lat"], previous["lon"], tx["lat"], tx["lon"])
        return Fraction(km * 3600 / float(seconds)) > _exact(rule["max_kmh"])
    raise AssertionError(f"unknown kind {kind}")


def iso_utc(seconds: Fraction) -> str:
    micros = round(seconds * 10**6)
    moment = UTC_EPOCH + datetime.timedelta(microseconds=micros)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += ("." + f"{moment.microsecond:06d}").rstrip("0")
    return text + "Z"


def reference_decisions(lines: list[bytes], rules: str | list[dict[str, Any]], *,
                        state_ttl: int | Fraction = THIRTY_DAYS) -> Result:
    """What the engine must decide for ``lines`` (batch: event-time order, ties by line)."""
    rule_list = read_rules(rules) if isinstance(rules, str) else rules
    ttl = Fraction(state_ttl)
    valid: list[dict[str, Any]] = []
    invalid: list[int] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        tx = parse_line(line)
        if tx is None:
            invalid.append(number)
        else:
            tx["line"] = number
            valid.append(tx)
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (key field, value) -> sorted
    for rule in rule_list:
        key = rule.get("key", "card_id")
        if rule["kind"] in ("velocity", "amount_spike", "geo_velocity"):
            for tx in valid:
                by_key.setdefault((key, tx[key]), [])
    for (key, value), same_key in by_key.items():
        same_key.extend(sorted((e for e in valid if e[key] == value),
                               key=lambda e: (e["t"], e["line"])))
    decisions = []
    for tx in valid:
        fired = []
        for rule in rule_list:
            before: list[dict[str, Any]] = []
            if rule["kind"] in ("velocity", "amount_spike", "geo_velocity"):
                key = rule.get("key", "card_id")
                same_key = by_key[(key, tx[key])]
                before = same_key[:same_key.index(tx)]
            if _fires(rule, tx, before, ttl):
                fired.append(rule["name"])
        actions = {rule["action"] for rule in rule_list if rule["name"] in fired}
        decision = "block" if "block" in actions else "review" if "review" in actions else "allow"
        decisions.append({"line": tx["line"], "tx_id": tx["tx_id"], "card_id": tx["card_id"],
                          "decision": decision, "rules": sorted(fired),
                          "timestamp": iso_utc(tx["t"])})
    return Result(decisions, invalid)
