"""The notebooks run top to bottom, offline, so they never rot (their own asserts check
results), and what is committed is what they show: re-executed, every cell gives the
committed outputs (charts compared by kind, not by pixel)."""

from __future__ import annotations

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from tests.notebooks.refresh import NOTEBOOKS, execute

pytestmark = pytest.mark.integration

_REFRESH = "python -m tests.notebooks.refresh"


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {
        "explore_pageviews.ipynb", "backfill_walkthrough.ipynb", "iot_alerts.ipynb"}


def _shown(output: nbformat.NotebookNode) -> tuple:
    """What a reader sees of an output: its text, and which kinds of data it carries."""
    if output.output_type == "stream":
        return ("stream", output.name, output.text)
    data = output.get("data", {})
    return (output.output_type, tuple(sorted(data)),
            data.get("text/plain", "") if "image/png" not in data else "<chart>")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_to_its_committed_outputs(path, tmp_path, monkeypatch):
    # The kernel inherits TMPDIR: the notebooks' scratch folders land in tmp_path.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    committed = nbformat.read(path, as_version=4)
    try:
        fresh = execute(path)
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}")
    for index, (old, new) in enumerate(zip(committed.cells, fresh.cells, strict=True)):
        if old.cell_type != "code":
            continue
        assert [_shown(o) for o in old.outputs] == [_shown(o) for o in new.outputs], (
            f"{path.name}, cell {index}: the committed outputs are not what the code shows "
            f"now; run `{_REFRESH} {path.relative_to(path.parents[1])}` and commit")
