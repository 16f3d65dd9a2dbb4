"""The README's examples run as written, in order, from a fresh directory.

Every ```` ```bash ```` block of README.md is run with bash (``set -e``: each command must
exit 0), in the order of the file, in one new temporary directory holding only a link to
the repository's ``docs/`` (the examples name ``docs/examples/...``), with this checkout
on ``PYTHONPATH``. ``localhost:9092`` becomes the test broker and a ``postgresql://`` DSN
on localhost the test database. A block the suite cannot run (an installer, a cloud
service, a stream that runs until stopped) carries the marker ``SKIP_MARKER`` with its
reason on the line before its fence: visible in the README, never skipped silently.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SKIP_MARKER = re.compile(r"^<!-- not run by the README test: (?P<reason>.+\S) -->$")
LOCAL_DSN = re.compile(r"postgresql://[^\s'\"]*@localhost[^\s'\"]*")
BLOCK_TIMEOUT = 120  # seconds; a block that hangs (a stream that never stops) fails


class Block(NamedTuple):
    line: int  # of the opening fence, 1-based
    script: str
    skip_reason: Optional[str]


def shell_blocks(text: str) -> list[Block]:
    """Every ```bash block, with the reason it is not run when its marker precedes it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() in ("```bash", "```sh", "```shell", "```console"):
            start = index
            body = []
            index += 1
            while lines[index].strip() != "```":
                body.append(lines[index])
                index += 1
            previous = next((lines[i].strip() for i in range(start - 1, -1, -1)
                             if lines[i].strip()), "")
            marker = SKIP_MARKER.match(previous)
            blocks.append(Block(start + 1, "\n".join(body) + "\n",
                                marker.group("reason") if marker else None))
        index += 1
    return blocks


@pytest.mark.unit
def test_every_shell_block_is_run_or_says_why_not():
    blocks = shell_blocks(README.read_text(encoding="utf-8"))
    run = [b for b in blocks if b.skip_reason is None]
    assert len(run) >= 6, "the README test would prove little"
    # A marker must sit right before a block: one anywhere else is a mistake.
    markers = [line for line in README.read_text(encoding="utf-8").splitlines()
               if "not run by the README test" in line]
    assert len(markers) == len(blocks) - len(run)
    for block in run:
        assert "pip install" not in block.script, f"README.md:{block.line} installs packages"


def commands(script: str) -> list[str]:
    """The commands of a block: continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    return [line.split(" #")[0].strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.unit
def test_every_input_file_an_example_reads_is_made_by_an_earlier_example():
    generated: list[str] = []  # what the generate commands so far wrote
    for block in shell_blocks(README.read_text(encoding="utf-8")):
        if block.skip_reason is not None:
            continue
        for command in commands(block.script):
            if "beam_pipelines.generate" in command:
                generated.append(command.split()[-1])
            for match in re.finditer(r"--input=('[^']+'|\S+)", command):
                pattern = match.group(1).strip("'")
                made = [path for path in generated
                        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern.rstrip("/") + "/")]
                assert made or pattern.startswith("docs/"), (
                    f"README.md:{block.line} reads {pattern}, which no earlier example generates")


def _python_on_path(tmp_path: Path) -> dict[str, str]:
    """``python`` is this interpreter, as after the README's ``pip install -e .``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.mark.integration
@pytest.mark.slow
def test_the_readme_examples_run_in_order_from_a_fresh_directory(tmp_path, kafka_broker,
                                                                 postgres_dsn):
    work = tmp_path / "clone"
    work.mkdir()
    (work / "docs").symlink_to(REPO / "docs")
    env = _python_on_path(tmp_path)
    blocks = shell_blocks(README.read_text(encoding="utf-8"))
    ran = 0
    for block in blocks:
        if block.skip_reason is not None:
            continue
        script = block.script.replace("localhost:9092", kafka_broker.bootstrap_servers)
        script = LOCAL_DSN.sub(postgres_dsn, script)
        try:
            done = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env,
                                  capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"README.md:{block.line}: the block did not finish in {BLOCK_TIMEOUT} s")
        assert done.returncode == 0, (
            f"README.md:{block.line}: exit code {done.returncode}\n{script}\n"
            f"--- stderr (tail) ---\n{done.stderr[-3000:]}")
        ran += 1
    assert ran == len([b for b in blocks if b.skip_reason is None])
    # What the examples wrote is there (a sample, not the pipelines' tests).
    assert (work / "events" / "2024-12-01" / "part-0.jsonl.gz").exists()
    assert list((work / "out" / "pageviews" / "date=2024-12-01").glob("pageviews-*.parquet"))
    assert list((work / "decisions").glob("*.jsonl"))


@pytest.mark.unit
def test_make_test_says_what_it_installs_and_creates_no_system_cluster():
    """The README's ``make test``: an echo names what each installer is about to install,
    and Debian's postgresql is told not to create (and start) its cluster before apt runs."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    recipes = re.split(r"(?m)^(?=[A-Za-z-]+:)", makefile)  # each target with its recipe
    installers = re.compile(r"apt-get install|\$\(PIP\) install|npm install")
    found = 0
    for recipe in recipes:
        lines = recipe.splitlines()
        for number, line in enumerate(lines):
            if installers.search(line):
                found += 1
                assert any('echo "installing ' in earlier for earlier in lines[:number]), (
                    f"nothing says what this installs: {line.strip()}")
    assert found >= 4  # apt-get, pip twice, npm
    assert makefile.index("create_main_cluster = false") < makefile.index("apt-get install")
    assert "systemctl disable --now prometheus" in makefile
    assert "create_main_cluster = false" in README.read_text(encoding="utf-8")


@pytest.mark.unit
def test_the_bench_extra_installs_the_benchmarks_peers():
    """The README's benchmark table compares with DuckDB and Spark: ``pip install -e
    '.[bench]'`` brings both, so ``python -m benchmarks.run`` can reproduce every column."""
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    bench = next(ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "BENCH" for t in node.targets))
    names = {re.split(r"[<>=\[]", requirement)[0] for requirement in bench}
    assert {"duckdb", "pyspark"} <= names
    assert '"bench": BENCH' in (REPO / "setup.py").read_text(encoding="utf-8")
