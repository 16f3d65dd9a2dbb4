"""Flex-template entry point: the Dataflow launcher runs this file with the job's flags.

It is the pageviews command line itself, so a template launch validates and builds the
pipeline exactly as ``python -m beam_pipelines.pageviews`` does. Inside the launcher
(FLEX_TEMPLATE_PYTHON_PY_FILE is set) the DataflowRunner preset submits the job and
returns without waiting for it, as the launcher expects.
"""

from beam_pipelines.pageviews import main

if __name__ == "__main__":
    raise SystemExit(main())
