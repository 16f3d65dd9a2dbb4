"""Runtime I/O failures as an operator meets them: one line naming the path and the
problem, exit code 1, the previous output untouched and no ``beam-temp-*`` folders left."""

import os
import resource
import subprocess
import sys

import pytest

from beam_pipelines import pageviews
from beam_pipelines.testing import SyntheticEvents

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def write_events(path, count=20_000):
    generator = SyntheticEvents(seed=8, malformed=0.02)
    path.write_bytes(b"".join(p + b"\n" for p in generator.payloads(count)))
    return path


def without_root_privileges():
    """A prefix that makes file permissions apply: root reads and writes anything, so as
    root the run drops the capabilities that let it (setpriv is in util-linux)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def cli(*flags, prefix=(), limit_file_size=None):
    def limit():
        if limit_file_size is not None:  # a "full disk" for this process: writes fail (EFBIG)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    done = subprocess.run(
        [*prefix, sys.executable, "-m", "beam_pipelines.pageviews", "--source=file", *flags],
        capture_output=True, text=True, timeout=300, preexec_fn=limit,
    )
    return done.returncode, done.stderr.strip().splitlines()


def leftovers(*directories):
    return [os.path.join(d, n) for d in directories if os.path.isdir(d)
            for n in os.listdir(d) if n.startswith("beam-temp-")]


def test_an_unreadable_input_file(tmp_path):
    events = write_events(tmp_path / "events.jsonl")
    events.chmod(0)
    out = tmp_path / "out"
    code, err = cli(f"--input={events}", "--sink=jsonl", f"--output={out}",
                    prefix=without_root_privileges())
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: --input: cannot read {events}: Permission denied"), err
    assert not leftovers(out)


def test_an_output_path_that_is_a_file(tmp_path):
    events = write_events(tmp_path / "events.jsonl")
    (tmp_path / "taken").write_text("a file, not a directory\n")
    code, err = cli(f"--input={events}", "--sink=jsonl", f"--output={tmp_path}/taken")
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: {tmp_path}/taken: Not a directory"), err
    assert (tmp_path / "taken").read_text() == "a file, not a directory\n"


@pytest.mark.parametrize("where", ["output", "dead_letter"])
def test_a_read_only_output_directory(tmp_path, where):
    events = write_events(tmp_path / "events.jsonl")
    out, dead = tmp_path / "out", tmp_path / "dead"
    out.mkdir()
    dead.mkdir()
    (out if where == "output" else dead).chmod(0o555)
    code, err = cli(f"--input={events}", "--sink=jsonl", f"--output={out}",
                    f"--dead_letter={dead}", prefix=without_root_privileges())
    assert code == 1 and len(err) == 1, err
    locked = out if where == "output" else dead
    assert err[0].startswith(f"error: {locked}: Permission denied"), err
    assert not leftovers(out, dead)


def test_a_full_disk_keeps_the_previous_output_and_frees_the_space(tmp_path):
    events = write_events(tmp_path / "events.jsonl")
    out = tmp_path / "out"
    code, err = cli(f"--input={events}", "--sink=jsonl", f"--output={out}")
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sum(len(b) for b in before.values()) > 4096
    code, err = cli(f"--input={events}", "--sink=jsonl", f"--output={out}",
                    limit_file_size=4096)
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: {out}: File too large"), err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no beam-temp-* either


def test_a_gz_that_is_not_gzip(tmp_path, capsys):
    events = write_events(tmp_path / "events.jsonl.gz", count=100)  # plain text, named .gz
    out = tmp_path / "out"
    assert pageviews.main([f"--input={events}", "--source=file", "--sink=jsonl",
                           f"--output={out}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --input: {events}: not a gzip file: the name says gzip but the data "
                   "does not start with a gzip header [while running 'Read/ReadBlocks']"]
    assert not leftovers(out)
