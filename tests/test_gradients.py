"""Gradients: norms against jax.grad, SNR and readiness against per-minibatch gradients taken by
hand, readiness at a convex minimum, the descent-lemma bound, and one vmapped trace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ntkplast import gradients, models
from ntkplast.adapters import function as function_model
from ntkplast.errors import NtkplastError
from ntkplast.training.step import OBJECTIVES

K = 3


def _mlp(n=24, seed=0):
    model = models.build({"widths": [6, 5], "num_outputs": K, "b_std": 0.3})
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                    model.init(jax.random.PRNGKey(seed), (4,)))
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (n, 4), jnp.float64)
    y = jax.random.randint(jax.random.PRNGKey(seed + 2), (n,), 0, K)
    return model, params, x, y


def _grad(model, params, x, y, objective="cross_entropy"):
    return jax.grad(lambda p: OBJECTIVES[objective].loss(model.apply(p, x), y))(params)


def test_gradient_norms_equal_jax_grad(x64):
    model, params, x, y = _mlp()
    g = _grad(model, params, x, y)
    per_layer = [np.sqrt(sum(np.sum(np.asarray(v) ** 2) for v in layer.values())) for layer in g]
    got = gradients.gradient_norms(model, params, x, y)
    assert len(got.layers) == len(params) == 3
    np.testing.assert_allclose(got.layers, per_layer, rtol=1e-12)
    np.testing.assert_allclose(got.total, np.linalg.norm(ravel_pytree(g)[0]), rtol=1e-12)


def _bn_apply(params, x):
    h = jnp.tanh(x @ params["params"]["Dense_0"]["kernel"] + params["params"]["Dense_0"]["bias"])
    h = (h - params["batch_stats"]["mean"]) * params["params"]["BatchNorm_0"]["scale"]
    return h @ params["params"]["Dense_1"]["kernel"]


def test_function_model_layers_follow_layer_names_and_train_only_the_trainable(x64):
    rng = np.random.default_rng(0)
    params = {"params": {"Dense_0": {"kernel": rng.normal(size=(4, 5)), "bias": np.zeros(5)},
                         "BatchNorm_0": {"scale": np.ones(5)},
                         "Dense_1": {"kernel": rng.normal(size=(5, K))}},
              "batch_stats": {"mean": 0.1 * np.ones(5)}}
    params = jax.tree_util.tree_map(jnp.asarray, params)
    model = function_model.FunctionModel(_bn_apply, trainable="params")
    x = jnp.asarray(rng.normal(size=(16, 4)))
    y = jnp.asarray(rng.integers(0, K, 16))
    g = _grad(model, params, x, y)["params"]
    names = function_model.layer_names(params, model)
    assert names == ["BatchNorm_0", "Dense_0", "Dense_1"]
    expected = [np.sqrt(sum(np.sum(np.asarray(v) ** 2) for v in g[name].values()))
                for name in names]
    got = gradients.gradient_norms(model, params, x, y)
    np.testing.assert_allclose(got.layers, expected, rtol=1e-12)
    grads = gradients.minibatch_gradients(model, params, x, y, num_batches=4)
    assert grads.shape == (4, ravel_pytree(params["params"])[0].size)   # batch_stats not trained


@pytest.mark.parametrize("n", [24, 27])      # 27: the last 3 examples left out of the batches
def test_snr_and_readiness_equal_a_hand_computation(x64, n):
    model, params, x, y = _mlp(n=n)
    m, size = 4, n // 4
    batches = [np.arange(b, size * m, m) for b in range(m)]     # strided: b, b + m, …
    by_hand = np.stack([np.asarray(ravel_pytree(_grad(model, params, x[i], y[i]))[0])
                        for i in batches])
    grads = gradients.minibatch_gradients(model, params, x, y, num_batches=m)
    np.testing.assert_allclose(np.asarray(grads), by_hand, rtol=1e-10, atol=1e-14)
    mean = by_hand.mean(axis=0)
    strength = mean @ mean
    noise = np.mean(np.sum((by_hand - mean) ** 2, axis=1))
    second = np.mean(np.sum(by_hand ** 2, axis=1))
    assert float(gradients.gradient_snr(grads)) == pytest.approx(strength / noise, rel=1e-10)
    r = gradients.optimization_readiness(grads)
    assert float(r.strength) == pytest.approx(strength, rel=1e-10)
    assert float(r.reliability) == pytest.approx(strength / second, rel=1e-10)
    assert float(r.readiness) == pytest.approx(strength ** 2 / second, rel=1e-10)
    snr = strength / noise
    assert float(r.reliability) == pytest.approx(snr / (1 + snr), rel=1e-10)
    if n % m == 0:   # ḡ is then the full-probe gradient
        full = np.asarray(ravel_pytree(_grad(model, params, x, y))[0])
        np.testing.assert_allclose(mean, full, rtol=1e-10, atol=1e-14)


def _linear_problem(n=32, d=3):
    model = models.build({"widths": [], "num_outputs": K})
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(n, d)))
    y = jnp.asarray(x @ rng.normal(size=(d, K)) + 0.5 * rng.normal(size=(n, K)))
    return model, x, y


def test_readiness_is_zero_at_the_minimum_of_a_convex_model(x64):
    """Linear least squares (mse): at the least-squares solution ḡ = 0, so S = ρ = R = 0."""
    model, x, y = _linear_problem()
    xt = np.hstack([np.asarray(x), np.ones((len(x), 1))])
    sol = np.linalg.lstsq(xt, np.asarray(y), rcond=None)[0]
    best = ({"W": jnp.asarray(sol[:-1]), "b": jnp.asarray(sol[-1])},)
    r = gradients.optimization_readiness(
        gradients.minibatch_gradients(model, best, x, y, num_batches=4, objective="mse"))
    assert float(r.readiness) < 1e-24 and float(r.reliability) < 1e-12
    away = ({"W": best[0]["W"] + 0.1, "b": best[0]["b"]},)
    r_away = gradients.optimization_readiness(
        gradients.minibatch_gradients(model, away, x, y, num_batches=4, objective="mse"))
    assert float(r_away.readiness) > 1e-4
    assert gradients.gradient_norms(model, best, x, y, objective="mse").total < 1e-12


def test_readiness_bounds_the_best_expected_one_step_gain(x64):
    """For a quadratic loss (L = λ_max(H)): with η* = ‖ḡ‖²/(L E‖g_b‖²),
    L(θ) − E_b L(θ − η* g_b) ≥ R/(2L) (the descent lemma the docstring states)."""
    model, x, y = _linear_problem()
    params = ({"W": jnp.zeros((3, K)), "b": jnp.zeros(K)},)
    m = 4
    grads = np.asarray(gradients.minibatch_gradients(model, params, x, y, num_batches=m,
                                                     objective="mse"))
    r = gradients.optimization_readiness(grads)
    theta, unravel = ravel_pytree(params)

    def loss(v):
        return OBJECTIVES["mse"].loss(model.apply(unravel(v), x), y)

    smooth = float(np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(theta)))[-1])
    eta = float(r.strength) / (smooth * np.mean(np.sum(grads ** 2, axis=1)))
    gain = float(loss(theta)) - np.mean([float(loss(theta - eta * g)) for g in grads])
    assert gain >= float(r.readiness) / (2 * smooth) * (1 - 1e-10) > 0


def test_minibatch_gradients_are_one_vmapped_trace():
    """The model is traced once for all m minibatches (a Python loop would trace it m times)."""
    calls = []

    def apply(w, x):
        calls.append(x.shape)
        return x @ w

    model = function_model.FunctionModel(apply)
    x = jnp.ones((32, 2))
    grads = gradients.minibatch_gradients(model, jnp.ones((2, K)), x, jnp.zeros(32, jnp.int32),
                                          num_batches=8)
    assert grads.shape == (8, 2 * K)
    assert calls == [(4, 2)]           # one trace, of one minibatch's shape, under vmap


def test_num_batches_checked_and_zero_gradients():
    model = function_model.FunctionModel(lambda w, x: x @ w)
    with pytest.raises(NtkplastError, match="num_batches"):
        gradients.minibatch_gradients(model, jnp.ones((2, K)), jnp.ones((4, 2)),
                                      jnp.zeros(4, jnp.int32), num_batches=1)
    r = gradients.optimization_readiness(jnp.zeros((3, 5)))
    assert (float(r.strength), float(r.reliability), float(r.readiness)) == (0.0, 0.0, 0.0)
