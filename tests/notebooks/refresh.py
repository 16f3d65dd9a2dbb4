"""Execute the notebooks the way they are committed: with outputs, small and stable.

::

    python -m tests.notebooks.refresh                 # every notebooks/*.ipynb, in place
    python -m tests.notebooks.refresh notebooks/iot_alerts.ipynb

The notebooks are committed with their outputs so their charts and tables show on a
repository page. To keep those outputs small and their diffs meaningful, a run here:

* renders charts as PNG at a low resolution, without the "Software" stamp matplotlib
  writes into each PNG (the kernel's inline backend is configured on its command line, so
  the notebooks themselves stay free of rendering settings);
* records no timings, keeps only the language name of the kernel's metadata, and drops
  stderr (Beam's log lines and each run's end-of-run summary carry durations and rates);
* drops Interactive Beam's progress indicators and table scripts: they load JavaScript
  from CDNs, so they render blank offline and on a repository page, and carry random ids
  (the notebooks show DataFrames instead);
* runs in the repository directory, so the kernel imports this checkout's packages.

The suite re-executes every notebook with :func:`execute` and compares the result with
the committed one (tests/notebooks/test_notebooks.py), and checks the committed files are
small, stable and show charts (tests/notebooks/test_committed.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

__all__ = ["NOTEBOOKS", "ROOT", "execute", "main", "stable_outputs"]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# 72 dpi keeps a 7x3.5 inch chart near 40 KB and still legible on a repository page.
_KERNEL_ARGUMENTS = [
    "--InlineBackend.figure_formats=png",
    "--InlineBackend.print_figure_kwargs="
    "{'bbox_inches': 'tight', 'dpi': 72, 'metadata': {'Software': None}}",
]


# Markers of Interactive Beam's widgets (apache_beam/runners/interactive/display/).
_BEAM_WIDGETS = ("interactive_beam_jquery", "progress_indicator_")


def _kept(output: nbformat.NotebookNode) -> bool:
    if output.output_type == "stream":
        return output.name != "stderr"
    data = output.get("data", {})
    rich = str(data.get("text/html", "")) + str(data.get("application/javascript", ""))
    return not any(marker in rich for marker in _BEAM_WIDGETS)


def stable_outputs(book: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what changes from run to run without the code changing (in place)."""
    book.metadata["language_info"] = {"name": "python"}
    for cell in book.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = [output for output in cell.outputs if _kept(output)]
    return book


def execute(path: Path, timeout: int = 180) -> nbformat.NotebookNode:
    """Run ``path`` top to bottom from empty outputs; raises CellExecutionError on failure."""
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    client = NotebookClient(book, timeout=timeout, kernel_name="python3", record_timing=False,
                            extra_arguments=_KERNEL_ARGUMENTS,
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    return stable_outputs(book)


def main(argv: list[str] | None = None) -> int:
    paths = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)] or NOTEBOOKS
    for path in paths:
        book = execute(path)
        nbformat.write(book, path)
        print(f"{path}: {path.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
