"""The versioned model directory: ``DIR/v1/``, ``DIR/v2/``... and ``DIR/LATEST``.

::

    DIR/
      LATEST            "v2": the version to serve, replaced atomically
      v1/ v2/ ...
        model.joblib    the estimator (scikit-learn API), for SklearnModelHandlerNumpy
        model.onnx      the same scores as an ONNX graph, for OnnxModelHandlerNumpy
        items.json      the vocabulary: pages in the model's column order
        metadata.json   data range, counts, parameters, held-out metrics (written last)

A version directory is complete once it is named in ``LATEST``: the trainer writes a
version's files (``metadata.json`` last), then points ``LATEST`` at it by writing a
temporary file and renaming it over ``LATEST`` (atomic on a local or POSIX file system;
a single object write on object stores). Readers follow ``LATEST`` only, so they never
see a half-written version. ``LATEST`` only moves forward: a trainer that finishes after
a newer version was published leaves ``LATEST`` alone.

Reads go through Beam's ``FileSystems`` (local paths, ``gs://``, ``s3://``...). Writes
are local-path operations where the path is local, ``FileSystems`` otherwise.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any, Callable, Optional

from apache_beam.io.filesystems import FileSystems

from transforms.base.errors import ConfigError

__all__ = [
    "ITEMS", "LATEST", "METADATA", "MODEL_FILES", "ModelRef", "latest_version",
    "model_file_exists", "publish", "read_json", "read_text", "resolve", "reserve_version",
    "version_number", "version_path", "write_file", "write_version",
]

LATEST = "LATEST"
ITEMS = "items.json"
METADATA = "metadata.json"
MODEL_FILES = {"sklearn": "model.joblib", "onnx": "model.onnx"}
_VERSION = re.compile(r"^v([1-9][0-9]*)$")


def _join(root: str, *parts: str) -> str:
    return FileSystems.join(root, *parts) if "://" in root else os.path.join(root, *parts)


def _local(path: str) -> bool:
    return "://" not in path


def version_path(root: str, version: int) -> str:
    return _join(root, f"v{version}")


def version_number(path: str) -> int:
    """N of a version directory ``.../vN`` (ValueError otherwise)."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    match = _VERSION.match(name)
    if not match:
        raise ValueError(f"expected a model version directory named vN, got {path!r}")
    return int(match.group(1))


def read_text(path: str) -> str:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read().decode("utf-8")


def read_json(path: str) -> Any:
    return json.loads(read_text(path))


def _exists(path: str) -> bool:
    return os.path.exists(path) if _local(path) else FileSystems.exists(path)


def model_file_exists(version_dir: str, model_format: str) -> bool:
    """Whether the version directory has the model file of ``model_format``."""
    return _exists(_join(version_dir, MODEL_FILES[model_format]))


def latest_version(root: str) -> Optional[int]:
    """The version ``root/LATEST`` names, or None when there is none yet."""
    path = _join(root, LATEST)
    if not _exists(path):
        return None
    text = read_text(path).strip()
    match = _VERSION.match(text)
    if not match:
        raise ValueError(f"{path} must name a version such as v3, got {text[:40]!r}")
    return int(match.group(1))


class ModelRef:
    """What ``--model`` names: a model directory (follow ``LATEST``) or one version.

    :param root: the model directory (holding ``LATEST``).
    :param pinned: the version directory given, or None to follow ``LATEST``.
    """

    def __init__(self, root: str, pinned: Optional[str]) -> None:
        self.root = root
        self.pinned = pinned

    @property
    def follows_latest(self) -> bool:
        return self.pinned is None

    def current(self) -> str:
        """The version directory to serve now."""
        if self.pinned is not None:
            return self.pinned
        version = latest_version(self.root)
        if version is None:
            raise ConfigError("--model", f"a model directory with a {LATEST} file (written by "
                              "train_recommender) or a version directory vN", self.root)
        return version_path(self.root, version)


def resolve(model: str) -> ModelRef:
    """``--model``: a directory with ``LATEST`` (followed while the stream runs) or a
    version directory ``vN`` with ``metadata.json`` (pinned)."""
    if not isinstance(model, str) or not model.strip():
        raise ConfigError("--model", "a model directory written by train_recommender", model)
    model = model.rstrip("/") or model
    if _exists(_join(model, LATEST)):
        return ModelRef(model, None)
    if _exists(_join(model, METADATA)):
        try:
            version_number(model)
        except ValueError:
            raise ConfigError("--model", "a model directory or a version directory vN",
                              model) from None
        return ModelRef(model.rsplit("/", 1)[0] if "/" in model else ".", model)
    raise ConfigError("--model", f"a model directory with a {LATEST} file (written by "
                      "train_recommender) or a version directory vN", model)


def _versions(root: str) -> list[int]:
    if _local(root):
        names = os.listdir(root) if os.path.isdir(root) else []
    else:
        found = FileSystems.match([_join(root, "v*", METADATA)])[0].metadata_list
        names = [m.path[len(root):].strip("/").split("/", 1)[0] for m in found]
    return sorted(int(m.group(1)) for m in map(_VERSION.match, names) if m)


def reserve_version(root: str) -> tuple[int, str]:
    """A new version number and its (empty, created) directory: one more than the highest
    version present. Two trainers racing get different numbers on a local file system."""
    if _local(root):
        os.makedirs(root, exist_ok=True)
    while True:
        version = max(_versions(root), default=0) + 1
        path = version_path(root, version)
        if not _local(root):
            return version, path
        try:
            os.mkdir(path)
        except FileExistsError:
            continue  # another trainer took it: the next one
        return version, path


def write_file(path: str, data: bytes) -> None:
    if _local(path):
        with open(path, "wb") as handle:
            handle.write(data)
        return
    with FileSystems.create(path) as handle:
        handle.write(data)


def write_version(path: str, files: dict[str, bytes], metadata: dict[str, Any]) -> None:
    """A version's files, ``metadata.json`` last (a version with metadata is complete)."""
    for name, data in files.items():
        write_file(_join(path, name), data)
    write_file(_join(path, METADATA), json.dumps(metadata, indent=2, sort_keys=True).encode())


def publish(root: str, version: int, replace: Callable[[str, str], None] = os.replace) -> bool:
    """Point ``root/LATEST`` at ``version`` unless it already names a newer one; True when
    it moved. Local: a temporary file renamed over ``LATEST`` (atomic)."""
    current = latest_version(root)
    if current is not None and current >= version:
        return False
    data = f"v{version}\n".encode()
    target = _join(root, LATEST)
    if not _local(root):
        write_file(target, data)
        return True
    temporary = _join(root, f".{LATEST}.{uuid.uuid4().hex}")
    write_file(temporary, data)
    replace(temporary, target)
    return True
