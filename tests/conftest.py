"""Load every fixture module of beam_pipelines.testing.fixtures (one per kind of server), and
keep the ``unit`` marker honest: a unit test starts no subprocess and no server."""

import pkgutil
import socket
import subprocess

import pytest

import beam_pipelines.testing.fixtures as _fixtures

pytest_plugins = [
    f"beam_pipelines.testing.fixtures.{module.name}"
    for module in pkgutil.iter_modules(_fixtures.__path__)
]


def _refuse(what: str):
    def refused(*args, **kwargs):
        raise AssertionError(f"a unit test must not {what}; mark the test integration")

    return refused


def _guards() -> list:
    """(object, attribute, replacement): what a unit test may not call."""
    guards = [(subprocess.Popen, "__init__", _refuse("start a subprocess")),
              (socket.socket, "listen", _refuse("listen on a socket (a server)"))]
    try:
        import grpc
    except ImportError:
        return guards
    return guards + [(grpc, "server", _refuse("start a gRPC server"))]


def _guarded(item):
    """Patch the guards in for a ``unit`` test; yields (pytest hookwrapper style)."""
    if item.get_closest_marker("unit") is None:
        yield
        return
    saved = [(target, name, getattr(target, name)) for target, name, _ in _guards()]
    for target, name, replacement in _guards():
        setattr(target, name, replacement)
    try:
        yield
    finally:
        for target, name, original in saved:
            setattr(target, name, original)


# The setup (module fixtures a unit test brings up included) and the test itself start no
# subprocess and no server; the teardown may stop servers of integration tests before it.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _guarded(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _guarded(item)


def pytest_collection_modifyitems(items):
    """A test is one tier: ``unit`` on a module and ``integration`` on one of its tests would
    select a server test in ``-m unit`` runs, so the combination is refused."""
    both = [item.nodeid for item in items
            if item.get_closest_marker("unit") and item.get_closest_marker("integration")]
    if both:
        raise pytest.UsageError("marked both unit and integration (pick one; move the test to "
                                "a module of its tier): " + ", ".join(both))
