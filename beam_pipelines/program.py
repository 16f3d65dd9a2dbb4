"""The name a command was run by, for its usage and error lines.

``python -m beam_pipelines.pageviews`` and the console script ``beam-pageviews`` run the
same code; ``--help`` should show the one the user typed.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

__all__ = ["program_name"]

SCRIPT_PREFIX = "beam-"  # every console script in setup.py starts with it


def program_name(module: str, argv0: Optional[str] = None) -> str:
    """``beam-pageviews`` when run as that console script, else ``python -m MODULE``.

    Only our console scripts count: under pytest or an embedding program ``sys.argv[0]``
    names something else, and ``python -m`` is the documented way.
    """
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    if name.endswith(".exe"):  # Windows launchers
        name = name[: -len(".exe")]
    if name.startswith(SCRIPT_PREFIX) and not name.endswith(".py"):
        return name
    return f"python -m {module}"

