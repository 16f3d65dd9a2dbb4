"""The committed notebooks carry their outputs, charts included, and nothing volatile:
a repository page shows them, and a refresh changes only what the code changed."""

from __future__ import annotations

import json

import nbformat
import pytest

from tests.notebooks.refresh import NOTEBOOKS

pytestmark = pytest.mark.unit

_MAX_BYTES = 300 * 1024


def _outputs(book: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_outputs_and_charts(path):
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{path.name}: commit it executed top to bottom (python -m tests.notebooks.refresh)")
    outputs = _outputs(book)
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no chart"
    assert not [o for o in outputs if o.output_type == "error"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_are_small_and_stable(path):
    assert path.stat().st_size < _MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes"
    book = nbformat.read(path, as_version=4)
    assert book.metadata.get("language_info") == {"name": "python"}  # no interpreter version
    for cell in book.cells:
        assert "execution" not in cell.metadata, f"{path.name}: execution timings committed"
    text = json.dumps([o for o in _outputs(book) if "image/png" not in o.get("data", {})])
    for volatile in ("/tmp/", "progress_indicator_", "interactive_beam_jquery"):
        assert volatile not in text, f"{path.name}: {volatile!r} in the committed outputs"
    assert not [o for o in _outputs(book) if o.output_type == "stream" and o.name == "stderr"]
