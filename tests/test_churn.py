"""Rival explanations: churn, parameter distances, feature scale and saturation against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkplast import churn, models
from ntkplast.errors import NtkplastError


def _outputs(seed, n=20, k=5):
    return np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)


def test_churn_is_zero_between_identical_checkpoints():
    f = _outputs(0)
    assert float(churn.output_churn(f, f)) == 0.0
    assert float(churn.prediction_churn(f, f)) == 0.0


def test_churn_matches_numpy():
    f0, f1 = _outputs(0), _outputs(1)
    want = np.mean(np.sum((f1.astype(np.float64) - f0) ** 2, axis=1) / f0.shape[1])
    assert float(churn.output_churn(f0, f1)) == pytest.approx(want, rel=1e-6)
    flips = np.mean(np.argmax(f0, 1) != np.argmax(f1, 1))
    assert float(churn.prediction_churn(f0, f1)) == pytest.approx(flips)
    # a shift that keeps every argmax changes the outputs but no prediction
    shifted = f0 + 3.0
    assert float(churn.output_churn(f0, shifted)) == pytest.approx(9.0, rel=1e-5)
    assert float(churn.prediction_churn(f0, shifted)) == 0.0


def test_distances_match_numpy():
    model = models.build(models.ArchSpec(widths=(7, 5), num_outputs=3))
    theta0 = model.init(jax.random.PRNGKey(0), (4,))
    theta = model.init(jax.random.PRNGKey(1), (4,))
    flat = lambda p: np.concatenate([np.asarray(v, np.float64).ravel()  # noqa: E731
                                     for v in jax.tree_util.tree_leaves(p)])
    want = np.linalg.norm(flat(theta) - flat(theta0))
    assert float(churn.param_distance(theta, theta0)) == pytest.approx(want, rel=1e-5)
    assert float(churn.param_distance(theta0, theta0)) == 0.0
    assert float(churn.relative_param_distance(theta, theta0)) == pytest.approx(
        want / np.linalg.norm(flat(theta0)), rel=1e-5)
    for layer in range(3):  # one layer's W and b
        got = churn.param_distance(theta[layer], theta0[layer])
        assert float(got) == pytest.approx(np.linalg.norm(flat(theta[layer])
                                                          - flat(theta0[layer])), rel=1e-5)
    assert float(churn.param_norm(theta0)) == pytest.approx(np.linalg.norm(flat(theta0)),
                                                            rel=1e-5)
    # any pytree: a nested dict
    tree0 = {"a": {"k": jnp.ones((2, 3))}, "b": jnp.zeros(4)}
    tree1 = {"a": {"k": jnp.ones((2, 3)) * 2}, "b": jnp.full(4, 3.0)}
    assert float(churn.param_distance(tree1, tree0)) == pytest.approx(np.sqrt(6 + 36))


def test_relative_distance_from_an_all_zero_start_is_nan():
    assert np.isnan(float(churn.relative_param_distance({"b": jnp.ones(3)},
                                                        {"b": jnp.zeros(3)})))


@pytest.mark.parametrize("shape", [(12, 6), (12, 3, 3, 6)])
def test_feature_norm_and_variance_match_numpy(shape):
    a = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    a64 = a.astype(np.float64)
    norm = np.mean(np.linalg.norm(a64.reshape(shape[0], -1), axis=1))
    var = np.mean(np.var(a64.reshape(-1, shape[-1]), axis=0))
    assert float(churn.feature_norm(a)) == pytest.approx(norm, rel=1e-5)
    assert float(churn.feature_variance(a)) == pytest.approx(var, rel=1e-5)


def test_saturation_on_hand_built_pre_activations():
    """100 inputs × 4 units: unit 0 beyond the tanh threshold (|u| > 2.993) everywhere, unit 1
    on 99 inputs of 100 (saturated: at least 99%), unit 2 on 98 (not), unit 3 never."""
    u = np.zeros((100, 4), np.float32)
    u[:, 0] = np.where(np.arange(100) % 2, 4.0, -4.0)
    u[:, 1] = 3.5
    u[0, 1] = 0.5
    u[:, 2] = -5.0
    u[:2, 2] = 1.0
    u[:, 3] = 2.9  # slope 1 − tanh²(2.9) ≈ 0.012: steep enough
    freq = np.asarray(churn.saturation_frequency(u, "tanh"))
    np.testing.assert_allclose(freq, [1.0, 0.99, 0.98, 0.0], atol=1e-6)
    assert float(churn.saturation_fraction(u, "tanh")) == pytest.approx(0.5)
    assert float(churn.saturation_fraction(u, "tanh", frequency=0.98)) == pytest.approx(0.75)
    assert float(churn.saturation_fraction(u, "tanh", delta=0.02)) == pytest.approx(0.75)


@pytest.mark.parametrize(("activation", "threshold"),
                         [("tanh", 2.9932), ("erf", 2.1460), ("sigmoid", 5.9864)])
def test_saturation_threshold_of_each_activation(activation, threshold):
    u = np.array([[threshold - 0.01, threshold + 0.01, -(threshold + 0.01)]], np.float32)
    assert np.asarray(churn.saturation_frequency(u, activation)).tolist() == [0.0, 1.0, 1.0]
    slope = float(churn.normalized_slope(jnp.zeros(()), activation))
    assert slope == pytest.approx(1.0)


def test_conv_saturation_counts_input_position_pairs():
    u = np.zeros((2, 2, 2, 1), np.float32)
    u[0] = 10.0  # saturated at the 4 positions of input 0 only
    assert float(churn.saturation_frequency(u, "erf")[0]) == pytest.approx(0.5)


def test_unbounded_activation_is_refused():
    with pytest.raises(NtkplastError, match="relu"):
        churn.saturation_fraction(jnp.zeros((2, 2)), "relu")
