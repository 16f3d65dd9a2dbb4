"""Daily pageviews backfill: the batch pipeline over yesterday's partition, as an Airflow DAG.

Airflow runs this DAG once a day; each run's ``{{ ds }}`` is the *logical date*, the start
of the day the run covers, so the run that starts just after midnight processes
yesterday's partition ``dt={{ ds }}``. Catch-up and manual re-runs process older days the
same way, and because the Parquet sink replaces a partition's output on a re-run, running
a day twice leaves one correct copy.

Why ``BashOperator`` and not a Beam operator: Airflow and Apache Beam pin conflicting
versions of shared libraries (protobuf, grpcio, SQLAlchemy...), so they live in separate
environments. The DAG calls the pipeline's own command line with the Python of the
pipeline's environment (``params.python``): Airflow needs nothing of Beam, and the
pipeline runs exactly as it does by hand. Set the params in the Airflow UI or with
``airflow dags trigger --conf``; the defaults below are examples.

Errors a user can fix (a bad flag, no input files) exit with code 2 and one line
"error: ..." in the task log; Airflow retries the task twice before it fails.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

try:  # Airflow 3: the task SDK and the standard provider
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.4+
    from airflow import DAG
    from airflow.operators.bash import BashOperator

PARAMS = {
    # The Python of the environment where beam-pipelines is installed.
    "python": "/opt/beam-pipelines/venv/bin/python",
    # Partitioned input: one directory per day, dt=YYYY-MM-DD, JSON lines (.gz allowed).
    "events": "/data/events",
    "output": "/data/pageviews",
    "dead_letters": "/data/dead_letters/pageviews",
    # Extra Beam flags, e.g. --runner=FlinkRunner --flink_master=flink:8081.
    "runner_flags": "",
    # A Prometheus Pushgateway (http://pushgateway:9091) for the run's final metrics, or "".
    "pushgateway": "",
}

# Each value is quoted for the shell: a path with spaces stays one argument.
COMMAND = (
    "{{ params.python }} -m beam_pipelines.pageviews"
    " --source=file"
    " --input='{{ params.events }}/dt={{ ds }}/*'"
    " --sink=parquet"
    " --output='{{ params.output }}/dt={{ ds }}'"
    " --dead_letter='{{ params.dead_letters }}/dt={{ ds }}'"
    "{% if params.pushgateway %} --pushgateway='{{ params.pushgateway }}'{% endif %}"
    " {{ params.runner_flags }}"
)

with DAG(
    dag_id="pageviews_backfill",
    description="pageviews batch pipeline over yesterday's partition (dt=<logical date>)",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=True,  # missed days run in order, one at a time
    max_active_runs=1,
    params=PARAMS,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["beam-pipelines", "backfill"],
) as dag:
    BashOperator(
        task_id="pageviews",
        bash_command=COMMAND,
        execution_timeout=timedelta(hours=6),
    )
