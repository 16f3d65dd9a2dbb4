"""What ``--input`` reads: a glob as Beam matches it, a directory with its subfolders."""

import gzip

import pytest

from beam_pipelines import pageviews
from beam_pipelines.testing import SyntheticEvents
from beam_pipelines.testing.files import read_jsonl_dir
from transforms.base.errors import SourceError
from transforms.io.files import expand_glob

pytestmark = pytest.mark.unit


@pytest.fixture
def partitioned(tmp_path):
    """A Hive-style layout with the markers and scratch files real writers leave."""
    root = tmp_path / "events"
    generator = SyntheticEvents(seed=4)
    payloads = list(generator.payloads(300))
    for day, part in enumerate((payloads[:100], payloads[100:200], payloads[200:])):
        folder = root / f"date=2024-01-0{day + 1}"
        folder.mkdir(parents=True)
        (folder / "part-0.jsonl.gz").write_bytes(gzip.compress(b"\n".join(part) + b"\n"))
    (root / "_SUCCESS").write_text("")
    (root / "_temporary" / "0").mkdir(parents=True)
    (root / "_temporary" / "0" / "part-9.jsonl").write_bytes(payloads[0] + b"\n")
    (root / "date=2024-01-01" / ".part-0.jsonl.gz.crc").write_bytes(b"\x00\x01")
    return root, generator


def test_a_directory_is_read_with_its_subfolders_but_not_hidden_files(partitioned, tmp_path):
    root, generator = partitioned
    expected = [str(root / f"date=2024-01-0{d}" / "part-0.jsonl.gz") for d in (1, 2, 3)]
    assert expand_glob(str(root)) == expected
    assert expand_glob(f"{root}/") == expected
    # A glob is the user's explicit choice: '*' stays in a folder, '**' crosses folders.
    assert expand_glob(f"{root}/*") == [str(root / "_SUCCESS")]
    assert str(root / "_temporary" / "0" / "part-9.jsonl") in expand_glob(f"{root}/**")

    assert pageviews.main(["--source=file", f"--input={root}/", "--sink=jsonl",
                           f"--output={tmp_path / 'out'}"]) == 0
    counted = sum(row["count"] for row in read_jsonl_dir(str(tmp_path / "out")))
    assert counted == sum(1 for _ in generator.events(300))


def test_a_glob_without_a_folder_looks_in_the_current_one(partitioned, monkeypatch):
    root, _ = partitioned
    monkeypatch.chdir(root / "date=2024-01-02")
    assert expand_glob("*.jsonl.gz") == ["part-0.jsonl.gz"]


def test_nothing_to_read_is_one_line_naming_the_flag(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(SourceError, match=r"^--input: no files in directory '.*empty/' "
                       r"\(subfolders included; names starting with '.' or '_' are skipped\)"):
        expand_glob(f"{tmp_path}/empty/")
    with pytest.raises(SourceError, match="^--input: no file or directory"):
        expand_glob(str(tmp_path / "missing"))
    with pytest.raises(SourceError, match=r"^--input: no files match '\*.nothing'"):
        expand_glob("*.nothing")
