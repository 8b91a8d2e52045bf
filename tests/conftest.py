"""Shared fixtures: ``x64`` (float64 for brute-force references), ``fresh_kernels`` (no
compiled kernel reused across a forced choice), ``assembly`` (each way of assembling a
symmetric kernel forced in turn), ``local_ray`` (a local Ray instance for the session),
``tiny_config`` (the builder of a tiny run's config), ``tiny_run`` (that run, trained once per
session: read it, never write into it) and ``tiny_run_copy`` (a private copy to modify); tests
marked ``nt`` skip where neural-tangents is absent."""

import importlib.util
import shutil
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


@pytest.fixture
def fresh_kernels():
    """Forget compiled kernels before and after a test, so that a route or assembly it forces
    is the one that runs (and is not reused by later tests)."""
    from ntkplast import ntk

    def clear():
        ntk.kernel_fn.__wrapped__.cache_clear()  # under validate.legacy_arguments
        ntk.empirical._series_fn.cache_clear()
        jax.clear_caches()
    clear()
    yield
    clear()


@pytest.fixture(params=["tiles", "strips"])
def assembly(request, monkeypatch, fresh_kernels):
    """A tiled symmetric kernel assembled from square tiles, or from row strips (forced)."""
    from ntkplast import ntk
    monkeypatch.setattr(ntk._tiles, "strips_cheaper", lambda *args: request.param == "strips")
    return request.param


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


def tiny_config(*, seed=1, widths=(12, 12), num_tasks=2, **train_kw):
    """A tiny run's config: an MLP of ``widths`` on ``num_tasks`` permuted-digits tasks of 10
    steps of 16 examples, a checkpoint every 5 steps (the init, then 2 per task: 5 in all at
    the defaults); keywords other than ``seed``, ``widths`` and ``num_tasks`` override the
    ``TrainConfig``'s."""
    from ntkplast import models, training
    from ntkplast.data import streams

    kw = dict(steps_per_task=10, checkpoint_every=5, batch_size=16)
    kw.update(train_kw)
    return training.RunConfig(
        seed=seed, model=models.ArchSpec(widths=tuple(widths), num_outputs=10),
        stream=streams.StreamSpec(kind="permuted", num_tasks=num_tasks),
        train=training.TrainConfig(**kw))


@pytest.fixture(name="tiny_config", scope="session")
def tiny_config_fixture():
    """``tiny_config(**overrides)``: builds a tiny run's config (see conftest.tiny_config)."""
    return tiny_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The folder of a complete run of ``tiny_config()``, trained once per session (per xdist
    worker). Shared: write analyses elsewhere (``out_dir=``), or modify ``tiny_run_copy``."""
    from ntkplast import training

    run_dir = tmp_path_factory.mktemp("tiny_run")
    training.train_run(tiny_config(), run_dir, progress=False)
    return run_dir


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path):
    """A copy of ``tiny_run`` of this test's own (``tmp_path / "run"``), free to modify."""
    return shutil.copytree(tiny_run, tmp_path / "run")
