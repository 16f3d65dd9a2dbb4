"""The shared pipeline skeleton: a pipeline declares its input contract, its result record
and its core transform; sources, sinks, dead letters, metrics, the summary and
``run()``/``main()`` come from here. See :mod:`beam_pipelines.skeleton.pipeline` and
docs/sdk.md.
"""

from beam_pipelines.skeleton.pipeline import Alerts, Context, Core, Inputs, Pipeline, read_records
from beam_pipelines.skeleton.results import PANE_COLUMNS, ResultSpec
from beam_pipelines.skeleton.run import Launched, execute, launch
from beam_pipelines.wiring.source_spec import SourceSpec

__all__ = ["PANE_COLUMNS", "Alerts", "Context", "Core", "Inputs", "Launched", "Pipeline", "ResultSpec",
           "SourceSpec", "execute", "launch", "read_records"]
