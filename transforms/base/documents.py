"""Configuration documents (rules files): JSON, or YAML with pyyaml, from any Beam filesystem."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from transforms.base.errors import ConfigError

__all__ = ["read_document"]


def read_document(path: str, *, flag: str, exact: bool = False) -> Any:
    """A JSON or YAML (``.yaml`` / ``.yml``, needs pyyaml) document from a local or Beam
    filesystem path; every failure is one ConfigError line starting with ``flag``.

    :param path: the file (a BOM at its start is ignored).
    :param flag: the flag that named the file, for the error line.
    :param exact: read JSON decimals as ``Decimal`` and refuse NaN and Infinity, for
        documents whose numbers are compared exactly (the fraud rules).
    """
    # Beam's filesystems are imported here: this module is at the bottom of the library and
    # is imported by rule modules long before any pipeline runs.
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as handle:
            text = handle.read().decode("utf-8-sig")
    except Exception as exc:  # Beam wraps every filesystem error in its own types
        raise ConfigError.from_message(f"{flag}: cannot read {path!r}: {exc}") from None
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ConfigError.from_message(
                f"{flag}: {path} is YAML, which needs pyyaml (pip install pyyaml); "
                "or write the rules as JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError.from_message(
                f"{flag}: {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        if exact:
            return json.loads(text, parse_float=Decimal, parse_constant=_not_a_number)
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError.from_message(f"{flag}: {path} is not valid JSON: {exc}") from None


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a number this file may use")
