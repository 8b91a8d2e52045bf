"""The curvature and gradient families: rows, raw arrays, layer names, skipped metrics without
labels, and both kinds of model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkplast import analysis, curvature, gradients, models
from ntkplast.adapters import function as function_model
from ntkplast.analysis import rival_families as rf

K = 4
SETTINGS = rf.RivalSettings(seed=3, curvature_k=3, gradient_batches=4)


def _setup(n=24):
    model = models.build({"widths": [8, 6], "num_outputs": K})
    params = model.init(jax.random.PRNGKey(0), (5,))
    x = jax.random.normal(jax.random.PRNGKey(1), (n, 5))
    y = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (n,), 0, K))
    return model, params, x, y


def _metrics(rows):
    return {(layer, metric): value for layer, metric, value in rows}


def test_curvature_rows_and_raw_arrays_are_the_direct_computations():
    model, params, x, y = _setup()
    rows, raw, skipped = rf.curvature_family(model, params, x, y, SETTINGS)
    assert skipped == []
    got = _metrics(rows)
    assert {m for _, m in got} == set(rf.CURVATURE_METRICS)
    assert {layer for layer, _ in got} == {"all"}
    key = jax.random.PRNGKey(3)
    m = rf.RivalSettings.curvature_matvecs  # the family's default number of Lanczos steps
    hess = curvature.hessian_top_eigenvalues(model, params, x, y, k=3,
                                             key=jax.random.fold_in(key, 0), num_matvecs=m)
    ggn = curvature.ggn_top_eigenvalues(model, params, x, k=3, key=jax.random.fold_in(key, 1),
                                        num_matvecs=m)
    np.testing.assert_array_equal(raw["hessian_top_eigenvalues"], np.asarray(hess, np.float64))
    np.testing.assert_array_equal(raw["ggn_top_eigenvalues"], np.asarray(ggn, np.float64))
    assert raw["ggn_top_eigenvalues"].dtype == np.float64
    assert np.all(np.diff(raw["hessian_top_eigenvalues"]) <= 0)
    for prefix, lam in (("hessian", hess), ("ggn", ggn)):
        r = curvature.top_k_ranks(lam)
        assert got[("all", f"{prefix}_lambda_max")] == r.lambda_max == float(lam[0])
        assert got[("all", f"{prefix}_effective_rank")] == r.effective_rank
        assert got[("all", f"{prefix}_eps_rank")] == r.eps_rank


def test_gradient_rows_name_layers_as_the_other_families():
    model, params, x, y = _setup()
    rows, raw, skipped = rf.gradient_family(model, params, x, y, SETTINGS)
    assert (raw, skipped) == ({}, [])
    got = _metrics(rows)
    layers = sorted(layer for layer, m in got if m == "grad_norm")
    assert layers == ["all"] + [f"layer{i}" for i in range(len(params))]
    norms = gradients.gradient_norms(model, params, x, y)
    assert got[("all", "grad_norm")] == pytest.approx(norms.total, rel=1e-6)
    np.testing.assert_allclose([got[(f"layer{i}", "grad_norm")] for i in range(3)],
                               norms.layers, rtol=1e-6)
    grads = gradients.minibatch_gradients(model, params, x, y, num_batches=4)
    assert got[("all", "grad_snr")] == pytest.approx(float(gradients.gradient_snr(grads)))
    assert got[("all", "optimization_readiness")] == pytest.approx(
        float(gradients.optimization_readiness(grads).readiness))
    # more minibatches, smaller ones: a different SNR (the option is read)
    more = _metrics(rf.gradient_family(model, params, x, y,
                                       rf.RivalSettings(gradient_batches=8)).rows)
    assert more[("all", "grad_snr")] != pytest.approx(got[("all", "grad_snr")])


def test_without_labels_hessian_and_gradients_are_skipped_and_named():
    model, params, x, y = _setup()
    unlabeled = np.full_like(y, -1)
    rows, raw, skipped = rf.curvature_family(model, params, x, unlabeled, SETTINGS)
    assert skipped == ["hessian_lambda_max", "hessian_effective_rank", "hessian_eps_rank"]
    assert {m for _, m, _ in rows} == {"ggn_lambda_max", "ggn_effective_rank", "ggn_eps_rank"}
    assert set(raw) == {"ggn_top_eigenvalues"}
    partly = y.copy()
    partly[0] = -1                                         # one missing label: all or nothing
    assert rf.curvature_family(model, params, x, partly, SETTINGS).skipped == skipped
    assert rf.gradient_family(model, params, x, partly, SETTINGS) == (
        [], {}, ["grad_norm", "grad_snr", "optimization_readiness"])


def test_regression_probe_keeps_the_ggn_and_float_targets_give_the_hessian():
    model, params, x, _ = _setup()
    res = rf.curvature_family(model, params, x, np.full(len(x), -1), SETTINGS, objective="mse")
    assert res.skipped == list(rf.HESSIAN_METRICS)
    ce = rf.curvature_family(model, params, x, np.full(len(x), -1), SETTINGS)
    assert res.raw["ggn_top_eigenvalues"][0] != pytest.approx(ce.raw["ggn_top_eigenvalues"][0])
    targets = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (len(x), K)))
    full = rf.curvature_family(model, params, x, targets, SETTINGS, objective="mse")
    assert full.skipped == [] and "hessian_top_eigenvalues" in full.raw
    assert [m for _, m, _ in rf.gradient_family(model, params, x, targets, SETTINGS,
                                                objective="mse").rows].count("grad_norm") == 4


def _apply(params, x):
    h = jax.nn.relu(x @ params["params"]["Dense_0"]["kernel"] + params["params"]["Dense_0"]["bias"])
    return (h * params["batch_stats"]["scale"]) @ params["params"]["Dense_1"]["kernel"]


def test_function_model_with_trainable_entry():
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(jnp.asarray, {
        "params": {"Dense_0": {"kernel": rng.normal(size=(5, 7)) / 2, "bias": np.zeros(7)},
                   "Dense_1": {"kernel": rng.normal(size=(7, K)) / 3}},
        "batch_stats": {"scale": np.full(7, 1.3)}})
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    model = function_model.FunctionModel(_apply, trainable="params")
    x = jnp.asarray(rng.normal(size=(16, 5)), jnp.float32)
    y = rng.integers(0, K, 16)
    settings = analysis.Settings(seed=3)                      # the driver's Settings work too
    curv = rf.curvature_family(model, params, x, y, settings)
    grad = rf.gradient_family(model, params, x, y, settings)
    assert curv.skipped == grad.skipped == []
    assert curv.raw["hessian_top_eigenvalues"].shape == (10,)    # the default k
    names = function_model.layer_names(params, model)
    assert len(names) == 2
    got = _metrics(grad.rows)
    assert sorted(layer for layer, m in got if m == "grad_norm") == ["all", "layer0", "layer1"]
    norms = gradients.gradient_norms(model, params, x, y)
    assert got[("layer1", "grad_norm")] == pytest.approx(float(norms.layers[1]), rel=1e-6)


def test_curvature_uses_the_first_curvature_probe_inputs():
    model, params, x, y = _setup()
    small = rf.RivalSettings(seed=3, curvature_k=3, curvature_probe=10)
    _, raw, _ = rf.curvature_family(model, params, x, y, small)
    _, head, _ = rf.curvature_family(model, params, x[:10], y[:10], SETTINGS)
    _, full, _ = rf.curvature_family(model, params, x, y, SETTINGS)
    np.testing.assert_array_equal(raw["ggn_top_eigenvalues"], head["ggn_top_eigenvalues"])
    assert not np.allclose(raw["ggn_top_eigenvalues"], full["ggn_top_eigenvalues"])
