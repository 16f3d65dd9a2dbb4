"""Beam's DoFn introspection, computed once per function and DoFn class.

Beam inspects every DoFn's methods (``inspect.signature`` for their arguments, ``dir``
for state and timer specs) many times while it builds, translates and runs a pipeline,
and Beam's bundle-based direct runner again for every bundle: about a second of every
run's start-up, and a third of a live run on the local streaming runner. The answers
depend only on the functions and DoFn classes, so :func:`remember_dofn_introspection`
keeps them. Every pipeline run by ``beam_pipelines`` and the local streaming runner
install it; it changes no answer.
"""

from __future__ import annotations

import types
import weakref
from typing import Callable

from apache_beam.runners.direct import transform_evaluator
from apache_beam.transforms import core, userstate

__all__ = ["remember_dofn_introspection"]


def remember_dofn_introspection() -> Callable[[], None]:
    """Install both caches below; returns what uninstalls what this call installed (a
    cache installed already stays: whoever installed it keeps it)."""
    undo = [_install_dofn_specs_cache(), _install_signature_cache()]

    def uninstall() -> None:
        for step in reversed(undo):
            step()

    return uninstall


def _nothing() -> None:
    pass


_SPECS_CACHE: dict[tuple, tuple[frozenset, frozenset]] = {}


def _install_dofn_specs_cache() -> Callable[[], None]:
    """Compute ``userstate.get_dofn_specs`` once per DoFn class. Idempotent.

    Beam inspects every *bound method* of the instance (``dir`` + ``MethodType``); so the
    answer depends on the class and on which class attributes the instance shadows with
    something else (``beam.Map`` sets ``self.process`` to the user's function). An
    instance holding bound methods of its own is computed every time, as before. Returns
    what uninstalls it (nothing when it was installed already).
    """
    if getattr(userstate.get_dofn_specs, "_beam_pipelines_cache", False):
        return _nothing
    original = userstate.get_dofn_specs
    original_evaluator = transform_evaluator.get_dofn_specs

    def get_dofn_specs(dofn):
        attributes = getattr(dofn, "__dict__", {})
        if any(isinstance(value, types.MethodType) for value in attributes.values()):
            return original(dofn)
        cls = type(dofn)
        key = (cls, frozenset(name for name in attributes if hasattr(cls, name)))
        specs = _SPECS_CACHE.get(key)
        if specs is None:
            states, timers = original(dofn)
            specs = _SPECS_CACHE[key] = (frozenset(states), frozenset(timers))
        return set(specs[0]), set(specs[1])

    get_dofn_specs._beam_pipelines_cache = True  # type: ignore[attr-defined]
    userstate.get_dofn_specs = get_dofn_specs  # type: ignore[assignment]
    transform_evaluator.get_dofn_specs = get_dofn_specs  # type: ignore[assignment]  # imported by name

    def uninstall() -> None:
        userstate.get_dofn_specs = original
        transform_evaluator.get_dofn_specs = original_evaluator

    return uninstall


# Function -> {bound: (argument names, defaults)}; weak, so roundtripped copies' functions go.
_ARGUMENTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _install_signature_cache() -> Callable[[], None]:
    """``core.get_function_args_defaults`` (``inspect.signature``,
    tens of microseconds, called for every method of a DoFn and of its wrapped function
    each time a DoFnRunner is made, that is every bundle) computed once per function.
    The answer depends only on the function and on whether it is bound. Returns what
    uninstalls it (nothing when it was installed already)."""
    if getattr(core.get_function_args_defaults, "_beam_pipelines_cache", False):
        return _nothing
    original = core.get_function_args_defaults

    def get_function_args_defaults(f):
        if isinstance(f, types.MethodType) and isinstance(f.__func__, types.FunctionType):
            function, bound = f.__func__, True
        elif isinstance(f, types.FunctionType):
            function, bound = f, False
        else:  # callables, partials, builtins: as Beam computes them
            return original(f)
        known = _ARGUMENTS.setdefault(function, {})
        if bound not in known:
            known[bound] = original(f)
        names, defaults = known[bound]
        return list(names), list(defaults)

    get_function_args_defaults._beam_pipelines_cache = True  # type: ignore[attr-defined]
    core.get_function_args_defaults = get_function_args_defaults  # type: ignore[assignment]

    def uninstall() -> None:
        core.get_function_args_defaults = original

    return uninstall
