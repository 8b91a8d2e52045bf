"""Kernel rows sharded over two (forced host) devices give the one-device kernel."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    jax.config.update("jax_enable_x64", True)
    from trees import assert_trees_equal
    from ntkplast import models, ntk
    assert len(jax.local_devices()) == 2, jax.local_devices()
    for spec, shape in [(models.ArchSpec(widths=(16, 8), num_outputs=3), (5,)),
                        (models.ArchSpec(kind="cnn", widths=(3,), num_outputs=2), (6, 6, 1))]:
        model = models.build(spec)
        params = jax.tree_util.tree_map(lambda a: a.astype(np.float64),
                                        model.init(jax.random.PRNGKey(0), shape))
        x = jax.random.normal(jax.random.PRNGKey(1), (9, *shape), dtype=np.float64)
        for per_layer in (False, True):
            one = ntk.empirical_ntk(model, params, x, per_layer=per_layer, device_count=1)
            two = ntk.empirical_ntk(model, params, x, per_layer=per_layer)
            assert_trees_equal(one, two, rtol=1e-12, err_msg=f"{spec.kind}, {per_layer=}")
        full = ntk.empirical_ntk(model, params, x, x[:4], trace_outputs=False)
        full1 = ntk.empirical_ntk(model, params, x, x[:4], trace_outputs=False, device_count=1)
        np.testing.assert_allclose(np.asarray(full), np.asarray(full1), rtol=1e-12, atol=0)
    print("OK")
""")


def test_two_devices_give_the_one_device_kernel():
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # for trees.py
    path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=path)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_device_count_is_checked():
    import jax
    import pytest

    from ntkplast import models, ntk
    from ntkplast.errors import NtkplastError

    model = models.build(models.ArchSpec(widths=(4,), num_outputs=2))
    params = model.init(jax.random.PRNGKey(0), (3,))
    with pytest.raises(NtkplastError, match="device_count"):
        ntk.empirical_ntk(model, params, jax.numpy.ones((2, 3)), device_count=99)
