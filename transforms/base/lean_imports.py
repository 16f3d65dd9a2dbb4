"""Processes that never use pandas, kept from importing it.

pyarrow imports pandas (about 0.25 s of CPU) the first time it converts an array in a
process, whenever pandas is installed (the [notebooks] extra brings it): to recognise
Series and pandas' null values. Its C++ side asks again at every conversion until the
import succeeds, so pandas cannot be hidden for a moment only: it is hidden for the rest
of the process. That is right only for a process that runs nothing but our own code and
never needs pandas: the parse pool's workers (transforms.batches), which run one task,
parsing pieces of JSON lines. Importing the library changes nothing.
"""

from __future__ import annotations

import importlib.abc
import sys

__all__ = ["hide_pandas_from_this_process"]


class _RefusePandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError(f"{name} is not used in this process (transforms.base.lean_imports)")
        return None


def hide_pandas_from_this_process() -> None:
    """From now on ``import pandas`` raises ImportError in this process (unless pandas is
    already imported); pyarrow then works without its pandas integration."""
    if "pandas" in sys.modules or any(isinstance(f, _RefusePandas) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _RefusePandas())
