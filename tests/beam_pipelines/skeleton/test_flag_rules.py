"""Flags that do nothing in the chosen mode, and extras that are missing, are one line
naming the flag before anything runs (beam_pipelines/options/applies.py,
beam_pipelines/wiring/extras.py)."""

import sys

import pytest

from beam_pipelines import (
    error_rate,
    fraud,
    iot_alerts,
    pageviews,
    recommendations,
    sessions,
    train_recommender,
)
from beam_pipelines.options import IOOptions, applies
from beam_pipelines.skeleton import run as runs

pytestmark = pytest.mark.unit

PIPELINES = [pageviews.PAGEVIEWS, iot_alerts.IOT_ALERTS, error_rate.ERROR_RATE, sessions.SESSIONS,
             fraud.FRAUD, train_recommender.TRAIN_RECOMMENDER, recommendations.RECOMMENDATIONS]


@pytest.fixture
def nothing_runs(monkeypatch):
    """A run that got past the checks fails the test: nothing may be built or read."""
    def refuse(*args, **kwargs):
        raise AssertionError("the run started")
    monkeypatch.setattr(runs, "execute", refuse)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


UNUSED = [
    (["--topic=clicks"], "--topic", "--source=kafka"),
    (["--bootstrap_servers=kafka:9092"], "--bootstrap_servers", "--source=kafka"),
    (["--subscription=projects/demo/subscriptions/events"], "--subscription", "--source=pubsub"),
    (["--source=kafka", "--topic=t", "--input=events.jsonl"], "--input", "--source=file"),
    (["--output_table=t"], "--output_table", "--sink=postgres"),
    (["--iceberg_warehouse=lake/"], "--iceberg_warehouse", "--sink=iceberg"),
    (["--metrics_address=127.0.0.1"], "--metrics_address", "--metrics_port"),
]


@pytest.mark.parametrize("pipeline, argv, flag, needs", [
    (pipeline, *case) for pipeline in PIPELINES for case in UNUSED
    # fraud reads kafka:// blocklists on --bootstrap_servers: it always applies there
    if not (pipeline is fraud.FRAUD and case[1] == "--bootstrap_servers")
], ids=lambda v: v.name if hasattr(v, "contract") else None)
def test_a_flag_the_run_does_not_use_is_one_line_naming_it(pipeline, argv, flag, needs, capsys,
                                                            nothing_runs):
    assert pipeline.main(argv) == 2
    line = _one_line(capsys)
    assert line.startswith(f"error: {flag}: only used with {needs}"), line


@pytest.mark.parametrize("pipeline, flag", [
    (pageviews.PAGEVIEWS, "--temperature_threshold=40"),
    (iot_alerts.IOT_ALERTS, "--action=click"),
    (fraud.FRAUD, "--batch_engine=records"),
])
def test_another_pipelines_flag_is_refused(pipeline, flag, capsys, nothing_runs):
    # Every pipeline module that is imported registers its flags with one shared parser.
    assert pipeline.main([flag]) == 2
    assert _one_line(capsys).startswith(f"error: {flag.split('=')[0]}: not a flag of {pipeline.name}")


def test_input_alone_means_source_file(tmp_path):
    """The decision documented in options/applies.py: --input without --source is a backfill."""
    options = pageviews.PAGEVIEWS.parse_flags([f"--input={tmp_path}/events.jsonl"])
    pageviews.PAGEVIEWS.check_all(options)
    assert options.view_as(IOOptions).source == "file"


def test_a_flag_used_in_the_chosen_mode_is_accepted(tmp_path):
    options = pageviews.PAGEVIEWS.parse_flags(
        ["--source=kafka", "--topic=t", "--bootstrap_servers=k:9092", "--batch_engine=records",
         "--sink=postgres", "--output=postgresql://me@db/x", "--output_table=t",
         "--dead_letter=kafka://rejected", "--metrics_port=0", "--metrics_address=127.0.0.1"])
    applies.check(options, default_source="synthetic", pipeline="pageviews")


def test_pipelines_override_when_a_flag_applies():
    """fraud: a kafka:// blocklist in --rules uses the cluster whatever the source;
    train_recommender writes its model to --output with the console sink."""
    options = fraud.FRAUD.parse_flags(["--source=file", "--input=tx.jsonl", "--rules=r.json",
                                       "--bootstrap_servers=k:9092"])
    applies.check(options, default_source="synthetic", pipeline="fraud",
                  extra_rules=fraud.FRAUD.flag_rules)
    options = train_recommender.TRAIN_RECOMMENDER.parse_flags(["--output=models/"])
    applies.check(options, default_source="synthetic", pipeline="train_recommender",
                  extra_rules=train_recommender.TRAIN_RECOMMENDER.flag_rules)


@pytest.mark.parametrize("pipeline, argv, module, extra", [
    (pageviews.PAGEVIEWS, ["--sink=postgres", "--output=postgresql://me@db/x"], "psycopg",
     "postgres"),
    (iot_alerts.IOT_ALERTS, ["--sink=postgres", "--output=postgresql://me@db/x"], "psycopg",
     "postgres"),
    (sessions.SESSIONS, ["--source=kafka", "--topic=t"], "kafka", "kafka"),
    (error_rate.ERROR_RATE, ["--source=pubsub", "--subscription=projects/demo/subscriptions/logs"],
     "google.cloud.pubsub_v1", "pubsub"),
    (pageviews.PAGEVIEWS, ["--dead_letter=kafka://rejected"], "kafka", "kafka"),
])
def test_a_missing_extra_is_one_line_naming_the_flag_before_anything_runs(
        pipeline, argv, module, extra, monkeypatch, capsys, nothing_runs):
    monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    assert pipeline.main(argv) == 2
    line = _one_line(capsys)
    flag = next(a for a in argv if a.startswith(("--sink", "--source", "--dead_letter")))
    shown = flag if not flag.startswith("--dead_letter") else "--dead_letter=kafka://..."
    assert line == (f"error: {shown}: {module} is not installed: it needs the [{extra}] extra "
                    f"(pip install 'beam-pipelines[{extra}]')")


@pytest.mark.parametrize("argv, flag", [
    (["--action="], "--action"),
    (["--output", ""], "--output"),
    (["--window_size= "], "--window_size"),
])
def test_an_empty_value_is_refused(argv, flag, capsys, nothing_runs):
    assert pageviews.main(argv) == 2
    assert _one_line(capsys) == f"error: {flag}: expected a value, got an empty one"


def test_a_missing_job_server_jar_names_the_runners_own_flag():
    from runners.offline import refusal

    url = "https://repo/beam-runners-spark-3-job-server-2.77.0.jar"
    spark = refusal(url, "/cache/x.jar")
    assert spark.startswith("--spark_job_server_jar: SparkRunner needs its job server")
    assert "flink" not in spark.lower()
    flink = refusal("https://repo/beam-runners-flink-1.19-job-server-2.77.0.jar", "/cache/y.jar")
    assert flink.startswith("--flink_job_server_jar: FlinkRunner") and "spark" not in flink
    expansion = refusal("https://repo/beam-sdks-java-io-expansion-service-2.77.0.jar", "/c.jar")
    assert expansion.startswith("--beam_services: Beam needs") and "job_server" not in expansion
