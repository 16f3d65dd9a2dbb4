"""``python -m beam_pipelines.sessions`` in batch: the command line over generated files
with dirty lines equals a plain-Python reference, with both batch engines; flags refused
in one line; the console table sorted by user and start."""

from __future__ import annotations

import json

import pytest

from beam_pipelines import sessions
from beam_pipelines.testing.files import read_jsonl, read_jsonl_dir
from beam_pipelines.testing.sessions import (
    ReferenceSession,
    micros_of_iso,
    reference_events,
    reference_sessions,
    session_lines,
)

pytestmark = pytest.mark.unit

GAP = 60


def write_lines(path, lines) -> list[bytes]:
    path.write_bytes(b"\n".join(line for _, line in lines) + b"\n")
    return [line for _, line in lines]


def as_reference(row: dict) -> ReferenceSession:
    """A row the sinks wrote, in the reference's terms (times to the microsecond)."""
    return ReferenceSession(row["user_id"], micros_of_iso(row["session_start"]),
                            micros_of_iso(row["session_end"]), row["events"],
                            row["distinct_pages"], row["first_page"], row["last_page"],
                            row["duration_seconds"])


@pytest.mark.parametrize("seed, engine", [(1, "arrow"), (1, "records"), (2, "arrow"),
                                          (3, "records"), (4, "arrow")])
def test_batch_sessions_over_a_dirty_file_equal_the_reference(tmp_path, seed, engine):
    lines = write_lines(tmp_path / "events.jsonl", session_lines(400, seed=seed, gap=GAP))
    code = sessions.main([
        "--source=file", f"--input={tmp_path / 'events.jsonl'}", f"--session_gap={GAP}",
        f"--batch_engine={engine}", "--sink=jsonl", f"--output={tmp_path / 'out'}",
        f"--dead_letter={tmp_path / 'rejected'}",
    ])
    assert code == 0
    rows = read_jsonl_dir(str(tmp_path / "out"), "sessions")
    events = reference_events(lines)
    expected = reference_sessions(events, GAP)
    assert sorted(as_reference(r) for r in rows) == expected
    assert {(r["pane_timing"], r["pane_index"], r["is_final"]) for r in rows} == {(None, None, None)}
    # The data has what makes sessions hard: one user under an int and a string id,
    # events exactly one gap apart (two sessions), ties, several events per session.
    assert any(s.events > 3 for s in expected) and len(expected) > 40
    letters = read_jsonl(str(tmp_path / "rejected" / "**" / "*.jsonl"))
    assert len(letters) == len(lines) - len(events) > 0
    assert {letter["pipeline"] for letter in letters} == {"sessions"}


def test_the_console_table_is_sorted_by_user_and_session_start(tmp_path, capsys):
    events = [
        {"user_id": "b", "action": "view", "page": "/x", "timestamp": 1_733_000_000},
        {"user_id": 7, "action": "view", "page": "/y", "timestamp": 1_733_000_500},
        {"user_id": "7", "action": "view", "page": "/z", "timestamp": 1_733_000_010},
        {"user_id": "b", "action": "view", "page": "/x", "timestamp": 1_732_999_000},
    ]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert sessions.main(["--source=file", f"--input={tmp_path / 'e.jsonl'}",
                          "--session_gap=100"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()
             if line.startswith(("7 ", "b "))]
    assert [(cells[0], cells[1], cells[3]) for cells in lines] == [
        ("7", "2024-11-30T20:53:30Z", "1"),  # 7 and "7" are one user
        ("7", "2024-11-30T21:01:40Z", "1"),
        ("b", "2024-11-30T20:36:40Z", "1"),
        ("b", "2024-11-30T20:53:20Z", "1"),
    ]


@pytest.mark.parametrize("flags, message", [
    (["--window_size=60"], "--window_size: sessions have no fixed windows"),
    (["--window_period=60"], "--window_period: sessions have no fixed windows"),
    (["--session_gap=0"], "--session_gap: expected a whole number of seconds >= 1, got '0'"),
    (["--session_gap=30m"], "--session_gap: expected a whole number of seconds >= 1"),
    (["--batch_engine=spark"], "--batch_engine: expected one of arrow|records"),
])
def test_bad_flags_are_one_line(capsys, flags, message):
    assert sessions.main(flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}") and "\n" not in err
