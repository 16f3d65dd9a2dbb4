"""Write generated lines to a file: plain, or compressed by its extension, atomically."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import sys
from typing import IO, Any, Callable, Iterable, Optional

from transforms.base.errors import ConfigError

__all__ = ["COMPRESSIONS", "check_path", "write_lines"]

# Extensions the pipelines' file source decompresses (transforms.io.compressed) and that the
# standard library writes; .zst would need the zstandard package, so it is refused.
COMPRESSIONS: dict[str, Callable[[IO[bytes]], Any]] = {  # a binary file object
    # mtime=0: the same arguments give the same bytes, today and tomorrow.
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="wb", mtime=0),
    ".bz2": lambda raw: bz2.BZ2File(raw, "wb"),
    ".xz": lambda raw: lzma.LZMAFile(raw, "wb"),
}


def check_path(path: str) -> None:
    """A ConfigError naming OUT for what cannot be written (before anything is generated)."""
    if path == "-":
        return
    if "://" in path:
        raise ConfigError("OUT", "a local file path (for a topic use --to kafka://TOPIC)", path)
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise ConfigError("OUT", "a file path, not a directory (e.g. DIR/part-0.jsonl.gz)", path)
    if path.lower().endswith((".zst", ".zstd")):
        raise ConfigError("OUT", "a plain, .gz, .bz2 or .xz file (.zst is not written here)", path)


def write_lines(path: str, payloads: Iterable[bytes], *,
                on_line: Optional[Callable[[], None]] = None) -> None:
    """Each payload and a newline to ``path`` (``-``: standard output). The file appears
    only when complete (written beside it, then renamed), so an interrupted run leaves no
    half file for a pipeline to read; missing parent folders are created."""
    if path == "-":
        _write(sys.stdout.buffer, payloads, on_line)
        sys.stdout.buffer.flush()
        return
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f".{os.path.basename(path)}.partial-{os.getpid()}")
    compress = COMPRESSIONS.get(os.path.splitext(path)[1].lower())
    try:
        with open(partial, "wb") as raw:
            if compress is None:
                _write(raw, payloads, on_line)
            else:
                with compress(raw) as out:
                    _write(out, payloads, on_line)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def _write(out: Any, payloads: Iterable[bytes], on_line: Optional[Callable[[], None]]) -> None:
    for payload in payloads:
        out.write(payload)
        out.write(b"\n")
        if on_line is not None:
            on_line()
