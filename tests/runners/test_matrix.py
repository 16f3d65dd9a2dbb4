"""The runner matrix of beam_pipelines/registry.py, cell by cell.

* Bounded sources x batch runners: pageviews over a few hundred messy events (a seed of
  their own each run, in every assertion message) gives on PortableRunner (LOOPBACK) and
  DaskRunner the DirectRunner's counts and dead letters; each sink is written by the
  cell ``SINK_CELLS`` names and read back.
* Unbounded sources: the LocalStreamingRunner tests the registry names exist; on
  PortableRunner (the in-process job service) and DaskRunner each is refused at
  submission in one line.
* Registered pipelines x batch runners: each pipeline, from a file of its own contract's
  inputs with dirty lines, through the skeleton, gives the DirectRunner's results and
  dead letters. A pipeline added to the registry gets these cells with no code here.

Servers are shared (the session's broker, Postgres and emulators), every input is written
once per module, and each cell is one run that is checked for counts, dead letters, the
sink and leftovers at once. The DirectRunner's answer of each row is computed once.
"""

from __future__ import annotations

import ast
import datetime
import gzip
import json
import random
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from beam_pipelines import options as opts
from beam_pipelines import registry
from beam_pipelines.registry import BATCH_RUNNERS, BOUNDED_SOURCES, UNBOUNDED_SOURCES
from beam_pipelines.testing.files import read_jsonl, read_parquet_dir, window_counts
from beam_pipelines.wiring.notifications import NOTIFICATION_SINKS
from tests.runners.test_dask import messy_events

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 300
PARTITIONS = 3
SEED = random.SystemRandom().randrange(1 << 30)
RUNNER_FLAGS = {"DirectRunner": ["--runner=DirectRunner"],
                "PortableRunner": ["--runner=PortableRunner"],
                "DaskRunner": ["--runner=DaskRunner", "--dask_local_workers=2"]}
# Dirty lines every pipeline's input gets, beside its generator's own malformed ones.
DIRTY = [b"not json", b"{}", b"[1, 2]", b"null", b"\xff\xfe not utf-8", b'{"a": NaN}']
# Result fields that say when, not what (processing time, the run's own paths).
VOLATILE = {"decided_at", "created_at"}
# Inputs each bounded source holds (Parquet: the lines that are JSON objects).
INPUTS: dict[str, int] = {}


def _cell_id(source: str, runner: str) -> str:
    return f"{source}-{runner}"


# ---- inputs, written once --------------------------------------------------------------

@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    kept = [line for line in messy_events(EVENTS, SEED) if line.strip()]
    INPUTS.update({source: len(kept) for source in ("jsonl", "gzip", "kafka", "pubsub", "eventhubs")})
    return kept


@pytest.fixture(scope="module")
def files(tmp_path_factory, lines) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("matrix-inputs")
    jsonl, gz = folder / "events.jsonl", folder / "events.jsonl.gz"
    text = b"\n".join(lines[:100] + [b"", b"   "] + lines[100:]) + b"\n"  # blank lines skip
    jsonl.write_bytes(text)
    gz.write_bytes(gzip.compress(text))
    rows = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):  # typed columns: what does not fit is null (a dead letter)
            stamp = event.get("timestamp")
            rows.append({
                "user_id": None if event.get("user_id") is None else str(event["user_id"]),
                "action": event.get("action") if isinstance(event.get("action"), str) else None,
                "page": event.get("page") if isinstance(event.get("page"), str) else None,
                "timestamp": _epoch(stamp)})
    good = {"user_id": "u1", "action": "click", "page": "/", "timestamp": 1_735_689_600.0}
    rows[50:50] = [{**good, "page": ""}, {**good, "timestamp": 5e9}, {**good, "timestamp": 0.0},
                   {**good, "action": " "}]  # empty, out of range, before 2000, blank
    parquet = folder / "events.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    INPUTS["parquet"] = len(rows)
    return {"jsonl": jsonl, "gzip": gz, "parquet": parquet}


def _epoch(stamp: Any) -> Any:
    """A JSON timestamp as a float column holds it: what is not a time stays null."""
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        return float(stamp)
    try:
        return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (AttributeError, TypeError, ValueError):
        return None


@pytest.fixture(scope="module")
def kafka(kafka_broker, lines) -> dict[str, str]:
    from kafka import KafkaProducer

    topic = kafka_broker.create_topic(f"matrix_{SEED}", PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    for i, line in enumerate(lines):
        producer.send(topic, line, partition=i % PARTITIONS)
    producer.flush()
    producer.close()
    out = kafka_broker.create_topic(f"matrix_out_{SEED}", 1)
    return {"servers": kafka_broker.bootstrap_servers, "topic": topic, "out": out}


@pytest.fixture(scope="module")
def pubsub(pubsub_emulator, lines):
    """One subscription per runner (a read acknowledges what it read), an output topic."""
    from google.cloud import pubsub_v1

    project = f"matrix-{uuid.uuid4().hex[:8]}"
    topic, out = f"projects/{project}/topics/events", f"projects/{project}/topics/results"
    pubsub_emulator.create_topic(topic)
    pubsub_emulator.create_topic(out)
    subs = {runner: f"projects/{project}/subscriptions/{runner.lower()}" for runner in BATCH_RUNNERS}
    for sub in subs.values():
        pubsub_emulator.create_subscription(sub, topic, ack_deadline_seconds=60)
    results_sub = f"projects/{project}/subscriptions/results"
    pubsub_emulator.create_subscription(results_sub, out)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
        publisher = pubsub_v1.PublisherClient()
        for future in [publisher.publish(topic, line) for line in lines]:
            future.result()
        yield {"host": pubsub_emulator.host, "subs": subs, "out": out, "results": results_sub}


@pytest.fixture(scope="module")
def eventhubs(eventhubs_emulator, lines) -> dict[str, str]:
    from beam_pipelines.testing.emulators.eventhubs import send_events

    conn = eventhubs_emulator.connection_string
    hub = eventhubs_emulator.create_hub(f"matrix-{SEED}", PARTITIONS)
    send_events(conn, hub, lines, partitions=PARTITIONS)
    out = eventhubs_emulator.create_hub(f"matrix-out-{SEED}", 1)
    return {"conn": conn, "hub": hub, "out": out}


@pytest.fixture(scope="module")
def postgres_db(postgres) -> str:
    import psycopg

    name = f"matrix_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{name}"


def _source_flags(source: str, runner: str, request) -> list[str]:
    """The flags reading ``source`` bounded (its servers started on first use)."""
    if source in ("jsonl", "gzip", "parquet"):
        return ["--source=file", f"--input={request.getfixturevalue('files')[source]}"]
    if source == "kafka":
        k = request.getfixturevalue("kafka")
        return ["--source=kafka", f"--bootstrap_servers={k['servers']}", f"--topic={k['topic']}",
                "--start_at=earliest", "--stop_at=end"]
    if source == "pubsub":
        p, count = request.getfixturevalue("pubsub"), len(request.getfixturevalue("lines"))
        return ["--source=pubsub", f"--subscription={p['subs'][runner]}",
                f"--pubsub_emulator_host={p['host']}", f"--pubsub_max_messages={count}",
                "--pubsub_max_seconds=60"]
    if source == "eventhubs":
        e = request.getfixturevalue("eventhubs")
        return ["--source=eventhubs", f"--eventhubs_connection_string={e['conn']}",
                f"--eventhub={e['hub']}", "--eventhubs_stop_at=end"]
    assert source == "synthetic", f"no flags for the bounded source {source!r}"
    return ["--source=synthetic", f"--synthetic_events={EVENTS}", f"--synthetic_seed={SEED}",
            "--synthetic_malformed=0.05"]


# ---- sinks: the flags, and the rows read back --------------------------------------------

def _sink_flags(sink: str, out: Path, request) -> list[str]:
    if sink in ("jsonl", "parquet"):
        return [f"--sink={sink}", f"--output={out}"]
    if sink == "console":
        return ["--sink=console"]
    if sink == "kafka":
        k = request.getfixturevalue("kafka")
        return ["--sink=kafka", f"--bootstrap_servers={k['servers']}", f"--output={k['out']}"]
    if sink == "postgres":
        return ["--sink=postgres", f"--output={request.getfixturevalue('postgres_db')}"]
    if sink == "pubsub":
        p = request.getfixturevalue("pubsub")
        return ["--sink=pubsub", f"--output={p['out']}", f"--pubsub_emulator_host={p['host']}"]
    if sink == "eventhubs":
        e = request.getfixturevalue("eventhubs")
        return ["--sink=eventhubs", f"--eventhubs_connection_string={e['conn']}",
                f"--output={e['out']}"]
    assert sink == "iceberg", f"no flags for the sink {sink!r}"
    return ["--sink=iceberg", "--output=web.page_views", f"--iceberg_warehouse={out}"]


def _console_rows(text: str) -> list[dict[str, Any]]:
    """The batch console table (header, dashes, rows) -> rows."""
    body = text.split("page views per window (", 1)[1].splitlines()[1:]
    header = body[0].split()
    return [dict(zip(header, line.split(), strict=True)) for line in body[2:] if line.strip()]


def _read_back(sink: str, out: Path, request, printed: str) -> list[dict[str, Any]]:
    if sink == "jsonl":
        return read_jsonl(f"{out}/pageviews-*.jsonl")
    if sink == "parquet":
        return read_parquet_dir(str(out), "pageviews")
    if sink == "console":
        return [{**row, "count": int(row["count"])} for row in _console_rows(printed)]
    if sink == "kafka":
        from beam_pipelines.testing.kafka import read_topic

        k = request.getfixturevalue("kafka")
        return [json.loads(value) for value in read_topic(k["servers"], k["out"])]
    if sink == "postgres":
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(request.getfixturevalue("postgres_db"), row_factory=dict_row) as conn:
            conn.execute("SET TIME ZONE 'UTC'")
            return conn.execute("SELECT window_start, page, count FROM page_views").fetchall()
    if sink == "pubsub":
        return _pull_all(request.getfixturevalue("pubsub"))
    if sink == "eventhubs":
        import apache_beam as beam

        from beam_pipelines.testing.collect import collect
        from transforms.io.eventhubs import ReadFromEventHubs

        e = request.getfixturevalue("eventhubs")
        with beam.Pipeline() as pipeline:
            written = collect((pipeline | ReadFromEventHubs(e["conn"], e["out"], stop_at="end")).records)
        return [json.loads(record.payload) for record in written.items]
    from transforms.sinks.iceberg import load_table

    table = load_table("web.page_views", catalog=f"sqlite:///{out / 'catalog.db'}", warehouse=str(out))
    return table.scan().to_arrow().to_pylist()


def _pull_all(p: dict) -> list[dict[str, Any]]:
    """Every message on the results subscription (they were all published by the run)."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    rows: list[dict[str, Any]] = []
    while True:
        answer = subscriber.pull(subscription=p["results"], max_messages=1000, timeout=10,
                                 return_immediately=True)
        if not answer.received_messages:
            return rows
        rows += [json.loads(m.message.data) for m in answer.received_messages]
        subscriber.acknowledge(subscription=p["results"],
                               ack_ids=[m.ack_id for m in answer.received_messages])


# ---- one run, checked ---------------------------------------------------------------------

def _run(main: Callable[[list[str]], int], flags: list[str], out: Path, dead: Path,
         capsys) -> str:
    """Run a pipeline's ``main``; the one-line error, if any, is the failure message.
    Returns what it printed to stdout."""
    capsys.readouterr()
    code = main([*flags, f"--dead_letter={dead}"])
    printed = capsys.readouterr()
    assert code == 0, f"seed {SEED}: exit code {code}: {printed.err.strip()[-600:]}"
    leftovers = list(out.glob("beam-temp-*")) + list(dead.glob("beam-temp-*"))
    assert not leftovers, f"temporary files left behind: {leftovers}"
    return printed.out


def _letters(dead: Path) -> list[tuple[str, str]]:
    """(origin, reason code) of every dead letter; Pub/Sub's origin without the
    subscription (each runner reads a subscription of its own)."""
    return sorted((json.dumps({k: v for k, v in d["origin"].items() if k != "subscription"},
                              sort_keys=True), d["reason_code"])
                  for d in read_jsonl(f"{dead}/dead_letters-*.jsonl"))


_REFERENCE: dict[str, tuple[dict, list]] = {}


def _pageviews_cell(source: str, runner: str, request, tmp_path_factory, capsys):
    """(counts, dead letters) of pageviews reading ``source`` on ``runner``."""
    from beam_pipelines import pageviews

    base = tmp_path_factory.mktemp(_cell_id(source, runner))
    out, dead = base / "out", base / "dead"
    sink = "jsonl" if runner == "DirectRunner" else registry.sink_of(runner, source)
    printed = _run(pageviews.main, [
        *_source_flags(source, runner, request), *_sink_flags(sink, out, request),
        "--window_size=60", *RUNNER_FLAGS[runner]], out, dead, capsys)
    rows = _read_back(sink, out, request, printed)
    counts = window_counts(rows)
    assert len(counts) == len(rows), f"seed {SEED}, --sink={sink}: one row per window and page"
    return counts, _letters(dead)


def _reference(source: str, request, tmp_path_factory, capsys):
    if source not in _REFERENCE:
        _REFERENCE[source] = _pageviews_cell(source, "DirectRunner", request, tmp_path_factory,
                                             capsys)
    return _REFERENCE[source]


@pytest.mark.integration
@pytest.mark.parametrize("source,runner", [(s, r) for s in BOUNDED_SOURCES for r in BATCH_RUNNERS],
                         ids=[_cell_id(s, r) for s in BOUNDED_SOURCES for r in BATCH_RUNNERS])
def test_a_bounded_source_gives_the_direct_runners_answer(source, runner, request,
                                                          tmp_path_factory, capsys):
    counts, letters = _reference(source, request, tmp_path_factory, capsys)
    if runner == "DirectRunner":
        # Messy enough to matter: every valid event counted once, several kinds of rejects.
        expected = INPUTS[source] if source != "synthetic" else EVENTS
        assert sum(counts.values()) + len(letters) == expected, f"seed {SEED}"
        assert len({reason for _, reason in letters}) >= 3, f"seed {SEED}: {letters}"
        return
    got, got_letters = _pageviews_cell(source, runner, request, tmp_path_factory, capsys)
    sink = registry.sink_of(runner, source)
    assert got == counts, f"seed {SEED}: {source} on {runner} (--sink={sink}): counts differ"
    assert got_letters == letters, f"seed {SEED}: {source} on {runner}: dead letters differ"


# ---- unbounded sources ----------------------------------------------------------------------

def _unbounded_flags(source: str, request) -> list[str]:
    if source == "synthetic":
        return ["--source=synthetic", "--streaming"]
    bounded = _source_flags(source, "DirectRunner", request)
    unbounded = [f for f in bounded if not f.startswith(
        ("--stop_at", "--eventhubs_stop_at", "--pubsub_max_messages", "--pubsub_max_seconds"))]
    return unbounded


@pytest.mark.integration
@pytest.mark.parametrize("runner", registry.STREAMING_RUNNERS[1:])
@pytest.mark.parametrize("source", list(UNBOUNDED_SOURCES))
def test_an_unbounded_source_is_refused_in_one_line(source, runner, request, tmp_path, capsys):
    from beam_pipelines import pageviews

    flags = [*_unbounded_flags(source, request), *RUNNER_FLAGS[runner], "--sink=jsonl",
             f"--output={tmp_path / 'out'}"]
    code = pageviews.main(flags)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith(f"error: {registry.REFUSALS[runner]}"), err
    assert "\n" not in err, err
    assert not (tmp_path / "out").exists()


# ---- every registered pipeline --------------------------------------------------------------

@pytest.fixture(scope="module")
def contract_files(tmp_path_factory) -> Callable[[str], Path]:
    """A file of each pipeline's own contract: its generator's inputs and dirty lines."""
    folder = tmp_path_factory.mktemp("contracts")

    def path(name: str) -> Path:
        file = folder / f"{name}.jsonl"
        if not file.exists():
            generator = registry.load(name).contract.generator(seed=SEED, rate=2.0, malformed=0.03)
            payloads = list(generator.payloads(EVENTS))
            file.write_bytes(b"\n".join(payloads[:150] + DIRTY + payloads[150:]) + b"\n")
        return file

    return path


def _needs(name: str, request, tmp_path_factory, capsys) -> list[str]:
    """Flags a pipeline cannot run without (its rules, its model)."""
    if name == "fraud":
        return [f"--rules={ROOT / 'docs/examples/fraud/rules.json'}"]
    if name == "recommendations":
        model = _pipeline_cell("train_recommender", "DirectRunner", request, tmp_path_factory,
                               capsys)[2]
        return [f"--model={model}"]
    return []


_PIPELINE_REFERENCE: dict[str, tuple] = {}


def _outputs(registered: registry.Registered, out: Path) -> list[str]:
    if registered.writes == "model":
        metadata = json.loads((out / "v1" / "metadata.json").read_text())
        items = json.loads((out / "v1" / "items.json").read_text())
        rows = [{k: v for k, v in metadata.items() if k not in VOLATILE}, items]
    else:
        rows = [{k: v for k, v in row.items() if k not in VOLATILE}
                for row in read_jsonl(f"{out}/{registered.name}-*.jsonl")]
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


def _pipeline_cell(name: str, runner: str, request, tmp_path_factory, capsys):
    """(outputs, dead letters, output path) of ``name`` over its contract file on ``runner``."""
    if runner == "DirectRunner" and name in _PIPELINE_REFERENCE:
        return _PIPELINE_REFERENCE[name]
    registered = next(p for p in registry.PIPELINES if p.name == name)
    base = tmp_path_factory.mktemp(f"{name}-{runner}")
    out, dead = base / "out", base / "dead"
    sink = [] if registered.writes == "model" else ["--sink=jsonl"]
    _run(registered.load().main, [
        "--source=file", f"--input={request.getfixturevalue('contract_files')(name)}", *sink,
        f"--output={out}", *_needs(name, request, tmp_path_factory, capsys),
        *RUNNER_FLAGS[runner]], out, dead, capsys)
    cell = (_outputs(registered, out), _letters(dead), out)
    if runner == "DirectRunner":
        _PIPELINE_REFERENCE[name] = cell
    return cell


@pytest.mark.integration
@pytest.mark.parametrize("name,runner", [(p.name, r) for p in registry.PIPELINES
                                         for r in BATCH_RUNNERS],
                         ids=[_cell_id(p.name, r) for p in registry.PIPELINES for r in BATCH_RUNNERS])
def test_a_registered_pipeline_gives_the_direct_runners_answer(name, runner, request,
                                                               tmp_path_factory, capsys):
    outputs, letters, _ = _pipeline_cell(name, "DirectRunner", request, tmp_path_factory, capsys)
    refusal = registry.PIPELINE_REFUSALS.get((name, runner))
    if runner == "DirectRunner":
        assert outputs and len(letters) >= len(DIRTY), f"seed {SEED}: {name}"
        return
    if refusal is not None:
        base = tmp_path_factory.mktemp(f"{name}-{runner}-refused")
        code = registry.load(name).main([
            "--source=file", f"--input={request.getfixturevalue('contract_files')(name)}",
            f"--output={base}", *_needs(name, request, tmp_path_factory, capsys),
            *RUNNER_FLAGS[runner]])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err == f"error: {refusal}", err
        return
    got, got_letters, _ = _pipeline_cell(name, runner, request, tmp_path_factory, capsys)
    assert got == outputs, f"seed {SEED}: {name} on {runner}: results differ"
    assert got_letters == letters, f"seed {SEED}: {name} on {runner}: dead letters differ"


# ---- the matrix itself --------------------------------------------------------------------

@pytest.mark.unit
def test_every_source_sink_and_pipeline_has_its_cells():
    assert set(registry.SINK_CELLS) == set(opts.SINKS) - set(NOTIFICATION_SINKS)
    for runner, source in registry.SINK_CELLS.values():
        assert runner in BATCH_RUNNERS[1:] and source in BOUNDED_SOURCES
    file_kinds = {"jsonl", "parquet", "gzip"}
    assert set(BOUNDED_SOURCES) == (set(opts.SOURCES) - {"file"}) | file_kinds
    assert set(UNBOUNDED_SOURCES) == set(opts.SOURCES) - {"file"}
    for registered in registry.PIPELINES:
        assert registered.load().module_name() == registered.module


@pytest.mark.unit
def test_every_pipeline_module_is_registered():
    """A module of beam_pipelines holding a skeleton pipeline is in the registry (and so
    in the matrix)."""
    import importlib
    import pkgutil

    import beam_pipelines
    from beam_pipelines.skeleton import Pipeline

    found = set()
    for module in pkgutil.iter_modules(beam_pipelines.__path__):
        if module.ispkg or module.name.startswith("_"):
            continue
        loaded = importlib.import_module(f"beam_pipelines.{module.name}")
        found |= {(v.name, loaded.__name__) for v in vars(loaded).values()
                  if isinstance(v, Pipeline) and type(v).__module__ == loaded.__name__}
    assert found == {(p.name, p.module) for p in registry.PIPELINES}


@pytest.mark.unit
def test_the_streaming_tests_the_matrix_names_exist():
    for source, node in registry.STREAMING_TESTS.items():
        path, name = node.split("::")
        tree = ast.parse((ROOT / path).read_text())
        functions = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
        assert name in functions, f"{source}: {node} does not exist"


@pytest.mark.unit
def test_docs_show_the_current_matrix():
    """docs/runners.md holds what ``python -m beam_pipelines.registry`` prints."""
    text = (ROOT / "docs" / "runners.md").read_text()
    begin, end = "<!-- matrix: begin -->\n", "<!-- matrix: end -->"
    assert begin in text and end in text
    committed = text.split(begin, 1)[1].split(end, 1)[0]
    assert committed == registry.matrix_markdown(), (
        "docs/runners.md is out of date: replace the matrix section with the output of "
        "`python -m beam_pipelines.registry`")

