"""The benchmark's inputs and its in-process peers: what the tables compare is right.

* ``benchmarks.datagen``: the same arguments give the same bytes; the metadata counts
  each kind of line as the contract decides it; ``--profile uniform`` is the original
  input; ``--help`` explains every argument.
* The DuckDB and plain-Python peers count exactly what the contract counts, on both
  profiles (ISO-8601 timestamps, integer ids and the poison lines included).
"""

from __future__ import annotations

import hashlib

import pytest

from benchmarks import datagen
from benchmarks.contract import window_and_page
from benchmarks.engines import duckdb_query

pytestmark = pytest.mark.unit


def _contract_counts(path) -> dict[tuple[int, str], int]:
    counts: dict[tuple[int, str], int] = {}
    with open(path, "rb") as handle:
        for line in handle:
            key = window_and_page(line[:-1] if line.endswith(b"\n") else line)
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.parametrize("profile", datagen.PROFILES)
def test_the_metadata_counts_what_the_contract_decides(tmp_path, profile):
    path = tmp_path / "events.jsonl"
    meta = datagen.generate(str(path), 30_000, seed=11, profile=profile)
    counts = _contract_counts(path)
    assert sum(counts.values()) == meta["events"] - meta["malformed"]
    kinds = datagen.REALISTIC_DIRTY_KINDS if profile == "realistic" else datagen.DIRTY_KINDS
    assert all(meta[kind] > 0 for kind in kinds)
    again = tmp_path / "again.jsonl"
    datagen.generate(str(again), 30_000, seed=11, profile=profile)
    assert again.read_bytes() == path.read_bytes()


def test_the_realistic_profile_has_the_mix_of_issue_15(tmp_path):
    meta = datagen.generate(str(tmp_path / "e.jsonl"), 50_000, seed=1)
    share = {k: meta[k] / meta["events"] for k in ("integer_user_ids", "float_timestamps",
                                                    "iso_timestamps", "extra_fields")}
    assert 0.27 < share["integer_user_ids"] < 0.33 and 0.07 < share["float_timestamps"] < 0.09
    assert 0.03 < share["iso_timestamps"] < 0.05 and 0.04 < share["extra_fields"] < 0.06
    assert 0.012 < meta["malformed"] / meta["events"] < 0.018


def test_the_uniform_profile_is_the_original_input(tmp_path):
    path = tmp_path / "events.jsonl"
    datagen.generate(str(path), 5_000, seed=7, profile="uniform")
    # The bytes the generator wrote before profiles existed (commit 6216a43).
    assert hashlib.sha256(path.read_bytes()).hexdigest() == UNIFORM_5000_SEED7


UNIFORM_5000_SEED7 = "e663f48eeea7d827dc8aafcaca95e9dd3c1c92d1416ca8bb3d6d049466fe0510"


@pytest.mark.parametrize("profile", datagen.PROFILES)
def test_the_duckdb_peer_counts_what_the_contract_counts(tmp_path, profile):
    import duckdb  # a dev dependency: the benchmark's reference peer
    path = tmp_path / "events.jsonl"
    datagen.generate(str(path), 30_000, seed=5, profile=profile)
    rows = duckdb.sql(duckdb_query(str(path))).fetchall()
    assert {(int(w), p): n for w, p, n in rows if w is not None} == _contract_counts(path)


def test_datagen_help_explains_every_argument(capsys):
    with pytest.raises(SystemExit):
        datagen.main(["--help"])
    text = capsys.readouterr().out
    for word in ("events", "output", "--profile", "--seed", "--dirty", "realistic", "uniform"):
        assert word in text
