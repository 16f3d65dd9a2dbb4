"""How a runner, the readers and the stateful steps reach the :class:`Gate` of their run.

A runner that defers commits (the local streaming runner) processes every bundle inside
a :class:`BundleScope`: the thread's current scope names the run's gate, the lineage of
the element being processed (the tokens its outputs carry) and what the bundle did to
the gate, which the runner applies when it commits the bundle. On every other runner
:func:`current` is None and nothing here does anything: sources commit in Beam's bundle
finalization, as Beam defines it.
"""

from __future__ import annotations

import threading
from typing import Callable, Hashable, Optional

from transforms.delivery.gate import Gate, Position, Staged

__all__ = ["EMPTY", "BundleScope", "Commit", "current", "entered", "tracked"]

EMPTY: frozenset = frozenset()

_LOCAL = threading.local()


class Commit:
    """A finalization callback that commits a range of an ordered source.

    A reader registers it (``bundle_finalizer.register(Commit(...))``) like any callback;
    a runner that defers commits learns from it where the read lies in its partition
    (``stream``: any hashable naming the partition; ``[first, next)``: the positions read),
    so it can tell the committer how far the partition is safe (:meth:`Gate.position`).
    ``replayed``: the records were read again after a restart, from a range whose outputs
    had settled before it (see :class:`~transforms.delivery.gate.Position`).
    """

    __slots__ = ("fn", "stream", "first", "next", "replayed")

    def __init__(self, fn: Callable[[], None], *, stream: Hashable, first: int, next: int,
                 replayed: bool = False) -> None:
        self.fn = fn
        self.stream = stream
        self.first = first
        self.next = next
        self.replayed = replayed

    def __call__(self) -> None:
        self.fn()


class BundleScope:
    """One bundle as the runner processes it (see the module docstring)."""

    def __init__(self, gate: Gate, input_watermark: Optional[int] = None) -> None:
        self.gate = gate
        self.input_watermark = input_watermark  # micros; the step's, at the bundle's start
        self.staged = Staged()
        self.element: frozenset = EMPTY  # the lineage of the element being processed
        self.attached: frozenset = EMPTY  # tokens the current element's outputs carry too
        self.detached = False  # outputs carry no lineage (an exactly-once sink's)
        self._hold_tokens: dict[Hashable, int] = {}
        self._observed: set[str] = set()

    # ---- the runner ---------------------------------------------------------------------

    def output_lineage(self) -> frozenset:
        """The tokens an output of the current element carries."""
        if self.detached:
            return EMPTY
        return self.element | self.attached if self.attached else self.element

    def start_element(self, lineage: frozenset) -> None:
        self.element, self.attached = lineage, EMPTY

    def observations(self) -> list[tuple]:
        """The steps' watermark observations, staged last (after the bundle's holds)."""
        if self.input_watermark is None:
            return []
        return [("observe", step, self.input_watermark) for step in sorted(self._observed)]

    # ---- stateful steps -------------------------------------------------------------------

    def closed_before(self, step: str) -> Optional[int]:
        """Windows of ``step`` that expire by this (micros) are closed: a record for one is
        late. Also notes that this bundle belongs to ``step`` (its watermark counts)."""
        self._observed.add(step)
        return self.gate.closed_before(step)

    def replayed(self) -> bool:
        """Whether the current element was read again after a restart from a range whose
        outputs had settled: if its window expires by :meth:`replay_floor`, it was
        counted (or dead-lettered) before the restart and must be skipped."""
        return bool(self.element) and self.gate.all_replayed(self.element)

    def replay_floor(self, step: str) -> Optional[int]:
        return self.gate.restored_floor(step)

    def _token(self, owner: Hashable) -> int:
        token = self._hold_tokens.get(owner)
        if token is None:
            token = self.gate.hold_token(owner)
            if token is None:
                token = self.gate.new_token()
            self._hold_tokens[owner] = token
        return token

    def hold(self, step: str, owner: Hashable, expiry: int) -> None:
        """``owner`` (a window of ``step``, expiring at ``expiry`` micros) now holds what
        the current element derives from."""
        self.staged.ops.append(("hold", step, owner, expiry, self.element, self._token(owner)))

    def attach(self, owner: Hashable) -> None:
        """The current element's next outputs are a pane of ``owner``: they carry its token."""
        self.attached = self.attached | {self._token(owner)}

    def release(self, owner: Hashable) -> None:
        """``owner``'s last pane is out (attach it first): its hold ends once that pane is
        written and the step's earlier windows are too."""
        self.staged.ops.append(("release", owner))

    def detach(self) -> None:
        """This bundle's outputs depend on nothing (what a sink reports after writing)."""
        self.detached = True

    # ---- readers ------------------------------------------------------------------------

    def restore(self, position: Position) -> None:
        """A reader resumes from a committed ``position``: its floors hold in this run."""
        self.gate.restore(position)


def current() -> Optional[BundleScope]:
    """The scope of the bundle this thread processes; None when no runner tracks delivery."""
    return getattr(_LOCAL, "scope", None)


def tracked() -> bool:
    """Whether the runner defers this bundle's finalization until its outputs are written."""
    return current() is not None


class entered:
    """``with entered(scope):`` the thread processes ``scope``'s bundle (for runners)."""

    def __init__(self, scope: Optional[BundleScope]) -> None:
        self._scope = scope
        self._previous: Optional[BundleScope] = None

    def __enter__(self) -> Optional[BundleScope]:
        self._previous = current()
        _LOCAL.scope = self._scope
        return self._scope

    def __exit__(self, *exc) -> None:
        _LOCAL.scope = self._previous
