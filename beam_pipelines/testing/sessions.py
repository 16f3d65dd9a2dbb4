"""User sessions in plain Python, to check the sessions pipeline against, and realistic
input lines for it.

* :func:`session_lines`: seeded JSON lines of user events with what real inputs have:
  integer and string user ids of one user (``17`` and ``"17"``), epoch seconds as
  integers and with milliseconds, ISO-8601 times with ``Z`` and with offsets, unicode
  pages, events out of order, events exactly one gap apart, ties, and dirty lines.
* :func:`reference_events`: the input contract for those lines, self-contained (JSON,
  ``user_id`` a non-empty string or an integer, non-empty ``action`` and ``page``,
  ``timestamp`` epoch seconds or ISO-8601 with an offset, within 2000-2100).
* :func:`reference_sessions`: the issue's definition: per user, events in time order; an
  event at least ``gap`` after the previous one starts a new session.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import defaultdict
from decimal import Decimal
from typing import Any, Iterable, NamedTuple, Optional

__all__ = ["ReferenceSession", "micros_of_iso", "reference_events", "reference_sessions",
           "session_lines"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MIN, _MAX = 946_684_800 * 10**6, 4_102_444_800 * 10**6
PAGES = ["/", "/cart", "/checkout", "/search", "/products/1", "/products/2", "/café/menü",
         "/カート"]


class ReferenceSession(NamedTuple):
    user_id: str
    start: int  # micros
    end: int  # micros
    events: int
    distinct_pages: int
    first_page: str
    last_page: str
    duration_seconds: float


def micros_of_iso(text: str) -> int:
    """An ISO-8601 time with an offset (``Z`` included) -> epoch microseconds."""
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = dt.datetime.fromisoformat(text)
    if moment.utcoffset() is None:
        raise ValueError(f"no offset in {text!r}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**6 + delta.microseconds


def _micros(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        micros = int(Decimal(value) * 10**6)  # the lines hold at most milliseconds
    elif isinstance(value, str):
        try:
            micros = micros_of_iso(value)
        except ValueError:
            return None
    else:
        return None
    return micros if _MIN <= micros < _MAX else None


def _constant(name: str) -> Any:
    raise ValueError(name)


def reference_events(lines: Iterable[bytes]) -> list[tuple[str, int, str]]:
    """(user id as a string, time in microseconds, page) of every valid line."""
    events = []
    for line in lines:
        try:
            value = json.loads(line.decode("utf-8"), parse_float=Decimal,
                               parse_constant=_constant)
        except ValueError:
            continue
        if not isinstance(value, dict):
            continue
        user, action, page = value.get("user_id"), value.get("action"), value.get("page")
        if isinstance(user, bool) or not (isinstance(user, int) or (isinstance(user, str) and user)):
            continue
        if not (isinstance(action, str) and action and isinstance(page, str) and page):
            continue
        micros = _micros(value.get("timestamp"))
        if micros is not None:
            events.append((str(user), micros, page))
    return events


def reference_sessions(events: Iterable[tuple[str, int, str]], gap: int) -> list[ReferenceSession]:
    """Sessions of (user, micros, page) events with an inactivity gap of ``gap`` seconds,
    sorted by user and start. Of events at the same instant the first page is the
    smallest and the last page the largest."""
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for user, micros, page in events:
        by_user[user].append((micros, page))
    sessions = []
    for user, timed in by_user.items():
        timed.sort()
        current = [timed[0]]
        for moment, page in timed[1:]:
            if moment - current[-1][0] >= gap * 1_000_000:
                sessions.append(_summary(user, current))
                current = []
            current.append((moment, page))
        sessions.append(_summary(user, current))
    return sorted(sessions)


def _summary(user: str, timed: list[tuple[int, str]]) -> ReferenceSession:
    (start, first_page), (end, last_page) = timed[0], timed[-1]
    return ReferenceSession(user, start, end, len(timed), len({p for _, p in timed}),
                            first_page, last_page, (end - start) / 1e6)


def _iso(micros: int, offset_minutes: int) -> str:
    zone = dt.timezone(dt.timedelta(minutes=offset_minutes))
    moment = (_EPOCH + dt.timedelta(microseconds=micros)).astimezone(zone)
    text = moment.isoformat(timespec="milliseconds" if micros % 10**6 else "seconds")
    return text[:-6] + "Z" if offset_minutes == 0 and text.endswith("+00:00") else text


def _timestamp(rng: random.Random, micros: int) -> Any:
    kind = rng.random()
    if micros % 10**6 == 0 and kind < 0.4:
        return micros // 10**6  # an integer
    if kind < 0.7:
        return float(Decimal(micros) / 10**6)  # seconds with milliseconds
    return _iso(micros, rng.choice([0, 0, 120, -300, 330]))


def _dirty(rng: random.Random, event: dict[str, Any]) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return json.dumps(event).encode()[:-5]  # truncated
    if kind == 1:
        return json.dumps({k: v for k, v in event.items() if k != "page"}).encode()
    if kind == 2:
        return json.dumps({**event, "timestamp": "yesterday"}).encode()
    if kind == 3:
        return json.dumps({**event, "user_id": True}).encode()
    if kind == 4:
        return json.dumps({**event, "page": ""}).encode()
    if kind == 5:
        return json.dumps({**event, "timestamp": "2024-12-01T10:00:00"}).encode()  # no offset
    if kind == 6:
        return b"\xff\xfe not utf-8"
    return b"[1, 2, 3]"


def session_lines(count: int, *, seed: int, gap: int = 60, users: int = 12,
                  dirty: float = 0.05, late: float = 0.05,
                  start: int = 1_733_000_000) -> list[tuple[int, bytes]]:
    """``count`` (time in microseconds, JSON line) of user events, some lines dirty, in
    arrival order; seeded.

    Each user's events come in bursts: most steps are well under ``gap``, some exactly
    ``gap`` (a new session by a hair), some a millisecond less, some far over it. Lines
    arrive in time order except a fraction ``late`` delayed by up to ``gap``.
    """
    rng = random.Random(seed)
    clock = {u: (start + rng.randrange(0, gap)) * 10**6 for u in range(users)}
    timed: list[tuple[int, int, bytes]] = []
    for _ in range(count):
        user = rng.randrange(users)
        step = rng.random()
        if step < 0.08:
            clock[user] += gap * 10**6  # exactly the gap: a new session
        elif step < 0.12:
            clock[user] += gap * 10**6 - 1000  # a millisecond less: the same session
        elif step < 0.2:
            clock[user] += rng.randrange(gap, 4 * gap) * 10**6
        elif step < 0.25:
            pass  # a tie with the user's previous event
        elif step < 0.6:
            clock[user] += rng.randrange(0, gap // 2) * 10**6  # whole seconds
        else:
            clock[user] += rng.randrange(0, gap * 10**6 // 2, 1000)  # milliseconds
        moment = clock[user]
        user_id: Any = user if rng.random() < 0.5 else str(user)  # 7 and "7": one user
        if user % 3 == 0:
            user_id = f"user_{user}"
        event = {"user_id": user_id, "action": rng.choice(["page_view", "click", "scroll"]),
                 "page": rng.choice(PAGES), "timestamp": _timestamp(rng, moment)}
        line = _dirty(rng, event) if rng.random() < dirty else json.dumps(
            event, ensure_ascii=rng.random() < 0.5).encode()
        delay = rng.randrange(0, gap * 10**6) if rng.random() < late else 0
        timed.append((moment + delay, moment, line))
    timed.sort(key=lambda item: item[0])
    return [(moment, line) for _, moment, line in timed]
