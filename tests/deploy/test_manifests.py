"""The deployment files parse, use published images whose versions match this project,
run the right module, and pass only flags the pipeline's strict option parser accepts.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import apache_beam
import pytest
import yaml
from apache_beam.options.pipeline_options import FlinkRunnerOptions

from beam_pipelines import options as opts
from beam_pipelines import pageviews

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PAGEVIEWS_CLASSES = [opts.IOOptions, opts.WindowOptions, pageviews.PageviewsOptions]
BEAM = apache_beam.__version__
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
FLINK = "1.20"


def _version() -> str:
    return re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text()).group(1)


OUR_IMAGE = f"ghcr.io/beam-pipelines/beam-pipelines:{_version()}"
PUBLISHED = {
    f"apache/beam_python{PY}_sdk:{BEAM}",
    f"apache/beam_flink{FLINK}_job_server:{BEAM}",
    f"flink:{FLINK}",
    f"gcr.io/dataflow-templates-base/python{PY.replace('.', '')}-template-launcher-base:latest",
}


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def one(name: str, kind: str) -> dict:
    (found,) = [d for d in docs(name) if d["kind"] == kind]
    return found


def config() -> dict[str, str]:
    return one("configmap.yaml", "ConfigMap")["data"]


def expand(args: list[str]) -> list[str]:
    """Kubernetes' $(VAR) expansion from the ConfigMap."""
    env = config()
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


def parse_pageviews(flags: list[str]):
    return opts.parse(flags, PAGEVIEWS_CLASSES, prog="deploy")


def images(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["image"]] if isinstance(node.get("image"), str) else []
        return found + [i for v in node.values() for i in images(v)]
    if isinstance(node, list):
        return [i for v in node for i in images(v)]
    return []


def test_every_manifest_parses_with_api_version_kind_and_name():
    kinds = set()
    for path in sorted(K8S.glob("*.yaml")):
        for doc in docs(path.name):
            assert doc.get("apiVersion") and doc.get("kind"), path
            assert doc["metadata"]["name"], path
            kinds.add(doc["kind"])
    assert {"ConfigMap", "Deployment", "FlinkDeployment", "HorizontalPodAutoscaler",
            "CronJob"} <= kinds


def test_images_are_published_and_match_beam_python_and_flink_versions():
    used = {i for path in K8S.glob("*.yaml") for d in docs(path.name) for i in images(d)}
    for dockerfile in DEPLOY.rglob("Dockerfile"):
        used |= set(re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M))
    assert used - PUBLISHED == {OUR_IMAGE}, used
    assert FLINK in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    flink = one("flink-deployment.yaml", "FlinkDeployment")["spec"]
    assert flink["flinkVersion"] == "v" + FLINK.replace(".", "_")


def test_container_image_installs_this_package_with_real_extras():
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    for package in re.findall(r"^COPY (\w+) ", text, re.M):
        assert (ROOT / package).is_dir(), package
    setup = (ROOT / "setup.py").read_text()
    for extras in re.findall(r'"\.\[([\w,]+)\]"', text):
        for extra in extras.split(","):
            assert f'"{extra}":' in setup, extra


def test_streaming_deployment_runs_pageviews_on_flink_with_accepted_flags():
    deployment = one("pageviews-streaming.yaml", "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (launcher,) = pod["containers"]
    assert launcher["command"] == ["python", "-m", "beam_pipelines.pageviews"]
    assert launcher["resources"]["requests"]["cpu"] and launcher["resources"]["requests"]["memory"]
    assert {e["configMapRef"]["name"] for e in launcher["envFrom"]} == {"pageviews-config"}
    assert {"KAFKA_BROKERS", "KAFKA_TOPIC"} <= set(config())
    args = expand(launcher["args"])
    assert f"--bootstrap_servers={config()['KAFKA_BROKERS']}" in args
    assert f"--topic={config()['KAFKA_TOPIC']}" in args
    options = parse_pageviews(args).get_all_options()
    assert options["runner"] == "FlinkRunner" and options["streaming"]
    assert options["checkpointing_interval"] == 60000 and options["parallelism"] == 4
    # The pieces meet: job server sidecar, the Flink REST service, the worker pool port.
    (job_server,) = pod["initContainers"]
    assert job_server["restartPolicy"] == "Always"  # a native sidecar
    assert options["job_endpoint"] == "localhost:8099" and "--job-port=8099" in job_server["args"]
    flink_name = one("flink-deployment.yaml", "FlinkDeployment")["metadata"]["name"]
    assert f"--flink-master={flink_name}-rest:8081" in job_server["args"]
    assert options["flink_master"] == f"{flink_name}-rest:8081"
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


def test_flink_deployment_has_a_beam_worker_pool_and_lag_based_autoscaling():
    flink = one("flink-deployment.yaml", "FlinkDeployment")
    containers = flink["spec"]["taskManager"]["podTemplate"]["spec"]["containers"]
    (pool,) = [c for c in containers if c["name"] == "beam-worker-pool"]
    assert pool["args"] == ["--worker_pool"] and pool["image"] == OUR_IMAGE
    launcher_args = one("pageviews-streaming.yaml", "Deployment")["spec"]["template"]["spec"][
        "containers"][0]["args"]
    port = pool["ports"][0]["containerPort"]
    assert "--environment_type=EXTERNAL" in launcher_args
    assert f"--environment_config=localhost:{port}" in launcher_args
    hpa = one("flink-deployment.yaml", "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "FlinkDeployment"
    assert hpa["spec"]["scaleTargetRef"]["name"] == flink["metadata"]["name"]
    assert flink["spec"]["mode"] == "standalone"  # the scale subresource drives TM replicas
    (metric,) = hpa["spec"]["metrics"]
    labels = metric["external"]["metric"]["selector"]["matchLabels"]
    assert "lag" in metric["external"]["metric"]["name"]
    assert labels == {"consumergroup": config()["KAFKA_CONSUMER_GROUP"],
                      "topic": config()["KAFKA_TOPIC"]}


def test_backfill_cronjob_runs_batch_pageviews_over_yesterdays_partition():
    cron = one("backfill-cronjob.yaml", "CronJob")
    assert len(cron["spec"]["schedule"].split()) == 5
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    (script,) = container["args"]
    assert "DT=$(date -u -d yesterday +%F)" in script
    command = shlex.split(script.split("exec ", 1)[1].replace("${DT}", "2024-01-01"))
    assert command[:3] == ["python", "-m", "beam_pipelines.pageviews"]
    options = parse_pageviews(command[3:]).get_all_options()
    assert options["source"] == "file" and not options["streaming"]
    assert options["input"] == "/data/events/dt=2024-01-01/*.jsonl.gz"
    assert options["output"] == "/data/pageviews/dt=2024-01-01"
    assert container["resources"]["requests"]["memory"]


def test_dataflow_flex_template_metadata_and_entry_point():
    dockerfile = (DEPLOY / "dataflow" / "Dockerfile").read_text()
    py_file = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)", dockerfile).group(1)
    assert "COPY deploy/dataflow/main.py ./main.py" in dockerfile and py_file == "/template/main.py"
    assert "from beam_pipelines.pageviews import main" in (DEPLOY / "dataflow" / "main.py").read_text()
    metadata = json.loads((DEPLOY / "dataflow" / "metadata.json").read_text())
    flags = []
    for param in metadata["parameters"]:
        example = param["helpText"].rsplit("Example: ", 1)[1]
        for regex in param.get("regexes", []):
            assert re.match(regex, example), param["name"]
        flags.append(f"--{param['name']}={example}")
    options = parse_pageviews(flags).get_all_options()
    assert options["sdk_container_image"] and options["window_size"] == 300
    # A launch: the DataflowRunner preset accepts these flags with project/region/temp.
    import runners

    launched = runners.prepare(parse_pageviews(flags + [
        "--runner=DataflowRunner", "--project=p", "--region=europe-west1",
        "--temp_location=gs://bucket/tmp", "--dry_run=True"]))
    assert launched.get_all_options()["staging_location"] == "gs://bucket/tmp/staging"


def test_flex_template_launch_submits_without_waiting(monkeypatch):
    import runners
    from runners import presets

    monkeypatch.setattr(presets, "_require_gcp", lambda: None)
    monkeypatch.setenv("FLEX_TEMPLATE_PYTHON_PY_FILE", "/template/main.py")
    options = runners.prepare(parse_pageviews([
        "--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/t"]))
    assert options.get_all_options()["runner"] == presets.FLEX_TEMPLATE
