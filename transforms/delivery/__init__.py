"""Delivery: a source position is committed once every output that depends on it is written.

On Flink and Dataflow a checkpoint holds the pipeline's state, so Beam's contract is
enough: a source commits (Kafka offsets, Pub/Sub acknowledgements, Event Hubs
checkpoints) in bundle finalization, after the runner made the bundle durable. A runner
that keeps its state in memory (our local streaming runner) makes nothing durable: there
a position may be committed only when nothing in the run depends on it any more, i.e.
when every element derived from it has gone through every step and every window that
counted it has written its last pane. This package is that bookkeeping (:mod:`.gate`)
and the thread-local scope through which the runner, the readers and the stateful steps
reach it (:mod:`.scope`). docs/recovery.md tells the whole story.
"""

from transforms.delivery.gate import Gate, Position, replay_segment
from transforms.delivery.scope import EMPTY, BundleScope, Commit, current, entered, tracked

__all__ = ["EMPTY", "BundleScope", "Commit", "Gate", "Position", "current", "entered",
           "replay_segment", "tracked"]
