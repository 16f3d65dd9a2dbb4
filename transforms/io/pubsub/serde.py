"""Times of Pub/Sub messages: the publish time, or a timestamp attribute."""

from __future__ import annotations

from transforms.base import times

__all__ = ["publish_seconds", "timestamp_seconds"]


def timestamp_seconds(text: str) -> float:
    """Beam's convention for timestamp attributes: epoch milliseconds or RFC 3339."""
    value = text.strip()
    if value.lstrip("-").isdigit():
        return int(value) / 1000.0
    return times.epoch_seconds(times.parse_iso(value))


def publish_seconds(message) -> float:
    stamp = message.publish_time  # a datetime (proto-plus) or a protobuf Timestamp
    if hasattr(stamp, "timestamp"):
        return stamp.timestamp()
    return stamp.seconds + stamp.nanos / 1e9
