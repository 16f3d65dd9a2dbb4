"""``python -m beam_pipelines.generate``: see :mod:`beam_pipelines.generate`."""

from beam_pipelines.generate.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
