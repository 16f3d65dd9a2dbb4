"""The bookkeeping behind deferred commits: what every source position still waits for.

A runner without durable state (the local streaming runner) keeps in-flight elements and
window state in memory, so a source position may be committed (a Kafka offset, a Pub/Sub
acknowledgement, an Event Hubs checkpoint) only once nothing in the run depends on it any
more. The :class:`Gate` of a run knows that from three kinds of facts:

* **tickets**: the runner makes one for the finalization callbacks of each read (a poll,
  a pull, a message); the callbacks run when the ticket is *done*;
* **lineage**: every bundle carries the tokens of the tickets its elements derive from;
  a token is *in flight* while a bundle holding it waits for a step or is being
  processed;
* **holds**: a stateful step (the windowed count) keeps a token *held* while its state
  holds what derives from it (an open window), and releases it once the window's last
  pane is out; the pane carries the hold's own token, so the hold is *written* when that
  pane has reached every sink.

A ticket is done when it is sealed (its read's bundle was committed by the runner), not in
flight and not held. Holds are dropped per step in event-time order: only when every
window of the step that expires by the step's input watermark has been released and
written does the step's *floor* move to that watermark, and only then are those windows'
tokens let go. The floor is what a restart needs: records whose window expires by the
floor have nothing left to contribute (their window was written, or they were late and
dead-lettered), see :meth:`Gate.position`.

Everything here is plain Python under one lock; callbacks run outside it.
"""

# Over 500 lines: the deferred-commit bookkeeping is one state machine; its invariants are easier to check in one file.

from __future__ import annotations

import collections
import copy
import heapq
import itertools
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, NamedTuple, Optional

__all__ = ["Gate", "Hold", "Position", "Staged", "Ticket", "replay_segment"]

_LOG = logging.getLogger(__name__)

# At most this many replay ranges go into a position's metadata (Kafka limits commit
# metadata to 4 KB); leaving some out only makes a restart treat those records as new.
MAX_RANGES = 16
# Watermarks from here on mean "the input has ended", not event time (Beam's end of the
# global window and its MAX_TIMESTAMP).
END_OF_TIME = 9223371950454774999


@dataclass(eq=False)
class Ticket:
    """Finalization callbacks waiting for everything derived from one read."""

    token: int
    callbacks: list[Callable[[], None]]
    stream: Optional[Hashable] = None  # an ordered source's partition, for positions
    first: Optional[int] = None  # the first position read
    next: Optional[int] = None  # the position after the last one read
    replayed: bool = False  # read again after a restart, from a settled range
    sealed: bool = False
    done: bool = False


@dataclass(eq=False)
class Hold:
    """What one window of a stateful step keeps from being committed."""

    owner: Hashable
    step: str
    expiry: int  # micros: when the window's state is dropped (end + allowed lateness)
    token: int  # the window's own token: its panes carry it
    tokens: set[int] = field(default_factory=set)
    released: bool = False  # its last pane is out
    written: bool = False  # released, and its panes reached every sink


class _Step:
    """The holds of one stateful step, in expiry order, and its floor."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.watermark: Optional[int] = None  # the latest input watermark seen (micros)
        self.floor: Optional[int] = None  # windows expiring by it are written and dropped
        self.late_floor: Optional[int] = None  # the floor, short of the end of time
        self.future: list[tuple[int, int, Hold]] = []  # holds expiring after `watermark`
        self.due: list[Hold] = []  # holds expiring by `watermark`, not yet dropped
        self.blocking = 0  # due holds not yet written


class Position(NamedTuple):
    """Where an ordered source may commit, and what a restart from there needs.

    ``offset``: every record before it is done. ``settled``: ranges ``[a, b)`` after it
    whose records were each either done or in a window still open when this was taken;
    ``floors``: per stateful step, windows expiring by that many micros were written.
    A restart reads from ``offset``; a settled record whose window expires by its step's
    floor is skipped (it was counted, or dead-lettered, already), any other record is
    processed as new (and is late if its window expires by the floor).
    """

    offset: int
    settled: tuple[tuple[int, int], ...] = ()
    floors: tuple[tuple[str, int], ...] = ()
    # Per step, the floor as far as event time really got: a run whose input ended (a
    # bounded read) closes every window at its end, which says nothing about records a
    # later run reads; they are late only by this floor.
    late_floors: tuple[tuple[str, int], ...] = ()

    def metadata(self) -> str:
        """What goes beside the committed offset (``""`` when a restart needs nothing):
        compact JSON, well under Kafka's 4 KB commit metadata limit."""
        if not self.settled and not self.floors:
            return ""
        data: dict[str, Any] = {"v": 1}
        if self.settled:
            data["s"] = [list(r) for r in self.settled]
        if self.floors:
            data["f"] = dict(self.floors)
        late = {k: v for k, v in self.late_floors if dict(self.floors).get(k) != v}
        if late:
            data["l"] = late
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def parse(cls, offset: int, metadata: Optional[str]) -> Position:
        """The position committed at ``offset`` with ``metadata`` (anything this project
        did not write reads as no metadata)."""
        try:
            data = json.loads(metadata) if metadata else {}
            settled = tuple((int(a), int(b)) for a, b in data.get("s", ()) if int(a) < int(b))
            floors = {str(k): int(v) for k, v in data.get("f", {}).items()}
            late = {**floors, **{str(k): int(v) for k, v in data.get("l", {}).items()}}
        except (ValueError, TypeError, AttributeError):
            return cls(offset)
        if not isinstance(data, dict) or data.get("v") != 1:
            return cls(offset)
        return cls(offset, settled, tuple(sorted(floors.items())), tuple(sorted(late.items())))


class Staged:
    """What one bundle did to the gate, applied when the runner commits the bundle (and
    dropped with it when it fails)."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple] = []


class Gate:
    """The delivery bookkeeping of one run (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._order = itertools.count()
        self._inflight: collections.Counter = collections.Counter()
        self._held: collections.Counter = collections.Counter()
        self._tickets: dict[int, Ticket] = {}
        self._holds: dict[Hashable, Hold] = {}
        self._hold_of_token: dict[int, Hold] = {}
        self._steps: dict[str, _Step] = {}
        self._streams: dict[Hashable, collections.deque] = {}
        self._committed: dict[Hashable, int] = {}  # stream -> the last safe offset
        self._restored: dict[str, int] = {}  # step -> floor restored from a commit
        self._restored_late: dict[str, int] = {}  # step -> its late floor
        self._pins: dict[Hashable, set[int]] = {}  # an open transaction -> the tokens it holds
        self._listeners: list[Callable[[], None]] = []
        self.closed = False

    # ---- tokens and tickets (the runner) ---------------------------------------------

    def ticket(self, callbacks: Iterable[Callable[[], None]]) -> Ticket:
        """An unsealed ticket for ``callbacks``; a callback that is a
        :class:`~transforms.delivery.scope.Commit` gives the ticket its stream position."""
        callbacks = list(callbacks)
        ticket = Ticket(next(self._ids), callbacks)
        for callback in callbacks:
            commit: Any = callback
            stream = getattr(commit, "stream", None)
            if stream is not None:  # a scope.Commit
                ticket.stream, ticket.first, ticket.next = stream, commit.first, commit.next
                ticket.replayed = bool(commit.replayed)
        with self._lock:
            self._tickets[ticket.token] = ticket
        return ticket

    def commit(self, added: Iterable[tuple[frozenset, int]], removed: Optional[frozenset],
               staged: Optional[Staged]) -> None:
        """The runner committed a bundle: ``added`` are its output bundles' tokens with the
        number of steps each goes to, ``removed`` the tokens of the bundle it processed
        (None for a root step), ``staged`` what the bundle's steps did to the gate."""
        ready: list[Callable[[], None]] = []
        with self._lock:
            touched: set[int] = set()
            for tokens, consumers in added:
                for token in tokens:
                    self._inflight[token] += consumers
            if staged is not None:
                for op in staged.ops:
                    getattr(self, "_apply_" + op[0])(touched, *op[1:])
            for token in removed or ():
                self._inflight[token] -= 1
                if self._inflight[token] <= 0:
                    del self._inflight[token]
                    touched.add(token)
            self._settle(touched, ready)
            listeners = list(self._listeners)
        _run(ready)
        _run(listeners)

    def _settle(self, touched: set[int], ready: list) -> None:
        """Follow what ``touched`` tokens being let go makes done, written or droppable."""
        steps: set[str] = set()
        while touched:
            token = touched.pop()
            if self._inflight.get(token) or self._held.get(token):
                continue
            ticket = self._tickets.get(token)
            if ticket is not None and ticket.sealed and not ticket.done:
                ticket.done = True
                del self._tickets[token]
                ready.extend(ticket.callbacks)
                if ticket.stream is not None:
                    self._trim(ticket.stream)
                continue
            hold = self._hold_of_token.get(token)
            if hold is not None and hold.released and not hold.written:
                hold.written = True
                step = self._steps[hold.step]
                if hold in step.due:
                    step.blocking -= 1
                steps.add(hold.step)
            while steps and not touched:
                self._advance(self._steps[steps.pop()], touched)

    def _advance(self, step: _Step, touched: set[int]) -> None:
        """Drop the step's due holds and raise its floor, once every one is written."""
        if step.blocking or step.watermark is None:
            return
        for hold in step.due:
            del self._holds[hold.owner]
            del self._hold_of_token[hold.token]
            for token in hold.tokens:
                self._held[token] -= 1
                if self._held[token] <= 0:
                    del self._held[token]
                    touched.add(token)
        step.due = []
        if step.floor is None or step.watermark > step.floor:
            step.floor = step.watermark
            if step.watermark < END_OF_TIME:
                step.late_floor = step.watermark

    # ---- staged operations, applied in commit() ---------------------------------------

    def _apply_seal(self, touched: set[int], ticket: Ticket) -> None:
        ticket.sealed = True
        if ticket.stream is not None:
            self._streams.setdefault(ticket.stream, collections.deque()).append(ticket)
        touched.add(ticket.token)

    def _apply_observe(self, touched: set[int], step_name: str, watermark: int) -> None:
        step = self._step(step_name)
        if step.watermark is not None and watermark <= step.watermark:
            return
        step.watermark = watermark
        while step.future and step.future[0][0] <= watermark:
            hold = heapq.heappop(step.future)[2]
            self._make_due(step, hold)
        self._advance(step, touched)

    def _make_due(self, step: _Step, hold: Hold) -> None:
        step.due.append(hold)
        if not hold.written:
            step.blocking += 1

    def _apply_hold(self, touched: set[int], step_name: str, owner: Hashable, expiry: int,
                    tokens: frozenset, token: int) -> None:
        hold = self._holds.get(owner)
        if hold is None:
            step = self._step(step_name)
            hold = Hold(owner, step_name, expiry, token)
            self._holds[owner] = hold
            self._hold_of_token[hold.token] = hold
            if step.watermark is not None and expiry <= step.watermark:
                self._make_due(step, hold)
            else:
                heapq.heappush(step.future, (expiry, next(self._order), hold))
        for token in tokens:
            if token not in hold.tokens and token != hold.token:
                hold.tokens.add(token)
                self._held[token] += 1

    def _apply_release(self, touched: set[int], owner: Hashable) -> None:
        hold = self._holds.get(owner)
        if hold is not None and not hold.released:
            hold.released = True
            touched.add(hold.token)

    def _apply_pin(self, touched: set[int], owner: Hashable, tokens: frozenset) -> None:
        pinned = self._pins.setdefault(owner, set())
        for token in tokens:
            if token not in pinned:
                pinned.add(token)
                self._held[token] += 1

    def _apply_unpin(self, touched: set[int], owner: Hashable) -> None:
        for token in self._pins.pop(owner, ()):
            self._held[token] -= 1
            if self._held[token] <= 0:
                del self._held[token]
                touched.add(token)

    # ---- transactions (an exactly-once sink) -------------------------------------------

    def listen(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (outside the lock) after every change the runner commits."""
        with self._lock:
            self._listeners.append(listener)

    def unlisten(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def unpin(self, owner: Hashable) -> None:
        """End what ``owner`` pins now (a transaction committed outside any bundle)."""
        ready: list[Callable[[], None]] = []
        with self._lock:
            touched: set[int] = set()
            self._apply_unpin(touched, owner)
            self._settle(touched, ready)
        _run(ready)

    def transaction(self, owner: Hashable, streams: Callable[[Hashable], bool]
                    ) -> Optional[dict[Hashable, Position]]:
        """Whether the records ``owner`` pins may be committed now, and if so the positions
        of the ``streams`` to commit with them, in the same transaction.

        It asks what the gate would look like once ``owner``'s records are written: every
        read they derive from must then have nothing else in flight (its dead letters
        written, say) and be held by no window whose last pane is out; every window whose
        last pane is among them must be written and dropped (its step's floor past it).
        Then a restart from those positions neither reads their records again nor
        re-emits those panes. When it may, the floors it commits hold in this run from
        now on (nothing arrives for those windows any more). None: not yet.
        """
        with self._lock:
            tokens = set(self._pins.get(owner, ()))
            if not tokens:
                return None
            future = self._copy()
            touched: set[int] = set()
            future._apply_unpin(touched, owner)
            future._settle(touched, [])
            released = [h for h in future._holds.values() if h.released]
            for token in tokens:
                hold = future._hold_of_token.get(token)
                if hold is not None and hold.released:
                    return None  # a window's last pane: its window is not dropped yet
                if token in future._tickets:
                    if future._inflight.get(token):
                        return None  # still on its way elsewhere (dead letters...)
                    if any(token in h.tokens for h in released):
                        return None  # counted by a window whose last pane is not written
            positions = {}
            for stream in future._streams:
                if streams(stream):
                    position = future.position_locked(stream)
                    if position is not None:
                        positions[stream] = position
            floors, late = future._floors()
            for restored, values in ((self._restored, floors), (self._restored_late, late)):
                for name, floor in values:
                    restored[name] = max(floor, restored.get(name, floor))
            return positions

    def _copy(self) -> Gate:
        """A copy of the bookkeeping (callbacks shared, never called from the copy)."""
        other = Gate()
        other._ids, other._order = self._ids, self._order
        other._inflight = collections.Counter(self._inflight)
        other._held = collections.Counter(self._held)
        tickets: dict[int, Ticket] = {}

        def ticket_copy(ticket: Ticket) -> Ticket:
            found = tickets.get(id(ticket))
            if found is None:
                found = tickets[id(ticket)] = copy.copy(ticket)
            return found

        other._tickets = {t: ticket_copy(k) for t, k in self._tickets.items()}
        holds = {id(h): copy.copy(h) for h in self._holds.values()}
        for hold in holds.values():
            hold.tokens = set(hold.tokens)
        other._holds = {o: holds[id(h)] for o, h in self._holds.items()}
        other._hold_of_token = {t: holds[id(h)] for t, h in self._hold_of_token.items()}
        for name, step in self._steps.items():
            copied = other._steps[name] = _Step(name)
            copied.watermark, copied.floor = step.watermark, step.floor
            copied.late_floor, copied.blocking = step.late_floor, step.blocking
            copied.future = [(e, n, holds[id(h)]) for e, n, h in step.future]
            copied.due = [holds[id(h)] for h in step.due]
        other._streams = {k: collections.deque(ticket_copy(t) for t in q)
                          for k, q in self._streams.items()}
        other._committed = dict(self._committed)
        other._restored, other._restored_late = dict(self._restored), dict(self._restored_late)
        other._pins = {o: set(t) for o, t in self._pins.items()}
        return other

    # ---- what steps ask -------------------------------------------------------------

    def _step(self, name: str) -> _Step:
        step = self._steps.get(name)
        if step is None:
            step = self._steps[name] = _Step(name)
        return step

    def hold_token(self, owner: Hashable) -> Optional[int]:
        """The token a window's panes carry (None before its first hold is committed)."""
        with self._lock:
            hold = self._holds.get(owner)
            return hold.token if hold is not None else None

    def new_token(self) -> int:
        return next(self._ids)

    def closed_before(self, step_name: str) -> Optional[int]:
        """Windows of the step expiring by this (micros) are closed: what arrives for them
        is late. The step's floor, or the floor a restart restored, whichever is later."""
        with self._lock:
            step = self._steps.get(step_name)
            floors = [f for f in (step.floor if step else None, self._restored_late.get(step_name))
                      if f is not None]
            return max(floors) if floors else None

    def restored_floor(self, step_name: str) -> Optional[int]:
        with self._lock:
            return self._restored.get(step_name)

    def all_replayed(self, tokens: Iterable[int]) -> bool:
        """Whether ``tokens`` are all tickets of records read again from a settled range."""
        with self._lock:
            tickets = [self._tickets.get(t) for t in tokens]
        return bool(tickets) and all(t is not None and t.replayed for t in tickets)

    # ---- positions (ordered sources) ---------------------------------------------------

    def position(self, stream: Hashable) -> Optional[Position]:
        """Where ``stream`` may be committed now, with what a restart needs; None when
        nothing of it is done yet."""
        with self._lock:
            return self.position_locked(stream)

    def _trim(self, stream: Hashable) -> None:
        """Forget the stream's done reads at its head: everything up to them is safe."""
        queue = self._streams.get(stream)
        while queue and queue[0].done:
            self._committed[stream] = queue.popleft().next

    def position_locked(self, stream: Hashable) -> Optional[Position]:
        """:meth:`position`, the lock held."""
        self._trim(stream)
        queue = self._streams.get(stream)
        if not queue:
            committed = self._committed.get(stream)
            return None if committed is None else Position(committed, (), *self._floors())
        safe = queue[0].first if queue else self._committed.get(stream)
        if safe is None:
            return None
        self._committed[stream] = safe
        ranges: list[list[int]] = []
        for ticket in queue:
            if ticket.done or not self._inflight.get(ticket.token):
                if ranges and ranges[-1][1] >= ticket.first:
                    ranges[-1][1] = ticket.next
                elif len(ranges) < MAX_RANGES:
                    ranges.append([ticket.first, ticket.next])
        return Position(safe, tuple((a, b) for a, b in ranges), *self._floors())

    def _floors(self) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
        floors, late = dict(self._restored), dict(self._restored_late)
        for name, step in self._steps.items():
            if step.floor is not None:
                floors[name] = max(step.floor, floors.get(name, step.floor))
            if step.late_floor is not None:
                late[name] = max(step.late_floor, late.get(name, step.late_floor))
        return tuple(sorted(floors.items())), tuple(sorted(late.items()))

    def restore(self, position: Position) -> None:
        """A reader resumes from a committed ``position``: its floors hold in this run."""
        with self._lock:
            for restored, floors in ((self._restored, position.floors),
                                     (self._restored_late, position.late_floors)):
                for name, floor in floors:
                    restored[name] = max(floor, restored.get(name, floor))

    # ---- the end of a run ------------------------------------------------------------

    def close(self) -> None:
        """The run ended: what is not done now never will be (no callback runs)."""
        with self._lock:
            self.closed = True

    def describe(self) -> dict[str, Any]:
        """Counts for tests and debugging."""
        with self._lock:
            return {"tickets": len(self._tickets), "holds": len(self._holds),
                    "in_flight": len(self._inflight), "held": len(self._held),
                    "floors": dict(self._floors()[0])}


def replay_segment(replay: Iterable[tuple[int, int]], position: int) -> tuple[bool, Optional[int]]:
    """For a reader resuming at ``position`` with a position's ``settled`` ranges: whether
    ``position`` lies in one (its records are "replayed"), and where that segment ends
    (the end of the range, or the start of the next one; None: never). A reader reads
    one segment per bundle, so a bundle is either replayed or new."""
    for start, end in replay:
        if start <= position < end:
            return True, end
        if position < start:
            return False, start
    return False, None


def _run(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a failing commit must not stop the run; the next one retries
            _LOG.warning("a delivery callback failed", exc_info=True)
