"""Dormancy: planted dead units, scale invariance, and the rank measures by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkplast import dormancy, models
from ntkplast.errors import NtkplastError


def _setup(spec, input_shape, n=64, seed=0):
    """Gaussian parameters (variance 1/fan_in, biases N(0, b_std²)) drawn by numpy."""
    model = models.build(spec)
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: model.init(k, input_shape), jax.random.PRNGKey(0))
    params = tuple({"W": jnp.asarray(rng.normal(size=p["W"].shape) / math.sqrt(
                        models.fan_in(p["W"])), jnp.float32),
                    "b": jnp.asarray(spec.b_std * rng.normal(size=p["b"].shape), jnp.float32)}
                   for p in shapes)
    return model, params, jnp.asarray(rng.normal(size=(n,) + input_shape), jnp.float32)


def _plant(params, layer, units, value=-1e4):
    p = list(params)
    p[layer] = {**p[layer], "b": p[layer]["b"].at[jnp.asarray(units)].set(value)}
    return tuple(p)


@pytest.mark.parametrize(("spec", "input_shape", "units"), [
    (models.ArchSpec(widths=(10, 8), num_outputs=3), (6,), [2, 7]),
    (models.ArchSpec(kind="cnn", widths=(4,), dense_widths=(5,), num_outputs=3), (6, 6, 2), [1]),
])
def test_planted_dead_units_are_reported_exactly(spec, input_shape, units):
    model, params, x = _setup(spec, input_shape)
    res = dormancy.unit_scores(model, _plant(params, 0, units), x)
    assert [r.layer for r in res] == list(range(len(model.layers) - 1))
    first = res[0]
    d = first.scores.shape[0]
    want = np.zeros(d, bool)
    want[units] = True
    np.testing.assert_array_equal(first.dead_mask, want)
    np.testing.assert_array_equal(first.dead_indices, units)
    assert first.dead_count == len(units) and first.dead_fraction == len(units) / d
    assert first.dormant_fraction.at(0.0) == len(units) / d  # τ = 0: dormant ⇔ dead (ReLU)
    np.testing.assert_array_equal(np.asarray(first.scores)[units], 0.0)
    assert np.all(np.asarray(first.scores)[~want] > 0)
    assert first.frequency_dormant_fraction == len(units) / d
    assert set(first.dormant_fraction.taus) == {0.0, 0.025, 0.1}
    clean = dormancy.unit_scores(model, params, x)[0]
    assert clean.dead_count == 0 and clean.srank >= first.srank



def test_feature_ranks_match_a_float64_svd():
    """Effective rank and srank from the features' Gram equal those of numpy's float64 SVD of
    Φ = a_1(X), dead units (zero columns) included."""
    spec = models.ArchSpec(widths=(16, 8), num_outputs=3, b_std=0.3)
    model, params, x = _setup(spec, (6,), n=40)
    params = _plant(params, 0, [1, 5, 9])
    phi = np.asarray(model.intermediates(params, x)[1][0], np.float64)
    s = np.linalg.svd(phi, compute_uv=False)
    p = s / s.sum()
    got = dormancy.unit_scores(model, params, x)[0]
    np.testing.assert_allclose(got.effective_rank, np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))),
                               rtol=1e-5)
    assert got.srank == int(np.searchsorted(np.cumsum(s), 0.99 * s.sum()) + 1)

def test_scores_are_invariant_to_scaling_the_activations():
    """ReLU is positively homogeneous: scaling layer 0's W and b by c scales a_1 by c."""
    spec = models.ArchSpec(widths=(12, 6), num_outputs=3, b_std=0.3)
    model, params, x = _setup(spec, (5,))
    params = _plant(params, 0, [3], value=-0.4)  # a unit that is dormant but not dead
    c = 3.7
    scaled = ({"W": c * params[0]["W"], "b": c * params[0]["b"]},) + params[1:]
    a, b = dormancy.unit_scores(model, params, x)[0], dormancy.unit_scores(model, scaled, x)[0]
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    assert a.dormant_fraction == b.dormant_fraction
    np.testing.assert_allclose(a.effective_rank, b.effective_rank, rtol=1e-5)
    assert a.srank == b.srank


def test_scores_by_hand():
    acts = jnp.array([[1.0, 0.0, -2.0], [3.0, 0.0, 2.0]])
    # E|a| = (2, 0, 2), layer mean 4/3 → scores (1.5, 0, 1.5)
    np.testing.assert_allclose(dormancy.dormancy_scores(acts), [1.5, 0.0, 1.5], rtol=1e-6)
    np.testing.assert_array_equal(dormancy.dead_units(acts), [False, True, False])
    np.testing.assert_array_equal(dormancy.dormancy_scores(jnp.zeros((4, 3))), 0.0)
    conv = jnp.stack([jnp.ones((2, 3, 3)), jnp.zeros((2, 3, 3))], axis=-1).at[0, 0, 0, 1].set(9.0)
    # channel 1: mean |a| over 2 inputs × 9 positions = 9/18 = 0.5; channel 0: 1 → mean 0.75
    np.testing.assert_allclose(dormancy.dormancy_scores(conv), [1 / 0.75, 0.5 / 0.75], rtol=1e-6)
    np.testing.assert_allclose(dormancy.active_frequency(conv), [1.0, 1 / 18], rtol=1e-6)
    np.testing.assert_allclose(dormancy.feature_matrix(conv), [[1.0, 1.0], [1.0, 0.0]])


def test_frequency_rule_of_dohare_et_al():
    """Active on 1 of 200 inputs (0.5%) is frequency-dormant; 2 of 200 (1%) is not."""
    acts = np.zeros((200, 3))
    acts[0, 0] = 5.0
    acts[:2, 1] = 0.1
    acts[:, 2] = 1.0
    freq = dormancy.active_frequency(jnp.asarray(acts))
    np.testing.assert_allclose(freq, [0.005, 0.01, 1.0])
    np.testing.assert_array_equal(freq < 0.01, [True, False, False])


@pytest.mark.parametrize("r", [1, 3, 5])
def test_effective_rank_of_r_equal_singular_values_is_r(r):
    rng = np.random.default_rng(r)
    u, _ = np.linalg.qr(rng.normal(size=(40, 8)))
    v, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    phi = 2.5 * u[:, :r] @ v[:, :r].T  # a 40 × 8 feature matrix with r singular values 2.5
    s = np.linalg.svd(phi, compute_uv=False)
    np.testing.assert_allclose(dormancy.effective_rank(s), r, rtol=1e-6)
    assert int(dormancy.srank(s)) == r
    zero = np.zeros(4)
    assert float(dormancy.effective_rank(zero)) == 0 and int(dormancy.srank(zero)) == 0


def test_srank_by_hand():
    s = jnp.array([1.0, 10.0, 0.01, 5.0])  # order does not matter
    # Σσ = 16.01. δ = 0.01: need ≥ 15.8499; cumulative 10, 15, 16 → k = 3.
    assert int(dormancy.srank(s, 0.01)) == 3
    # δ = 0.1: need ≥ 14.409; cumulative 10, 15 → k = 2.  δ = 0: all 4.
    assert int(dormancy.srank(s, 0.1)) == 2 and int(dormancy.srank(s, 0.0)) == 4
    # effective rank: p = σ/16.01, exp(−Σ p log p)
    p = np.array([10, 5, 1, 0.01]) / 16.01
    np.testing.assert_allclose(dormancy.effective_rank(s), math.exp(-np.sum(p * np.log(p))),
                               rtol=1e-6)


def test_bad_input_names_the_argument():
    spec = models.ArchSpec(widths=(6,), num_outputs=3)
    model, params, x = _setup(spec, (4,), n=5)
    with pytest.raises(NtkplastError, match="x: the probe set is empty"):
        dormancy.unit_scores(model, params, x[:0])
    with pytest.raises(NtkplastError, match="x: contains NaN or Inf"):
        dormancy.unit_scores(model, params, x.at[2, 0].set(jnp.inf))
    with pytest.raises(NtkplastError, match=r"params\[0\]: expected keys"):
        dormancy.unit_scores(model, ({"W": params[0]["W"]}, params[1]), x)
    with pytest.raises(NtkplastError, match="taus"):
        dormancy.unit_scores(model, params, x, taus=(-0.1,))
    with pytest.raises(NtkplastError, match="srank_delta"):
        dormancy.unit_scores(model, params, x, srank_delta=1.0)
    with pytest.raises(NtkplastError, match="frequency_threshold"):
        dormancy.unit_scores(model, params, x, frequency_threshold="often")
