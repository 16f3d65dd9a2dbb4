"""The read's configuration and tasks, shared by the modules of the Event Hubs reader."""

from __future__ import annotations

import sys
from typing import NamedTuple, Optional

__all__ = ["ReadConfig", "Task", "UNBOUNDED"]

UNBOUNDED = sys.maxsize  # the stop of an unbounded partition read


class Task(NamedTuple):
    """One partition to read: sequence numbers [start, stop)."""

    partition: str
    start: int
    stop: int
    last: int = -1  # the partition's last sequence number when the read was planned
    # After a restart from a checkpoint: ranges [a, b) of sequence numbers whose outputs
    # had settled when it was written (transforms.delivery.Position), read as "replayed".
    replay: tuple[tuple[int, int], ...] = ()


class ReadConfig(NamedTuple):
    connection_string: str
    eventhub: str
    consumer_group: str
    start_at: str
    bounded: bool
    max_events: Optional[int]
    owner_level: Optional[int]
    checkpoint_store: Optional[str]
    checkpoint_container: str
    event_time_field: Optional[str]
    idle_timeout: float
