"""Curvature: Lanczos top eigenvalues of the Hessian and the GGN against dense float64 matrices,
the sharpness of a quadratic model in closed form, and the top-k ranks by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ntkplast import curvature, models
from ntkplast.adapters.function import FunctionModel
from ntkplast.errors import NtkplastError
from ntkplast.training.step import OBJECTIVES

K = 3


def _tiny(objective, n=20, seed=0):
    """A tanh MLP 3 → 4 → 3 (P = 31 parameters) in float64, its probe set and targets.

    tanh, not ReLU: no rescaling symmetry, so G has no repeated zero eigenvalue and Lanczos with
    m = P steps spans the whole space."""
    model = models.build({"widths": [4], "num_outputs": K, "activation": "tanh", "b_std": 0.5})
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                    model.init(jax.random.PRNGKey(seed), (3,)))
    kx, ky = jax.random.split(jax.random.PRNGKey(seed + 1))
    x = jax.random.normal(kx, (n, 3), jnp.float64)
    y = (jax.random.randint(ky, (n,), 0, K) if objective == "cross_entropy"
         else jax.random.normal(ky, (n, K), jnp.float64))
    return model, params, x, y


def _dense_hessian(model, params, x, y, objective):
    theta, unravel = ravel_pytree(params)
    loss = OBJECTIVES[objective].loss
    return np.asarray(jax.hessian(lambda v: loss(model.apply(unravel(v), x), y))(theta))


def _dense_ggn(model, params, x, objective):
    """Jᵀ H_out J with J by jacfwd and H_out the dense Hessian of the loss in the logits (the
    labels drawn at random: H_out must not depend on them)."""
    theta, unravel = ravel_pytree(params)
    outputs = model.apply(params, x)
    jac = jax.jacfwd(lambda v: model.apply(unravel(v), x))(theta).reshape(outputs.size, -1)
    labels = (jax.random.randint(jax.random.PRNGKey(9), (len(x),), 0, K)
              if objective == "cross_entropy" else jnp.ones_like(outputs))
    h_out = jax.hessian(lambda f: OBJECTIVES[objective].loss(f, labels))(outputs)
    h_out = h_out.reshape(outputs.size, outputs.size)
    return np.asarray(jac.T @ h_out @ jac)


@pytest.mark.parametrize("objective", ["cross_entropy", "mse"])
def test_hessian_top_eigenvalues_match_the_dense_hessian(x64, objective):
    model, params, x, y = _tiny(objective)
    dense = np.linalg.eigvalsh(_dense_hessian(model, params, x, y, objective))[::-1]
    p = dense.size
    assert p == 31
    top = curvature.hessian_top_eigenvalues(model, params, x, y, k=5, key=jax.random.PRNGKey(0),
                                            objective=objective, num_matvecs=p)
    assert top.dtype == jnp.float64
    assert np.all(np.abs(dense[:5]) > 1e-4 * dense[0])  # relative error well defined
    np.testing.assert_allclose(np.asarray(top), dense[:5], rtol=1e-6)


@pytest.mark.parametrize("objective", ["cross_entropy", "mse"])
def test_ggn_top_eigenvalues_match_the_dense_gauss_newton_matrix(x64, objective):
    model, params, x, _ = _tiny(objective)
    ggn = _dense_ggn(model, params, x, objective)
    dense = np.linalg.eigvalsh(ggn)[::-1]
    top = curvature.ggn_top_eigenvalues(model, params, x, k=5, key=jax.random.PRNGKey(1),
                                        objective=objective, num_matvecs=dense.size)
    np.testing.assert_allclose(np.asarray(top), dense[:5], rtol=1e-6)
    assert dense[-1] > -1e-10 * dense[0]                    # G is PSD
    # and it differs from the Hessian away from a minimum (the test can tell them apart)
    _, _, _, y = _tiny(objective)
    hess = np.linalg.eigvalsh(_dense_hessian(model, params, x, y, objective))[::-1]
    assert abs(hess[0] - dense[0]) > 1e-3 * dense[0]


def test_default_lanczos_steps_find_the_sharpness(x64):
    """m = 40 < P products (the default) still give λ_max to 1e-6 on a 155-parameter MLP."""
    model = models.build({"widths": [16, 4], "num_outputs": K, "activation": "tanh"})
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                    model.init(jax.random.PRNGKey(3), (5,)))
    x = jax.random.normal(jax.random.PRNGKey(4), (32, 5), jnp.float64)
    y = jax.random.randint(jax.random.PRNGKey(5), (32,), 0, K)
    dense = np.linalg.eigvalsh(_dense_hessian(model, params, x, y, "cross_entropy"))[::-1]
    assert dense.size > 40
    top = curvature.hessian_top_eigenvalues(model, params, x, y, k=1, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(float(top[0]), dense[0], rtol=1e-6)


def _scaled_linear(params, x):
    return params["stats"]["scale"] * (x @ params["dense"]["W"] + params["dense"]["b"])


def test_sharpness_of_a_quadratic_model_in_closed_form(x64):
    """f = s·(xW + b) with s fixed (not trainable), mse: L is quadratic in θ = (W, b) with
    H = (2 s²/(N·K)) · (X̃ᵀX̃ ⊗ I_K), X̃ = [X, 1]; so λ_max(H) = 2 s² λ_max(X̃ᵀX̃)/(N·K), and
    the GGN equals H."""
    n, d, s = 12, 4, 1.5
    model = FunctionModel(_scaled_linear, trainable="dense")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, d)) * np.array([3.0, 1.0, 0.5, 0.2]))
    y = jnp.asarray(rng.normal(size=(n, K)))
    params = {"dense": {"W": jnp.asarray(rng.normal(size=(d, K))), "b": jnp.zeros(K)},
              "stats": {"scale": jnp.asarray(s)}}
    xt = np.hstack([np.asarray(x), np.ones((n, 1))])
    gram = np.linalg.eigvalsh(xt.T @ xt)[::-1]
    expected = 2 * s ** 2 * gram / (n * K)              # each with multiplicity K
    key = jax.random.PRNGKey(0)
    hess = curvature.hessian_top_eigenvalues(model, params, x, y, k=1, key=key, objective="mse")
    ggn = curvature.ggn_top_eigenvalues(model, params, x, k=1, key=key, objective="mse")
    np.testing.assert_allclose(float(hess[0]), expected[0], rtol=1e-8)
    np.testing.assert_allclose(float(ggn[0]), expected[0], rtol=1e-8)
    # differentiating the fixed scale too would add a direction: only "dense" is trained
    both = FunctionModel(_scaled_linear)
    assert not np.isclose(float(curvature.hessian_top_eigenvalues(
        both, params, x, y, k=1, key=key, objective="mse")[0]), expected[0], rtol=1e-3)


@pytest.mark.parametrize("objective", ["cross_entropy", "mse"])
def test_output_hessian_product_is_the_loss_hessian_in_the_outputs(x64, objective):
    f = jax.random.normal(jax.random.PRNGKey(0), (5, K), jnp.float64)
    u = jax.random.normal(jax.random.PRNGKey(1), (5, K), jnp.float64)
    labels = jnp.array([0, 2, 1, 1, 0]) if objective == "cross_entropy" else -f
    dense = jax.hessian(lambda g: OBJECTIVES[objective].loss(g, labels))(f).reshape(5 * K, -1)
    np.testing.assert_allclose(
        np.asarray(curvature.output_hessian_product(f, u, objective=objective)).reshape(-1),
        np.asarray(dense @ u.reshape(-1)), rtol=1e-12, atol=1e-14)


def test_top_k_ranks_by_hand():
    r = curvature.top_k_ranks([1.0, 1.0, 1.0, 1.0, 0.0])
    assert (r.lambda_max, r.eps_rank, r.k) == (1.0, 4.0, 5)
    assert r.effective_rank == pytest.approx(4.0, rel=1e-12)
    p = np.array([8.0, 4.0, 2.0, 1e-4]) / 14.0001
    r = curvature.top_k_ranks([1e-4, 8.0, 2.0, 4.0, -3.0], eps=1e-3)   # any order, λ⁻ → 0
    assert r.effective_rank == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-12)
    assert (r.lambda_max, r.eps_rank) == (8.0, 3.0)                   # 1e-4 ≤ 1e-3 · 8
    assert curvature.top_k_ranks([-1.0, -2.0])[1:3] == (0.0, 0.0)
    with pytest.raises(NtkplastError, match="at least one"):
        curvature.top_k_ranks([])


def test_unknown_objective_and_probe_loss():
    model = FunctionModel(lambda w, x: x @ w)
    x, w = jnp.ones((2, 2)), jnp.ones((2, 3))
    with pytest.raises(NtkplastError, match="objective"):
        curvature.ggn_top_eigenvalues(model, w, x, k=1, key=jax.random.PRNGKey(0),
                                      objective="hinge")
    y = jnp.array([0, 2])
    expected = OBJECTIVES["cross_entropy"].loss(x @ w, y)
    assert float(curvature.probe_loss(model, w, x, y)) == pytest.approx(float(expected))
