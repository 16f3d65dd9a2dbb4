"""The import rules of docs/architecture.md, checked on the source (an AST walk, no imports).

* Layers point down only: ``transforms`` <- ``runners`` <- ``beam_pipelines``; inside
  ``transforms`` the base layer (``transforms.base``) imports nothing above it.
* ``beam_pipelines.testing`` is test support: no production module imports it.
* No import circles between modules (function-local imports included).
* First-party imports sit at the top of a module; a function-local one is allowed only
  where it keeps an optional extra lazy, listed in :data:`LAZY` with the reason.
"""

from __future__ import annotations

import ast
import pathlib
from typing import NamedTuple

import pytest

pytestmark = pytest.mark.unit

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("transforms", "runners", "beam_pipelines")
LAYER = {"transforms": 0, "runners": 1, "beam_pipelines": 2}

# (importing module, imported module): why the import is inside a function. Empty today:
# optional extras are third-party libraries, imported lazily through
# transforms.base.extras.require, so importing any first-party module costs no extra. A
# first-party module that imports an extra at its top (say a Dask runner module) would be
# listed here with the importers that keep it lazy.
LAZY: dict[tuple[str, str], str] = {
    # Only --to needs the Kafka client, whose package imports Beam (seconds at every start);
    # writing a file of sample input needs neither.
    ("beam_pipelines.generate.cli", "beam_pipelines.generate.kafka"): "kafka",
    # The parse pool's worker processes import transforms.batches; Beam (imported by
    # transforms.io.files) would cost each about 1 s and 200 MB. Only Parquet needs it.
    ("transforms.batches", "transforms.io.files"): "beam",
}


class Import(NamedTuple):
    source: str  # the importing module
    target: str  # the imported module
    line: int
    local: bool  # inside a function


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def first_party_modules() -> dict[str, pathlib.Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _resolve(name: str, modules: dict[str, pathlib.Path]) -> str | None:
    """The first-party module ``name`` refers to (a module, or the module defining it)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Import] = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = _resolve(alias.name, modules)
                    if target:
                        found.append(Import(name, target, child.lineno, local))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                for alias in child.names:
                    target = _resolve(f"{base}.{alias.name}", modules)
                    if target:
                        found.append(Import(name, target, child.lineno, local))
            visit(child, inside)

    visit(tree, False)
    return found


def import_graph() -> list[Import]:
    modules = first_party_modules()
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)
            if imp.target != imp.source]


def _top(module: str) -> str:
    return module.split(".")[0]


def upward(imp: Import) -> bool:
    src, dst = _top(imp.source), _top(imp.target)
    if LAYER[dst] > LAYER[src]:
        return True
    base = "transforms.base"
    in_base = imp.source == base or imp.source.startswith(base + ".")
    return in_base and not (imp.target == base or imp.target.startswith(base + "."))


def _is_test_support(module: str) -> bool:
    return module == "beam_pipelines.testing" or module.startswith("beam_pipelines.testing.")


def circles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for imp in edges:
        graph.setdefault(imp.source, set()).add(imp.target)
        graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _show(imports: list[Import]) -> str:
    return "\n".join(f"  {i.source} (line {i.line}) -> {i.target}" for i in imports)


def test_layers_point_down_only():
    bad = [imp for imp in import_graph() if upward(imp)]
    assert not bad, "imports that point up a layer:\n" + _show(bad)


def test_production_code_does_not_import_test_support():
    bad = [imp for imp in import_graph()
           if _is_test_support(imp.target) and not _is_test_support(imp.source)]
    assert not bad, "production modules importing beam_pipelines.testing:\n" + _show(bad)


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, "import circles:\n" + "\n".join("  " + " <-> ".join(c) for c in found)


def test_first_party_imports_are_at_module_level():
    local = [imp for imp in import_graph() if imp.local and (imp.source, imp.target) not in LAZY]
    assert not local, ("function-local first-party imports (move them to the top, or list them "
                       "in LAZY with the optional extra they keep lazy):\n" + _show(local))


def test_lazy_allowlist_is_current():
    local = {(imp.source, imp.target) for imp in import_graph() if imp.local}
    stale = sorted(set(LAZY) - local)
    assert not stale, f"LAZY lists imports that no longer exist: {stale}"


def test_the_checker_sees_an_upward_import_and_a_circle():
    edges = [Import("transforms.parse", "beam_pipelines.options", 1, False),
             Import("a", "b", 1, False), Import("b", "a", 2, True)]
    assert upward(edges[0])
    assert not upward(Import("beam_pipelines.options", "transforms.parse", 1, False))
    assert upward(Import("transforms.base.errors", "transforms.records", 1, False))
    assert circles(edges) == [["a", "b"]]


MAX_LINES = 500
SIZE_NOTE = "# Over 500 lines:"


@pytest.mark.unit
def test_no_module_over_500_lines_without_a_note_saying_why():
    """Small modules with one job each; a longer one says why near its top."""
    long = []
    for package in (*PACKAGES, "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if text.count("\n") > MAX_LINES and SIZE_NOTE not in "\n".join(text.splitlines()[:80]):
                long.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert not long, "modules over 500 lines with no '# Over 500 lines: why' note:\n" + "\n".join(long)
