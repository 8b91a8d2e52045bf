"""Reactivation (issue 5, experiment 3): planting, counting and the arms, against numpy."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntkplast import dormancy, models, regularizers, training
from ntkplast.errors import NtkplastError
from ntkplast.experiments import reactivation

ROOT = Path(__file__).resolve().parents[2]


def _numpy_post(params, x):
    """Hidden post-activations of a standard-parameterization ReLU MLP, in float64 numpy."""
    a = np.asarray(x, np.float64).reshape(len(x), -1)
    post = []
    for p in params[:-1]:
        a = np.maximum(a @ np.asarray(p["W"], np.float64) + np.asarray(p["b"], np.float64), 0)
        post.append(a)
    return post


def _mlp(widths=(12, 10), d_in=6, seed=0):
    model = models.build(models.ArchSpec(widths=widths, num_outputs=3))
    params = model.init(jax.random.PRNGKey(seed), (d_in,))
    x = jax.random.uniform(jax.random.PRNGKey(seed + 1), (40, d_in))  # ≥ 0, for how="sign"
    return model, params, x


@pytest.mark.parametrize("how", ["bias", "sign"])
@pytest.mark.parametrize("fraction", [0.25, 0.5, 1.0])
def test_planted_units_are_dead_and_others_untouched(how, fraction):
    model, params, x = _mlp()
    new, masks = reactivation.plant_dead_units(model, params, x, fraction, how=how,
                                               key=jax.random.PRNGKey(3))
    post = _numpy_post(new, x)
    for layer, (m, a) in enumerate(zip(masks, post)):
        assert m.sum() == round(fraction * m.size)
        assert np.all(np.asarray(dormancy.dead_units(a))[m]), layer
        # planted units: pre-activation ≤ -margin on every input, so exactly zero output
        assert np.all(a[:, m] == 0)
        # parameters of the other units are bit-identical
        for name in ("W", "b"):
            old, got = np.asarray(params[layer][name]), np.asarray(new[layer][name])
            np.testing.assert_array_equal(got[..., ~m], old[..., ~m])
    np.testing.assert_array_equal(np.asarray(new[-1]["W"]), np.asarray(params[-1]["W"]))


def test_plant_rejects_what_it_cannot_do():
    model, params, x = _mlp()
    with pytest.raises(NtkplastError, match="nonnegative"):
        reactivation.plant_dead_units(model, params, x - 0.5, 0.5, how="sign",
                                      key=jax.random.PRNGKey(0))
    cnn = models.build(models.ArchSpec(kind="cnn", widths=(4,)))
    with pytest.raises(NtkplastError, match="mlp"):
        reactivation.plant_dead_units(cnn, None, x, 0.5, key=jax.random.PRNGKey(0))
    tanh = models.build(models.ArchSpec(widths=(4,), activation="tanh"))
    with pytest.raises(NtkplastError, match="ReLU"):
        reactivation.plant_dead_units(tanh, None, x, 0.5, key=jax.random.PRNGKey(0))
    with pytest.raises(NtkplastError, match="fraction"):
        reactivation.plant_dead_units(model, params, x, 1.5, key=jax.random.PRNGKey(0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_revived_fraction_matches_numpy_count(seed):
    model, params, x = _mlp(seed=seed)
    # shift biases so that a good share of units is dead on some inputs and alive on others
    params = tuple({**p, "b": p["b"] - 0.6} for p in params)
    rng = np.random.default_rng(seed)
    masks = [rng.random(w) < 0.5 for w in (12, 10)]
    got = reactivation.revived_fraction(model, params, x, masks)
    fires = [np.any(a != 0, axis=0) for a in _numpy_post(params, x)]
    hits = [np.sum(m & f) for m, f in zip(masks, fires)]
    np.testing.assert_allclose(got.layers, [h / m.sum() for h, m in zip(hits, masks)])
    assert got.overall == pytest.approx(sum(hits) / sum(m.sum() for m in masks))
    none = reactivation.revived_fraction(model, params, x,
                                         [np.zeros(12, bool), np.zeros(10, bool)])
    assert np.isnan(none.overall) and all(np.isnan(v) for v in none.layers)


def test_isometry_arm_is_exactly_the_isometry_gradient_step():
    model, params, x = _mlp()
    y = jnp.zeros(len(x), jnp.int32)
    lr, lam = 0.01, 0.3
    tx, hooks = reactivation.make_arm("isometry_step", model, (6,), learning_rate=lr,
                                      iso_lam=lam)
    trainer = training.make_trainer(model, tx, hooks, key=jax.random.PRNGKey(0))
    state = training.TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32))
    state, _ = trainer.run_chunk(state, x, y, jnp.arange(8)[None])
    for i, (old, new) in enumerate(zip(params, state.params)):
        w = np.asarray(old["W"], np.float64)
        if i < len(params) - 1:  # hidden: W − η·λ·∇R(W) with s = 2 (ReLU)
            g = np.asarray(regularizers.isometry_loss_grad(old["W"], 2.0), np.float64)
            np.testing.assert_allclose(new["W"], w - lr * lam * g, rtol=1e-5, atol=1e-7)
            assert np.abs(g).max() > 0
        else:  # the readout has no isometry gradient and no task gradient reaches it
            np.testing.assert_array_equal(new["W"], old["W"])
        np.testing.assert_array_equal(new["b"], old["b"])


def _tiny_dead_case():
    """One hidden layer of 2 units on inputs x ≥ 0; unit 1 (w_1 = (−0.1, −0.1), b = 0) is dead.

    With s = 1 and w_0 = (2, 0), ∇R's column 1 is 2[w_1(‖w_1‖² − 1) + w_0(w_0ᵀw_1)]
    = (−0.604, 0.196), so one step with η·λ = 0.5 gives w_1 = (0.202, −0.198): positive on
    x = (1, 0), the unit fires again. Its task gradient is zero (φ' = 0 on every input).
    """
    model = models.build(models.ArchSpec(widths=(2,), num_outputs=2))
    params = ({"W": jnp.array([[2.0, -0.1], [0.0, -0.1]]), "b": jnp.zeros(2)},
              {"W": jnp.array([[1.0, -1.0], [0.5, 0.3]]), "b": jnp.zeros(2)})
    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.2]])
    y = jnp.array([0, 1, 1, 0])
    return model, params, x, y, [np.array([False, True])]


def test_sgd_cannot_revive_a_dead_unit_but_the_isometry_step_can():
    model, params, x, y, masks = _tiny_dead_case()
    assert reactivation.revived_fraction(model, params, x, masks).overall == 0.0
    key = jax.random.PRNGKey(0)
    # plain SGD: the dead unit's weights get exactly zero gradient, however long it trains
    sgd = optax.sgd(0.5)
    curve = reactivation.reactivation_curve(model, params, dead_masks=masks, tx=sgd,
                                            hooks=training.Hooks(), x=x, y=y, probe_x=x,
                                            steps=40, every=10, batch_size=4, key=key)
    np.testing.assert_array_equal(curve, np.zeros(5))
    # the isometry step alone, with the independent numpy step
    tx, hooks = reactivation.make_arm("isometry_step", model, (2,), learning_rate=0.5,
                                      iso_lam=1.0, scale=1.0)
    curve = reactivation.reactivation_curve(model, params, dead_masks=masks, tx=tx,
                                            hooks=hooks, x=x, y=y, probe_x=x, steps=1, every=1,
                                            batch_size=4, key=key)
    np.testing.assert_array_equal(curve, [0.0, 1.0])
    w = np.array([[2.0, -0.1], [0.0, -0.1]])
    w1 = w[:, 1] - 0.5 * 2 * (w[:, 1] * (w[:, 1] @ w[:, 1] - 1) + w[:, 0] * (w[:, 0] @ w[:, 1]))
    np.testing.assert_allclose(w1, [0.202, -0.198], atol=1e-12)
    assert np.max(np.asarray(x) @ w1) > 0


def test_sgd_leaves_the_dead_unit_bit_identical():
    model, params, x, y, _ = _tiny_dead_case()
    trainer = training.make_trainer(model, optax.sgd(0.5), training.Hooks(),
                                    key=jax.random.PRNGKey(0))
    state = training.TrainState(params, optax.sgd(0.5).init(params), jnp.asarray(0, jnp.int32))
    state, _ = trainer.run_chunk(state, x, y, jnp.tile(jnp.arange(4), (20, 1)))
    np.testing.assert_array_equal(state.params[0]["W"][:, 1], params[0]["W"][:, 1])
    np.testing.assert_array_equal(state.params[0]["b"][1], params[0]["b"][1])
    np.testing.assert_array_equal(state.params[1]["W"][1], params[1]["W"][1])
    assert not np.array_equal(state.params[0]["W"][:, 0], params[0]["W"][:, 0])


@pytest.mark.parametrize("arm", list(reactivation.ARMS))
def test_every_arm_runs_and_returns_fractions(arm):
    model, params, x = _mlp()
    y = jnp.arange(len(x)) % 3
    params, masks = reactivation.plant_dead_units(model, params, x, 0.5,
                                                  key=jax.random.PRNGKey(1))
    tx, hooks = reactivation.make_arm(arm, model, (6,), redo_every=5)
    run = dict(dead_masks=masks, tx=tx, hooks=hooks, x=x, y=y, probe_x=x, steps=10,
               key=jax.random.PRNGKey(2))
    curve = reactivation.reactivation_curve(model, params, every=5, batch_size=8,
                                            per_layer=True, **run)
    assert curve.shape == (3, 3)
    assert np.all(curve[0] == 0) and np.all((curve >= 0) & (curve <= 1))
    if arm == "redo":  # every planted unit is τ-dormant at step 5 and re-drawn
        assert curve[-1, -1] > 0.5
    with pytest.raises(NtkplastError, match="every"):
        reactivation.reactivation_curve(model, params, every=3, **run)


def test_figure_draws_one_line_per_method():
    from ntkplast.figures.reactivation import reactivation_curves

    steps = np.arange(0, 30, 10)
    fig = reactivation_curves({"a": np.zeros((2, 3)), "b": np.ones((3, 3))}, steps, title="t")
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_title() == "t"
    with pytest.raises(NtkplastError, match="seeds"):
        reactivation_curves({"a": np.zeros((2, 4))}, steps)


@pytest.mark.slow
def test_analysis_script_quick_at_tiny_size(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "analyses" / "reactivation.py"), "--quick", "--seeds", "1",
         "--width", "8", "--steps", "10", "--every", "5", "--baseline-tasks", "2",
         "--baseline-steps", "10", "--out", "r"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "isometry step alone" in proc.stdout or "nothing to revive" in proc.stdout
    assert (tmp_path / "r" / "reactivation.png").exists()
    rows = (tmp_path / "r" / "summary.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * len(reactivation.ARMS)
