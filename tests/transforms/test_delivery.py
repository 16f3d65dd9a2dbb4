"""The delivery gate's bookkeeping, driven the way the local streaming runner drives it:
tickets sealed with their bundle, tokens in flight per consumer, window holds released
and dropped in event-time order, positions with the metadata a restart needs."""

from __future__ import annotations

import pytest

from transforms.delivery import Commit, Gate, Position, replay_segment
from transforms.delivery.gate import END_OF_TIME, Staged

pytestmark = pytest.mark.unit

STEP = "counts/windows/60/60/0"


def staged(*ops) -> Staged:
    found = Staged()
    found.ops.extend(ops)
    return found


class Source:
    """A partition read in polls: each poll a sealed ticket whose outputs go to one step."""

    def __init__(self, gate: Gate, stream=("g", "t", 0)) -> None:
        self.gate, self.stream, self.next = gate, stream, 0
        self.committed: list[int] = []

    def poll(self, count: int, replayed: bool = False) -> int:
        first, self.next = self.next, self.next + count

        def commit() -> None:
            position = self.gate.position(self.stream)
            assert position is not None
            self.committed.append(position.offset)

        ticket = self.gate.ticket([Commit(commit, stream=self.stream, first=first,
                                          next=self.next, replayed=replayed)])
        self.gate.commit([(frozenset({ticket.token}), 1)], None, staged(("seal", ticket)))
        return ticket.token


def test_a_read_is_done_when_nothing_derived_from_it_is_in_flight():
    gate, calls = Gate(), []
    ticket = gate.ticket([lambda: calls.append("done")])
    tokens = frozenset({ticket.token})
    gate.commit([(tokens, 2)], None, staged(("seal", ticket)))  # to two steps
    gate.commit([(tokens, 1)], tokens, None)  # the first step passes it on
    gate.commit([], tokens, None)  # the second writes it
    assert calls == []
    gate.commit([], tokens, None)  # the step after the first writes it too
    assert calls == ["done"]


def test_a_read_with_nothing_downstream_is_done_when_sealed():
    gate, calls = Gate(), []
    ticket = gate.ticket([lambda: calls.append("done")])
    gate.commit([], None, staged(("seal", ticket)))
    assert calls == ["done"]


def test_positions_move_over_the_done_prefix_only():
    gate = Gate()
    source = Source(gate)
    first, second = source.poll(10), source.poll(5)
    gate.commit([], frozenset({second}), None)  # the later poll is written first
    assert source.committed == [0]  # the earlier one holds the partition back
    gate.commit([], frozenset({first}), None)
    assert source.committed[-1] == 15


def window_bundle(gate: Gate, owner, expiry: int, tokens: frozenset, watermark=None) -> None:
    """The windowed step took ``tokens`` into ``owner``'s window (and saw ``watermark``)."""
    ops = [("hold", STEP, owner, expiry, tokens, gate.new_token())]
    if watermark is not None:
        ops.append(("observe", STEP, watermark))
    gate.commit([], tokens, staged(*ops))


def close_window(gate: Gate, owner, watermark: int) -> frozenset:
    """The window's timer fired: its last pane (carrying its token) goes to the sink."""
    pane = frozenset({gate.hold_token(owner)})
    gate.commit([(pane, 1)], None, staged(("release", owner), ("observe", STEP, watermark)))
    return pane


def test_a_window_holds_its_reads_until_its_last_pane_is_written():
    gate = Gate()
    source = Source(gate)
    read = source.poll(10)
    window_bundle(gate, ("k", 0), 60, frozenset({read}), watermark=10)
    assert source.committed == []  # counted, but only in memory
    pane = close_window(gate, ("k", 0), watermark=60)
    assert source.committed == []  # the pane is on its way to the sink
    gate.commit([], pane, None)
    assert source.committed == [10]
    assert gate.position(source.stream).floors == ((STEP, 60),)


def test_windows_are_dropped_in_event_time_order():
    """A window whose pane is written stays held while an earlier-expiring window of the
    step is not: the floor a restart relies on moves past both at once."""
    gate = Gate()
    source = Source(gate)
    early, late = source.poll(5), source.poll(5)
    window_bundle(gate, ("a", 0), 60, frozenset({early}))
    window_bundle(gate, ("b", 0), 60, frozenset({late}), watermark=30)
    pane_b = close_window(gate, ("b", 0), watermark=60)
    gate.commit([], pane_b, None)
    assert source.committed == [] and gate.position(source.stream).floors == ((STEP, 30),)
    pane_a = close_window(gate, ("a", 0), watermark=60)
    gate.commit([], pane_a, None)
    assert source.committed[-1] == 10
    assert gate.closed_before(STEP) == 60


def test_a_position_says_which_records_after_it_settled_and_up_to_where_windows_are_written():
    gate = Gate()
    source = Source(gate)
    straddling, later, flying = source.poll(10), source.poll(10), source.poll(10)
    window_bundle(gate, ("k", 0), 60, frozenset({straddling}))
    window_bundle(gate, ("k", 60), 120, frozenset({straddling, later}), watermark=50)
    gate.commit([], close_window(gate, ("k", 0), watermark=70), None)
    position = gate.position(source.stream)
    assert position.offset == 0  # the open window holds the first poll back
    assert position.settled == ((0, 20),)  # the third poll is still in flight
    assert position.floors == ((STEP, 70),)
    assert Position.parse(0, position.metadata()) == position
    assert flying


def test_metadata_of_others_reads_as_none_and_the_end_of_time_is_no_late_floor():
    assert Position.parse(5, "not json") == Position(5)
    assert Position.parse(5, '{"v": 2, "s": [[5, 9]]}') == Position(5)
    ended = Position(5, (), ((STEP, END_OF_TIME),), ((STEP, 70),))
    assert Position.parse(5, ended.metadata()) == ended


def test_a_restart_restores_floors_and_reads_replayed_ranges_in_segments():
    gate = Gate()
    gate.restore(Position(0, ((5, 9),), ((STEP, 120),), ((STEP, 100),)))
    assert gate.closed_before(STEP) == 100 and gate.restored_floor(STEP) == 120
    assert replay_segment(((5, 9), (12, 20)), 0) == (False, 5)
    assert replay_segment(((5, 9), (12, 20)), 6) == (True, 9)
    assert replay_segment(((5, 9), (12, 20)), 9) == (False, 12)
    assert replay_segment(((5, 9),), 9) == (False, None)


def test_a_transaction_commits_once_its_records_derive_from_nothing_else_in_flight():
    gate = Gate()
    source = Source(gate)
    read = source.poll(10)
    tokens = frozenset({read})
    gate.commit([(tokens, 1)], None, None)  # also on its way to the dead letters
    gate.commit([], tokens, staged(("pin", "txn", tokens)))  # the sink's bundle
    assert gate.transaction("txn", lambda stream: True) is None
    gate.commit([], tokens, None)  # the dead letters are written
    positions = gate.transaction("txn", lambda stream: True)
    assert positions == {source.stream: Position(10)}
    assert source.committed == []  # only the transaction commits it
    gate.unpin("txn")
    assert source.committed == [10]


def test_a_transaction_with_a_last_pane_waits_for_the_windows_closing_with_it():
    gate = Gate()
    source = Source(gate)
    first, second = source.poll(5), source.poll(5)
    window_bundle(gate, ("a", 0), 60, frozenset({first}))
    window_bundle(gate, ("b", 0), 60, frozenset({second}), watermark=30)
    pane_a = close_window(gate, ("a", 0), watermark=60)
    gate.commit([], pane_a, staged(("pin", "txn", pane_a)))
    assert gate.transaction("txn", lambda stream: True) is None  # b has not closed yet
    pane_b = close_window(gate, ("b", 0), watermark=60)
    gate.commit([], pane_b, staged(("pin", "txn", pane_b)))
    positions = gate.transaction("txn", lambda stream: True)
    assert positions is not None and positions[source.stream].offset == 10
    assert positions[source.stream].floors == ((STEP, 60),)
    assert gate.closed_before(STEP) == 60  # nothing may arrive for those windows now
