"""Replacing attributes of Beam's runner modules, and putting them back: what every
patch of the local streaming runner is made of (``patches.py``, ``handoff.py``,
``lineage.py``, ``side_inputs.py``)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

__all__ = ["Undo", "replace", "replace_all"]

Undo = Callable[[], None]


def replace(owner: Any, name: str, replacement: Any) -> Undo:
    """Set ``owner.name`` to ``replacement``; returns what restores the original (the
    attribute of the class itself, not an inherited one)."""
    had_own = name in vars(owner)
    original = vars(owner).get(name)
    setattr(owner, name, replacement)

    def undo() -> None:
        if had_own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)

    return undo


def replace_all(replacements: Iterable[tuple[Any, str, Any]]) -> Undo:
    """:func:`replace` for each ``(owner, name, replacement)``; the undo puts them back
    in reverse order."""
    undos = [replace(owner, name, replacement) for owner, name, replacement in replacements]

    def undo() -> None:
        for one in reversed(undos):
            one()

    return undo
