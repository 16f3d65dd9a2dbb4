"""The engine's exact semantics in plain Python: each rule kind on its edges, ties, TTL,
bounded state, several key fields; checked against the issue's definitions directly and
against the independent reference."""

from __future__ import annotations

import math
import pickle
import re
from decimal import Decimal

import pytest

from transforms.base.errors import ConfigError
from transforms.fraud import Engine, KeyedRules, rules_from_document
from transforms.fraud.engine import haversine_km, speed_kmh

from .reference import reference_decisions
from .support import T0, Raw, engine_in_order, expected, table, tx_line

pytestmark = pytest.mark.unit


def fired(rules: list[dict], lines: list[bytes], **engine_args) -> list[list[str]]:
    """Per line (valid lines only, in file order): the rules that fired, and the reference
    agrees (lines are given in event-time order here, ties in line order)."""
    decisions = engine_in_order(lines, rules_from_document(rules), **engine_args)
    ttl = engine_args.get("state_ttl")
    ref = reference_decisions(lines, [dict(r) for r in rules],
                              **({"state_ttl": ttl} if ttl is not None else {}))
    assert table(decisions) == expected(ref)
    by_id = {d.tx_id: d.rules for d in decisions}
    return [by_id[d["tx_id"]] for d in ref.decisions]


def velocity(window=60, max_count=2, **more):
    return {"name": "burst", "kind": "velocity", "action": "block", "window": window,
            "max_count": max_count, **more}


def spike(factor=3, history=3, min_history=2, **more):
    return {"name": "spike", "kind": "amount_spike", "action": "review", "factor": factor,
            "history": history, "min_history": min_history, **more}


def geo(max_kmh=900, **more):
    return {"name": "geo", "kind": "geo_velocity", "action": "block", "max_kmh": max_kmh, **more}


# ---- velocity -----------------------------------------------------------------------------

def test_velocity_window_is_open_at_t_minus_window_and_closed_at_t():
    lines = [tx_line("a", t=T0), tx_line("b", t=T0 + 60), tx_line("c", t=T0 + 60.5)]
    # b: (T0, T0+60] holds only b (a at exactly t - window is out): count 1.
    # c: (T0+0.5, T0+60.5] holds b and c: count 2.
    assert fired([velocity(max_count=1)], lines) == [[], [], ["burst"]]


def test_velocity_fires_above_max_count_not_at_it():
    lines = [tx_line(f"t{i}", t=T0 + i) for i in range(4)]
    assert fired([velocity(max_count=3)], lines) == [[], [], [], ["burst"]]


def test_velocity_counts_earlier_ties_and_this_one():
    lines = [tx_line(f"t{i}", t=T0) for i in range(3)]
    assert fired([velocity(max_count=2)], lines) == [[], [], ["burst"]]


def test_velocity_with_a_fractional_window_is_exact():
    # 0.1 s apart written in decimal: (t - 0.3, t] must hold exactly the last three.
    times = ["1704067200.1", "1704067200.2", "1704067200.3", "1704067200.4"]
    lines = [tx_line(f"t{i}", t=Raw(s)) for i, s in enumerate(times)]
    assert fired([velocity(window=Decimal("0.3"), max_count=2)], lines) == [[], [], ["burst"], ["burst"]]
    assert fired([velocity(window=Decimal("0.2"), max_count=2)], lines) == [[], [], [], []]


def test_velocity_keys_are_separate():
    lines = [tx_line("a1", card="a", t=T0), tx_line("b1", card="b", t=T0 + 1),
             tx_line("a2", card="a", t=T0 + 2)]
    assert fired([velocity(max_count=1)], lines) == [[], [], ["burst"]]


# ---- amount_spike -------------------------------------------------------------------------

def test_spike_exactly_factor_times_the_mean_does_not_fire():
    lines = [tx_line("h1", amount=100, t=T0), tx_line("h2", amount=100, t=T0 + 1),
             tx_line("x", amount=300, t=T0 + 2), tx_line("y", amount=Raw("300.01"), t=T0 + 3)]
    # y: history (the last 3) = 100, 100, 300 -> mean 166.67, 3x = 500: no.
    assert fired([spike(factor=3)], lines) == [[], [], [], []]
    lines[3] = tx_line("y", amount=Raw("500.01"), t=T0 + 3)
    assert fired([spike(factor=3)], lines) == [[], [], [], ["spike"]]


def test_spike_on_decimals_binary_floats_would_get_wrong():
    # 0.7 + 0.1 is 0.7999999999999999 in binary floats, so the float mean (0.39999999999999997)
    # is below 0.4 and 0.4 > mean would fire; written in decimal, the mean is exactly 0.4.
    lines = [tx_line("h1", amount=Raw("0.7"), t=T0), tx_line("h2", amount=Raw("0.1"), t=T0 + 1),
             tx_line("x", amount=Raw("0.4"), t=T0 + 2)]
    assert (0.7 + 0.1) / 2 < 0.4
    assert fired([spike(factor=1, history=2, min_history=2)], lines) == [[], [], []]


def test_spike_needs_min_history_earlier_transactions():
    lines = [tx_line("h1", amount=10, t=T0), tx_line("x", amount=1000, t=T0 + 1),
             tx_line("y", amount=10_000, t=T0 + 2)]
    # x has 1 earlier (< min_history 2); y has 2: mean 505, 3x = 1515 < 10000.
    assert fired([spike(min_history=2)], lines) == [[], [], ["spike"]]


def test_spike_uses_only_the_last_history_transactions():
    lines = [tx_line("big", amount=1000, t=T0)] + [
        tx_line(f"h{i}", amount=10, t=T0 + 1 + i) for i in range(3)] + [
        tx_line("x", amount=31, t=T0 + 10)]
    # history 3: 10, 10, 10 (the 1000 is older) -> 31 > 30 fires; history 4 would not.
    assert fired([spike(history=3)], lines)[-1] == ["spike"]
    assert fired([spike(history=4)], lines)[-1] == []


# ---- geo_velocity -------------------------------------------------------------------------

def test_haversine_same_point_and_antipodes():
    assert haversine_km(48.85, 2.35, 48.85, 2.35) == 0.0
    half_circumference = math.pi * 6371.0
    assert haversine_km(0, 0, 0, 180) == pytest.approx(half_circumference, rel=1e-12)
    assert haversine_km(90, 0, -90, 0) == pytest.approx(half_circumference, rel=1e-12)
    assert haversine_km(45, 10, -45, -170) == pytest.approx(half_circumference, rel=1e-9)
    # One degree of latitude along a meridian.
    assert haversine_km(0, 0, 1, 0) == pytest.approx(half_circumference / 180, rel=1e-12)


def test_geo_same_point_never_fires_even_at_the_same_instant():
    lines = [tx_line("a", t=T0, lat=10, lon=10), tx_line("b", t=T0, lat=10, lon=10)]
    assert fired([geo(max_kmh=Decimal("0.001"))], lines) == [[], []]


def test_geo_antipodes_fire_without_a_math_domain_error():
    lines = [tx_line("a", t=T0, lat=0, lon=0), tx_line("b", t=T0 + 7200, lat=0, lon=180),
             tx_line("c", t=T0 + 3 * 86400, lat=Raw("-0.0"), lon=0)]
    # 20015 km in 2 h = 10008 km/h; back in 70 h = 286 km/h.
    assert fired([geo(max_kmh=900)], lines) == [[], ["geo"], []]


def test_geo_time_delta_under_one_second_counts_as_one_second():
    # 0.1 degrees of latitude (11.1 km) in 0.25 s: over 1 s that is 40030 km/h, over 0.25 s
    # it would be four times that.
    lines = [tx_line("a", t=T0, lat=0), tx_line("b", t=Raw("1704067200.25"), lat=Raw("0.1"))]
    one_second = speed_kmh(haversine_km(0, 0, 0.1, 0), Decimal("0.25"))
    assert one_second == pytest.approx(11.119 * 3600, rel=1e-3)
    assert fired([geo(max_kmh=Decimal(one_second) - 1)], lines) == [[], ["geo"]]
    assert fired([geo(max_kmh=Decimal(one_second))], lines) == [[], []]  # equal: not above


def test_geo_fires_strictly_above_max_kmh():
    lines = [tx_line("a", t=T0, lat=0, lon=0), tx_line("b", t=T0 + 3600, lat=1, lon=0)]
    speed = speed_kmh(haversine_km(0, 0, 1, 0), Decimal(3600))  # about 111.19 km/h
    assert fired([geo(max_kmh=Decimal(speed))], lines) == [[], []]
    assert fired([geo(max_kmh=Decimal(speed) - Decimal("1e-9"))], lines) == [[], ["geo"]]


def test_geo_compares_with_the_previous_transaction_only():
    lines = [tx_line("a", t=T0, lat=0), tx_line("b", t=T0 + 10, lat=0),
             tx_line("c", t=T0 + 20, lat=50), tx_line("d", t=T0 + 86400, lat=50)]
    assert fired([geo()], lines) == [[], [], ["geo"], []]


# ---- stateless rules and the decision -----------------------------------------------------

def test_threshold_ops_and_exact_decimal_comparisons():
    rules = [
        {"name": "gt", "kind": "threshold", "action": "review", "field": "amount", "op": ">", "value": 100},
        {"name": "ge", "kind": "threshold", "action": "review", "field": "amount", "op": ">=", "value": 100},
        {"name": "lat_ge", "kind": "threshold", "action": "review", "field": "lat", "op": ">=",
         "value": Decimal("10.1")},
        {"name": "ccy_in", "kind": "threshold", "action": "block", "field": "currency", "op": "in",
         "value": ["USD", "GBP"]},
        {"name": "country_not_in", "kind": "threshold", "action": "review", "field": "country",
         "op": "not_in", "value": ["DE", "FR"]},
        {"name": "amount_in", "kind": "threshold", "action": "review", "field": "amount", "op": "in",
         "value": [Decimal("9.99"), 42]},
        {"name": "merchant_ne", "kind": "threshold", "action": "review", "field": "merchant",
         "op": "!=", "value": "m-1"},
    ]
    lines = [tx_line("a", amount=100, lat=Raw("10.1")), tx_line("b", amount=Raw("100.000"), lat=Raw("10.09")),
             tx_line("c", amount=Raw("42.00"), currency="USD", country="US", merchant="m-2"),
             tx_line("d", amount=Raw("9.99"))]
    assert fired(rules, lines) == [["ge", "lat_ge"], ["ge"],
                                   ["amount_in", "ccy_in", "country_not_in", "merchant_ne"],
                                   ["amount_in"]]


def test_decision_is_block_over_review_over_allow_with_sorted_names():
    engine = Engine(rules_from_document([
        {"name": "z_review", "kind": "threshold", "action": "review", "field": "amount", "op": ">", "value": 1},
        {"name": "a_block", "kind": "threshold", "action": "block", "field": "amount", "op": ">", "value": 5},
    ]))
    from transforms.fraud import parse_transaction
    from transforms.validation import decode_json_object

    def decide(amount):
        tx = parse_transaction(decode_json_object(tx_line("x", amount=amount,
                                                          t="2024-01-01T01:00:00.5+01:00")))[0]
        return engine.decide(tx, engine.stateless_fired(tx))

    assert [(d.decision, d.rules) for d in map(decide, (1, 2, 6))] == [
        ("allow", []), ("review", ["z_review"]), ("block", ["a_block", "z_review"])]
    decision = decide(6)
    assert decision.timestamp == "2024-01-01T00:00:00.5Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", decision.decided_at)
    assert (decision.tx_id, decision.card_id) == ("x", "card-1")


# ---- ties, state TTL, bounded state, several keys ------------------------------------------

def test_equal_timestamps_are_decided_in_input_order():
    # Batch order is (event time, line): the tie at T0+5 is decided b then c, though both
    # come after d (T0+1) in the file.
    lines = [tx_line("a", t=T0), tx_line("b", t=T0 + 5), tx_line("c", t=T0 + 5),
             tx_line("d", t=T0 + 1)]
    decisions = engine_in_order(lines, rules_from_document([velocity(max_count=3)]))
    assert [d.tx_id for d in decisions] == ["a", "d", "b", "c"]
    assert [d.rules for d in decisions] == [[], [], [], ["burst"]]


def test_state_ttl_forgets_spike_history_and_the_previous_location():
    rules = [spike(factor=2, history=5, min_history=1), geo(max_kmh=1)]
    lines = [tx_line("h1", amount=10, t=T0, lat=0), tx_line("h2", amount=10, t=T0 + 10, lat=0),
             tx_line("x", amount=100, t=T0 + 110, lat=1)]
    # TTL 100: at T0+110 entries at or before T0+10 are forgotten, h2 exactly at the edge.
    assert fired(rules, lines, state_ttl=100) == [[], [], []]
    assert fired(rules, lines, state_ttl=101) == [[], [], ["geo", "spike"]]
    # The default (30 days) forgets nothing here.
    assert fired(rules, lines) == [[], [], ["geo", "spike"]]


def test_state_ttl_shorter_than_a_velocity_window_is_refused():
    rules = rules_from_document([velocity(window=3600)])
    with pytest.raises(ConfigError, match=r"^state_ttl: expected at least the longest velocity "
                       r"window \(3600 s, rule 'burst'\), got 60"):
        Engine(rules, state_ttl=60)
    with pytest.raises(ConfigError, match="^state_ttl: expected a number of seconds > 0"):
        Engine(rules, state_ttl=0)


def test_state_stays_bounded():
    rules = rules_from_document([velocity(window=60, max_count=100), spike(history=5),
                                 geo(max_kmh=100_000)])
    keyed = KeyedRules("card_id", rules.keyed("card_id"))
    engine = Engine(rules)
    states: dict = {}
    from transforms.fraud import parse_transaction
    from transforms.validation import decode_json_object

    txs = [parse_transaction(decode_json_object(tx_line(f"t{i}", t=T0 + i)))[0] for i in range(2000)]
    list(engine.decide_in_order(txs, states))
    state = states["card_id"]["card-1"]
    assert len(state.times) == 60  # (t - 60, t]: the last 60 seconds, one per second
    assert len(state.amounts) == 5
    assert state.previous is not None and state.latest == T0 + 1999
    # Pickles small and round-trips (the streaming state coder).
    copy = pickle.loads(pickle.dumps(state))
    assert (copy.times, list(copy.amounts), copy.amounts.maxlen, copy.previous, copy.latest) == (
        state.times, list(state.amounts), 5, state.previous, state.latest)
    assert keyed.expires_at(state) == T0 + 1999 + 30 * 86400


def test_rules_keyed_by_different_fields_keep_separate_state():
    rules = [velocity(max_count=2), velocity(name="merchant_burst", key="merchant", max_count=3,
                                             action="review")]
    lines = [tx_line("a1", card="a", merchant="m", t=T0), tx_line("b1", card="b", merchant="m", t=T0 + 1),
             tx_line("c1", card="c", merchant="m", t=T0 + 2), tx_line("a2", card="a", merchant="m", t=T0 + 3),
             tx_line("a3", card="a", merchant="n", t=T0 + 4)]
    assert fired(rules, lines) == [[], [], [], ["merchant_burst"], ["burst"]]


def test_out_of_order_arrival_counts_what_arrived_before():
    # Streaming decides in arrival order: a transaction arriving after a later one sees
    # the later one in its key's state but outside (t - window, t], so it does not count.
    engine = Engine(rules_from_document([velocity(max_count=1)]))
    from transforms.fraud import parse_transaction
    from transforms.validation import decode_json_object

    arrival = [tx_line("late", t=T0 + 30), tx_line("early", t=T0), tx_line("next", t=T0 + 40)]
    txs = [parse_transaction(decode_json_object(line))[0] for line in arrival]
    assert [d.rules for d in engine.decide_in_order(txs)] == [[], [], ["burst"]]


def test_event_times_are_written_exactly_to_the_microsecond():
    from transforms.fraud.records import event_time_iso

    assert event_time_iso(Decimal("1704067200")) == "2024-01-01T00:00:00Z"
    assert event_time_iso(Decimal("1704067200.250")) == "2024-01-01T00:00:00.25Z"
    assert event_time_iso(Decimal("1704067200.0000005")) == "2024-01-01T00:00:00Z"  # half-even
    assert event_time_iso(Decimal("1704067200.0000015")) == "2024-01-01T00:00:00.000002Z"
    assert event_time_iso(Decimal("1704067259.9999999")) == "2024-01-01T00:01:00Z"  # carries
