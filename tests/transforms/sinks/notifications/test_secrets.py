"""Secret: from an argument, a variable or a file; never shown in text; redaction."""

import logging
import pickle

import pytest

from transforms.base.errors import ConfigError
from transforms.sinks.notifications.secrets import Secret, redact, safe_endpoint

pytestmark = pytest.mark.unit

VALUE = "xoxb-very-secret-token-42"


def test_text_forms_never_show_the_value(caplog):
    secret = Secret(VALUE)
    texts = [repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s %r" % (secret, secret),  # noqa: UP031
             f"{secret}", str([secret]), str({"k": secret})]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").warning("key %s %r", secret, secret)
    try:
        raise ValueError(f"bad {secret}")
    except ValueError as exc:
        texts.append(str(exc))
    assert all(VALUE not in text for text in texts + [caplog.text])
    assert secret.reveal() == VALUE


def test_from_env_and_file_name_their_source_and_are_read_again_after_pickling(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_TEST_KEY", VALUE)
    from_env = Secret.of("env:NOTIFY_TEST_KEY")
    assert from_env.reveal() == VALUE and repr(from_env) == "Secret(env:NOTIFY_TEST_KEY)"
    (tmp_path / "key").write_text(f"  {VALUE}\n")
    from_file = Secret.of(f"file:{tmp_path}/key")
    assert from_file.reveal() == VALUE and "file:" in repr(from_file)

    pickled = pickle.dumps(from_env)
    assert VALUE.encode() not in pickled  # the pipeline carries the name, not the value
    monkeypatch.setenv("NOTIFY_TEST_KEY", "rotated-value")
    assert pickle.loads(pickled).reveal() == "rotated-value"
    assert VALUE.encode() not in pickle.dumps(from_file)
    assert pickle.loads(pickle.dumps(Secret(VALUE))).reveal() == VALUE  # a literal travels


def test_missing_sources_are_config_errors_naming_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_TEST_MISSING", raising=False)
    with pytest.raises(ConfigError, match="NOTIFY_TEST_MISSING"):
        Secret.from_env("NOTIFY_TEST_MISSING", what="routing_key")
    with pytest.raises(ConfigError, match="readable secret file"):
        Secret.from_file(str(tmp_path / "nope"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="non-empty"):
        Secret.from_file(str(tmp_path / "empty"))
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"routing_key: .*\$PAGERDUTY_ROUTING_KEY"):
        Secret.resolve(None, env="PAGERDUTY_ROUTING_KEY", what="routing_key")
    with pytest.raises(ConfigError, match="line breaks"):
        Secret("abc\r\nX-Injected: 1")


def test_resolve_prefers_the_argument_then_the_file_then_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_TEST_KEY", "from-env")
    (tmp_path / "key").write_text("from-file")
    assert Secret.resolve("from-arg", env="NOTIFY_TEST_KEY", file=str(tmp_path / "key")).reveal() == "from-arg"
    assert Secret.resolve(None, env="NOTIFY_TEST_KEY", file=str(tmp_path / "key")).reveal() == "from-file"
    assert Secret.resolve(None, env="NOTIFY_TEST_KEY").reveal() == "from-env"


def test_redact_removes_values_and_url_paths():
    url = Secret("https://hooks.slack.com/services/T1/B2/abcdefgh")
    key = Secret(VALUE)
    text = (f"POST {url.reveal()} failed; Max retries exceeded with url: /services/T1/B2/abcdefgh; "
            f"key={VALUE}")
    cleaned = redact(text, [url, key, None])
    assert VALUE not in cleaned and "abcdefgh" not in cleaned and "***" in cleaned
    assert safe_endpoint(url.reveal()) == "https://hooks.slack.com"
    assert safe_endpoint("https://user:pw@example.com:8443/x?token=1") == "https://example.com:8443"


def test_redact_removes_the_token_parts_of_a_url_that_show_alone():
    # urllib3's DEBUG line quotes the path with its query; endpoints echo a bare token.
    hook = Secret("https://user:PASSWORD99@example.com/hooks/HOOKPATHTOKEN77?token=QUERY%2BTOKEN88&v=1")
    slack = Secret("https://hooks.slack.com/services/T1/B2/SLACKTOKENabc123xyz")
    text = ('"POST /hooks/HOOKPATHTOKEN77?token=QUERY%2BTOKEN88&v=1 HTTP/1.1" 500; '
            "token QUERY+TOKEN88 rejected; bad path HOOKPATHTOKEN77; pw PASSWORD99; "
            "invalid_token for SLACKTOKENabc123xyz; services and hooks stay readable")
    cleaned = redact(text, [hook, slack])
    for token in ("HOOKPATHTOKEN77", "QUERY%2BTOKEN88", "QUERY+TOKEN88", "PASSWORD99",
                  "SLACKTOKENabc123xyz"):
        assert token not in cleaned, cleaned
    assert "services and hooks stay readable" in cleaned  # short segments are names


def test_a_pipeline_carries_the_name_of_an_env_secret_never_its_value(monkeypatch):
    import base64
    import bz2

    import apache_beam as beam
    from apache_beam.portability.api import beam_runner_api_pb2

    from transforms.sinks.notifications import WriteToPagerDuty

    monkeypatch.setenv("NOTIFY_TEST_PD_KEY", "SECRETR0UTINGKEYabcdef0123456789")
    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create([{"service": "a"}]) | WriteToPagerDuty("env:NOTIFY_TEST_PD_KEY")
    payloads = [
        beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload).do_fn.payload
        for t in pipeline.to_runner_api().components.transforms.values()
        if t.spec.urn == "beam:transform:pardo:v1" and "Deliver" in t.unique_name
    ]
    [pickled] = [bz2.decompress(base64.b64decode(p)) for p in payloads]  # Beam's pickler format
    assert b"NOTIFY_TEST_PD_KEY" in pickled and b"SECRETR0UTINGKEY" not in pickled
