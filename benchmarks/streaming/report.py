"""The results table and the targets met or not."""

from __future__ import annotations

from typing import Optional, Sequence

from benchmarks.streaming.common import TARGET_P99_RATE, TARGET_P99_SECONDS, TARGET_THROUGHPUT
from benchmarks.streaming.modes import Result

# ---- reporting --------------------------------------------------------------------------

def _num(value: Optional[float], fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _secs(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(results: Sequence[Result]) -> str:
    header = ["mode", "rate", "events", "sustained events/s", "p50 s", "p99 s", "max s",
              "kept up", "notes"]
    rows = [header]
    for r in results:
        d = r.details
        if r.mode == "throughput":
            rate = "max"
            notes = (f"{d.get('data', 'uniform')} data; {r.status}; counted {r.counted} valid "
                     f"of {r.events}; drain {_num(d.get('drain_s'), '.1f')} s; "
                     f"read {_num(d.get('read_events_per_s'))}/s; end-to-end "
                     f"{_num(d.get('end_to_end_events_per_s'))}/s; CPU "
                     f"{_num(d.get('cpu_us_per_event'), '.1f')} us/event")
        else:
            rate = f"{r.target_rate:,.0f}"
            notes = (f"{r.status}; produced {_num(r.produce_rate)}/s; uncounted "
                     f"{d.get('uncounted', '-')}; backlog at end {d.get('backlog_at_producer_end', '-')}; "
                     f"lag {d.get('consumer_lag_at_producer_end', '-')}; catch-up "
                     f"{_num(d.get('catch_up_s'), '.1f')} s")
        kept = "-" if r.kept_up is None else ("yes" if r.kept_up else "no")
        rows.append([r.mode, rate, str(r.events), _num(r.sustained), _secs(r.p50),
                     _secs(r.p99), _secs(r.max), kept, notes])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(w) if i in (0, 7) else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row[:-1], widths, strict=True))]
        lines.append(" | ".join(cells) + " | " + row[-1])
        if row is header:
            lines.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * 5)
    return "\n".join(lines)


def targets(results: Sequence[Result]) -> list[str]:
    out = []
    for data in ("realistic", "uniform"):
        best = max((r.sustained or 0.0 for r in results if r.mode == "throughput"
                    and r.status == "done" and r.details.get("data") == data), default=None)
        if best is not None:
            out.append(f"throughput >= {TARGET_THROUGHPUT:,.0f} events/s sustained, {data} data: "
                       f"{'met' if best >= TARGET_THROUGHPUT else 'NOT met'} (best {best:,.0f}/s)")
    if not out and any(r.mode == "throughput" for r in results):  # none counted every event
        out.append(f"throughput >= {TARGET_THROUGHPUT:,.0f} events/s sustained: NOT met "
                   "(no throughput run counted every event)")
    for r in results:
        if r.mode == "latency" and r.target_rate == TARGET_P99_RATE:
            ok = r.p99 is not None and r.p99 < TARGET_P99_SECONDS and r.kept_up
            out.append(f"p99 < {TARGET_P99_SECONDS:g} s at {TARGET_P99_RATE:,.0f} events/s: "
                       f"{'met' if ok else 'NOT met'} (p99 {_secs(r.p99)} s, kept up: "
                       f"{'yes' if r.kept_up else 'no'})")
    return out
