"""BlockParser's process pool: the same decisions, line numbers and dead letters as the
in-thread path, and no piece lost when a worker dies. These tests start processes, so
they are not ``unit``."""

from __future__ import annotations

import importlib.util
import os
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines.testing import SyntheticEvents
from tests.transforms.test_batches import assert_same, blocks, decisions
from transforms.batches import BlockParser, ParsedBlock
from transforms.user_event_contract import Rejected, parse_and_decide, verdict_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pooled():
    # Tiny pieces and no size threshold, so even hypothesis' small blocks cross the pool.
    parser = BlockParser(processes=2, min_bytes=0, piece_bytes=64)
    yield parser
    parser.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(blocks, st.sampled_from([b"", b"\n", b"\r\n"]))
def test_pooled_dirty_lines_are_decided_as_the_record_contract_decides(pooled, block, end):
    assert_same(block + end, pooled)


def _pooled_parse(block: bytes, **options) -> list[tuple[int, ParsedBlock]]:
    """Every piece of ``block`` parsed by a two-process pool (closed after)."""
    parser = BlockParser(processes=2, min_bytes=0, **options)
    try:
        return list(parser.parse(block))
    finally:
        parser.close()


def _as_tuples(parsed: list[tuple[int, ParsedBlock]]) -> list:
    return [(first, p.events.to_pylist(), p.lines.tolist(), p.handed_over, p.blank, p.line_count)
            for first, p in parsed]


def test_pool_and_in_thread_give_identical_parsed_blocks_on_a_realistic_mix():
    gen = SyntheticEvents(seed=5, rate=50.0, malformed=0.05)
    block = b"\n".join(gen.payloads(20_000)) + b"\n\n  \r\n"
    got = _pooled_parse(block, piece_bytes=64 * 1024)
    want = list(BlockParser(piece_bytes=64 * 1024).parse(block))
    assert len(got) > 2
    assert _as_tuples(got) == _as_tuples(want)
    assert decisions(block, BlockParser(processes=2, min_bytes=0, piece_bytes=64 * 1024)) == \
        decisions(block)


def test_a_dead_worker_loses_no_piece():
    gen = SyntheticEvents(seed=7, rate=50.0, malformed=0.05)
    block = b"\n".join(gen.payloads(5_000)) + b"\n"
    parser = BlockParser(processes=2, min_bytes=0, piece_bytes=16 * 1024)
    try:
        list(parser.parse(block))  # the pool is up
        victim = next(iter(parser._pool._processes))
        os.kill(victim, signal.SIGKILL)
        got = list(parser.parse(block))  # the broken pool's pieces are parsed in-thread
        again = list(parser.parse(block))  # and the next block gets a new pool
    finally:
        parser.close()
    want = _as_tuples(list(BlockParser(piece_bytes=16 * 1024).parse(block)))
    assert _as_tuples(got) == want
    assert _as_tuples(again) == want


def test_workers_import_neither_beam_nor_pandas_nor_the_callers_main():
    import multiprocessing.spawn

    from transforms.batches import _without_main

    with _without_main():
        data = multiprocessing.spawn.get_preparation_data("worker")
    assert "init_main_from_name" not in data and "init_main_from_path" not in data
    # Every kind of timestamp, so the worker converts arrays each way pyarrow can.
    block = b"\n".join(SyntheticEvents(seed=3, rate=50.0, malformed=0.1).payloads(3_000)) + (
        b'\n{"user_id": 7, "action": "a", "page": "p", "timestamp": "2024-01-01T00:00:00Z"}'
        b'\n{"user_id": "u", "action": "a", "page": "p", "timestamp": 1704067200.5}\n')
    parser = BlockParser(processes=1, min_bytes=0, piece_bytes=16 * 1024, task=parse_and_decide)
    try:
        parsed = list(parser.parse(block))
        in_worker = parser._pool.submit(eval, "sorted(__import__('sys').modules)").result()
    finally:
        parser.close()
    assert sum(p.events.num_rows for _, p in parsed) > 2_000
    assert "transforms.batches" in in_worker
    assert not [name for name in in_worker if name.startswith("apache_beam")]
    # pandas is installed here (the [notebooks] extra) and pyarrow would import it.
    assert importlib.util.find_spec("pandas") is not None
    assert not [name for name in in_worker if name.split(".")[0] == "pandas"]


def _dirty_block() -> bytes:
    gen = SyntheticEvents(seed=11, rate=50.0, malformed=0.2)
    # A space for the T: valid for the per-record contract, handed over by the vectorized one.
    valid_handed_over = (b'{"user_id": "u", "action": "a", "page": "p", '
                         b'"timestamp": "2024-01-01 00:00:00+00:00"}')
    return (b"\n".join(gen.payloads(8_000)) + b"\n   \n\n{}\n[1]\n\xff\xfe\n"
            + valid_handed_over + b"\n")


def test_workers_give_the_per_record_verdict_on_each_handed_over_line():
    block = _dirty_block()
    got = _pooled_parse(block, piece_bytes=64 * 1024, task=parse_and_decide)
    want = list(BlockParser(piece_bytes=64 * 1024).parse(block))
    assert len(got) > 2
    assert _as_tuples(got) == _as_tuples(want)
    verdicts = [v for _, p in got for v in p.verdicts]
    assert verdicts == [verdict_of(payload) for _, p in want for _, payload in p.handed_over]
    assert {type(v) for v in verdicts} == {tuple, Rejected}  # valid, invalid


def test_decided_in_workers_or_in_thread_the_same_events_and_dead_letters():
    from transforms.parse import _HandedOver

    block = _dirty_block()
    handed = _HandedOver("pageviews", "parse")

    def outcome(parsed: ParsedBlock) -> tuple:
        events, letters = handed.decide(parsed, lambda i: {"line": i})
        return (events.to_pylist() if events is not None else None,
                [letter._replace(rejected_at="") for letter in letters])

    decided = parse_and_decide(block)
    assert decided.verdicts is not None
    assert outcome(decided) == outcome(decided._replace(verdicts=None))
    assert outcome(decided)[1]
