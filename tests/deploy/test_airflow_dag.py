"""The Airflow backfill DAG imports, and its rendered command is a valid pageviews run.

Airflow is not installed next to Beam (conflicting pins; see airflow_stub/README.md), so
the DAG is imported against a minimal stub package. The command is rendered with Jinja
the way Airflow renders it (StrictUndefined: an unknown variable fails), parsed by the
pipeline's own option parser, and run over a one-day partition.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path

import jinja2
import pyarrow.parquet as pq
import pytest

from beam_pipelines import options as opts
from beam_pipelines import pageviews

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "deploy" / "airflow" / "pageviews_backfill.py"
STUB = Path(__file__).resolve().parent / "airflow_stub"
DS = "2026-11-24"


@pytest.fixture(scope="module")
def dag_module():
    sys.path.insert(0, str(STUB))
    try:
        spec = importlib.util.spec_from_file_location("pageviews_backfill_dag", DAG_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(STUB))
        for name in [n for n in sys.modules if n == "airflow" or n.startswith("airflow.")]:
            del sys.modules[name]


def render(dag_module, **params) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    task = dag_module.dag.tasks[0]
    return env.from_string(task.bash_command).render(
        ds=DS, params={**dag_module.dag.params, **params}
    )


@pytest.mark.unit
def test_dag_shape(dag_module):
    dag = dag_module.dag
    assert dag.dag_id == "pageviews_backfill"
    assert dag.schedule == "@daily" and dag.catchup and dag.max_active_runs == 1
    assert dag.default_args["retries"] == 2
    assert [t.task_id for t in dag.tasks] == ["pageviews"]


@pytest.mark.parametrize("extra", [{}, {"pushgateway": "http://pushgateway:9091",
                                       "runner_flags": "--runner=DirectRunner"}])
@pytest.mark.unit
def test_rendered_command_parses_with_the_pipelines_parser(dag_module, extra):
    argv = shlex.split(render(dag_module, **extra))
    assert argv[:3] == [dag_module.PARAMS["python"], "-m", "beam_pipelines.pageviews"]
    options = opts.parse(argv[3:], [opts.IOOptions, opts.WindowOptions,
                                    pageviews.PageviewsOptions], prog="dag")
    io = options.view_as(opts.IOOptions)
    assert io.input == f"/data/events/dt={DS}/*"
    assert (io.sink, io.output) == ("parquet", f"/data/pageviews/dt={DS}")
    assert io.dead_letter == f"/data/dead_letters/pageviews/dt={DS}"
    if extra:
        from beam_pipelines.options.metrics import MetricsOptions

        assert options.view_as(MetricsOptions).pushgateway == "http://pushgateway:9091"


@pytest.mark.integration
def test_rendered_command_runs_a_day_and_fails_in_one_line_without_input(dag_module, tmp_path):
    day = tmp_path / "events with space" / f"dt={DS}"
    day.mkdir(parents=True)
    t0 = 1_764_000_000  # 2025-11-24T16:00:00Z
    (day / "part-0.jsonl").write_text("\n".join(
        json.dumps({"user_id": i, "action": "view", "page": "/home", "timestamp": t0 + i})
        for i in range(5)) + "\n{bad\n")
    params = {"python": sys.executable, "events": str(day.parent),
              "output": str(tmp_path / "out"), "dead_letters": str(tmp_path / "dl")}
    done = subprocess.run(["bash", "-c", render(dag_module, **params)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "out" / f"dt={DS}")
    assert table.to_pylist()[0]["count"] == 5
    assert "1 rejected" in done.stderr
    assert list((tmp_path / "dl" / f"dt={DS}").glob("dead_letters-*.jsonl"))

    params["events"] = str(tmp_path / "no such dir")
    done = subprocess.run(["bash", "-c", render(dag_module, **params)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: --input: no files match")
