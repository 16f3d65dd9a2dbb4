"""Guarded imports of optional dependencies.

``require("kafka", "kafka")`` returns the imported module or raises
:class:`~transforms.base.errors.MissingExtraError` naming the extra to install, so a user
who picks ``--source=kafka`` without ``pip install 'beam-pipelines[kafka]'`` is told exactly that.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from transforms.base.errors import MissingExtraError

__all__ = ["require"]


def require(extra: str, module: str) -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, module) from exc
