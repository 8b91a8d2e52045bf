"""Interventions: each moves what its docstring says and keeps the rest (independent checks:
float64 brute-force NTKs, numpy SVDs, explicit masks)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from brute_force import brute_force_parts

from ntkplast import dormancy, models
from ntkplast.branches import apply_intervention, interventions_of, parse_intervention
from ntkplast.errors import NtkplastError


def _setup(widths=(16, 12), **spec):
    model = models.build({"widths": list(widths), "num_outputs": 3, "b_std": 0.1, **spec})
    params = model.init(jax.random.PRNGKey(0), (5,))
    x = jax.random.normal(jax.random.PRNGKey(1), (40, 5))
    tx = optax.adam(1e-3)
    state = tx.init(params)
    grads = jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2))(params)
    _, state = tx.update(grads, state, params)  # moments that are not all zero
    return model, params, state, x


def _ntk64(model, params, x):
    """The NTK by float64 brute force (run under the ``x64`` fixture)."""
    params64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
    parts = brute_force_parts(model, params64, jnp.asarray(x, jnp.float64))
    n, k = x.shape[0], model.spec.num_outputs
    return sum(parts).transpose(0, 2, 1, 3).reshape(n * k, n * k)


@pytest.mark.parametrize("c", [2.0, 0.3])
def test_scale_output_multiplies_the_ntk_by_c_squared_and_keeps_the_rest(c, x64):
    model, params, state, x = _setup()
    out = apply_intervention(f"scale_output:{c}", model, params, state, x,
                             key=jax.random.PRNGKey(2))
    assert out.params is params and out.opt_state is state
    np.testing.assert_allclose(out.model.apply(params, x), c * model.apply(params, x),
                               rtol=1e-6, atol=1e-6)
    before, after = _ntk64(model, params, x[:6]), _ntk64(out.model, params, x[:6])
    np.testing.assert_allclose(np.trace(after) / np.trace(before), c * c, rtol=1e-5)
    ev_b, ev_a = np.linalg.eigvalsh(before), np.linalg.eigvalsh(after)
    np.testing.assert_allclose(ev_a[-1] / ev_a[0], ev_b[-1] / ev_b[0], rtol=1e-5)
    acts_b = model.intermediates(params, x)[1]
    acts_a = out.model.intermediates(params, x)[1]
    for a, b in zip(acts_a, acts_b, strict=True):
        np.testing.assert_array_equal(a, b)


def test_orthogonalize_gives_unit_scaled_singular_values():
    model, params, state, x = _setup(widths=(16, 12))
    out = apply_intervention("orthogonalize", model, params, state, x, key=jax.random.PRNGKey(2))
    for before, after in zip(params, out.params, strict=True):
        w = np.asarray(after["W"], np.float64)
        d_in, d_out = w.shape
        sv = np.linalg.svd(w, compute_uv=False)
        np.testing.assert_allclose(sv, np.sqrt(d_out / d_in), rtol=1e-5)
        np.testing.assert_array_equal(after["b"], before["b"])
    half = apply_intervention("orthogonalize:0.5", model, params, state, x,
                              key=jax.random.PRNGKey(2))
    w0, w1 = params[0]["W"], out.params[0]["W"]
    np.testing.assert_allclose(half.params[0]["W"], 0.5 * w0 + 0.5 * w1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_equalize_makes_singular_values_equal_at_fixed_frobenius_norm(parameterization):
    model, params, state, x = _setup(widths=(16, 12), parameterization=parameterization)
    out = apply_intervention("equalize", model, params, state, x, key=jax.random.PRNGKey(2))
    for before, after in zip(params, out.params, strict=True):
        w0, w1 = np.asarray(before["W"], np.float64), np.asarray(after["W"], np.float64)
        sv = np.linalg.svd(w1, compute_uv=False)
        np.testing.assert_allclose(sv, np.linalg.norm(w0) / np.sqrt(min(w0.shape)), rtol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(w1), np.linalg.norm(w0), rtol=1e-5)
        u, _, vt = np.linalg.svd(w0, full_matrices=False)  # the same singular vectors
        np.testing.assert_allclose(w1, sv[0] * u @ vt, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(after["b"], before["b"])
    assert out.opt_state is state


def test_orthogonalize_honours_the_ntk_parameterization_multipliers():
    model, params, state, x = _setup(parameterization="ntk")
    out = apply_intervention("orthogonalize", model, params, state, x, key=jax.random.PRNGKey(2))
    for layer, p in zip(model.layers, out.params, strict=True):
        m_w = models.multipliers(model, layer, p["W"])[0]
        w = np.asarray(m_w * p["W"], np.float64)
        np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False),
                                   np.sqrt(w.shape[1] / w.shape[0]), rtol=1e-5)


def test_reset_dead_revives_exactly_the_dead_units_and_keeps_every_other_weight():
    model, params, state, x = _setup()
    dead = [np.array([1, 5, 9]), np.array([0, 4])]
    planted = [dict(p) for p in params]
    for layer, units in enumerate(dead):  # a bias far below any pre-activation: never active
        planted[layer]["b"] = planted[layer]["b"].at[units].set(-1e3)
    planted = tuple(planted)
    acts = model.intermediates(planted, x)[1]
    masks = [np.asarray(dormancy.dead_units(a)) for a in acts]
    assert all(np.all(m[u]) for m, u in zip(masks, dead, strict=True))  # (and any dead before)
    out = apply_intervention("reset_dead", model, planted, state, x, key=jax.random.PRNGKey(3))
    assert out.record["units_reset"] == [int(m.sum()) for m in masks]
    after = model.intermediates(out.params, x)[1]
    for a, m in zip(after, masks, strict=True):
        assert not np.any(np.asarray(dormancy.dead_units(a))[m])  # none of the reset is dead
    np.testing.assert_allclose(model.apply(out.params, x), model.apply(planted, x),
                               rtol=1e-5, atol=1e-5)  # the reset units reach nothing yet
    for layer, (old, new) in enumerate(zip(planted, out.params, strict=True)):
        cols = masks[layer] if layer < len(masks) else np.zeros(old["W"].shape[1], bool)
        rows = masks[layer - 1] if layer > 0 else np.zeros(old["W"].shape[0], bool)
        keep = ~cols[None, :] & ~rows[:, None]
        np.testing.assert_array_equal(np.asarray(new["W"])[keep], np.asarray(old["W"])[keep])
        np.testing.assert_array_equal(np.asarray(new["b"])[~cols], np.asarray(old["b"])[~cols])
        assert np.all(np.asarray(new["W"])[rows] == 0)
        mu_old, mu_new = state[0].mu[layer]["W"], out.opt_state[0].mu[layer]["W"]
        np.testing.assert_array_equal(np.asarray(mu_new)[keep], np.asarray(mu_old)[keep])
        assert np.all(np.asarray(mu_new)[~keep] == 0)


@pytest.mark.parametrize("name", ["orthogonalize", "equalize"])
def test_weight_moves_refuse_orthogonally_constrained_layers(name):
    model, params, state, x = _setup(widths=(8,), weight_constraint="orthogonal")
    with pytest.raises(NtkplastError, match=f"{name}: the model's weights are already"):
        apply_intervention(name, model, params, state, x, key=jax.random.PRNGKey(0))


def test_reset_dead_refuses_residual_networks():
    model, params, state, x = _setup(widths=(8, 8), residual=True)
    with pytest.raises(NtkplastError, match="reset_dead"):
        apply_intervention("reset_dead", model, params, state, x, key=jax.random.PRNGKey(0))


@pytest.mark.parametrize(("text", "label"), [
    ("none", "none"), ("scale_output:2", "scale_output:2"), ("orthogonalize", "orthogonalize:1"),
    ("orthogonalize:0.25", "orthogonalize:0.25"), ("reset_dead", "reset_dead:0"),
    ("equalize", "equalize:1"),
    (" reset_dead:0.1", "reset_dead:0.1")])
def test_parse_fills_defaults(text, label):
    assert parse_intervention(text).label == label


@pytest.mark.parametrize(("text", "match"), [
    ("scale_output", "scale_output:c"), ("scale_output:0", "c > 0"),
    ("scale_output:nan", "finite"), ("orthogonalize:2", r"\[0, 1\]"),
    ("reset_dead:x", "numbers"), ("none:1", "expected none"), ("grow", "unknown name"),
    ("reset_dead:1", r"\[0, 1\)")])
def test_parse_refuses_bad_text(text, match):
    with pytest.raises(NtkplastError, match=match):
        parse_intervention(text)


def test_the_control_comes_first_once():
    labels = [iv.label for iv in interventions_of(["reset_dead", "none", "reset_dead:0",
                                                   "scale_output:2"])]
    assert labels == ["none", "reset_dead:0", "scale_output:2"]
