"""Seeded, fast generator of the batch benchmark's input: user events as JSON lines.

    python -m benchmarks.datagen 5000000 events.jsonl                      # realistic
    python -m benchmarks.datagen 5000000 events.jsonl --profile uniform    # the old shape

Sample input to try the pipelines comes from ``python -m beam_pipelines.generate`` (events,
readings, transactions, logs; the pipelines' own seeded generators, to a file or a topic).
This module exists beside it for one reason: size. It writes millions of events in seconds
(numpy and pyarrow, not a record at a time), in shapes fixed so that published benchmark
numbers can be reproduced byte for byte; the record-at-a-time generator makes ~130k lines
a second.

Two profiles, both vectorised with numpy and pyarrow (20M events take seconds):

``realistic`` (the default): what a production topic of user events looks like, and
everything the input contract accepts, mixed:

* ``user_id`` 70% strings (``"user_N"``), 30% JSON integers (``N``);
* ``timestamp`` mostly JSON integers, ~8% floats with 1-6 decimals (``1733000123.25``),
  ~4% ISO-8601 strings with ``Z`` or an offset (``"2024-11-30T21:53:20.5+01:00"``);
* two writers' layouts: 80% compact (``{"user_id":..,"action":..}``), 20% as Python's
  ``json.dumps`` writes by default, another key order and ``", "``/``": "`` separators;
* ~5% of lines with extra fields, nested objects and arrays among them;
* ~10% of pages with non-ASCII text (``/café/menü``, ``/カート``), as raw UTF-8 or as
  ``\\u`` escapes;
* a ``dirty`` fraction (default 1.5%) of invalid lines, a dozen kinds with equal odds
  (:data:`REALISTIC_DIRTY_KINDS`): truncated JSON, a missing ``page``, ``"yesterday"``,
  binary garbage (invalid UTF-8), a boolean ``user_id``, an empty ``action``, a numeric
  ``page``, a time out of range, an ISO-8601 time without an offset, ``NaN``, a line that
  is not an object, and a 400-digit integer timestamp (a poison record for parsers that
  convert before they check the range).

``uniform``: the benchmark's original input, byte for byte (the shape of the first
benchmark's generator), ``{"user_id":"user_N","action":A,"timestamp":T,"page":P}``
with integer timestamps and compact separators only, and a ``dirty`` fraction (default
1%) of four kinds of malformed lines: truncated JSON, a missing ``page``, ``"timestamp":
"yesterday"``, binary garbage (``NUL garbage 0xFF``; half of those lines carry the raw
byte 0xFF, invalid UTF-8, half its UTF-8 encoding ``ÿ``).

Both: 45 pages with Zipf-like weights 1/(i+1); actions 80% ``page_view``, 10% ``click``,
10% ``scroll``; 10,000 users; event time advancing evenly over 6 hours from 1733000000
(2024-11-30T20:53:20Z), 5% of events out of order by 0..600 s. The same (profile, events,
seed, dirty) always gives the same bytes, and a ``.meta.json`` beside the file counts
each kind of line, so a reader knows how many events are valid.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, BinaryIO, Callable, Optional

PAGES = [f"/products/{i}" for i in range(40)] + ["/", "/cart", "/checkout", "/search", "/login"]
# The realistic profile replaces a tenth of the page choices with one of these.
UNICODE_PAGES = ["/café/menü", "/produkte/größe", "/カート", "/搜索", "/naïve-bayes", "/Ελλάδα",
                 "/emoji/🎉", "/São-Paulo"]
ACTIONS = ["page_view", "click", "scroll"]
ACTION_WEIGHTS = [0.8, 0.1, 0.1]
USERS = 10_000
T0 = 1_733_000_000
SPAN = 6 * 3600
OUT_OF_ORDER = 0.05
MAX_DELAY = 600
CHUNK = 1_000_000
PROFILES = ("realistic", "uniform")
DEFAULT_DIRTY = {"realistic": 0.015, "uniform": 0.01}

DIRTY_KINDS = ("truncated_json", "missing_page", "timestamp_yesterday", "binary_garbage")
REALISTIC_DIRTY_KINDS = (
    "truncated_json", "missing_page", "timestamp_yesterday", "binary_garbage",
    "boolean_user_id", "empty_action", "numeric_page", "timestamp_out_of_range",
    "iso_without_offset", "nan_timestamp", "not_an_object", "huge_timestamp",
)
# Realistic profile: shares of the valid lines' forms.
INTEGER_USER_IDS = 0.30
FLOAT_TIMESTAMPS = 0.08
ISO_TIMESTAMPS = 0.04
SPACED_LAYOUT = 0.20
EXTRA_FIELDS = 0.05
UNICODE_PAGE_SHARE = 0.10
ISO_OFFSETS = [("Z", 0), ("+00:00", 0), ("+01:00", 3600), ("-05:00", -18000), ("+05:30", 19800)]
EXTRAS = [
    '"session":"s-{n}",',
    '"ctx":{{"device":{{"os":"ios","version":[17,2]}},"ab":"B"}},',
    '"referrer":null,"tags":["promo","mobile"],',
    '"geo":{{"lat":48.137,"lon":11.575,"city":"München"}},',
    '"experiments":[{{"id":{n},"arm":"control"}},{{"id":7,"arm":"x"}}],',
]


def _uniform_dirty_line(rng: Any, kind: int, user: int, action: str, ts: int, page: str) -> bytes:
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


def _realistic_dirty_line(rng: Any, kind: int, user: int, action: str, ts: int, page: str) -> bytes:
    event: dict[str, Any] = {"user_id": f"user_{user}", "action": action, "timestamp": ts, "page": page}
    name = REALISTIC_DIRTY_KINDS[kind]
    if name == "truncated_json":
        text = json.dumps(event)
        return text[: int(rng.integers(1, len(text) - 1))].encode()
    if name == "missing_page":
        del event["page"]
    elif name == "timestamp_yesterday":
        event["timestamp"] = "yesterday"
    elif name == "binary_garbage":
        return b"\x00garbage\xff" if rng.random() < 0.5 else b'{"user_id":"\xc3","page":"\xff"}'
    elif name == "boolean_user_id":
        event["user_id"] = True
    elif name == "empty_action":
        event["action"] = ""
    elif name == "numeric_page":
        event["page"] = 404
    elif name == "timestamp_out_of_range":
        event["timestamp"] = int(rng.choice([0, 99_999_999_999, -ts, 946_684_799]))
    elif name == "iso_without_offset":
        event["timestamp"] = _iso_text(ts, "")
    elif name == "nan_timestamp":
        return json.dumps(event).replace(str(ts), "NaN").encode()
    elif name == "not_an_object":
        return json.dumps([event]).encode()
    else:  # huge_timestamp: 400 digits, beyond a float64
        return json.dumps(event).replace(str(ts), "1" + "0" * 399).encode()
    return json.dumps(event, ensure_ascii=False).encode()


def _iso_text(ts: int, suffix: str, offset: int = 0) -> str:
    import datetime as dt

    moment = dt.datetime.fromtimestamp(ts + offset, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + suffix


def _event_columns(rng: Any, start: int, stop: int, events: int, stats: dict[str, int]):
    import numpy as np

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
    return n, timestamps, users, pages, actions


def _uniform_lines(n: int, timestamps, users, pages, actions):
    import pyarrow as pa
    import pyarrow.compute as pc

    page_names = pa.array(PAGES).take(pa.array(pages))
    action_names = pa.array(ACTIONS).take(pa.array(actions))
    return pc.binary_join_element_wise(
        '{"user_id":"user_', pc.cast(pa.array(users), pa.string()),
        '","action":"', action_names,
        '","timestamp":', pc.cast(pa.array(timestamps), pa.string()),
        ',"page":"', page_names, '"}\n',
        "",
    )


def _pick(mask, if_true, if_false):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.if_else(pa.array(mask), if_true, if_false)


def _realistic_lines(rng: Any, n: int, timestamps, users, pages, actions,
                     stats: dict[str, int]):
    """The realistic profile's valid lines, and which pages are unicode ones (which)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = pa.array(timestamps)
    user_text = pc.cast(pa.array(users), pa.string())
    integer_ids = rng.random(n) < INTEGER_USER_IDS
    user_json = _pick(integer_ids, user_text,
                      pc.binary_join_element_wise('"user_', user_text, '"', ""))
    stats["integer_user_ids"] += int(integer_ids.sum())

    # Timestamps: integers; floats with 1-6 decimals; ISO-8601 with Z or an offset.
    form = rng.random(n)
    floats = form < FLOAT_TIMESTAMPS
    isos = (form >= FLOAT_TIMESTAMPS) & (form < FLOAT_TIMESTAMPS + ISO_TIMESTAMPS)
    stats["float_timestamps"] += int(floats.sum())
    stats["iso_timestamps"] += int(isos.sum())
    digits = rng.integers(1, 7, n)
    fraction = pc.cast(pa.array(rng.integers(0, 10**6, n) // 10 ** (6 - digits)), pa.string())
    fraction_text = pc.utf8_lpad(fraction, width=1, padding="0")
    for width in range(2, 7):  # zero-padded to its number of digits
        fraction_text = _pick(digits == width, pc.utf8_lpad(fraction, width=width, padding="0"),
                              fraction_text)
    ts_text = pc.cast(ts, pa.string())
    float_text = pc.binary_join_element_wise(ts_text, ".", fraction_text, "")
    offsets = rng.integers(0, len(ISO_OFFSETS), n)
    shift = np.array([o for _, o in ISO_OFFSETS], np.int64)[offsets]
    local = pa.array(timestamps + shift, pa.timestamp("s"))
    iso_base = pc.strftime(local, format="%Y-%m-%dT%H:%M:%S")
    with_millis = rng.random(n) < 0.5
    millis = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 1000, n)), pa.string()), width=3, padding="0")
    iso_fraction = _pick(with_millis, pc.binary_join_element_wise(".", millis, ""), "")
    suffix = pa.array([s for s, _ in ISO_OFFSETS]).take(pa.array(offsets))
    iso_text = pc.binary_join_element_wise('"', iso_base, iso_fraction, suffix, '"', "")
    timestamp_json = _pick(isos, iso_text, _pick(floats, float_text, ts_text))

    # Pages: a tenth unicode, half of those written as \\u escapes.
    unicode_pages = rng.random(n) < UNICODE_PAGE_SHARE
    which = rng.integers(0, len(UNICODE_PAGES), n)
    escaped = rng.random(n) < 0.5
    page_json = pa.array([json.dumps(p) for p in PAGES]).take(pa.array(pages))
    raw_unicode = pa.array([json.dumps(p, ensure_ascii=False) for p in UNICODE_PAGES]).take(pa.array(which))
    escaped_unicode = pa.array([json.dumps(p) for p in UNICODE_PAGES]).take(pa.array(which))
    page_json = _pick(unicode_pages, _pick(escaped, escaped_unicode, raw_unicode), page_json)
    stats["unicode_pages"] += int(unicode_pages.sum())
    action_json = pa.array([json.dumps(a) for a in ACTIONS]).take(pa.array(actions))

    # Extra fields (some nested), in front of the contract's fields.
    extra = rng.random(n) < EXTRA_FIELDS
    stats["extra_fields"] += int(extra.sum())
    kinds = rng.integers(0, len(EXTRAS), n)
    extra_text = pa.array([e.format(n="{n}") for e in EXTRAS]).take(pa.array(kinds))
    extra_text = pc.replace_substring(extra_text, "{n}", "42")
    extra_text = _pick(extra, extra_text, "")

    spaced = rng.random(n) < SPACED_LAYOUT
    stats["spaced_layout"] += int(spaced.sum())
    compact = pc.binary_join_element_wise(
        "{", extra_text, '"user_id":', user_json, ',"action":', action_json,
        ',"timestamp":', timestamp_json, ',"page":', page_json, "}\n", "")
    spaced_extra = pc.replace_substring(pc.replace_substring(extra_text, '":', '": '), ",", ", ")
    other = pc.binary_join_element_wise(
        '{"timestamp": ', timestamp_json, ', "page": ', page_json, ", ", spaced_extra,
        '"user_id": ', user_json, ', "action": ', action_json, "}\n", "")
    lines = _pick(spaced, other, compact)
    return lines, unicode_pages, which


def _write_chunk(out: BinaryIO, rng: Any, start: int, stop: int, events: int, dirty: float,
                 stats: dict[str, int], profile: str) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n, timestamps, users, pages, actions = _event_columns(rng, start, stop, events, stats)
    if profile == "uniform":
        lines = _uniform_lines(n, timestamps, users, pages, actions)
        kinds_of, dirty_line = DIRTY_KINDS, _uniform_dirty_line
        page_of: Callable[[int], str] = lambda i: PAGES[pages[i]]  # noqa: E731
    else:
        lines, unicode_pages, which = _realistic_lines(rng, n, timestamps, users, pages, actions, stats)
        kinds_of, dirty_line = REALISTIC_DIRTY_KINDS, _realistic_dirty_line

        def page_of(i: int) -> str:
            return UNICODE_PAGES[which[i]] if unicode_pages[i] else PAGES[pages[i]]
    lines = pc.cast(lines, pa.large_binary())
    if dirty > 0:
        mask = rng.random(n) < dirty
        where = np.flatnonzero(mask)
        kinds = rng.integers(0, len(kinds_of), len(where))
        replacements = []
        for i, kind in zip(where.tolist(), kinds.tolist(), strict=True):
            stats[kinds_of[kind]] += 1
            replacements.append(dirty_line(rng, kind, int(users[i]), ACTIONS[actions[i]],
                                           int(timestamps[i]), page_of(i)) + b"\n")
        if replacements:
            lines = pc.replace_with_mask(lines, pa.array(mask), pa.array(replacements, pa.large_binary()))
    _, offsets, data = lines.buffers()
    first, last = np.frombuffer(offsets, dtype=np.int64)[[lines.offset, lines.offset + len(lines)]]
    out.write(memoryview(data)[first:last])


def generate(path: str, events: int, *, seed: int = 7, dirty: Optional[float] = None,
             profile: str = "realistic") -> dict[str, Any]:
    """Write ``events`` lines to ``path`` (atomically) and return the metadata; ``dirty``
    defaults to the profile's (:data:`DEFAULT_DIRTY`)."""
    import numpy as np

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if events < 1:
        raise ValueError("events must be >= 1")
    dirty = DEFAULT_DIRTY[profile] if dirty is None else dirty
    if not 0 <= dirty < 1:
        raise ValueError(f"dirty must be a fraction in [0, 1), got {dirty!r}")
    kinds = DIRTY_KINDS if profile == "uniform" else REALISTIC_DIRTY_KINDS
    rng = np.random.default_rng(seed)
    stats = dict.fromkeys(("out_of_order", *kinds), 0)
    if profile == "realistic":
        stats.update(dict.fromkeys(("integer_user_ids", "float_timestamps", "iso_timestamps",
                                    "unicode_pages", "extra_fields", "spaced_layout"), 0))
    partial = f"{path}.partial-{os.getpid()}"
    with open(partial, "wb") as out:
        for start in range(0, events, CHUNK):
            _write_chunk(out, rng, start, min(start + CHUNK, events), events, dirty, stats, profile)
    os.replace(partial, path)
    meta = {
        "profile": profile, "events": events, "seed": seed, "dirty": dirty,
        "bytes": os.path.getsize(path), "malformed": sum(stats[k] for k in kinds), **stats,
    }
    with open(f"{path}.meta.json", "w") as handle:
        json.dump(meta, handle, indent=1)
    return meta


def input_name(events: int, *, seed: int, dirty: float, profile: str) -> str:
    """The file name of an input; the uniform profile keeps the name it always had."""
    prefix = "events" if profile == "uniform" else f"events-{profile}"
    return f"{prefix}-{events}-seed{seed}-dirty{dirty:g}.jsonl"


def cached(workdir: str, events: int, *, seed: int, dirty: Optional[float] = None,
           profile: str = "realistic") -> tuple[str, dict[str, Any]]:
    """The input file for (profile, events, seed, dirty) in ``workdir``, generated if missing."""
    dirty = DEFAULT_DIRTY[profile] if dirty is None else dirty
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, input_name(events, seed=seed, dirty=dirty, profile=profile))
    try:
        with open(f"{path}.meta.json") as handle:
            meta = json.load(handle)
        if os.path.getsize(path) == meta["bytes"] and meta.get("profile", "uniform") == profile:
            return path, meta
    except (OSError, ValueError, KeyError):
        pass
    return path, generate(path, events, seed=seed, dirty=dirty, profile=profile)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.datagen",
        description="Write seeded user events as JSON lines (the batch benchmark's input) and "
        "print their metadata as JSON; the same arguments always give the same bytes.",
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("events", type=int,
                   help="how many lines to write (valid events plus the dirty fraction)")
    p.add_argument("output", help="the JSON-lines file to write; OUTPUT.meta.json gets the counts "
                   "of each kind of line")
    p.add_argument("--profile", choices=PROFILES, default="realistic",
                   help="realistic (default): every form the contract accepts, mixed, and a dozen "
                   "kinds of invalid lines; uniform: string ids, integer timestamps and four kinds "
                   "of malformed lines, the benchmark's original input")
    p.add_argument("--seed", type=int, default=7,
                   help="the random generator's seed (default 7)")
    p.add_argument("--dirty", type=float, default=None,
                   help="the fraction of invalid lines, in [0, 1) (default 0.015 for realistic, "
                   "0.01 for uniform)")
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.events < 1:
        parser().error(f"events: expected at least 1, got {args.events}")
    if args.dirty is not None and not 0 <= args.dirty < 1:
        parser().error(f"--dirty: expected a fraction in [0, 1), got {args.dirty}")
    print(json.dumps(generate(args.output, args.events, seed=args.seed, dirty=args.dirty,
                              profile=args.profile)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
