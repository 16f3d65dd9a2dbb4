"""The format flags refuse what cannot work in one line naming the flag, before anything
connects; credentials never show; JSON stays the default and costs nothing new."""

from __future__ import annotations

import sys

import pytest

from beam_pipelines import options as opts
from beam_pipelines import pageviews
from beam_pipelines.options.formats import FormatOptions
from beam_pipelines.wiring import formats
from tests.transforms.formats.samples import PAGEVIEW_V1, avsc
from transforms.base.errors import BeamPipelinesError, MissingExtraError
from transforms.contracts import USER_EVENTS
from transforms.formats import JsonEncoder, RecordEncoder
from transforms.formats.avro import AvroDecoder, SchemalessAvroDecoder
from transforms.records import PageViewCount

pytestmark = pytest.mark.unit

KAFKA = ["--source=kafka", "--bootstrap_servers=localhost:1", "--topic=t", "--stop_at=end"]


def _error(argv: list[str]) -> str:
    with pytest.raises(BeamPipelinesError) as caught:
        pageviews.run(argv)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture(autouse=True)
def no_registry_from_the_environment(monkeypatch):
    for name in ("URL", "BASIC_AUTH", "BASIC_AUTH_FILE", "BEARER_TOKEN", "BEARER_TOKEN_FILE"):
        monkeypatch.delenv(f"SCHEMA_REGISTRY_{name}", raising=False)


@pytest.mark.parametrize("argv,start", [
    (["--format=xml"], "--format: expected one of json|avro|protobuf|jsonschema, got 'xml'"),
    ([*KAFKA, "--format=avro"], "--schema_registry_url: expected a registry URL, or "
                                "--value_schema=FILE.avsc"),
    ([*KAFKA, "--format=jsonschema"], "--schema_registry_url: expected a registry URL"),
    (["--source=file", "--input=x.jsonl", "--format=avro",
      "--schema_registry_url=http://localhost:1"], "--format: expected json with --source=file"),
    ([*KAFKA, "--value_schema=x.avsc"], "--value_schema: expected --format=avro|protobuf|"),
    ([*KAFKA, "--format=avro", "--value_schema=/nonexistent.avsc"],
     "--value_schema: expected a readable .avsc file"),
    ([*KAFKA, "--format=avro", "--message_name=a.B", "--value_schema=x.avsc"],
     "--message_name: expected only with --format=protobuf"),
    ([*KAFKA, "--format=protobuf", "--value_schema=/nonexistent.desc", "--message_name=a.B"],
     "--value_schema: expected a readable .desc file"),
    ([*KAFKA, "--schema_registry_basic_auth_file=/x"], "--schema_registry_basic_auth_file: "),
    (["--sink=jsonl", "--output=/tmp/x", "--sink_format=avro"],
     "--sink_format: expected json with --sink=jsonl"),
    (["--sink=console", "--no_auto_register_schemas"], "--no_auto_register_schemas: expected a "
                                                        "message sink"),
])
def test_bad_combinations_are_one_line_naming_the_flag(argv, start):
    assert _error(argv).startswith(start)


def test_the_registry_secret_stays_out_of_errors_and_reprs(tmp_path):
    argv = [*KAFKA, "--format=avro", "--schema_registry_url=https://key:s3cret@registry:8081",
            f"--value_schema={tmp_path}/missing.avsc"]
    assert "s3cret" not in _error(argv)
    secret = tmp_path / "auth"
    secret.write_text("key:s3cret\n")
    options = opts.parse([*KAFKA, "--format=avro", "--schema_registry_url=https://registry:8081",
                          f"--schema_registry_basic_auth_file={secret}"],
                         [opts.IOOptions, FormatOptions], prog="t")
    decoder = formats.decoder_from_options(options, "kafka", USER_EVENTS)
    assert isinstance(decoder, AvroDecoder)
    shown = repr(decoder)
    assert "s3cret" not in shown and "***" in shown
    assert decoder.reader_schema["name"] == "UserEvent"  # the contract's reader schema


def test_an_empty_credentials_file_is_refused(tmp_path):
    empty = tmp_path / "auth"
    empty.write_text("")
    message = _error([*KAFKA, "--format=avro", "--schema_registry_url=http://registry:8081",
                      f"--schema_registry_basic_auth_file={empty}"])
    assert message.startswith("--schema_registry_basic_auth_file: expected a file holding the secret")


def test_a_local_schema_reads_without_the_environments_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "http://registry:8081")
    schema = tmp_path / "pv.avsc"
    schema.write_text(avsc(PAGEVIEW_V1))
    options = opts.parse([*KAFKA, "--format=avro", f"--value_schema={schema}"],
                         [opts.IOOptions, FormatOptions], prog="t")
    decoder = formats.decoder_from_options(options, "kafka", USER_EVENTS)
    assert isinstance(decoder, SchemalessAvroDecoder)


def test_json_needs_no_decoder_nor_encoder():
    options = opts.parse(KAFKA, [opts.IOOptions, FormatOptions], prog="t")
    assert formats.decoder_from_options(options, "kafka", USER_EVENTS) is None
    assert formats.encoder_from_options(options, topic="out", record=PageViewCount) is None


def test_a_protobuf_sink_needs_its_descriptor():
    options = opts.parse(["--sink=kafka", "--sink_format=protobuf"],
                         [opts.IOOptions, FormatOptions], prog="t")
    with pytest.raises(BeamPipelinesError, match="^--sink_value_schema: expected the sink's schema"):
        formats.encoder_from_options(options, topic="out", record=PageViewCount)


def test_schemaless_avro_sink_schema_derives_from_the_result_record():
    options = opts.parse(["--sink=kafka", "--sink_format=avro"], [opts.IOOptions, FormatOptions],
                         prog="t")
    encode = formats.record_encoder(options, topic="out", record=PageViewCount)
    assert encode is not None
    count = PageViewCount("2024-12-01T00:00:00Z", "2024-12-01T00:01:00Z", "/home", 3)
    import fastavro

    from beam_pipelines import schemas

    body = encode(count)
    import io

    read = fastavro.schemaless_reader(io.BytesIO(body), fastavro.parse_schema(
        schemas.avro_schema(PageViewCount)), None)
    assert read == count._asdict()
    assert RecordEncoder(JsonEncoder())(count).startswith(b'{"window_start"')


def test_a_missing_formats_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastavro", None)  # import fastavro -> ImportError
    with pytest.raises(MissingExtraError) as caught:
        pageviews.run([*KAFKA, "--format=avro", "--value_schema=x.avsc"])
    assert "pip install 'beam-pipelines[formats]'" in str(caught.value)
