"""Test stand-in for airflow.operators.bash.BashOperator."""

from __future__ import annotations

from airflow import _current


class BashOperator:
    template_fields = ("bash_command", "env")

    def __init__(self, *, task_id, bash_command, env=None, append_env=False, cwd=None,
                 execution_timeout=None, retries=None, retry_delay=None, dag=None):
        self.task_id = task_id
        self.bash_command = bash_command
        self.env = env
        self.append_env = append_env
        self.execution_timeout = execution_timeout
        self.retries = retries
        self.dag = dag or (_current[-1] if _current else None)
        if self.dag is None:
            raise RuntimeError(f"task {task_id!r} is not in a DAG")
        self.dag.tasks.append(self)
