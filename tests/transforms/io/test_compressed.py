"""Compressed input must reach its end-of-stream marker: a truncated, corrupt or empty
archive, or one that is not in the format its name says, raises CorruptInput naming the
file; concatenated streams and gzip's zero padding are read as ``gzip -d`` reads them."""

import bz2
import gzip
import lzma
import zlib

import pytest
import zstandard

from transforms.io.compressed import CorruptInput, open_input
from transforms.io.files import iter_blocks, iter_lines
from transforms.io.synthetic.events import SyntheticEvents

pytestmark = pytest.mark.unit

COMPRESS = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "zst": lambda data: zstandard.ZstdCompressor().compress(data),
    "xz": lzma.compress,
    "deflate": zlib.compress,
}


def lines(count, seed=3):
    return list(SyntheticEvents(seed=seed, malformed=0.02).payloads(count))


def read_all(path):
    with open_input(str(path)) as handle:
        return handle.read()


@pytest.mark.parametrize("ext", sorted(COMPRESS))
def test_whole_concatenated_and_truncated_streams(tmp_path, ext):
    data = b"".join(line + b"\n" for line in lines(3000))
    whole = COMPRESS[ext](data)
    (tmp_path / f"whole.{ext}").write_bytes(whole)
    assert read_all(tmp_path / f"whole.{ext}") == data
    # Concatenated streams (cat a.gz b.gz, pbzip2, multi-frame zstd) are one file.
    (tmp_path / f"two.{ext}").write_bytes(whole + COMPRESS[ext](b"last\n"))
    assert read_all(tmp_path / f"two.{ext}") == data + b"last\n"
    # Cut anywhere before the end-of-stream marker: an error naming the file, never less data.
    for cut in (len(whole) // 2, len(whole) - 1, 10):
        path = tmp_path / f"cut{cut}.{ext}"
        path.write_bytes(whole[:cut])
        with pytest.raises(CorruptInput, match=rf"^{path}: truncated .* end-of-stream marker"):
            read_all(path)
        with pytest.raises(CorruptInput):
            list(iter_lines(str(path)))
        with pytest.raises(CorruptInput):
            list(iter_blocks(str(path), 1 << 12))
    (tmp_path / f"empty.{ext}").write_bytes(b"")
    with pytest.raises(CorruptInput, match="empty file"):
        read_all(tmp_path / f"empty.{ext}")


def test_not_what_the_name_says_and_corrupt_data(tmp_path):
    plain = b"".join(line + b"\n" for line in lines(500))
    for ext, name in (("gz", "gzip"), ("bz2", "bzip2"), ("zst", "zstd")):
        path = tmp_path / f"plain.jsonl.{ext}"
        path.write_bytes(plain)
        with pytest.raises(CorruptInput, match=rf"^{path}: not a {name} file"):
            read_all(path)
    whole = gzip.compress(plain)
    flipped = whole[:200] + bytes(b ^ 0xFF for b in whole[200:260]) + whole[260:]
    (tmp_path / "flipped.gz").write_bytes(flipped)
    with pytest.raises(CorruptInput, match="corrupt gzip data"):
        read_all(tmp_path / "flipped.gz")
    (tmp_path / "trailing.gz").write_bytes(whole + b"garbage")
    with pytest.raises(CorruptInput, match="corrupt gzip data"):
        read_all(tmp_path / "trailing.gz")
    (tmp_path / "padded.gz").write_bytes(whole + bytes(512))  # gzip -d accepts zero padding
    assert read_all(tmp_path / "padded.gz") == plain
    (tmp_path / "plain.jsonl").write_bytes(plain)  # uncompressed: read as it is
    assert read_all(tmp_path / "plain.jsonl") == plain
