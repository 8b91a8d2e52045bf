"""Shared fixtures: ``x64`` (float64 for brute-force references); tests marked ``nt`` skip
where neural-tangents is absent."""

import importlib.util

import jax
import pytest

HAVE_NT = importlib.util.find_spec("neural_tangents") is not None


def pytest_collection_modifyitems(config, items):
    if HAVE_NT:
        return
    skip = pytest.mark.skip(reason="neural-tangents is not installed (core environment)")
    for item in items:
        if "nt" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def x64():
    """Run a test with float64 enabled (brute-force references); restore the flag afterwards."""
    prev = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)
