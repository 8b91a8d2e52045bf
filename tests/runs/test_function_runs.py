"""Run folders of models ntkplast cannot describe (a BatchNorm, a SiLU): kept as their own
``apply``, imported, analysed, drawn and reported, with what needs layer structure skipped by
name."""

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli
from jax.flatten_util import ravel_pytree

from ntkplast.adapters import function as function_model
from ntkplast.errors import NtkplastError
from ntkplast.runs import arrays, checkpoints, function_models
from ntkplast.table import Table

flax = pytest.importorskip("flax")

MODELS = textwrap.dedent('''
    import jax
    import jax.numpy as jnp
    import flax.linen as nn

    class BNNet(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.Dense(10)(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            return nn.Dense(3)(jax.nn.relu(x))

    class SiLUNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = jax.nn.silu(nn.Dense(10, name="d0")(x))
            x = jax.nn.silu(nn.Dense(10, name="d1")(x))
            return nn.Dense(3, name="d2")(x)

    def bn_apply(variables, x):
        return BNNet().apply(variables, x, train=False)

    def silu_apply(variables, x):
        return SiLUNet().apply(variables, x)

    def _dense(name, act):
        def f(variables, u):
            p = variables["params"][name]
            z = u @ p["kernel"] + p["bias"]
            return z, act(z)
        return f

    SILU_LAYERS = (_dense("d0", jax.nn.silu), _dense("d1", jax.nn.silu),
                   _dense("d2", lambda z: z))
''')


def _write_checkpoints(tmp_path, which):
    """A folder of msgpack variables at steps 0, 10, 20 and a probe.npz of the last outputs."""
    import importlib
    import sys
    (tmp_path / "mymodels.py").write_text(MODELS)
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module("mymodels")
        importlib.reload(mod)
    finally:
        sys.path.remove(str(tmp_path))
    net = mod.BNNet() if which == "bn" else mod.SiLUNet()
    apply = mod.bn_apply if which == "bn" else mod.silu_apply
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (12, 5)))
    variables = net.init(jax.random.PRNGKey(0), x)
    src = tmp_path / "src"
    src.mkdir()
    for step in (0, 10, 20):
        variables = jax.tree_util.tree_map(lambda a, s=step: a * (1 + 0.01 * s), variables)
        (src / f"ckpt_{step}.msgpack").write_bytes(flax.serialization.to_bytes(variables))
    np.savez(src / "probe.npz", x=x, outputs=np.asarray(apply(variables, x)), step=np.int64(20))
    return mod, variables, x


def test_batchnorm_model_through_the_pipeline(tmp_path):
    mod, variables, x = _write_checkpoints(tmp_path, "bn")
    ok = run_cli("import", "src", "run", "--framework", "flax", "--apply", "mymodels:bn_apply",
                 "--trainable", "params", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    manifest = checkpoints.read_manifest(tmp_path / "run")
    assert manifest["model"] == {"kind": "function", "apply": "mymodels:bn_apply",
                                 "layers": None, "trainable": "params", "num_outputs": 3}
    ok = run_cli("analyze", "run", "--probe", "src/probe.npz", "--no-progress", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "skipped: isometry, dormancy" in ok.stderr  # named, not silently absent
    table = Table.read_csv(tmp_path / "run" / "analysis" / "metrics.csv")
    metrics = set(table.columns["metric"].tolist())
    assert {"ntk_trace", "ntk_condition", "kernel_distance_prev"} <= metrics
    assert not any(m.startswith(("jac_", "dormant")) for m in metrics)
    # the kernel is taken over the trained parameters only; BatchNorm's statistics held fixed
    last = checkpoints.open_run(tmp_path / "run").params(-1)
    model = function_models.build(function_models.FunctionSpec("mymodels:bn_apply",
                                                                trainable="params"))
    k = function_model.empirical_ntk(model, last, jnp.asarray(x))
    flat, unravel = ravel_pytree(last["params"])
    # the traced kernel Σ_k Θ_kk from the full Jacobian ∂f_k/∂θ (a brute-force reference)
    jac = jax.jacfwd(lambda t: mod.bn_apply({**last, "params": unravel(t)}, jnp.asarray(x)))(
        flat)
    ref = jnp.einsum("nkp,mkp->nm", jac, jac)
    np.testing.assert_allclose(np.asarray(k), np.asarray(ref), rtol=2e-4, atol=1e-5)
    for verb in ("figures", "report"):
        ok = run_cli(verb, "run", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr


def test_silu_model_with_layer_functions_gets_every_family(tmp_path):
    mod, variables, x = _write_checkpoints(tmp_path, "silu")
    ok = run_cli("import", "src", "run", "--framework", "flax", "--apply", "mymodels:silu_apply",
                 "--layers", "mymodels:SILU_LAYERS", "--trainable", "params", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    ok = run_cli("analyze", "run", "--probe", "src/probe.npz", "--no-progress", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    table = Table.read_csv(tmp_path / "run" / "analysis" / "metrics.csv")
    c = table.columns
    dead = c["value"][(c["metric"] == "dead_units") & (c["layer"] == "layer0")]
    assert len(dead) == 3 and np.all(dead == 0)  # SiLU is never exactly zero
    chi = c["value"][(c["metric"] == "jac_chi") & (c["layer"] == "layer1")]
    # χ of the last checkpoint against a direct computation: mean σ² of ∂a_1/∂a_0 per input
    last = checkpoints.open_run(tmp_path / "run").params(-1)
    a0 = mod.SILU_LAYERS[0](last, jnp.asarray(x))[1]
    jac = jax.vmap(jax.jacfwd(lambda u: mod.SILU_LAYERS[1](last, u[None])[1][0]))(a0)
    s = np.linalg.svd(np.asarray(jac, np.float64), compute_uv=False)
    np.testing.assert_allclose(chi[-1], np.mean(s ** 2), rtol=1e-4)
    ok = run_cli("figures", "run", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_function_imports_check_what_they_are_given(tmp_path):
    _write_checkpoints(tmp_path, "silu")
    assert_one_line_error(run_cli("import", "src", "run", "--framework", "flax", "--apply",
                                  "mymodels:nope", cwd=tmp_path), "cannot be imported")
    assert_one_line_error(run_cli("import", "src", "run", "--framework", "flax", "--apply",
                                  "mymodels:bn_apply", cwd=tmp_path), "fails on")
    np.savez(tmp_path / "wrong.npz", x=np.ones((2, 5), np.float32),
             outputs=np.zeros((2, 3), np.float32))
    assert_one_line_error(run_cli("import", "src", "run", "--framework", "flax", "--apply",
                                  "mymodels:silu_apply", "--probe", "wrong.npz", cwd=tmp_path),
                          "does not reproduce")
    assert_one_line_error(run_cli("import", "src", "run", "--framework", "torch", "--apply",
                                  "mymodels:silu_apply", cwd=tmp_path), "--apply")
    assert not (tmp_path / "run").exists()
    # the manifest refuses a malformed function model
    with pytest.raises(NtkplastError, match="model.apply"):
        function_models.FunctionSpec.from_dict({"kind": "function", "apply": "no colon"})
    with pytest.raises(NtkplastError, match="unknown field"):
        function_models.FunctionSpec.from_dict({"kind": "function", "apply": "a:b", "x": 1})


def test_tree_arrays_round_trip_and_refuse_bad_trees():
    tree = {"params": {"d0": {"kernel": np.ones((2, 3), np.float32)}},
            "batch_stats": {"bn": {"mean": np.zeros(3, np.float32)}}}
    back = arrays.arrays_to_tree(arrays.tree_to_arrays(tree))
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(tree)
    with pytest.raises(NtkplastError, match="without '/'"):
        arrays.tree_to_arrays({"a/b": np.ones(1)})
    with pytest.raises(NtkplastError, match="finite"):
        arrays.arrays_to_tree({"tree/a": np.array([np.nan])})
    with pytest.raises(NtkplastError, match="only nested dicts"):
        arrays.tree_to_arrays({"a": [np.ones(1)]})
    assert json.dumps(function_models.FunctionSpec("m:f").to_dict())
