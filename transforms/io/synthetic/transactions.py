"""Seeded, realistic card transactions in the fraud input contract, for samples and tests.

::

    from transforms.io.synthetic.transactions import SyntheticTransactions, write_transactions
    lines = list(SyntheticTransactions(seed=7, dirty=0.05).payloads(10_000))
    write_transactions("transactions.jsonl", 10_000, seed=7, dirty=0.05)

What the data holds, so every rule kind has something to find:

* many cards, each living in one city and shopping at that city's merchants (fixed
  locations), with amounts around the card's own typical amount;
* bursts: a card used several times within seconds at one merchant (velocity);
* spikes: one amount many times the card's usual (amount_spike);
* far-away use: a card used on another continent minutes after its last use
  (geo_velocity); and now and then a card that really travelled, hours later;
* blocklisted merchants (:data:`BLOCKED_MERCHANTS`, also in
  ``docs/examples/fraud/blocked_merchants.txt``);
* equal timestamps for one card, and lines out of event-time order (a file is not
  sorted by time; batch decides in event-time order anyway);
* every form the contract accepts: epoch seconds as integers and decimals, ISO-8601 with
  ``Z`` and with offsets, integer and decimal amounts, extra fields;
* with ``dirty`` > 0, that fraction of lines breaks the contract, each in one of
  :data:`INVALID_KINDS`.

Lines are generated in sequence from one seeded random stream: the same arguments give
the same lines, and the first ``n`` lines of a longer run are the lines of a run of ``n``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import random
from typing import Any, Iterator

__all__ = [
    "BLOCKED_MERCHANTS",
    "DEFAULT_START",
    "INVALID_KINDS",
    "SyntheticTransactions",
    "invalid_payload",
    "write_transactions",
]

DEFAULT_START = 1_704_067_200  # 2024-01-01T00:00:00Z
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

# (city, country, currency, lat, lon, UTC offset in minutes)
CITIES = (
    ("Berlin", "DE", "EUR", 52.5200, 13.4050, 60),
    ("Paris", "FR", "EUR", 48.8566, 2.3522, 60),
    ("London", "GB", "GBP", 51.5074, -0.1278, 0),
    ("New York", "US", "USD", 40.7128, -74.0060, -300),
    ("San Francisco", "US", "USD", 37.7749, -122.4194, -480),
    ("Sao Paulo", "BR", "BRL", -23.5505, -46.6333, -180),
    ("Tokyo", "JP", "JPY", 35.6762, 139.6503, 540),
    ("Sydney", "AU", "AUD", -33.8688, 151.2093, 600),
    ("Mumbai", "IN", "INR", 19.0760, 72.8777, 330),
    ("Lagos", "NG", "NGN", 6.5244, 3.3792, 60),
    ("Toronto", "CA", "CAD", 43.6532, -79.3832, -300),
    ("Singapore", "SG", "SGD", 1.3521, 103.8198, 480),
)
BLOCKED_MERCHANTS = ("quickcash-transfers", "gift-card-depot-77", "crypto-atm-express")
INVALID_KINDS = (
    "truncated_json",
    "not_an_object",
    "invalid_utf8",
    "nan_literal",
    "missing_tx_id",
    "empty_card_id",
    "card_id_number",
    "amount_string",
    "amount_boolean",
    "amount_zero",
    "amount_negative",
    "amount_null",
    "currency_lowercase",
    "currency_four_letters",
    "country_name",
    "merchant_empty",
    "lat_out_of_range",
    "lon_out_of_range",
    "lat_string",
    "timestamp_naive",
    "timestamp_out_of_range",
    "timestamp_boolean",
    "timestamp_garbage",
)
_CHANNELS = ("pos", "ecom", "contactless", "atm")
_MCCS = ("5411", "5812", "5999", "4111", "5732", "7011")


class _Card:
    __slots__ = ("card_id", "city", "typical", "last_time", "merchants")

    def __init__(self, card_id: str, city: int, typical: float, merchants: list[int]) -> None:
        self.card_id = card_id
        self.city = city
        self.typical = typical
        self.last_time: float | None = None
        self.merchants = merchants


class SyntheticTransactions:
    """Deterministic transactions; ``records(n)`` yields (transaction dict or None when the
    line is invalid, payload bytes).

    :param seed: the random seed; the same arguments always give the same lines.
    :param cards: how many cards transact.
    :param merchants: how many ordinary merchants (spread over the cities).
    :param rate: transactions per second of event time (all cards together).
    :param dirty: the fraction of lines that break the contract, in [0, 1].
    :param burst / spike / far_away / blocked / tie: the fraction of lines that start a
        burst, are a spike, are used far away, at a blocklisted merchant, or repeat the
        card's previous timestamp.
    :param out_of_order: the fraction of lines whose event time is moved back by up to
        ``max_delay`` seconds (the file is not in event-time order).
    :param start: the first event time, epoch seconds.
    """

    def __init__(self, seed: int = 42, cards: int = 1000, merchants: int = 120, rate: float = 1.0,
                 dirty: float = 0.0, burst: float = 0.01, spike: float = 0.01,
                 far_away: float = 0.005, blocked: float = 0.005, tie: float = 0.01,
                 out_of_order: float = 0.02, max_delay: float = 120.0,
                 start: float = DEFAULT_START) -> None:
        for name, value in (("dirty", dirty), ("burst", burst), ("spike", spike),
                            ("far_away", far_away), ("blocked", blocked), ("tie", tie),
                            ("out_of_order", out_of_order)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
        if cards < 1 or merchants < 1:
            raise ValueError(f"cards and merchants must be >= 1, got {cards!r}, {merchants!r}")
        if rate <= 0:
            raise ValueError(f"rate must be > 0 transactions per second, got {rate!r}")
        self.seed, self.cards, self.merchant_count, self.rate = seed, cards, merchants, rate
        self.dirty, self.burst, self.spike, self.far_away = dirty, burst, spike, far_away
        self.blocked, self.tie, self.out_of_order, self.max_delay = blocked, tie, out_of_order, max_delay
        self.start = start
        self._cursor: tuple[int, Iterator] | None = None  # (next line, the lines from there)

    # ---- the world --------------------------------------------------------------------

    def _world(self, rnd: random.Random) -> tuple[list[_Card], list[tuple[str, int, float, float]]]:
        merchants = []
        for index in range(self.merchant_count):
            city = index % len(CITIES)
            _, _, _, lat, lon, _ = CITIES[city]
            # Merchants within a few km of the city centre.
            merchants.append((f"merchant-{index:04d}", city,
                              round(lat + rnd.uniform(-0.03, 0.03), 5),
                              round(lon + rnd.uniform(-0.03, 0.03), 5)))
        by_city: dict[int, list[int]] = {}
        for index, (_, city, _, _) in enumerate(merchants):
            by_city.setdefault(city, []).append(index)
        cards = []
        for index in range(self.cards):
            city = rnd.randrange(len(CITIES))
            local = by_city.get(city) or list(range(len(merchants)))
            favourites = rnd.sample(local, min(len(local), rnd.randint(2, 6)))
            cards.append(_Card(f"card-{index:05d}", city, math.exp(rnd.gauss(3.5, 0.8)), favourites))
        return cards, merchants

    # ---- lines ------------------------------------------------------------------------

    def records(self, count: int, first: int = 0) -> Iterator[tuple[dict[str, Any] | None, bytes]]:
        """(transaction dict or None when the line is invalid, payload) for lines
        ``first .. first + count - 1``. Lines come from one random stream, so a range is
        generated from the start; consecutive ranges (as the synthetic source reads them)
        continue where the previous one stopped."""
        if first < 0 or count < 0:
            raise ValueError(f"first and count must be >= 0, got {first!r}, {count!r}")
        cursor = self._cursor
        if cursor is None or cursor[0] > first:
            cursor = (0, self._lines())
        position, lines = cursor
        self._cursor = None  # in use: a range that fails half-way starts again next time
        for _ in range(first - position):
            next(lines)
        for _ in range(count):
            yield next(lines)
        self._cursor = (first + count, lines)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cursor"] = None  # a running generator does not pickle
        return state

    def _lines(self) -> Iterator[tuple[dict[str, Any] | None, bytes]]:
        rnd = random.Random(self.seed)
        cards, merchants = self._world(rnd)
        now = float(self.start)
        index = 0
        pending: list[dict[str, Any]] = []  # the rest of a burst or a tie
        while True:
            if pending:
                tx = pending.pop(0)
            else:
                now += rnd.expovariate(self.rate)
                tx = self._next(rnd, cards, merchants, now, index, pending)
                now = max(now, tx["timestamp"])
            tx["tx_id"] = f"tx-{index:08d}"
            index += 1
            if self.dirty and rnd.random() < self.dirty:
                yield None, invalid_payload(self._render(tx, rnd), rnd.choice(INVALID_KINDS))
                continue
            obj = self._render(tx, rnd)
            yield obj, json.dumps(obj, separators=(",", ":")).encode("utf-8")

    def transactions(self, count: int, first: int = 0) -> Iterator[dict[str, Any]]:
        for obj, _ in self.records(count, first):
            if obj is not None:
                yield obj

    def payloads(self, count: int, first: int = 0) -> Iterator[bytes]:
        for _, payload in self.records(count, first):
            yield payload

    def _next(self, rnd: random.Random, cards: list[_Card], merchants: list, now: float,
              index: int, pending: list[dict[str, Any]]) -> dict[str, Any]:
        card = rnd.choice(cards)
        merchant = merchants[rnd.choice(card.merchants)]
        amount = card.typical * math.exp(rnd.gauss(0, 0.35))
        city = card.city
        lat, lon = merchant[2], merchant[3]
        name = merchant[0]
        when = now
        roll = rnd.random()
        if roll < self.spike:
            amount *= rnd.uniform(5, 40)
        elif roll < self.spike + self.far_away and card.last_time is not None:
            # Minutes after the last use, in a city on another continent.
            city = (card.city + rnd.randrange(3, len(CITIES) - 2)) % len(CITIES)
            _, _, _, lat, lon, _ = CITIES[city]
            lat, lon = round(lat + rnd.uniform(-0.05, 0.05), 5), round(lon + rnd.uniform(-0.05, 0.05), 5)
            when = card.last_time + rnd.uniform(60, 1800)
            name = f"merchant-abroad-{city:02d}"
        elif roll < self.spike + self.far_away + self.blocked:
            name = rnd.choice(BLOCKED_MERCHANTS)
        elif roll < self.spike + self.far_away + self.blocked + self.burst:
            # Card testing: several small charges at one merchant within seconds.
            at = when
            for _ in range(rnd.randint(4, 10)):
                at += rnd.uniform(0.2, 6.0)
                pending.append(self._tx(card, name, city, lat, lon,
                                        round(rnd.uniform(0.5, 5.0), 2), at))
        elif roll < self.spike + self.far_away + self.blocked + self.burst + self.tie:
            pending.append(self._tx(card, name, city, lat, lon, amount * rnd.uniform(0.5, 1.5), when))
        if rnd.random() < self.out_of_order:
            when -= rnd.uniform(0, self.max_delay)
        card.last_time = max(card.last_time or when, when)
        return self._tx(card, name, city, lat, lon, amount, when)

    @staticmethod
    def _tx(card: _Card, merchant: str, city: int, lat: float, lon: float, amount: float,
            when: float) -> dict[str, Any]:
        _, country, currency, _, _, _ = CITIES[city]
        return {"card_id": card.card_id, "merchant": merchant, "country": country,
                "currency": currency, "lat": lat, "lon": lon, "amount": amount,
                "timestamp": when, "city": city}

    def _render(self, tx: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
        """The JSON object of a transaction, in one of the contract's forms."""
        amount = tx["amount"]
        amount = max(1, round(amount)) if rnd.random() < 0.3 else max(0.01, round(amount, 2))
        seconds = round(tx["timestamp"], 3)
        form = rnd.random()
        timestamp: Any
        if form < 0.25:
            timestamp = int(seconds)
        elif form < 0.5:
            timestamp = seconds
        elif form < 0.75:
            timestamp = iso(seconds, zulu=True)
        else:
            timestamp = iso(seconds, CITIES[tx["city"]][5])
        obj: dict[str, Any] = {
            "tx_id": tx["tx_id"], "card_id": tx["card_id"], "amount": amount,
            "currency": tx["currency"], "merchant": tx["merchant"], "country": tx["country"],
            "lat": tx["lat"], "lon": tx["lon"], "timestamp": timestamp,
        }
        extra = rnd.random()
        if extra < 0.3:
            obj["channel"] = rnd.choice(_CHANNELS)
        elif extra < 0.4:
            obj["mcc"] = rnd.choice(_MCCS)
            obj["meta"] = {"device": f"dev-{rnd.randrange(1000):03d}", "3ds": rnd.random() < 0.5}
        return obj


def iso(seconds: float, offset_minutes: int = 0, *, zulu: bool = False) -> str:
    """Epoch seconds as ISO-8601 local time at ``offset_minutes``, milliseconds kept."""
    zone = _dt.timezone(_dt.timedelta(minutes=offset_minutes))
    moment = (_EPOCH + _dt.timedelta(milliseconds=round(seconds * 1000))).astimezone(zone)
    text = moment.isoformat(timespec="milliseconds")
    return text[: -len("+00:00")] + "Z" if zulu and offset_minutes == 0 else text


def invalid_payload(obj: dict[str, Any], kind: str) -> bytes:
    """``obj`` broken in one way the contract rejects (one of :data:`INVALID_KINDS`)."""
    bad = dict(obj)
    text = None
    if kind == "truncated_json":
        return json.dumps(bad).encode()[:-7]
    if kind == "not_an_object":
        return json.dumps([bad]).encode()
    if kind == "invalid_utf8":
        return json.dumps(bad).encode().replace(b'"merchant": "', b'"merchant": "\xff\xfe', 1)
    if kind == "nan_literal":
        text = json.dumps({**bad, "amount": "__NAN__"}).replace('"__NAN__"', "NaN")
    elif kind == "missing_tx_id":
        bad.pop("tx_id")
    elif kind == "empty_card_id":
        bad["card_id"] = ""
    elif kind == "card_id_number":
        bad["card_id"] = 4111111111111111
    elif kind == "amount_string":
        bad["amount"] = str(bad["amount"])
    elif kind == "amount_boolean":
        bad["amount"] = True
    elif kind == "amount_zero":
        bad["amount"] = 0
    elif kind == "amount_negative":
        bad["amount"] = -abs(bad["amount"])
    elif kind == "amount_null":
        bad["amount"] = None
    elif kind == "currency_lowercase":
        bad["currency"] = bad["currency"].lower()
    elif kind == "currency_four_letters":
        bad["currency"] = bad["currency"] + "X"
    elif kind == "country_name":
        bad["country"] = "Germany"
    elif kind == "merchant_empty":
        bad["merchant"] = ""
    elif kind == "lat_out_of_range":
        bad["lat"] = 91.5
    elif kind == "lon_out_of_range":
        bad["lon"] = -180.25
    elif kind == "lat_string":
        bad["lat"] = str(bad["lat"])
    elif kind == "timestamp_naive":
        bad["timestamp"] = "2024-01-01T10:00:00"
    elif kind == "timestamp_out_of_range":
        bad["timestamp"] = "2101-01-01T00:00:00Z"
    elif kind == "timestamp_boolean":
        bad["timestamp"] = False
    elif kind == "timestamp_garbage":
        bad["timestamp"] = "yesterday"
    else:
        raise ValueError(f"unknown invalid kind {kind!r}; expected one of {', '.join(INVALID_KINDS)}")
    return (text if text is not None else json.dumps(bad)).encode()


def write_transactions(path: str, count: int, *, seed: int = 42, dirty: float = 0.0,
                       **options: Any) -> int:
    """Write ``count`` lines (JSON Lines) to ``path``; returns how many are valid."""
    valid = 0
    with open(path, "wb") as out:
        for obj, payload in SyntheticTransactions(seed=seed, dirty=dirty, **options).records(count):
            out.write(payload + b"\n")
            valid += obj is not None
    return valid
