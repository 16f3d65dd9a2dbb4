"""Schemas defined once: docs/schemas.md in sync, Avro and JSON Schema usable on real records."""

from __future__ import annotations

import io
import json
import pathlib

import fastavro
import fastjsonschema
import pytest

from beam_pipelines import schemas
from beam_pipelines.error_rate import Limits, _Rate
from beam_pipelines.iot_alerts import AlertStatsFn, Thresholds, _Having, parse_reading
from beam_pipelines.pageviews import to_page_view_count
from transforms.contracts.service_logs import parse_service_log
from transforms.fraud import Engine, parse_transaction, rules_from_document
from transforms.parse import parse_user_event
from transforms.records import DeadLetter, IoTAlert
from transforms.sessions import SessionStatsFn, to_user_session
from transforms.sinks.files import to_json_line
from transforms.validation import decode_json_object
from transforms.windowing import WindowedResult

pytestmark = pytest.mark.unit

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "schemas.md"
T0 = 1_704_067_200.0


def real_records() -> dict[str, list]:
    """Records as the pipelines make them, through their own functions."""
    event, _ = parse_user_event(decode_json_object(b'{"user_id": 7, "action": "click", '
                                                   b'"page": "/", "timestamp": 1704067200.25}'))
    reading, _ = parse_reading(decode_json_object(
        b'{"DeviceId": "d1", "Temperature": 31, "Humidity": 40.5, '
        b'"EventTime": "2024-01-01T02:00:00.5+02:00"}'))
    tx, _ = parse_transaction(decode_json_object(
        b'{"tx_id": "tx-1", "card_id": "c-7", "amount": 2500.5, "currency": "EUR", "merchant": "m",'
        b' "country": "DE", "lat": 52.52, "lon": 13.4, "timestamp": "2024-01-01T02:00:00.25+02:00"}'))
    engine = Engine(rules_from_document([
        {"name": "big", "kind": "threshold", "action": "review", "field": "amount", "op": ">",
         "value": 2000},
        {"name": "burst", "kind": "velocity", "action": "block", "window": 60, "max_count": 3}]))
    def having(result):  # the alerts (the windows output is not a schema)
        return [a for a in _Having(Thresholds()).process(result) if isinstance(a, IoTAlert)]

    log, _ = parse_service_log(decode_json_object(
        b'{"service": "api", "level": "ERROR", "status": "503", "timestamp": "2024-01-01T01:00:00+01:00"}'))
    rate = _Rate(Limits()).process
    stats = SessionStatsFn()
    session = stats.extract_output(stats.add_input(stats.add_input(
        stats.create_accumulator(), event), event._replace(page="/b", timestamp=T0 + 61.5)))
    fn = AlertStatsFn()
    value = fn.extract_output(fn.add_input(fn.create_accumulator(), reading))
    return {
        "UserEvent": [event],
        "IoTReading": [reading],
        "PageViewCount": [
            to_page_view_count(WindowedResult("/", T0, T0 + 300, 3)),
            to_page_view_count(WindowedResult("/", T0, T0 + 300, 4, "LATE", 2, False)),
        ],
        "IoTAlert": [
            *having(WindowedResult("d1", T0, T0 + 60, value)),
            *having(WindowedResult("d1", T0, T0 + 60, value, "EARLY", 0, False)),
        ],
        "ServiceLog": [log],
        "ServiceErrorRate": [
            *rate(WindowedResult("api", T0, T0 + 60, (40, 3))),
            *rate(WindowedResult("api", T0, T0 + 60, (1, 1), "EARLY", 0, False)),
        ],
        "UserSession": [
            to_user_session(WindowedResult("7", T0, T0 + 1861.5, session)),
            to_user_session(WindowedResult("7", T0, T0 + 1861.5, session, "EARLY", 0, False)),
        ],
        "DeadLetter": [
            DeadLetter.of("iot_alerts", "parse", "invalid JSON", b"{", {"source": "file", "file": "f",
                                                                      "line": 3}, "invalid_json"),
            DeadLetter.of("pageviews", "parse", "not UTF-8", b"\xff", {"source": "kafka",
                                                                    "partition": 0, "offset": 9}),
        ],
        "Decision": [engine.decide(tx, engine.stateless_fired(tx)), engine.decide(tx, [])],
    }


def test_docs_schemas_md_is_generated_from_code():
    assert DOCS.read_text(encoding="utf-8") == schemas.export("markdown"), (
        "docs/schemas.md is out of date: regenerate it with "
        "`python -m beam_pipelines.schemas --format markdown > docs/schemas.md`"
    )


def test_every_field_is_documented_and_no_doc_is_stale():
    for name, record in schemas.SCHEMAS.items():
        documented = set(schemas.FIELD_DOCS[name]) | set(schemas.CONSTRAINTS.get(name, {}))
        assert documented <= set(record._fields), f"{name}: docs for fields it does not have"
        for field in schemas.fields(name):
            assert field.doc.strip(), f"{name}.{field.name} has no description in FIELD_DOCS"


def test_json_schema_validates_real_records_and_rejects_broken_ones():
    records = real_records()
    assert set(records) == set(schemas.SCHEMAS)
    for name, examples in records.items():
        validate = fastjsonschema.compile(schemas.json_schema(name))
        for record in examples:
            row = json.loads(to_json_line(record))  # exactly what the JSON sinks write
            validate(row)
            extra = {**row, "unexpected": 1}
            missing = {k: v for k, v in row.items() if k != schemas.fields(name)[0].name}
            for broken in (extra, missing):
                with pytest.raises(fastjsonschema.JsonSchemaException):
                    validate(broken)
    alert = json.loads(to_json_line(records["IoTAlert"][1]))
    validate = fastjsonschema.compile(schemas.json_schema("IoTAlert"))
    for field, bad in [("AvgTemp", "31"), ("pane_timing", "SOON"), ("WindowTime", "yesterday"),
                       ("DeviceId", ""), ("MaxHumidity", True)]:
        with pytest.raises(fastjsonschema.JsonSchemaException):
            validate({**alert, field: bad})


def test_avro_schemas_parse_and_round_trip_real_records():
    everything = fastavro.parse_schema([schemas.avro_schema(n) for n in schemas.SCHEMAS])
    assert everything
    for name, examples in real_records().items():
        parsed = fastavro.parse_schema(schemas.avro_schema(name))
        rows = [json.loads(to_json_line(r)) for r in examples]
        buffer = io.BytesIO()
        fastavro.writer(buffer, parsed, rows)
        buffer.seek(0)
        assert list(fastavro.reader(buffer)) == rows


def test_beam_row_coders_round_trip_real_records():
    for name, examples in real_records().items():
        coder = schemas.row_coder(name)
        for record in examples:
            decoded = coder.decode(coder.encode(record))
            assert tuple(decoded) == tuple(record), name


def test_command_line(capsys):
    assert schemas.main(["--format", "jsonschema"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document["$defs"]) == set(schemas.SCHEMAS)
    assert schemas.main(["--format=avro", "--schema=IoTAlert"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "IoTAlert"
    assert schemas.main(["--format=jsonschema", "--schema=IoTReading"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "IoTReading"
    for argv, error in [
        (["--format=xml"], "error: --format: expected one of jsonschema|avro|markdown, got 'xml'"),
        (["--format=avro", "--schema=Nope"], "error: --schema: expected one of UserEvent|"),
        ([], "error: --format: expected one of"),
        (["--format=avro", "--pretty"], "error: --pretty: unknown argument"),
    ]:
        assert schemas.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(error) and err.count("\n") == 1, err
