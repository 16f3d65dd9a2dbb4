"""The local streaming runner: Beam's bundle-based direct runner with a few fixes."""

from runners.local_streaming.runner import LocalStreamingRunner

__all__ = ["LocalStreamingRunner"]
