"""What Pub/Sub accepts as values: subscription and topic paths, attribute names, hosts.

The flags (``beam_pipelines.options.pubsub``) wrap these checks as argparse types, so a
flag and a constructor argument are refused with the same words. Each check returns the
value or raises ValueError with the message ``expected ..., got ...``.
"""

from __future__ import annotations

import re

__all__ = [
    "NAMING_RULE", "SUBSCRIPTION_FORM", "SUBSCRIPTION_RE", "TOPIC_FORM", "TOPIC_RE", "ack_deadline",
    "attribute_name", "field_names", "host_port", "refusal", "subscription_name", "topic_name",
]

SUBSCRIPTION_FORM = "projects/P/subscriptions/S"
TOPIC_FORM = "projects/P/topics/T"
# The service's rules: a name starts with a letter, 3-255 of letters, digits and -_.~+%
_NAME = r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}"
_PROJECT = r"[A-Za-z0-9\-.:]+"
SUBSCRIPTION_RE = re.compile(rf"^projects/{_PROJECT}/subscriptions/{_NAME}$")
TOPIC_RE = re.compile(rf"^projects/{_PROJECT}/topics/{_NAME}$")
# The naming rule in words, for the one-line error (a short name such as "s" is refused).
NAMING_RULE = ("a name is 3 to 255 letters, digits and - _ . ~ + %, starting with a letter")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.\-]+):\d{1,5}$")
_ATTRIBUTE = re.compile(r"^[^\s]{1,256}$")


def refusal(form: str, got: object) -> str:
    """The words of a refused subscription or topic path: the form, the value, the rule."""
    return f"expected {form}, got {got!r} ({NAMING_RULE})"


def subscription_name(text: str) -> str:
    if not SUBSCRIPTION_RE.match(text):
        raise ValueError(refusal(SUBSCRIPTION_FORM, text))
    return text


def topic_name(text: str) -> str:
    if not TOPIC_RE.match(text):
        raise ValueError(refusal(TOPIC_FORM, text))
    return text


def host_port(text: str) -> str:
    if not _HOST_PORT.match(text):
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return text


def attribute_name(text: str) -> str:
    if not _ATTRIBUTE.match(text):
        raise ValueError(f"expected an attribute name (1-256 characters, no spaces), got {text!r}")
    return text


def field_names(text: str) -> str:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ValueError(f"expected FIELD[,FIELD...], got {text!r}")
    return ",".join(names)


def ack_deadline(text: str) -> int:
    """Seconds each extension of an ack deadline lasts: the service takes 10 to 600."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 10 <= value <= 600:
        raise ValueError(f"expected a whole number of seconds from 10 to 600, got {text!r}")
    return value
