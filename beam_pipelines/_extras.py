"""Compatibility: the optional-extra guard moved to :mod:`transforms.base.extras`.

Kept while branches written against the old path are merged; new code imports
``transforms.base.extras.require``.
"""

from transforms.base.extras import require

__all__ = ["require"]
