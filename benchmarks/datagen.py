"""Seeded, fast generator of the benchmark's input: user events as JSON lines.

The same shape as ``shared/tools/gen_events.py`` (the events of the seed article), but
vectorised with numpy and pyarrow so 20M events take seconds, not minutes:

* ``{"user_id":"user_N","action":A,"timestamp":T,"page":P}`` with compact separators;
  45 pages with Zipf-like weights 1/(i+1), actions 80% ``page_view``, 10% ``click``,
  10% ``scroll``, 10,000 users;
* event time advances evenly over 6 hours from 1733000000 (2024-11-30T20:53:20Z);
  5% of events are out of order, earlier by 0..600 s;
* a ``dirty`` fraction of lines is malformed, one of four kinds with equal odds:
  truncated JSON, a missing ``page``, ``"timestamp": "yesterday"``, or binary garbage
  (``NUL garbage 0xFF``; half of those lines carry the raw byte 0xFF, which is invalid
  UTF-8, half its UTF-8 encoding ``ÿ``, as gen_events.py's text-mode file writes it).

The same (events, seed, dirty) always gives the same bytes. Every timestamp is a JSON
integer, and the only string timestamp is ``"yesterday"`` (counted in the metadata), so
the peers that do not parse ISO-8601 strings apply the contract exactly on this data.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, BinaryIO

PAGES = [f"/products/{i}" for i in range(40)] + ["/", "/cart", "/checkout", "/search", "/login"]
ACTIONS = ["page_view", "click", "scroll"]
ACTION_WEIGHTS = [0.8, 0.1, 0.1]
USERS = 10_000
T0 = 1_733_000_000
SPAN = 6 * 3600
OUT_OF_ORDER = 0.05
MAX_DELAY = 600
CHUNK = 1_000_000
DIRTY_KINDS = ("truncated_json", "missing_page", "timestamp_yesterday", "binary_garbage")


def _dirty_line(rng: Any, kind: int, user: int, action: str, ts: int, page: str) -> bytes:
    event: dict[str, Any] = {"user_id": f"user_{user}", "action": action, "timestamp": ts, "page": page}
    if kind == 0:
        return json.dumps(event)[:-7].encode()
    if kind == 1:
        del event["page"]
        return json.dumps(event).encode()
    if kind == 2:
        event["timestamp"] = "yesterday"
        return json.dumps(event).encode()
    return b"\x00garbage\xff" if rng.random() < 0.5 else "\x00garbage\xff".encode()


def _write_chunk(out: BinaryIO, rng: Any, start: int, stop: int, events: int, dirty: float,
                 stats: dict[str, int]) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = stop - start
    index = np.arange(start, stop, dtype=np.int64)
    timestamps = T0 + (index * SPAN) // events
    late = rng.random(n) < OUT_OF_ORDER
    timestamps = timestamps - np.where(late, rng.integers(0, MAX_DELAY + 1, n), 0)
    users = rng.integers(0, USERS, n)
    weights = np.array([1.0 / (i + 1) for i in range(len(PAGES))])
    pages = rng.choice(len(PAGES), n, p=weights / weights.sum())
    actions = rng.choice(len(ACTIONS), n, p=ACTION_WEIGHTS)
    stats["out_of_order"] += int(late.sum())

    page_names = pa.array(PAGES).take(pa.array(pages))
    action_names = pa.array(ACTIONS).take(pa.array(actions))
    lines = pc.binary_join_element_wise(
        '{"user_id":"user_', pc.cast(pa.array(users), pa.string()),
        '","action":"', action_names,
        '","timestamp":', pc.cast(pa.array(timestamps), pa.string()),
        ',"page":"', page_names, '"}\n',
        "",
    )
    lines = pc.cast(lines, pa.large_binary())
    if dirty > 0:
        mask = rng.random(n) < dirty
        where = np.flatnonzero(mask)
        kinds = rng.integers(0, len(DIRTY_KINDS), len(where))
        replacements = []
        for i, kind in zip(where.tolist(), kinds.tolist(), strict=True):
            stats[DIRTY_KINDS[kind]] += 1
            replacements.append(_dirty_line(rng, kind, int(users[i]), ACTIONS[actions[i]],
                                            int(timestamps[i]), PAGES[pages[i]]) + b"\n")
        if replacements:
            lines = pc.replace_with_mask(lines, pa.array(mask), pa.array(replacements, pa.large_binary()))
    _, offsets, data = lines.buffers()
    first, last = np.frombuffer(offsets, dtype=np.int64)[[lines.offset, lines.offset + len(lines)]]
    out.write(memoryview(data)[first:last])


def generate(path: str, events: int, *, seed: int = 7, dirty: float = 0.01) -> dict[str, Any]:
    """Write ``events`` lines to ``path`` (atomically) and return the metadata."""
    import numpy as np

    if events < 1:
        raise ValueError("events must be >= 1")
    rng = np.random.default_rng(seed)
    stats = dict.fromkeys(("out_of_order", *DIRTY_KINDS), 0)
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "wb") as out:
        for start in range(0, events, CHUNK):
            _write_chunk(out, rng, start, min(start + CHUNK, events), events, dirty, stats)
    os.replace(partial, path)
    meta = {
        "events": events, "seed": seed, "dirty": dirty, "bytes": os.path.getsize(path),
        "malformed": sum(stats[k] for k in DIRTY_KINDS), **stats,
        # The only string timestamps are "yesterday": no valid ISO-8601 time in the data.
        "string_timestamps": stats["timestamp_yesterday"], "string_timestamp_values": ["yesterday"]
        if stats["timestamp_yesterday"] else [],
    }
    with open(f"{path}.meta.json", "w") as handle:
        json.dump(meta, handle, indent=1)
    return meta


def cached(workdir: str, events: int, *, seed: int, dirty: float) -> tuple[str, dict[str, Any]]:
    """The input file for (events, seed, dirty) in ``workdir``, generated if missing."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, f"events-{events}-seed{seed}-dirty{dirty:g}.jsonl")
    try:
        with open(f"{path}.meta.json") as handle:
            meta = json.load(handle)
        if os.path.getsize(path) == meta["bytes"]:
            return path, meta
    except (OSError, ValueError, KeyError):
        pass
    return path, generate(path, events, seed=seed, dirty=dirty)


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate user events as JSON lines.")
    parser.add_argument("events", type=int)
    parser.add_argument("output")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dirty", type=float, default=0.01)
    args = parser.parse_args()
    print(json.dumps(generate(args.output, args.events, seed=args.seed, dirty=args.dirty)))


if __name__ == "__main__":
    main()
