"""Property tests: on random transactions (few cards and merchants so rules interact,
ties, decimals, far-apart places, invalid lines), the engine equals the reference in
plain Python, in a batch pipeline, and in a streaming pipeline fed in event-time order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.fraud import load_rules

from .reference import reference_decisions
from .support import (
    T0,
    Raw,
    engine_in_order,
    event_time_order,
    expected,
    run_batch,
    run_stream,
    table,
    tx_line,
)

pytestmark = pytest.mark.unit

RULES: list[dict[str, Any]] = [
    {"name": "card_burst", "kind": "velocity", "action": "block", "window": 10, "max_count": 2},
    {"name": "card_burst_slow", "kind": "velocity", "action": "review", "window": 12.5, "max_count": 4},
    {"name": "merchant_rush", "kind": "velocity", "action": "review", "key": "merchant",
     "window": 5, "max_count": 2},
    {"name": "spike", "kind": "amount_spike", "action": "review", "factor": 2, "history": 3,
     "min_history": 2},
    {"name": "merchant_spike", "kind": "amount_spike", "action": "block", "key": "merchant",
     "factor": 1.5, "history": 2, "min_history": 1},
    {"name": "travel", "kind": "geo_velocity", "action": "block", "max_kmh": 500},
    {"name": "big", "kind": "threshold", "action": "review", "field": "amount", "op": ">=", "value": 100},
    {"name": "odd_amounts", "kind": "threshold", "action": "review", "field": "amount", "op": "in",
     "value": [0.7, 3]},
    {"name": "bad_merchant", "kind": "blocklist", "action": "block", "field": "merchant",
     "list": "blocked.txt"},
]
CARD_RULES = [r for r in RULES if r.get("key", "card_id") == "card_id"]

PLACES = [(0, 0), (0, 180), (90, 0), (-90, 0), (48.8566, 2.3522), (48.86, 2.35),
          (-33.8688, 151.2093), (40.7128, -74.006)]
AMOUNTS = ["0.1", "0.2", "0.7", "1", "3", "10", "30", "99.99", "100", "300"]
INVALID = [b'{"tx_id": "bad"', tx_line("neg", amount=-1), tx_line("noon", t="2024-01-01T12:00:00"),
           tx_line("", card="a")]


@st.composite
def transaction_lines(draw) -> list[bytes]:
    count = draw(st.integers(1, 40))
    lines = []
    for index in range(count):
        if draw(st.integers(0, 15)) == 0:
            lines.append(draw(st.sampled_from(INVALID)))
            continue
        offset = draw(st.integers(0, 60))
        fraction = draw(st.sampled_from(["", ".25", ".5"]))
        form = draw(st.sampled_from(["epoch", "iso", "offset"]))
        if form == "epoch":
            t: object = Raw(f"{T0 + offset}{fraction}")
        else:
            hours = 2 if form == "offset" else 0
            stamp = f"2024-01-01T{hours:02d}:{offset // 60:02d}:{offset % 60:02d}{fraction}"
            t = stamp + ("+02:00" if form == "offset" else "Z")
        lat, lon = draw(st.sampled_from(PLACES))
        lines.append(tx_line(f"tx-{index}", card=draw(st.sampled_from(["a", "b", "c"])),
                             amount=Raw(draw(st.sampled_from(AMOUNTS))), t=t,
                             lat=Raw(repr(lat)), lon=Raw(repr(lon)),
                             merchant=draw(st.sampled_from(["m1", "m2", "m3", "evil"]))))
    return lines


@pytest.fixture(scope="module")
def rules_paths(tmp_path_factory):
    directory = tmp_path_factory.mktemp("rules")
    (directory / "blocked.txt").write_text("# test list\nevil\n")
    (directory / "all.json").write_text(json.dumps(RULES))
    (directory / "card.json").write_text(json.dumps(CARD_RULES))
    return {"all": str(directory / "all.json"), "card": str(directory / "card.json")}


TTLS = st.sampled_from([13, 20, 30 * 86400])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(lines=transaction_lines(), which=st.sampled_from(["all", "card"]), ttl=TTLS)
def test_engine_equals_reference(rules_paths, lines, which, ttl):
    rules = load_rules(rules_paths[which])
    want = expected(reference_decisions(lines, rules_paths[which], state_ttl=ttl))
    assert table(engine_in_order(lines, rules, state_ttl=ttl)) == want


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(lines=transaction_lines(), which=st.sampled_from(["all", "card"]), ttl=TTLS)
def test_batch_and_streaming_pipelines_equal_reference(rules_paths, lines, which, ttl):
    rules = load_rules(rules_paths[which])
    reference = reference_decisions(lines, rules_paths[which], state_ttl=ttl)
    want = expected(reference)
    decisions, dead = run_batch(lines, rules, state_ttl=ttl)
    assert table(decisions) == want
    assert sorted(d.origin["line"] for d in dead) == reference.invalid
    decisions, dead = run_stream(event_time_order(lines), rules, chunk=6, state_ttl=ttl)
    assert table(decisions) == want
    assert sorted(d.origin["line"] for d in dead) == reference.invalid
