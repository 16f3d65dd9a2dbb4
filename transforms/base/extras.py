"""Guarded imports of optional dependencies.

``require("kafka", "kafka")`` returns the imported module or raises
:class:`~transforms.base.errors.MissingExtraError` naming the extra to install, so a user
who picks ``--source=kafka`` without ``pip install 'beam-pipelines[kafka]'`` is told exactly that.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional

from transforms.base.errors import MissingExtraError

__all__ = ["require"]


def require(extra: str, module: str, flag: Optional[str] = None) -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming ``extra`` (and ``flag``, the
    flag that asked for it, when given)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, module, flag) from exc
