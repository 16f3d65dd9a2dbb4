"""The fraud engine's exact semantics, in plain Python: no Beam here.

A transaction is decided by the stateless rules (``threshold``, ``blocklist``: the
transaction alone) and by the stateful ones (``velocity``, ``amount_spike``,
``geo_velocity``: the transaction and the earlier transactions of its key). The stateful
rules on one key field share one :class:`KeyState` per key value;
:meth:`KeyedRules.evaluate` decides one transaction against its key's state and then adds
the transaction to it. The Beam transforms (:mod:`transforms.fraud.transforms`) only
choose the order and the place this runs in, so batch and streaming share every line of
the semantics.

Order. "Earlier" means earlier in the order transactions are evaluated: event-time order
in batch, ties (equal timestamps) in input order (:func:`~transforms.fraud.contract.
arrival_position`); arrival order in streaming, per key. When a key's transactions arrive
in event-time order the two orders are the same, and so are the decisions.

Exactness. Amounts and times are the ``Decimal`` s written in the input. Sums, products
and differences are computed in a context with unlimited precision (exact), and the spike
rule compares ``amount * n > factor * sum`` instead of dividing for the mean, so
``300 > 3 * mean(100, 100)`` is False, as written. Only geo-velocity is binary floating
point (trigonometry): ``speed = distance_km * 3600 / max(t - t_prev, 1)`` with the
haversine distance, compared exactly with ``max_kmh`` as written.

State. Per key value: the event times of the transactions within the longest velocity
window of the latest event time seen, the last ``max(history)`` (time, amount) pairs, the
previous transaction's (time, lat, lon), and the latest event time seen. Entries at or
before ``latest - state_ttl`` are expired: dropped oldest first, and skipped by the rules
where out-of-order arrival left one behind a newer entry. ``state_ttl`` must be at least
the longest velocity window, so it never changes a velocity count; it bounds how far back
a spike's history and geo-velocity's previous transaction may be. See docs/fraud.md.
"""

from __future__ import annotations

import bisect
import collections
import decimal
import math
from decimal import Decimal
from typing import Any, Iterable, Iterator, Sequence

from transforms.base.errors import ConfigError
from transforms.fraud.records import (
    ALLOW,
    BLOCK,
    REVIEW,
    Decision,
    Transaction,
    event_time_iso,
    utc_now_iso_millis,
)
from transforms.fraud.rules import (
    AmountSpikeRule,
    GeoVelocityRule,
    RuleSet,
    StatefulRule,
    VelocityRule,
)
from transforms.records import UtcTime

__all__ = [
    "DEFAULT_STATE_TTL",
    "EARTH_RADIUS_KM",
    "Engine",
    "KeyState",
    "KeyedRules",
    "haversine_km",
    "speed_kmh",
]

DEFAULT_STATE_TTL = 30 * 86_400  # seconds of event time
EARTH_RADIUS_KM = 6371.0

# Additions, subtractions and multiplications of finite decimals are exact in this context
# (Inexact would raise). No division is ever done in it.
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN,
                         traps=[decimal.Inexact])
_ONE_SECOND = Decimal(1)
_ZERO = Decimal(0)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km on a sphere of radius 6371.0 km (degrees in), by the
    textbook haversine formula, in this order of operations (docs/fraud.md)."""
    d_lat = math.radians(lat2 - lat1)
    d_lon = math.radians(lon2 - lon1)
    h = (math.sin(d_lat / 2) ** 2
         + math.cos(math.radians(lat1)) * math.cos(math.radians(lat2)) * math.sin(d_lon / 2) ** 2)
    # Rounding can push h a hair above 1 for antipodes, where asin is undefined.
    return EARTH_RADIUS_KM * 2 * math.asin(math.sqrt(min(h, 1.0)))


def speed_kmh(distance_km: float, seconds: Decimal) -> float:
    """km/h over ``max(seconds, 1)`` seconds (a negative or sub-second delta counts as 1 s)."""
    return distance_km * 3600 / float(max(seconds, _ONE_SECOND))


class KeyState:
    """What one key value's stateful rules remember. Picklable; small and bounded."""

    __slots__ = ("latest", "times", "amounts", "previous", "total", "ordered")

    def __init__(self, history: int = 0) -> None:
        self.latest: Decimal | None = None  # the latest event time seen
        self.times: list[Decimal] = []  # velocity: event times, sorted
        self.amounts: collections.deque[tuple[Decimal, Decimal]] = collections.deque(
            maxlen=history or None)  # spikes: (event time, amount), evaluation order
        self.previous: tuple[Decimal, float, float] | None = None  # geo: (time, lat, lon)
        # The exact sum of ``amounts``, and whether their times never decrease (then none
        # is expired once the oldest is not, and a spike needs no search).
        self.total: Decimal = _ZERO
        self.ordered = True

    def __getstate__(self) -> tuple:
        return (self.latest, self.times, list(self.amounts), self.amounts.maxlen, self.previous,
                self.total, self.ordered)

    def __setstate__(self, state: tuple) -> None:
        self.latest, self.times, amounts, maxlen, self.previous, self.total, self.ordered = state
        self.amounts = collections.deque(amounts, maxlen=maxlen)

    def add_amount(self, when: Decimal, amount: Decimal) -> None:
        """``amount`` at ``when`` joins the spike history (the oldest leaves a full one)."""
        amounts = self.amounts
        if amounts:
            if when < amounts[-1][0]:
                self.ordered = False
            if len(amounts) == amounts.maxlen:
                self.total = _EXACT.subtract(self.total, amounts[0][1])
        amounts.append((when, amount))
        self.total = _EXACT.add(self.total, amount)

    def drop_oldest_amount(self) -> None:
        _, amount = self.amounts.popleft()
        if self.amounts:
            self.total = _EXACT.subtract(self.total, amount)
        else:
            self.total, self.ordered = _ZERO, True

    def __len__(self) -> int:
        """Entries held (for bounds checks and metrics)."""
        return len(self.times) + len(self.amounts) + (self.previous is not None)

    def __repr__(self) -> str:
        return (f"KeyState(latest={self.latest}, times={len(self.times)}, "
                f"amounts={len(self.amounts)}, previous={self.previous is not None})")


class KeyedRules:
    """The stateful rules keyed by one field, evaluated against one key value's state.

    :param key_field: the contract field the rules are keyed by (``card_id``).
    :param rules: the stateful rules with that key, in file order.
    :param state_ttl: seconds of event time after which an entry is forgotten; at least
        the longest velocity window.
    """

    def __init__(self, key_field: str, rules: Sequence[StatefulRule],
                 state_ttl: float | Decimal = DEFAULT_STATE_TTL) -> None:
        self.key_field = key_field
        self.rules = tuple(rules)
        if any(r.key != key_field for r in self.rules):
            raise ValueError(f"every rule must be keyed by {key_field!r}: {self.rules!r}")
        self.velocity = [r for r in self.rules if isinstance(r, VelocityRule)]
        self.spikes = [r for r in self.rules if isinstance(r, AmountSpikeRule)]
        self.geo = [r for r in self.rules if isinstance(r, GeoVelocityRule)]
        self.state_ttl = _ttl(state_ttl)
        self.max_window = max((r.window for r in self.velocity), default=Decimal(0))
        self.max_history = max((r.history for r in self.spikes), default=0)
        for rule in self.velocity:
            if rule.window > self.state_ttl:
                raise ConfigError(
                    "state_ttl", f"at least the longest velocity window ({rule.window} s, "
                    f"rule {rule.name!r})", float(self.state_ttl))

    def new_state(self) -> KeyState:
        return KeyState(self.max_history)

    def expires_at(self, state: KeyState) -> Decimal | None:
        """The event time from which a transaction would find nothing of ``state`` left
        (every entry at or before ``latest - state_ttl``); None for an empty state."""
        if state.latest is None:
            return None
        return _EXACT.add(state.latest, self.state_ttl)

    def evaluate(self, state: KeyState, tx: Transaction) -> list[str]:
        """The names of the rules that fire for ``tx`` given its key's ``state`` (the key's
        earlier transactions), in file order; then ``tx`` joins the state."""
        t = tx.timestamp
        latest = t if state.latest is None or t > state.latest else state.latest
        horizon = self._expire(state, latest)
        fired = []
        for velocity in self.velocity:
            start = _EXACT.subtract(t, velocity.window)
            earlier = bisect.bisect_right(state.times, t) - bisect.bisect_right(state.times, start)
            if earlier + 1 > velocity.max_count:
                fired.append(velocity.name)
        if self.spikes:
            fired.extend(self._spikes(state, tx.amount, horizon))
        lat, lon = float(tx.lat), float(tx.lon)
        if self.geo and state.previous is not None:
            then, prev_lat, prev_lon = state.previous
            speed = speed_kmh(haversine_km(prev_lat, prev_lon, lat, lon), _EXACT.subtract(t, then))
            fired.extend(geo.name for geo in self.geo if speed > geo.max_kmh)
        # tx joins the state.
        state.latest = latest
        if self.velocity:
            bisect.insort_right(state.times, t)
        if self.spikes:
            state.add_amount(t, tx.amount)
        if self.geo:
            state.previous = (t, lat, lon)
        return fired

    def _spikes(self, state: KeyState, amount: Decimal, horizon: Decimal) -> list[str]:
        """The spike rules that fire: ``amount * n > factor * sum`` over the key's last
        ``history`` earlier amounts within the TTL, newest first. Exact: the context's
        Inexact trap would raise rather than round.

        When the amounts arrived in time order none is expired (the oldest is not, see
        _expire), and a rule over the whole history uses the running total; otherwise an
        entry left stale by out-of-order arrival is skipped here."""
        fired = []
        amounts = state.amounts
        if state.ordered:
            recent: list[Decimal] | None = None
            available = len(amounts)
        else:
            recent = []
            ordered = True
            later = None
            for when, earlier in reversed(amounts):
                if when > horizon:
                    recent.append(earlier)
                if later is not None and when > later:
                    ordered = False
                later = when
            available = len(recent)
            # The entry that arrived out of order may have left: the fast path again.
            state.ordered = ordered
        for spike in self.spikes:
            count = min(spike.history, available)
            if count < spike.min_history:
                continue
            if recent is None and count == len(amounts):
                total = state.total
            else:
                newest = recent if recent is not None else [a for _, a in reversed(amounts)]
                total = _ZERO
                for earlier in newest[:count]:
                    total = _EXACT.add(total, earlier)
            if _EXACT.multiply(amount, count) > _EXACT.multiply(spike.factor, total):
                fired.append(spike.name)
        return fired

    def _expire(self, state: KeyState, latest: Decimal) -> Decimal:
        """Drop what no rule may use any more once ``latest`` is the latest time seen;
        returns the TTL horizon (entries at or before it are expired)."""
        if state.times:
            cut = bisect.bisect_right(state.times, _EXACT.subtract(latest, self.max_window))
            if cut:
                del state.times[:cut]
        horizon = _EXACT.subtract(latest, self.state_ttl)
        amounts = state.amounts
        while amounts and amounts[0][0] <= horizon:  # oldest first
            state.drop_oldest_amount()
        if state.previous is not None and state.previous[0] <= horizon:
            state.previous = None
        return horizon


def _ttl(value: Any) -> Decimal:
    exact = None
    if not isinstance(value, bool) and isinstance(value, (int, float, Decimal)):
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if exact is None or not exact.is_finite() or exact <= 0:
        raise ConfigError("state_ttl", "a number of seconds > 0", value)
    return exact


class Engine:
    """A RuleSet ready to decide: the stateless rules, and :class:`KeyedRules` per key field.

    :param rules: the validated rules (:func:`transforms.fraud.rules.load_rules`).
    :param state_ttl: seconds of event time a key's entries are kept (default 30 days).
    """

    def __init__(self, rules: RuleSet, state_ttl: float | Decimal = DEFAULT_STATE_TTL) -> None:
        if not isinstance(rules, RuleSet):
            raise ConfigError("rules", "a RuleSet (transforms.fraud.rules.load_rules)", rules)
        self.rules = rules
        self.state_ttl = _ttl(state_ttl)
        self.keyed = {key: KeyedRules(key, rules.keyed(key), self.state_ttl)
                      for key in rules.key_fields}
        self._stateless = rules.stateless

    def stateless_fired(self, tx: Transaction) -> list[str]:
        """Names of the stateless rules (threshold, blocklist) that fire for ``tx``."""
        return [rule.name for rule in self._stateless if rule.fires(tx)]  # type: ignore[attr-defined]

    def decide(self, tx: Transaction, fired: Iterable[str],
               decided_at: UtcTime | None = None) -> Decision:
        """The Decision for ``tx`` given the names of every rule that fired for it."""
        if not fired:
            return Decision(tx.tx_id, tx.card_id, ALLOW, [], event_time_iso(tx.timestamp),
                            decided_at or utc_now_iso_millis())
        names = sorted(set(fired))
        actions = self.rules.actions
        verdict = (BLOCK if any(actions[name] == BLOCK for name in names)
                   else REVIEW)
        return Decision(tx.tx_id, tx.card_id, verdict, names, event_time_iso(tx.timestamp),
                        decided_at or utc_now_iso_millis())

    def decide_in_order(self, transactions: Iterable[Transaction],
                        states: dict[str, dict[str, KeyState]] | None = None) -> Iterator[Decision]:
        """Decide transactions one after another in the given order, with every key's state
        in ``states`` (key field -> key value -> KeyState; pass a dict to keep it between
        calls). This is what one process consuming a topic does."""
        states = {} if states is None else states
        for tx in transactions:
            yield self.decide(tx, self._fired(tx, states))

    def decide_batch(self, transactions: Sequence[Transaction],
                     states: dict[str, dict[str, KeyState]], *, replayed: int = 0,
                     decided_at: UtcTime | None = None) -> list[Decision]:
        """:meth:`decide_in_order` for a list (the transactions of one poll), all stamped
        ``decided_at``. The first ``replayed`` transactions only join their keys' state (a
        restart's warm-up, :mod:`transforms.fraud.replay`): they are not decided."""
        decided_at = decided_at or utc_now_iso_millis()
        fired_for = self._fired
        decide = self.decide
        decisions = []
        for index, tx in enumerate(transactions):
            fired = fired_for(tx, states)
            if index >= replayed:
                decisions.append(decide(tx, fired, decided_at))
        return decisions

    def _fired(self, tx: Transaction, states: dict[str, dict[str, KeyState]]) -> list[str]:
        """Every rule that fires for ``tx``; ``tx`` joins its keys' states."""
        fired = self.stateless_fired(tx)
        for key_field, keyed in self.keyed.items():
            by_value = states.get(key_field)
            if by_value is None:
                by_value = states[key_field] = {}
            value = getattr(tx, key_field)
            state = by_value.get(value)
            if state is None:
                state = by_value[value] = keyed.new_state()
            fired.extend(keyed.evaluate(state, tx))
        return fired

    def expire(self, states: dict[str, dict[str, KeyState]], upto: Decimal) -> Decimal | None:
        """Forget every key whose state would be all expired for a transaction at ``upto``
        (``latest + state_ttl <= upto``); returns the earliest time another key expires
        (None when no key is left)."""
        earliest: Decimal | None = None
        for key_field, by_value in states.items():
            keyed = self.keyed[key_field]
            gone = []
            for value, state in by_value.items():
                expires = keyed.expires_at(state)
                if expires is None or expires <= upto:
                    gone.append(value)
                elif earliest is None or expires < earliest:
                    earliest = expires
            for value in gone:
                del by_value[value]
        return earliest
