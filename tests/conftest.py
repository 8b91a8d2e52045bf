"""Shared fixtures: ``x64`` (float64 for brute-force references), ``local_ray`` (a local Ray
instance for the session); tests marked ``nt`` skip where neural-tangents is absent."""

import importlib.util
import warnings

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


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray instance with 2 CPUs for the test session (skips where ray is absent)."""
    ray = pytest.importorskip("ray")
    mp = pytest.MonkeyPatch()
    # ray 2.60 warns at init that token authentication is off; off is what a test instance wants
    mp.setenv("RAY_AUTH_MODE", "disabled")
    with warnings.catch_warnings():  # jax's at-fork warning; Ray forks only to exec its daemons
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=100 * 2**20)
    yield ray
    ray.shutdown()
    mp.undo()
