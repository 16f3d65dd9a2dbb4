"""The schema-registry emulator, driven by Confluent's official client and by plain HTTP."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.transforms.formats.samples import PAGEVIEW_V1, PAGEVIEW_V2, avsc, pageview_file

pytestmark = pytest.mark.integration

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def http(url: str, method: str = "GET", body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": CONTENT_TYPE, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.loads(error.read())


@pytest.fixture
def client(schema_registry):
    return SchemaRegistryClient({"url": schema_registry})


def test_register_lookup_versions_with_the_official_client(client, schema_topic):
    subject = f"{schema_topic}-value"
    first = client.register_schema(subject, Schema(avsc(PAGEVIEW_V1), "AVRO"))
    assert client.register_schema(subject, Schema(avsc(PAGEVIEW_V1), "AVRO")) == first
    second = client.register_schema(subject, Schema(avsc(PAGEVIEW_V2), "AVRO"))
    assert second != first
    assert client.get_versions(subject) == [1, 2]
    latest = client.get_latest_version(subject)
    assert (latest.schema_id, latest.version) == (second, 2)
    assert json.loads(client.get_schema(first).schema_str) == PAGEVIEW_V1
    found = client.lookup_schema(subject, Schema(avsc(PAGEVIEW_V1), "AVRO"))
    assert (found.schema_id, found.version) == (first, 1)
    assert subject in client.get_subjects()
    # the same schema under another subject is the same id
    assert client.register_schema(f"{schema_topic}-other", Schema(avsc(PAGEVIEW_V1), "AVRO")) == first
    # (the registry is shared by the session's tests: others may use the schema too)
    assert {subject, f"{schema_topic}-other"} <= {v.subject for v in client.get_schema_versions(first)}


def test_incompatible_registration_is_409(client, schema_topic):
    subject = f"{schema_topic}-value"
    client.register_schema(subject, Schema(avsc(PAGEVIEW_V1), "AVRO"))
    breaking = {**PAGEVIEW_V1, "fields": [*PAGEVIEW_V1["fields"], {"name": "country", "type": "string"}]}
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(subject, Schema(avsc(breaking), "AVRO"))
    assert caught.value.http_status_code == 409 and caught.value.error_code == 409
    assert "country" in caught.value.error_message
    assert client.test_compatibility(subject, Schema(avsc(breaking), "AVRO")) is False
    assert client.test_compatibility(subject, Schema(avsc(PAGEVIEW_V2), "AVRO")) is True
    client.set_compatibility(subject, "NONE")
    assert client.get_compatibility(subject) == "NONE"
    assert client.register_schema(subject, Schema(avsc(breaking), "AVRO")) > 0


@pytest.mark.parametrize("level, compatible", [
    ("BACKWARD", True),  # v2 reads v1's data: 'referrer' has a default, 'session' is skipped
    ("BACKWARD_TRANSITIVE", True),
    ("FORWARD", False),  # v1 reads v2's data: v1's 'session' has no default
    ("FULL", False),
    ("NONE", True),
])
def test_levels(client, schema_topic, level, compatible):
    subject = f"{schema_topic}-value"
    client.register_schema(subject, Schema(avsc(PAGEVIEW_V1), "AVRO"))
    client.set_compatibility(subject, level)
    assert client.test_compatibility(subject, Schema(avsc(PAGEVIEW_V2), "AVRO")) is compatible


def test_soft_and_permanent_deletes(client, schema_topic):
    subject = f"{schema_topic}-value"
    schema_id = client.register_schema(subject, Schema(avsc(PAGEVIEW_V1), "AVRO"))
    client.register_schema(subject, Schema(avsc(PAGEVIEW_V2), "AVRO"))
    assert client.delete_version(subject, 2) == 2
    assert client.get_versions(subject) == [1]
    assert client.get_versions(subject, deleted=True) == [1, 2]
    with pytest.raises(SchemaRegistryError) as caught:
        client.delete_subject(subject, permanent=True)
    assert caught.value.error_code == 40405
    assert client.delete_subject(subject) == [1]
    assert subject not in client.get_subjects()
    assert subject in client.get_subjects(deleted=True)
    assert client.get_schema(schema_id)  # ids stay readable after a soft delete
    assert client.delete_subject(subject, permanent=True) == [1, 2]
    with pytest.raises(SchemaRegistryError) as caught:
        client.get_versions(subject)
    assert caught.value.error_code == 40401


def test_error_bodies_codes_and_content_type(schema_registry, schema_topic):
    subject = f"{schema_topic}-value"
    status, kind, body = http(f"{schema_registry}/subjects/{subject}/versions")
    assert (status, body["error_code"], kind) == (404, 40401, CONTENT_TYPE)
    assert http(f"{schema_registry}/schemas/ids/987654")[2]["error_code"] == 40403
    status, _, body = http(f"{schema_registry}/subjects/{subject}/versions", "POST",
                           {"schema": "{not avro"})
    assert (status, body["error_code"]) == (422, 42201)
    status, _, body = http(f"{schema_registry}/subjects/{subject}/versions", "POST",
                           {"schema": avsc(PAGEVIEW_V1)})
    assert status == 200 and set(body) == {"id"}
    assert http(f"{schema_registry}/subjects/{subject}/versions/7")[2]["error_code"] == 40402
    assert http(f"{schema_registry}/subjects/{subject}/versions/zero")[2]["error_code"] == 42202
    status, _, body = http(f"{schema_registry}/subjects/{subject}", "POST",
                           {"schema": avsc(PAGEVIEW_V2)})
    assert (status, body["error_code"]) == (404, 40403)
    status, _, body = http(f"{schema_registry}/config/{subject}", "PUT", {"compatibility": "SIDEWAYS"})
    assert (status, body["error_code"]) == (422, 42203)
    assert http(f"{schema_registry}/config/{subject}")[2]["error_code"] == 40408
    assert http(f"{schema_registry}/config/{subject}?defaultToGlobal=true")[2] == {
        "compatibilityLevel": "BACKWARD"}
    status, _, body = http(f"{schema_registry}/compatibility/subjects/{subject}/versions/latest?verbose=true",
                           "POST", {"schema": avsc({**PAGEVIEW_V1, "fields": PAGEVIEW_V1["fields"][:2]
                                                    + [{"name": "n", "type": "int"}]})})
    assert status == 200 and body["is_compatible"] is False and body["messages"]
    status, _, text = http(f"{schema_registry}/subjects/{subject}/versions/1/schema")
    assert text == PAGEVIEW_V1


def test_protobuf_text_and_serialized_forms_are_one_schema(client, schema_topic):
    proto = """syntax = "proto3";
package shop.v1;
message Order { string id = 1; int64 cents = 2; repeated string items = 3; map<string, int32> qty = 4; }
"""
    subject = f"{schema_topic}-value"
    text_id = client.register_schema(subject, Schema(proto, "PROTOBUF"))
    registered = client.get_schema(text_id)
    assert "message Order" in registered.schema_str
    serialized = client.get_schema(text_id, fmt="serialized").schema_str
    assert client.register_schema(subject, Schema(serialized, "PROTOBUF")) == text_id
    with pytest.raises(SchemaRegistryError) as caught:  # a field changing type breaks BACKWARD
        client.register_schema(subject, Schema(proto.replace("int64 cents", "string cents"), "PROTOBUF"))
    assert caught.value.http_status_code == 409
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(f"{schema_topic}-bad", Schema("message { oops", "PROTOBUF"))
    assert caught.value.error_code == 42201


def test_protobuf_references_and_rendering(client, schema_topic):
    file = pageview_file()
    text = base64.b64encode(file.SerializeToString()).decode()
    schema_id = client.register_schema(f"{schema_topic}-value", Schema(text, "PROTOBUF"))
    rendered = client.get_schema(schema_id).schema_str
    assert 'import "google/protobuf/timestamp.proto";' in rendered
    assert "map<string, string> tags = 7;" in rendered and "optional string referrer = 5;" in rendered
    # a schema referencing another subject's schema (Avro named types)
    money = {"type": "record", "name": "Money", "namespace": "com.acme", "fields": [
        {"name": "cents", "type": "long"}]}
    client.register_schema(f"{schema_topic}-money", Schema(avsc(money), "AVRO"))
    order = {"type": "record", "name": "Order", "namespace": "com.acme", "fields": [
        {"name": "total", "type": "com.acme.Money"}]}
    reference = SchemaReference("com.acme.Money", f"{schema_topic}-money", 1)
    order_id = client.register_schema(f"{schema_topic}-order", Schema(avsc(order), "AVRO", [reference]))
    assert client.get_schema(order_id).references[0].subject == f"{schema_topic}-money"
    with pytest.raises(SchemaRegistryError) as caught:
        client.delete_subject(f"{schema_topic}-money")
    assert caught.value.error_code == 42206


def test_json_schema_rules(client, schema_topic):
    subject = f"{schema_topic}-value"
    v1 = {"type": "object", "properties": {"a": {"type": "string"}, "n": {"type": "number"}}}
    client.register_schema(subject, Schema(json.dumps(v1), "JSON"))
    assert client.test_compatibility(subject, Schema(json.dumps(
        {**v1, "properties": {**v1["properties"], "b": {"type": "integer"}}}), "JSON"))
    assert not client.test_compatibility(subject, Schema(json.dumps({**v1, "required": ["a"]}), "JSON"))
    assert not client.test_compatibility(subject, Schema(json.dumps(
        {**v1, "properties": {"a": {"type": "string"}, "n": {"type": "integer"}}}), "JSON"))
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(f"{schema_topic}-x", Schema('{"type": 12}', "JSON"))
    assert caught.value.error_code == 42201


def test_authentication(schema_topic):
    from beam_pipelines.testing.emulators.schema_registry import SchemaRegistryEmulator

    with SchemaRegistryEmulator(users={"KEY": "s3cret"}, tokens={"tkn-1"}) as registry:
        status, _, body = http(f"{registry.url}/subjects")
        assert (status, body["error_code"]) == (401, 401)
        good = SchemaRegistryClient({"url": registry.url, "basic.auth.user.info": "KEY:s3cret"})
        assert good.get_subjects() == []
        # the identity pool key: confluent-kafka before 2.13 (quixstreams pins it) requires it
        bearer = SchemaRegistryClient({"url": registry.url, "bearer.auth.credentials.source": "STATIC_TOKEN",
                                       "bearer.auth.token": "tkn-1", "bearer.auth.logical.cluster": "lsrc-1",
                                       "bearer.auth.identity.pool.id": ""})
        assert bearer.get_subjects() == []
        with pytest.raises(SchemaRegistryError) as caught:
            SchemaRegistryClient({"url": registry.url, "basic.auth.user.info": "KEY:wrong"}).get_subjects()
        assert caught.value.http_status_code == 401


def test_command_line_serves_until_stopped():
    process = subprocess.Popen(
        [sys.executable, "-m", "beam_pipelines.testing.emulators.schema_registry", "--port", "0"],
        stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert "listening on http://" in line, line
        url = line.rsplit(" ", 1)[-1].strip()
        assert http(f"{url}/schemas/types")[2] == ["JSON", "PROTOBUF", "AVRO"]
    finally:
        process.terminate()
        process.wait(timeout=10)
