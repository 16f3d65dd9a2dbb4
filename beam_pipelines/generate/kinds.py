"""The four kinds of sample input, one seeded generator each, and what a pipeline reads.

Each kind names its pipeline, its generator (the same one the pipeline's synthetic
source, the tests and the benchmarks use: there is one generator per record kind) and
the field its Kafka messages are keyed by, so one entity's records stay in order in one
partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from transforms.io.synthetic.events import DEFAULT_START as _EVENTS_START
from transforms.io.synthetic.events import SyntheticEvents
from transforms.io.synthetic.logs import SyntheticLogs
from transforms.io.synthetic.readings import DEFAULT_START as _READINGS_START
from transforms.io.synthetic.readings import SyntheticReadings
from transforms.io.synthetic.transactions import DEFAULT_START as _TX_START
from transforms.io.synthetic.transactions import SyntheticTransactions

__all__ = ["KINDS", "Kind", "records"]


@dataclass(frozen=True)
class Kind:
    """One kind of record: where it goes and how it is made."""

    name: str
    readers: str  # the pipelines that read it, first the main one
    contract: str  # its fields, for --help
    key_field: str  # Kafka message key
    rate: float  # default records per second of event time
    start: float  # default event time of the first record (epoch seconds)
    # (seed, rate, dirty, start) -> a generator with records(count) -> (dict | None, bytes)
    make: Callable[[int, float, float, float], Any]


KINDS: dict[str, Kind] = {
    kind.name: kind for kind in (
        Kind("events", "pageviews, sessions, train_recommender",
             "user_id, action, page, timestamp", "user_id", 20.0, _EVENTS_START,
             lambda seed, rate, dirty, start: SyntheticEvents(
                 seed=seed, rate=rate, malformed=dirty, start=start)),
        Kind("readings", "iot_alerts",
             "DeviceId, Temperature, Humidity, EventTime", "DeviceId", 4.0, _READINGS_START,
             lambda seed, rate, dirty, start: SyntheticReadings(
                 seed=seed, rate=rate, malformed=dirty, start=start)),
        Kind("transactions", "fraud",
             "tx_id, card_id, amount, currency, merchant, country, lat, lon, timestamp",
             "card_id", 1.0, _TX_START,
             lambda seed, rate, dirty, start: SyntheticTransactions(
                 seed=seed, rate=rate, dirty=dirty, start=start)),
        Kind("logs", "error_rate",
             "service, timestamp, level and/or status", "service", 4.0, _READINGS_START,
             lambda seed, rate, dirty, start: SyntheticLogs(
                 seed=seed, rate=rate, malformed=dirty, start=start)),
    )
}


def records(kind: str, count: int, *, seed: int = 42, dirty: float = 0.0,
            start: Optional[float] = None, rate: Optional[float] = None,
            ) -> Iterator[tuple[Optional[dict], bytes]]:
    """``count`` records of ``kind``: (the record, or None when it is malformed on purpose;
    its JSON line without the newline). The same arguments always give the same lines."""
    spec = KINDS[kind]
    generator = spec.make(seed, rate or spec.rate, dirty,
                          spec.start if start is None else start)
    return generator.records(count)
