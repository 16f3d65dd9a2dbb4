"""Reading compressed files that must reach their end-of-stream marker.

Beam's own reader (``apache_beam.io.filesystem.CompressedFile``) stops quietly when the
compressed bytes run out: half of a ``.gz`` file reads as the lines its first half holds,
half of a ``.bz2`` as nothing at all, and the run "succeeds" with the rest of the data
missing. :func:`open_input` reads the same formats (chosen by the file's extension, as
Beam chooses them: ``.gz``, ``.bz2``, ``.zst``/``.zstd``, ``.xz``/``.lzma``,
``.deflate``) and raises :class:`CorruptInput` naming the file when

* the file ends inside a compressed stream (truncated: an incomplete upload or copy),
* the data is not of the format the extension says (a ``.gz`` that is not gzip),
* a stream is corrupt (a bad checksum or block), or the file is empty.

Concatenated streams (``cat a.gz b.gz``, pbzip2, multi-frame zstd) are read one after
the other, as ``gzip -d`` reads them; zero bytes padding the end of a gzip file are
ignored as ``gzip -d`` ignores them. Uncompressed files are read as they are.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import Any, BinaryIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.base.errors import SourceError

__all__ = ["CorruptInput", "open_input"]

_RAW_CHUNK = 256 << 10  # compressed bytes per read: the decompressed piece stays a few MiB
_NAMES = {
    CompressionTypes.GZIP: "gzip",
    CompressionTypes.BZIP2: "bzip2",
    CompressionTypes.ZSTD: "zstd",
    CompressionTypes.LZMA: "xz/lzma",
    CompressionTypes.DEFLATE: "deflate",
}
# The first bytes of a stream, where the format has a fixed one (a friendlier message
# than the decompressor's for a file that is not compressed the way its name says).
_MAGIC = {
    CompressionTypes.GZIP: b"\x1f\x8b",
    CompressionTypes.BZIP2: b"BZh",
    CompressionTypes.ZSTD: b"\x28\xb5\x2f\xfd",
}


class CorruptInput(SourceError):
    """A compressed input is truncated, corrupt, or not in the format its name says."""


def _decompressor(kind: str) -> Any:
    if kind == CompressionTypes.GZIP:
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if kind == CompressionTypes.BZIP2:
        return bz2.BZ2Decompressor()
    if kind == CompressionTypes.ZSTD:
        import zstandard

        # Beam's window limit: frames written with --long need more than the default.
        return zstandard.ZstdDecompressor(max_window_size=1 << 31).decompressobj()
    if kind == CompressionTypes.LZMA:
        return lzma.LZMADecompressor()
    return zlib.decompressobj()  # DEFLATE: a zlib stream, as Beam writes it


def _errors() -> tuple[type[BaseException], ...]:
    import zstandard

    return (zlib.error, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError)


class _CheckedReader:
    """A binary file-like ``read(size)`` over the decompressed streams of one file."""

    def __init__(self, raw: BinaryIO, kind: str, path: str) -> None:
        self._raw = raw
        self._kind = kind
        self._name = _NAMES[kind]
        self._path = path
        self._decompressor: Any = None
        self._streams = 0
        self._consumed = 0  # compressed bytes read so far, for the error message
        self._buffer = bytearray()
        self._errors = _errors()

    def _fail(self, problem: str) -> CorruptInput:
        return CorruptInput(f"{self._path}: {problem}")

    def _next_raw(self) -> bytes:
        data = self._raw.read(_RAW_CHUNK)
        self._consumed += len(data)
        return data

    def _start_stream(self, data: bytes) -> bool:
        """Begin the next stream with ``data`` (maybe empty); False at the clean end."""
        while True:
            if not data:
                data = self._next_raw()
                if not data:
                    if self._streams == 0:
                        raise self._fail(f"empty file: no {self._name} stream in it "
                                         "(an incomplete upload or copy?)")
                    return False
            if self._kind == CompressionTypes.GZIP and self._streams:
                data = data.lstrip(b"\0")  # gzip -d ignores zero padding after the last member
                if not data:
                    continue
            break
        magic = _MAGIC.get(self._kind)
        if self._streams == 0 and magic and len(data) >= len(magic) and not data.startswith(magic):
            raise self._fail(f"not a {self._name} file: the name says {self._name} but the data "
                             f"does not start with a {self._name} header")
        self._decompressor = _decompressor(self._kind)
        self._streams += 1
        self._decompress(data)
        return True

    def _decompress(self, data: bytes) -> None:
        try:
            self._buffer += self._decompressor.decompress(data)
        except self._errors as exc:
            raise self._fail(f"corrupt {self._name} data: {exc}") from None

    def _fill(self) -> bool:
        """Decompress some more into the buffer; False once every stream has ended."""
        if self._decompressor is None:
            return self._start_stream(b"")
        if self._decompressor.eof:
            rest = self._decompressor.unused_data
            self._decompressor = None
            return self._start_stream(rest)
        data = self._next_raw()
        if not data:
            raise self._fail(f"truncated {self._name} file: it ends before the end-of-stream "
                             f"marker, after {self._consumed} bytes (an incomplete upload or "
                             "copy?)")
        self._decompress(data)
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            size = len(self._buffer)
        while len(self._buffer) < size and self._fill():
            pass
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _CheckedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_input(path: str) -> Any:
    """``path`` (any Beam filesystem) opened for reading, decompressed by its extension
    with the checks of the module docstring; use as a context manager."""
    kind = CompressionTypes.detect_compression_type(path)
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if kind == CompressionTypes.UNCOMPRESSED:
        return raw
    return _CheckedReader(raw, kind, path)
