"""Load every fixture module of beam_pipelines.testing.fixtures (one per kind of server)."""

import pkgutil

import beam_pipelines.testing.fixtures as _fixtures

pytest_plugins = [
    f"beam_pipelines.testing.fixtures.{module.name}"
    for module in pkgutil.iter_modules(_fixtures.__path__)
]
