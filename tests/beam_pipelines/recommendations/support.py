"""Shared by the recommendations tests: planted events, their file, the trained model's paths."""

from __future__ import annotations

import json
from typing import NamedTuple

from transforms.recommend import PlantedEvents

# Planted "A then B" pairs plus Zipf noise; a few dirty lines to dead-letter.
GENERATOR = PlantedEvents(seed=3, users=700)


class Trained(NamedTuple):
    models: str  # the model directory (LATEST -> v1)
    events: str  # the JSON-lines file it was trained on
    valid: int
    dirty: int
    generator: PlantedEvents


def write_events(path, generator: PlantedEvents, dirty: list[bytes] = ()) -> int:
    lines = [line.encode() for line in generator.lines()]
    # Dirty lines spread through the file: each must become a dead letter.
    step = max(1, len(lines) // (len(dirty) + 1))
    for i, bad in enumerate(dirty):
        lines.insert((i + 1) * step, bad)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines) - len(dirty)


DIRTY = [b'{"user_id": "u", "page": "/p/1"', b'{"user_id": "u", "action": "view", "timestamp": 1}',
         b"\xff\xfe not utf-8", json.dumps({"user_id": True, "action": "v", "page": "/",
                                            "timestamp": 1.7e9}).encode()]
