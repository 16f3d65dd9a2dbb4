"""Data-quality rules per schema, and the transform that checks records against them."""

from transforms.quality.transform import *  # noqa: F401,F403
