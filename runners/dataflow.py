"""DataflowRunner for flex-template launches: submit the job, do not wait for it.

The flex-template launcher runs the pipeline's command line to *submit* a job and
expects it to return; ``pageviews.run`` waits for the result as every runner's
``wait_until_finish`` does, which for a streaming job never returns. Inside the launcher
(``FLEX_TEMPLATE_PYTHON_PY_FILE`` is set) the DataflowRunner preset runs this subclass,
whose result reports the job's state instead of waiting. Needs ``apache-beam[gcp]``.
"""

from __future__ import annotations

from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner


class SubmitOnlyDataflowRunner(DataflowRunner):
    def run_pipeline(self, pipeline, options):
        result = super().run_pipeline(pipeline, options)
        result.wait_until_finish = lambda duration=None: result.state
        return result
