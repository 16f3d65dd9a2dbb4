"""Parse raw inputs into typed records; everything that fails becomes a dead letter.

:class:`ParseRecords` is the one parsing transform every pipeline uses: it applies a
contract's parse function to each :class:`~transforms.records.RawRecord`, stamps the
result with its event time, and routes failures (with the reason, the step and the
origin) to the ``dead_letters`` output. Blank lines are skipped, not dead-lettered.

Payloads are JSON objects unless a :class:`~transforms.formats.Decoder` says otherwise
(``decoder=``: Avro, Protobuf or JSON Schema, docs/formats.md): the decoded dict goes
through the same contract, and a payload that does not decode is a dead letter with the
decoder's reason code, like a bad JSON line. Only JSON payloads can be blank: a valid
Avro record may well be whitespace bytes.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, NamedTuple, Optional

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow, TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms.batches import (
    EVENT_SCHEMA,
    BlockParser,
    ParsedBlock,
    events_table,
    parse_parquet_batch,
    parse_payloads,
)
from transforms.formats.arrow import user_event_block
from transforms.formats.base import Decoder
from transforms.io.files import LineBlock
from transforms.records import DeadLetter, DeadLetterBatch, RawBatch, RawRecord, UserEvent
from transforms.user_event_contract import (
    ParseFn,
    Rejected,
    decoder_or_json,
    is_blank,
    parse_and_decide,
    parse_or_reject,
    parse_user_event,
    verdict_of,
)
from transforms.validation import InvalidRecord

DEAD_LETTERS = "dead_letters"
VALID = "valid"

class _ParseDoFn(beam.DoFn):
    def __init__(self, parse_fn: ParseFn, pipeline: str, step: str,
                 decoder: Optional[Decoder] = None) -> None:
        self._parse_fn = parse_fn
        self._pipeline = pipeline
        self._step = step
        self._decoder = decoder_or_json(decoder)
        self._skip_blank = self._decoder.format == "json"
        self._parsed = Metrics.counter(pipeline, "events_parsed")
        self._rejected = Metrics.counter(pipeline, "events_dead_lettered")
        self._blank = Metrics.counter(pipeline, "blank_lines_skipped")

    def process(self, raw: RawRecord):
        payload = raw.payload
        if self._skip_blank and is_blank(payload):
            self._blank.inc()
            return
        decided = parse_or_reject(self._parse_fn, payload, self._decoder)
        if isinstance(decided, InvalidRecord):
            self._rejected.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                DeadLetter.of(self._pipeline, self._step, str(decided), payload, raw.origin,
                              decided.code),
            )
            return
        record, whole_seconds = decided
        self._parsed.inc()
        yield TimestampedValue(record, whole_seconds)


class ParsedRecords(NamedTuple):
    valid: beam.PCollection
    dead_letters: beam.PCollection


class ParseRecords(beam.PTransform):
    """RawRecord -> (valid records timestamped by event time, dead letters).

    :param parse_fn: the contract: a decoded dict -> (record, event second), or
        InvalidRecord.
    :param pipeline: the pipeline name (metrics namespace, dead letters' ``pipeline``).
    :param step: the step name dead letters carry.
    :param decoder: how a payload becomes a dict (:class:`~transforms.formats.Decoder`);
        default: a JSON object.
    """

    def __init__(self, parse_fn: ParseFn, *, pipeline: str, step: str = "parse",
                 decoder: Optional[Decoder] = None) -> None:
        super().__init__()
        if not callable(parse_fn):
            raise TypeError(f"parse_fn must be callable, got {parse_fn!r}")
        self._parse_fn = parse_fn
        self._pipeline = pipeline
        self._step = step
        self._decoder = decoder_or_json(decoder)

    def expand(self, raw: beam.PCollection) -> ParsedRecords:
        outputs = raw | "Validate" >> beam.ParDo(
            _ParseDoFn(self._parse_fn, self._pipeline, self._step, self._decoder)
        ).with_outputs(DEAD_LETTERS, main=VALID)
        return ParsedRecords(outputs[VALID], outputs[DEAD_LETTERS])


def ParseUserEvents(pipeline: str = "pageviews", decoder: Optional[Decoder] = None) -> ParseRecords:
    """ParseRecords for the user-event contract (payloads decoded by ``decoder``, JSON
    by default)."""
    return ParseRecords(parse_user_event, pipeline=pipeline, step="parse", decoder=decoder)


class _HandedOver:
    """Decides, one by one with the per-record contract, the payloads the vectorized
    parser handed over: as :class:`_ParseDoFn` decides them (the same dead-letter
    reasons, codes and origins), inside the vectorized step, so they need no step of
    their own. Valid ones join the step's table of events."""

    def __init__(self, pipeline: str, step: str, decoder: Optional[Decoder] = None) -> None:
        self._pipeline = pipeline
        self._step = step
        self._decoder = decoder_or_json(decoder)
        self._parsed = Metrics.counter(pipeline, "events_parsed")
        self._rejected = Metrics.counter(pipeline, "events_dead_lettered")
        self._blank = Metrics.counter(pipeline, "blank_lines_skipped")

    def decide(self, parsed, origin_of: Callable[[int], dict[str, Any]]):
        """A ParsedBlock -> its events with the accepted ones added (or None when there
        are none), and its dead letters (counted here; the caller outputs them)."""
        import pyarrow as pa

        blank = parsed.blank
        accepted: list[tuple[UserEvent, int]] = []
        letters = []
        verdicts = parsed.verdicts  # decided already by the parse pool's workers
        if verdicts is None:
            verdicts = [verdict_of(payload, self._decoder) for _, payload in parsed.handed_over]
        for (index, payload), verdict in zip(parsed.handed_over, verdicts, strict=True):
            if verdict is None:
                blank += 1
            elif isinstance(verdict, Rejected):
                letters.append(DeadLetter.of(
                    self._pipeline, self._step, verdict.reason, payload, origin_of(index), verdict.code))
            else:
                accepted.append(verdict)
        if blank:
            self._blank.inc(blank)
        if letters:
            self._rejected.inc(len(letters))
        events = parsed.events
        if accepted:
            events = pa.concat_tables([events, events_table(accepted)])
        if events.num_rows:
            self._parsed.inc(events.num_rows)
            return events, letters
        return None, letters


def _dead_letter_output(letters: list[DeadLetter]) -> list[beam.pvalue.TaggedOutput]:
    """The step's dead-letter output for ``letters``: one DeadLetterBatch, or nothing."""
    return [beam.pvalue.TaggedOutput(DEAD_LETTERS, DeadLetterBatch(letters))] if letters else []


class _ParseBlocksDoFn(beam.DoFn):
    """LineBlock / ParquetRows -> Arrow tables of valid events, and dead letters.

    One block is parsed on the pool while the previous one's results are handed on, so
    the reader, the parser threads and the steps downstream work at the same time; the
    last block is handed on in ``finish_bundle``.
    """

    def __init__(self, pipeline: str, step: str) -> None:
        self._handed_over = _HandedOver(pipeline, step)
        self._parser = None
        self._in_flight: collections.deque = collections.deque()

    def setup(self):
        import os

        # Worker processes parse large blocks on the other cores (msgspec holds the GIL);
        # BlockParser keeps small blocks in-thread.
        cores = os.cpu_count() or 1
        self._parser = BlockParser(processes=cores if cores > 1 else 0, task=parse_and_decide)

    def start_bundle(self):
        self._in_flight = collections.deque()

    def process(self, block):

        if isinstance(block, LineBlock):
            self._in_flight.append((block.path, block.first_line, "line", self._parser.submit(block.data)))
        else:
            parsed = parse_parquet_batch(block.batch)
            self._in_flight.append((block.path, block.first_row, "row", lambda: iter([(0, parsed)])))
        while len(self._in_flight) > 1:
            yield from self._hand_on(*self._in_flight.popleft())

    def finish_bundle(self):
        while self._in_flight:
            for output in self._hand_on(*self._in_flight.popleft()):
                if isinstance(output, beam.pvalue.TaggedOutput):
                    yield beam.pvalue.TaggedOutput(output.tag, _in_global_window(output.value))
                else:
                    yield _in_global_window(output)

    def _hand_on(self, path: str, first: int, kind: str, results):
        """One table and one DeadLetterBatch per block, not per piece: each element costs
        the runner and the counting step a fixed amount of work."""
        import pyarrow as pa

        tables, letters = [], []
        for offset, parsed in results():
            def origin_of(index: int, at: int = first + offset) -> dict[str, Any]:
                return {"source": "file", "file": path, kind: at + index}

            events, rejected = self._handed_over.decide(parsed, origin_of)
            if events is not None:
                tables.append(events)
            letters.extend(rejected)
        if tables:
            yield tables[0] if len(tables) == 1 else pa.concat_tables(tables).combine_chunks()
        yield from _dead_letter_output(letters)

    def teardown(self):
        if self._parser is not None:
            self._parser.close()


def _in_global_window(value) -> WindowedValue:
    # Blocks come from a bounded read in the global window (ReadFileBlocks).
    return WindowedValue(value, MIN_TIMESTAMP, (GlobalWindow(),))


class ParseBlocks(beam.PTransform):
    """The vectorized batch path of :func:`ParseUserEvents`: blocks of JSON lines or
    Parquet batches -> ParsedRecords whose ``valid`` elements are Arrow tables of user
    events (:data:`transforms.batches.EVENT_SCHEMA`), with the lines the vectorized
    checks handed over decided by the per-record contract (the same valid events and
    dead letters, reasons and origins, as the per-record path)."""

    def __init__(self, pipeline: str = "pageviews") -> None:
        super().__init__()
        self._pipeline = pipeline

    def expand(self, blocks: beam.PCollection) -> ParsedRecords:
        parsed = blocks | "Vectorized" >> beam.ParDo(
            _ParseBlocksDoFn(self._pipeline, "parse")
        ).with_outputs(DEAD_LETTERS, main=VALID)
        return ParsedRecords(parsed[VALID], parsed[DEAD_LETTERS])


class _ParseRawBatchesDoFn(beam.DoFn):
    """RawBatch -> one Arrow table of its valid events, timestamped at the earliest of
    them; a dead letter for each invalid payload.

    Payloads are parsed together by the vectorized parser; those it hands over are
    decided one by one by the per-record contract (:class:`_HandedOver`); the dead
    letters of a batch leave as one DeadLetterBatch.
    """

    def __init__(self, pipeline: str, step: str, decoder: Optional[Decoder] = None) -> None:
        self._decoder = decoder_or_json(decoder)
        self._handed_over = _HandedOver(pipeline, step, self._decoder)

    def process(self, batch: RawBatch):
        import pyarrow.compute as pc

        events, letters = self._handed_over.decide(self._block(batch.payloads), batch.origin_of)
        yield from _dead_letter_output(letters)
        if events is not None:
            yield TimestampedValue(events, pc.min(events.column("event_second")).as_py())

    def _block(self, payloads: list[bytes]) -> ParsedBlock:
        """JSON: msgspec's vectorized parser; Avro: one Arrow table per poll
        (:func:`~transforms.formats.arrow.user_event_block`); other formats have no
        columnar decoder, so every payload is handed over to the per-record contract."""
        fmt = self._decoder.format
        if fmt == "json":
            return parse_payloads(payloads)
        if fmt == "avro":
            return user_event_block(payloads, self._decoder)
        return ParsedBlock(EVENT_SCHEMA.empty_table(), np.zeros(0, np.int64),
                           list(enumerate(payloads)), 0, len(payloads))


class ParseUserEventBatches(beam.PTransform):
    """The batched form of :func:`ParseUserEvents`: RawBatch -> ParsedRecords whose
    ``valid`` elements are Arrow tables of user events
    (:data:`transforms.batches.EVENT_SCHEMA`), each timestamped at its earliest event.
    Same valid events and dead letters (reasons, origins) as the per-record form."""

    def __init__(self, pipeline: str = "pageviews", decoder: Optional[Decoder] = None) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._decoder = decoder_or_json(decoder)

    def expand(self, batches: beam.PCollection) -> ParsedRecords:
        outputs = batches | "Validate" >> beam.ParDo(
            _ParseRawBatchesDoFn(self._pipeline, "parse", self._decoder)
        ).with_outputs(DEAD_LETTERS, main=VALID)
        return ParsedRecords(outputs[VALID], outputs[DEAD_LETTERS])
