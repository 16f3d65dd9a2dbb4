"""The package's exceptions: one base class, a few kinds a caller can tell apart.

Everything raised on purpose by beam_pipelines, transforms and runners derives from
:class:`BeamPipelinesError`, so ``except BeamPipelinesError`` catches our errors and
nothing else. Command-line entry points turn these into a one-line message.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "BeamPipelinesError", "ConfigError", "MissingExtraError", "NotAvailableError", "SinkError",
    "SourceError"
]


class BeamPipelinesError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(BeamPipelinesError, ValueError):
    """A flag or argument has a value we cannot use.

    The message names the flag (or argument) and the form it expects, e.g.
    ``--window_size: expected a whole number of seconds > 0, got 'abc'``.
    """

    def __init__(self, flag: str, expected: str, got: object = None) -> None:
        self.flag = flag
        self.expected = expected
        self.got = got
        message = f"{flag}: expected {expected}"
        if got is not None:
            message += f", got {got!r}"
        super().__init__(message)

    @classmethod
    def from_message(cls, message: str) -> ConfigError:
        """Turn an argparse message ("argument --x: expected ...") into a ConfigError."""
        text = message.strip().splitlines()[0]
        if text.startswith("argument "):
            text = text[len("argument ") :]
        flag, _, rest = text.partition(": ")
        if not rest:
            return cls("arguments", text)
        flag = flag.split("/")[0].strip()
        error = cls.__new__(cls)
        error.flag, error.expected, error.got = flag, rest, None
        Exception.__init__(error, f"{flag}: {rest}")
        return error


class MissingExtraError(BeamPipelinesError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, extra: str, module: str, flag: Optional[str] = None) -> None:
        self.extra = extra
        self.module = module
        self.flag = flag
        if flag:  # the flag that asked for it, first: the one line says what to change
            text = f"{flag}: {module} is not installed: it needs the [{extra}] extra"
        else:
            text = f"{module} is not installed: this feature needs the [{extra}] extra"
        super().__init__(f"{text} (pip install 'beam-pipelines[{extra}]')")


class SourceError(BeamPipelinesError):
    """A source cannot be reached or read (unreachable broker, missing topic or file)."""


class SinkError(BeamPipelinesError):
    """A sink cannot be reached or written."""


class NotAvailableError(BeamPipelinesError):
    """A feature needs something this environment does not have (a jar, a binary, a network)."""
