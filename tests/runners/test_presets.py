"""Runner presets: each missing or unusable setting is one line naming the flag, fast.

No pipeline runs here: a preset either fills options or fails before anything starts.
"""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PortableOptions,
    StandardOptions,
)

import runners
from beam_pipelines import options as opts
from beam_pipelines import pageviews
from beam_pipelines.testing.servers import free_port
from runners import presets
from runners.options import RunnerPresetOptions
from transforms.base.errors import ConfigError, NotAvailableError

PAGEVIEWS_CLASSES = [opts.IOOptions, opts.WindowOptions, pageviews.PageviewsOptions]


def parse(*flags: str):
    return opts.parse(list(flags), PAGEVIEWS_CLASSES, prog="test")


def prepared(*flags: str):
    return runners.prepare(parse(*flags))


def cli(capsys, *flags: str) -> tuple[int, str]:
    """Run the pageviews CLI in-process: exit code, stderr."""
    code = pageviews.main(list(flags))
    return code, capsys.readouterr().err


@pytest.fixture
def connections(monkeypatch) -> list:
    """Every connection a preset opens, as (address, timeout): "fails fast" is checked as
    what happens (no connection, or one bounded attempt), not with a stopwatch."""
    made: list = []
    original = presets.socket.create_connection

    def record(address, timeout=None, *args, **kwargs):
        made.append((address, timeout))
        return original(address, timeout, *args, **kwargs)

    monkeypatch.setattr(presets.socket, "create_connection", record)
    return made


@pytest.mark.unit
def test_flink_offline_without_jar_fails_fast_naming_the_options(capsys, connections):
    code, err = cli(capsys, "--runner=FlinkRunner", "--synthetic_events=10")
    assert code == 2
    assert connections == []  # refused before reaching for anything
    assert err.startswith("error: --flink_job_server_jar:")
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    for flag in ("--flink_job_server_jar", "--job_endpoint", "--flink_master", "--parallelism",
                 "--checkpointing_interval"):
        assert flag in err


@pytest.mark.unit
def test_flink_checks_jar_endpoint_and_parallelism(tmp_path, connections):
    with pytest.raises(ConfigError, match="--flink_job_server_jar: expected a local jar path"):
        prepared("--runner=FlinkRunner", "--flink_job_server_jar=https://repo/x.jar")
    with pytest.raises(ConfigError, match="--flink_job_server_jar: expected the path of an existing"):
        prepared("--runner=FlinkRunner", f"--flink_job_server_jar={tmp_path}/missing.jar")
    with pytest.raises(ConfigError, match="--parallelism"):
        prepared("--runner=FlinkRunner", "--parallelism=0")
    port = free_port()
    with pytest.raises(NotAvailableError, match="--job_endpoint: nothing accepts connections"):
        prepared("--runner=FlinkRunner", f"--job_endpoint=localhost:{port}")
    assert connections == [(("localhost", port), 10)]  # one bounded attempt, no retry loop
    jar = tmp_path / "beam-runners-flink-job-server.jar"
    jar.write_bytes(b"PK")
    options = prepared("--runner=FlinkRunner", f"--flink_job_server_jar={jar}",
                       "--flink_master=flink:8081", "--parallelism=4", "--streaming")
    assert options.view_as(RunnerPresetOptions).checkpointing_interval == 60_000
    assert options.view_as(FlinkRunnerOptions).parallelism == 4
    # The interval reaches Flink as a pipeline option (checkpointingInterval in Java).
    assert options.get_all_options(retain_unknown_options=True)["checkpointing_interval"] == 60_000


@pytest.mark.unit
def test_prism_needs_a_local_binary(tmp_path, monkeypatch, connections):
    monkeypatch.setattr(presets, "_cached_prism", lambda: None)
    with pytest.raises(ConfigError, match="^--prism_location: expected the path of a local Prism"):
        prepared("--runner=PrismRunner")
    assert connections == []  # no download attempted
    with pytest.raises(ConfigError, match="not a URL"):
        prepared("--runner=PrismRunner", "--prism_location=https://github.com/prism.zip")
    with pytest.raises(ConfigError, match="existing Prism binary"):
        prepared("--runner=PrismRunner", f"--prism_location={tmp_path}/prism")


@pytest.mark.integration
def test_portable_starts_the_local_job_service_or_checks_the_endpoint(connections):
    options = prepared("--runner=PortableRunner")
    portable = options.view_as(PortableOptions)
    assert portable.job_endpoint.startswith("localhost:")
    assert portable.environment_type == "LOOPBACK"
    # Started once per process: a second run reuses it.
    assert prepared("--runner=PortableRunner").view_as(PortableOptions).job_endpoint == (
        portable.job_endpoint
    )
    port = free_port()
    with pytest.raises(NotAvailableError, match="--job_endpoint: nothing accepts connections"):
        prepared("--runner=PortableRunner", f"--job_endpoint=localhost:{port}")
    assert connections[-1:] == [(("localhost", port), 10)]  # one bounded attempt
    with pytest.raises(ConfigError, match="--job_endpoint: expected HOST:PORT"):
        prepared("--runner=PortableRunner", "--job_endpoint=nowhere")
    with pytest.raises(ConfigError, match="^--runner: PortableRunner without --job_endpoint runs Beam's in-process"):
        prepared("--runner=PortableRunner", "--streaming")


@pytest.mark.unit
def test_dataflow_names_each_missing_option_and_fills_staging():
    with pytest.raises(ConfigError, match="^--project:"):
        prepared("--runner=DataflowRunner")
    with pytest.raises(ConfigError, match="^--region:"):
        prepared("--runner=DataflowRunner", "--project=p")
    with pytest.raises(ConfigError, match="^--temp_location:"):
        prepared("--runner=DataflowRunner", "--project=p", "--region=europe-west1")
    with pytest.raises(ConfigError, match="^--temp_location: expected a gs://"):
        prepared("--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=/tmp")
    options = prepared("--runner=DataflowRunner", "--project=p", "--region=europe-west1",
                       "--temp_location=gs://bucket/tmp", "--dry_run=True")
    assert options.view_as(GoogleCloudOptions).staging_location == "gs://bucket/tmp/staging"
    assert options.view_as(StandardOptions).runner == presets.DRY_RUN


@pytest.mark.unit
def test_dataflow_dry_run_prints_the_job_graph_without_submitting(capsys):
    code = pageviews.main(["--runner=DataflowRunner", "--project=p", "--region=europe-west1",
                           "--temp_location=gs://bucket/tmp", "--dry_run=True"])
    out = capsys.readouterr().out
    assert code == 0
    assert "not submitted" in out
    for step in ("Read", "Parse", "CountPageViews", "WriteDeadLetters"):
        assert step in out


@pytest.mark.unit
def test_direct_streaming_runs_on_the_local_streaming_runner():
    assert prepared("--streaming").view_as(StandardOptions).runner == presets.LOCAL_STREAMING
    assert prepared("--runner=DirectRunner", "--streaming").view_as(
        StandardOptions).runner == presets.LOCAL_STREAMING
    assert prepared("--runner=LocalStreamingRunner").view_as(
        StandardOptions).runner == presets.LOCAL_STREAMING
    # Batch: Beam's DirectRunner without its attempt to download Prism (no local binary).
    assert prepared().view_as(StandardOptions).runner == presets.OFFLINE_DIRECT


@pytest.mark.unit
def test_batch_direct_run_does_not_try_to_download_prism(monkeypatch, capsys):
    attempts = []

    def no_download(url, *args, **kwargs):
        attempts.append(url)  # Beam catches errors here and falls back: record instead
        raise OSError("offline")

    monkeypatch.setattr("apache_beam.runners.portability.prism_runner.urlopen", no_download)
    monkeypatch.setattr(presets, "_cached_prism", lambda: None)
    code, err = cli(capsys, "--synthetic_events=50")
    assert code == 0, err
    assert "valid records" in err
    assert attempts == []


@pytest.mark.unit
def test_dask_is_batch_only_and_unknown_runners_are_named(capsys):
    with pytest.raises(ConfigError, match="DaskRunner runs bounded"):
        prepared("--runner=DaskRunner", "--streaming")
    code, err = cli(capsys, "--runner=SparkStreaming")
    assert code == 2 and err.startswith("error: --runner: expected one of DirectRunner")
    # A fully qualified class is the user's choice and passes through.
    assert prepared("--runner=my.module.Runner").view_as(StandardOptions).runner == "my.module.Runner"


@pytest.mark.unit
def test_runner_flags_are_accepted_by_the_strict_parser():
    options = parse("--checkpointing_interval=30000", "--dask_local_workers=3",
                    "--dask_client_address=tcp://scheduler:8786", "--job_service_startup_timeout=3")
    assert options.view_as(RunnerPresetOptions).dask_local_workers == 3
    with pytest.raises(ConfigError, match="--checkpointing_interval: expected a whole number > 0"):
        parse("--checkpointing_interval=soon")


@pytest.mark.integration
def test_expansion_service_download_fails_fast_naming_beam_services(tmp_path, monkeypatch):
    import apache_beam as beam
    from apache_beam.io.kafka import ReadFromKafka
    from apache_beam.utils.subprocess_server import JavaJarServer

    monkeypatch.setattr(JavaJarServer, "JAR_CACHE", str(tmp_path))  # nothing cached
    options = prepared()  # every preset installs the guard

    def no_download(*args, **kwargs):
        raise AssertionError("Beam tried to download a jar")

    monkeypatch.setattr("urllib.request.urlopen", no_download)
    with pytest.raises(NotAvailableError, match="^--beam_services: Beam needs beam-sdks-java-io"):
        beam.Pipeline(options=options) | ReadFromKafka(
            consumer_config={"bootstrap.servers": "localhost:9092"}, topics=["t"])
