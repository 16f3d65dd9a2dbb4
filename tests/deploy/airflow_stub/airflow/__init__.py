"""Test stand-in for airflow: DAG as a context manager that collects its tasks."""

from __future__ import annotations

_current: list = []


class DAG:
    def __init__(self, dag_id, *, description=None, schedule=None, start_date=None,
                 end_date=None, catchup=True, max_active_runs=16, params=None,
                 default_args=None, tags=None, doc_md=None, dagrun_timeout=None):
        if not isinstance(dag_id, str) or not dag_id:
            raise ValueError(f"dag_id must be a non-empty string, got {dag_id!r}")
        self.dag_id = dag_id
        self.description = description
        self.schedule = schedule
        self.start_date = start_date
        self.catchup = catchup
        self.max_active_runs = max_active_runs
        self.params = dict(params or {})
        self.default_args = dict(default_args or {})
        self.tags = list(tags or [])
        self.tasks: list = []

    def __enter__(self):
        _current.append(self)
        return self

    def __exit__(self, *exc):
        _current.pop()
        return False
