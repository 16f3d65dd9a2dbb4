"""``inspect``: counts per reason code, first and last rejection, samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, TextIO

from beam_pipelines.dead_letters.read import KafkaTopic, Location, Unreadable, read_dead_letters

__all__ = ["ReasonStats", "inspect", "print_inspection"]


class ReasonStats(NamedTuple):
    total: int
    pipelines: frozenset
    steps: frozenset
    first: str
    last: str
    samples: tuple


def inspect(
    paths: Location, *, reasons: Sequence[str] = (), samples: int = 3
) -> tuple[dict[str, ReasonStats], list[Unreadable]]:
    stats: dict[str, ReasonStats] = {}
    unreadable: list[Unreadable] = []
    for letter in read_dead_letters(paths, unreadable):
        if reasons and letter.reason_code not in reasons:
            continue
        old = stats.get(letter.reason_code)
        if old is None:
            old = ReasonStats(0, frozenset(), frozenset(), letter.rejected_at,
                              letter.rejected_at, ())
        stats[letter.reason_code] = ReasonStats(
            old.total + 1,
            old.pipelines | {letter.pipeline},
            old.steps | {letter.step},
            min(old.first, letter.rejected_at),
            max(old.last, letter.rejected_at),
            old.samples + (letter,) if len(old.samples) < samples else old.samples,
        )
    return stats, unreadable


def _where(origin: dict) -> str:
    if origin.get("source") == "file":
        return f"{origin.get('file')}:{origin.get('line', origin.get('row', '?'))}"
    return ", ".join(f"{k}={v}" for k, v in origin.items())


def _short(text: str, width: int = 100) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


def print_inspection(location: str, paths: Location, stats: dict[str, ReasonStats],
                     unreadable: list[Unreadable], out: TextIO) -> None:
    total = sum(s.total for s in stats.values())
    if paths and isinstance(paths[0], KafkaTopic):
        print(f"{location}: {total} dead letters in the topic", file=out)
    else:
        print(f"{location}: {total} dead letters in {len(paths)} file(s)", file=out)
    if stats:
        width = max(len("reason_code"), *(len(code) for code in stats))
        print(f"  {'reason_code':<{width}}  {'count':>7}  pipeline/step  first .. last rejected",
              file=out)
        for code, item in sorted(stats.items(), key=lambda kv: (-kv[1].total, kv[0])):
            where = ",".join(sorted(f"{p}/{s}" for p in item.pipelines for s in item.steps))
            print(f"  {code:<{width}}  {item.total:>7}  {where}  {item.first} .. {item.last}",
                  file=out)
        for code, item in sorted(stats.items(), key=lambda kv: (-kv[1].total, kv[0])):
            print(f"samples of {code}:", file=out)
            for letter in item.samples:
                print(f"  [{_where(letter.origin)}] {_short(letter.reason)}", file=out)
                print(f"      payload: {_short(letter.payload)}", file=out)
    if unreadable:
        first = unreadable[0]
        print(f"warning: {len(unreadable)} line(s) are not dead letters and were skipped, "
              f"first {first.file}:{first.line}: {first.problem}", file=out)
