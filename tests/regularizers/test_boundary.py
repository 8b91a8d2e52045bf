"""Task-boundary interventions (FIRE, plasticity injection, head reset) and normalize-and-project,
each against a hand-computed step or an SVD/explicit reference, their refusals, and a tiny run
of each on the demo stream."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trees import assert_trees_equal

from ntkplast import models, training
from ntkplast import regularizers as reg
from ntkplast.errors import NtkplastError
from ntkplast.experiments import demo
from ntkplast.regularizers import boundary, projection


def _model(widths=(8, 8), d_in=6, **kw):
    model = models.build(models.ArchSpec(widths=widths, num_outputs=3, **kw))
    return model, model.init(jax.random.PRNGKey(0), (d_in,))


def _adam_state(params, n=3, seed=0):
    """Adam's state after ``n`` random-gradient steps (non-zero μ and ν everywhere)."""
    rng = np.random.default_rng(seed)
    tx = optax.adam(1e-2)
    state = tx.init(params)
    for _ in range(n):
        g = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.standard_normal(p.shape), p.dtype),
                                   params)
        _, state = tx.update(g, state, params)
    return tx, state


def _svd_polar(w):
    u, _, vt = np.linalg.svd(np.asarray(w, np.float64), full_matrices=False)
    return u @ vt


def test_doctests_of_the_new_modules():
    for module in (boundary, projection, models.layers):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__


# --- FIRE ---------------------------------------------------------------------------------------

def test_fire_hand_computed_step():
    """W = [[2, 0], [0, 1], [0, 0], [0, 0]]: polar(W) = the first two columns of I₄, scale
    √(2/4); at α = ½ the step is ½W + ½·√½·polar(W)."""
    w = jnp.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    params = ({"W": w, "b": jnp.array([0.5, -1.0])},)
    new = reg.fire(params, alpha=0.5)
    r = np.sqrt(0.5)
    want = [[1.0 + 0.5 * r, 0.0], [0.0, 0.5 + 0.5 * r], [0.0, 0.0], [0.0, 0.0]]
    np.testing.assert_allclose(new[0]["W"], want, atol=1e-6)
    np.testing.assert_array_equal(new[0]["b"], params[0]["b"])


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (6, 6), (64, 64), (3, 3, 4, 5),
                                   (3, 3, 2, 30)])
def test_fire_at_alpha_one_is_the_scaled_polar_factor(shape):
    """float32, default steps: WᵀW = (d_out/d_in)·I (d_in ≥ d_out) or WWᵀ = (d_out/d_in)·I
    (d_in < d_out) to 1e-5, and the SVD polar factor U Vᵀ times √(d_out/d_in)."""
    rng = np.random.default_rng(sum(shape))
    d_in, d_out = int(np.prod(shape[:-1])), shape[-1]
    w = jnp.asarray(rng.standard_normal(shape) * np.sqrt(2 / d_in), jnp.float32)
    out = jax.jit(reg.fire)(({"W": w},))[0]["W"]
    assert out.shape == w.shape and out.dtype == jnp.float32
    m = np.asarray(out, np.float64).reshape(d_in, d_out)
    gram = m.T @ m if d_in >= d_out else m @ m.T
    np.testing.assert_allclose(gram, d_out / d_in * np.eye(min(d_in, d_out)), atol=1e-5)
    ref = np.sqrt(d_out / d_in) * _svd_polar(np.asarray(w).reshape(d_in, d_out))
    np.testing.assert_allclose(m, ref, atol=1e-4)


def test_fire_interpolates_and_alpha_zero_changes_nothing(x64):
    model, params = _model(widths=(8, 5), layer_norm=True, b_std=0.1)
    same = reg.fire(params, alpha=0.0)
    assert_trees_equal(same, params)
    half = reg.fire(params, alpha=0.3, layers="hidden")
    for i, (p, q) in enumerate(zip(params, half)):
        if i < 2:
            m = np.asarray(p["W"])
            want = 0.7 * m + 0.3 * np.sqrt(m.shape[1] / m.shape[0]) * _svd_polar(m)
            np.testing.assert_allclose(q["W"], want, atol=1e-10)
        else:
            np.testing.assert_array_equal(q["W"], p["W"])  # the readout is not hidden
        for k in ("b", "ln_scale", "ln_bias"):
            if k in p:
                np.testing.assert_array_equal(q[k], p[k])  # biases and norms untouched


def test_fire_acts_on_the_effective_weight_with_ntk_parameterization(x64):
    model, params = _model(parameterization="ntk")
    new = reg.fire(params, model=model)
    for layer, p, q in zip(model.layers, params, new):
        m_w = models.multipliers(model, layer, p["W"])[0]
        eff = m_w * np.asarray(q["W"])
        d_in, d_out = eff.shape
        np.testing.assert_allclose(eff, np.sqrt(d_out / d_in) * _svd_polar(p["W"]), atol=1e-10)


def test_newton_schulz_needs_the_default_steps_on_square_weights():
    w = jnp.asarray(np.random.default_rng(0).standard_normal((64, 64)) / 8, jnp.float32)
    err = [float(jnp.max(jnp.abs(x.T @ x - jnp.eye(64))))
           for x in (reg.newton_schulz_polar(w, steps=s) for s in (5, reg.NS_STEPS))]
    assert err[0] > 1e-2 > 1e-5 > err[1]
    zero = reg.newton_schulz_polar(jnp.zeros((4, 3)))
    np.testing.assert_array_equal(zero, 0.0)


def test_fire_task_end_every_and_optimizer_reset():
    model, params = _model()
    _, state = _adam_state(params)
    key = jax.random.PRNGKey(0)
    hook = reg.fire_task_end(model, every=2)
    p0, s0 = hook(params, state, 0, key)
    assert p0 is params and s0 is state
    p1, s1 = hook(params, state, 1, key)
    assert_trees_equal(p1, jax.jit(reg.fire)(params), rtol=1e-6, atol=1e-6)
    assert_trees_equal(s1, state)  # the optimizer state is kept by default
    _, s2 = reg.fire_task_end(model, layers=[0], reset_optimizer=True)(params, state, 0, key)
    mu, mu2 = state[0].mu, s2[0].mu
    assert np.all(np.asarray(mu2[0]["W"]) == 0) and np.any(np.asarray(mu[0]["W"]))
    for i, k in [(0, "b"), (1, "W"), (2, "W")]:
        np.testing.assert_array_equal(mu2[i][k], mu[i][k])


def test_fire_refuses_bad_options_and_orthogonal_layers():
    model, _ = _model()
    with pytest.raises(NtkplastError, match=r"alpha: expected a number in \[0, 1\]"):
        reg.fire_task_end(model, alpha=1.5)
    with pytest.raises(NtkplastError, match="ns_steps"):
        reg.fire_task_end(model, ns_steps=0)
    with pytest.raises(NtkplastError, match="layers"):
        reg.fire_task_end(model, layers="hiden")
    ortho, _ = _model(weight_constraint="orthogonal")
    with pytest.raises(NtkplastError, match="method 'fire'.*Cayley"):
        reg.make_hooks({"name": "fire"}, ortho, (6,), 1e-3)


# --- plasticity injection -----------------------------------------------------------------------

def _explicit_two_heads(model, trunk, head_old, head_new, head_new0, x):
    """h_θ(a) + h_θ'(a) − h_θ'₀(a) on the trunk's features a, θ and θ'₀ frozen."""
    feats = models.block_inputs(model, trunk + (head_old,), x)[-1]
    frozen = jax.lax.stop_gradient

    def head(p):
        return feats @ p["W"] + p["b"]

    return (head(jax.tree_util.tree_map(frozen, head_old)) + head(head_new)
            - head(jax.tree_util.tree_map(frozen, head_new0)))


def test_plasticity_injection_equals_the_explicit_two_head_network(x64):
    """Injection keeps the output; then Adam trains the stored readout exactly as it trains
    the fresh head θ' of h_θ + h_θ' − h_θ'₀ (θ, θ'₀ frozen: zero gradient), trunk included."""
    model, params = _model(b_std=0.1)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((16, 6)))
    y = jnp.asarray(rng.integers(0, 3, 16))
    tx, state = _adam_state(params)
    hook = reg.plasticity_injection_task_end()
    new, new_state = hook(params, state, 0, jax.random.PRNGKey(0))
    assert new is params  # the function is unchanged, bit for bit
    mask = reg.readout_mask(params)
    for mom in ("mu", "nu"):
        got, old = getattr(new_state[0], mom), getattr(state[0], mom)
        for leaf, o, m in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(old),
                              jax.tree_util.tree_leaves(mask)):
            np.testing.assert_array_equal(leaf, np.where(m, 0.0, o))
    np.testing.assert_array_equal(new_state[0].count, state[0].count)

    def loss_reduced(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

    fresh = model.init(jax.random.PRNGKey(5), (6,))[-1]  # θ'₀: any draw cancels
    trunk, head_old = params[:-1], params[-1]

    def loss_explicit(trainable, head_frozen, head_new0):
        trunk_, head_new = trainable
        out = _explicit_two_heads(model, trunk_, head_frozen, head_new, head_new0, x)
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()

    g_frozen = jax.grad(loss_explicit, argnums=(1, 2))((trunk, fresh), head_old, fresh)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree_util.tree_leaves(g_frozen))
    # the explicit network's optimizer: the run's state for the trunk, none for θ'
    explicit = (trunk, fresh)
    ex_state = (optax.ScaleByAdamState(
        new_state[0].count, (new_state[0].mu[:-1], jax.tree_util.tree_map(jnp.zeros_like, fresh)),
        (new_state[0].nu[:-1], jax.tree_util.tree_map(jnp.zeros_like, fresh))), new_state[1])
    reduced, red_state = new, new_state
    for _ in range(3):
        u, red_state = tx.update(jax.grad(loss_reduced)(reduced), red_state, reduced)
        reduced = optax.apply_updates(reduced, u)
        u, ex_state = tx.update(jax.grad(loss_explicit)(explicit, head_old, fresh), ex_state,
                                explicit)
        explicit = optax.apply_updates(explicit, u)
        assert_trees_equal(reduced[:-1], explicit[0], atol=1e-12)
        combined = jax.tree_util.tree_map(lambda a, b, c: a + b - c, head_old, explicit[1], fresh)
        assert_trees_equal(reduced[-1], combined, atol=1e-12)
        np.testing.assert_allclose(model.apply(reduced, x), _explicit_two_heads(
            model, explicit[0], head_old, explicit[1], fresh, x), atol=1e-12)


def test_plasticity_injection_schedule_and_refusals():
    model, params = _model()
    _, state = _adam_state(params)
    key = jax.random.PRNGKey(0)
    once = reg.plasticity_injection_task_end(at_task=2)
    assert once(params, state, 1, key)[1] is state
    assert once(params, state, 3, key)[1] is state
    assert once(params, state, 2, key)[1] is not state
    every = reg.plasticity_injection_task_end(every=3)
    assert [every(params, state, t, key)[1] is state for t in range(6)] == \
        [True, True, False, True, True, False]
    with pytest.raises(NtkplastError, match="not both"):
        reg.plasticity_injection_task_end(every=2, at_task=1)
    with pytest.raises(NtkplastError, match="at_task"):
        reg.plasticity_injection_task_end(at_task=-1)
    with pytest.raises(NtkplastError, match="method.at_task: expected an integer"):
        reg.make_hooks({"name": "plasticity_injection", "at_task": 1.5}, model, (6,), 1e-3)
    ortho, _ = _model(weight_constraint="orthogonal")
    with pytest.raises(NtkplastError, match="method 'plasticity_injection'.*Cayley"):
        reg.make_hooks({"name": "plasticity_injection"}, ortho, (6,), 1e-3)


# --- head reset ---------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [dict(), dict(residual=True, layer_norm=True, pre_norm=True,
                                                init="orthogonal"),
                                   dict(weight_constraint="orthogonal")])
def test_head_reset_redraws_the_readout_from_the_init(extra):
    model, params = _model(b_std=0.1, **extra)
    params = jax.tree_util.tree_map(lambda p: p + 0.5, params)  # trained away from the init
    _, state = _adam_state(params)
    key = jax.random.PRNGKey(11)
    hooks = reg.make_hooks({"name": "head_reset", "every": 2}, model, (6,), 1e-3)
    assert hooks.on_task_end(params, state, 0, key)[0] is params
    new, new_state = hooks.on_task_end(params, state, 1, key)
    fresh = model.init(key, (6,))[-1]
    for k in ("W", "b"):
        np.testing.assert_allclose(new[-1][k], fresh[k], rtol=1e-6, atol=1e-7)
    for k in ("ln_scale", "ln_bias"):
        if k in params[-1]:  # the readout's pre-norm belongs to the trunk
            np.testing.assert_array_equal(new[-1][k], params[-1][k])
    assert_trees_equal(new[:-1], params[:-1])
    mask = reg.readout_mask(params)
    for got, old, m in zip(jax.tree_util.tree_leaves(new_state[0].mu),
                           jax.tree_util.tree_leaves(state[0].mu), jax.tree_util.tree_leaves(mask)):
        np.testing.assert_array_equal(got, np.where(m, 0.0, old))


# --- normalize-and-project ----------------------------------------------------------------------

def test_nap_hand_computed_step_and_scale_invariance(x64):
    model, params = _model(layer_norm=True, b_std=0.1)
    params = jax.tree_util.tree_map(lambda p: p + 0.1, params)
    norms = [np.sqrt(np.sum(np.asarray(p["W"]) ** 2) + np.sum(np.asarray(p["b"]) ** 2))
             for p in params]
    tx = optax.chain(optax.sgd(0.5), reg.project_to_init_norm(model))
    state = tx.init(params)
    grads = jax.tree_util.tree_map(lambda p: -jnp.ones_like(p), params)  # θ ← θ + 0.5
    u, state = tx.update(grads, state, params)
    new = optax.apply_updates(params, u)
    for i, (p, q) in enumerate(zip(params, new)):
        stepped = {k: np.asarray(v) + 0.5 for k, v in p.items()}
        if i < 2:  # hidden layers: (W, b) scaled back to their initial joint norm
            rho = np.sqrt(np.sum(stepped["W"] ** 2) + np.sum(stepped["b"] ** 2))
            for k in ("W", "b"):
                np.testing.assert_allclose(q[k], stepped[k] * norms[i] / rho, rtol=1e-12)
        else:
            np.testing.assert_allclose(q["W"], stepped["W"], rtol=1e-12)
        for k in ("ln_scale", "ln_bias"):
            if k in p:
                np.testing.assert_allclose(q[k], stepped[k], rtol=1e-12)
    # a layer-normalised layer is scale-invariant in (W, b): projecting leaves the function
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 6)))
    scaled = tuple({k: (3.0 * v if k in ("W", "b") and i < 2 else v) for k, v in p.items()}
                   for i, p in enumerate(params))
    back = optax.apply_updates(scaled, reg.project_to_init_norm(model).update(
        jax.tree_util.tree_map(jnp.zeros_like, scaled), tx.init(params)[1], scaled)[0])
    np.testing.assert_allclose(model.apply(back, x), model.apply(params, x), atol=1e-10)
    np.testing.assert_allclose(model.apply(scaled, x), model.apply(params, x), atol=1e-4)


def test_nap_keeps_the_norms_while_training_and_refuses_without_layer_norm():
    model, params = _model(layer_norm=True)
    hooks = reg.make_hooks({"name": "nap"}, model, (6,), 1e-2)
    tx = hooks.optimizer(optax.adam(1e-1))
    trainer = training.make_trainer(model, tx, hooks, key=jax.random.PRNGKey(1))
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.standard_normal((32, 6)), jnp.float32), jnp.asarray(
        rng.integers(0, 3, 32))
    state = training.TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32))
    state, _ = trainer.run_chunk(state, x, y, jnp.asarray(rng.integers(0, 32, (10, 8))))
    for i in (0, 1):
        before = jnp.sqrt(jnp.sum(params[i]["W"] ** 2) + jnp.sum(params[i]["b"] ** 2))
        after = jnp.sqrt(jnp.sum(state.params[i]["W"] ** 2) + jnp.sum(state.params[i]["b"] ** 2))
        np.testing.assert_allclose(after, before, rtol=1e-5)
    assert not np.allclose(state.params[0]["W"], params[0]["W"])
    for extra, match in [(dict(), "layer_norm = true"),
                         (dict(layer_norm=True, residual=True, pre_norm=True), "pre_norm"),
                         (dict(weight_constraint="orthogonal", layer_norm=True), "orthogonal")]:
        bad, _ = _model(**extra)
        with pytest.raises(NtkplastError, match=match):
            reg.make_hooks({"name": "nap"}, bad, (6,), 1e-3)


# --- each method on the demo stream -------------------------------------------------------------

@pytest.mark.parametrize("method, model_set", [
    ('{name = "fire", alpha = 0.5}', ()),
    ('{name = "plasticity_injection", at_task = 0}', ()),
    ('{name = "head_reset"}', ()),
    ('{name = "nap"}', ("model.layer_norm=true",)),
    ('{name = "fire"}', ('model.activation="crelu"',)),
])
def test_each_method_trains_on_the_tiny_demo_stream(tmp_path, method, model_set):
    cfg = demo.demo_config(quick=True, overrides=[
        "model.widths=[16, 16]", "stream.num_tasks=2", "stream.train_size=32",
        "train.steps_per_task=4", "train.reference_tasks=[1]", f"method={method}", *model_set])
    run = training.train_run(cfg, tmp_path / "run", progress=False)
    assert run.manifest["complete"] and len(run.manifest["tasks"]) == 2
    assert all(np.isfinite(t["plasticity_score"]) for t in run.manifest["tasks"])
    assert all(np.all(np.isfinite(np.asarray(leaf)))
               for leaf in jax.tree_util.tree_leaves(run.params(-1)))


@pytest.mark.parametrize("method, model", [
    ({"name": "fire", "alpha": 0.5, "reset_optimizer": True}, {"widths": [16]}),
    ({"name": "head_reset"}, {"widths": [16]}),
    ({"name": "nap"}, {"widths": [16], "layer_norm": True}),
])
def test_boundary_methods_resume_bit_identically(tmp_path, method, model):
    from ntkplast.training import config

    cfg = config.config_from_dict({
        "seed": 3, "model": model, "method": method,
        "stream": {"kind": "permuted", "dataset": "digits", "num_tasks": 3},
        "train": {"batch_size": 16, "steps_per_task": 4, "checkpoint_every": 2}})
    full = training.train_run(cfg, tmp_path / "full", progress=False)
    training.train_run(cfg, tmp_path / "cut", progress=False, stop_after_chunks=2)  # task 0's end
    cut = training.train_run(cfg, tmp_path / "cut", progress=False, resume=True)
    assert_trees_equal(full.params(-1), cut.params(-1))
