"""Regularizers, AdamO and resets against closed forms, numpy references and optax itself."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trees import assert_trees_equal

from ntkplast import models, training
from ntkplast import regularizers as reg
from ntkplast.errors import NtkplastError


def _semi_orthogonal(rng, rows, cols):
    q, _ = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    return q if rows >= cols else q.T


ADAM = optax.adam(1e-2)


def _mlp(widths=(8, 8), d_in=6, **kw):
    model = models.build(models.ArchSpec(widths=widths, num_outputs=3, **kw))
    return model, model.init(jax.random.PRNGKey(0), (d_in,))


# --- 1. the isometry penalty --------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (6, 6), (3, 3, 4, 5), (1, 1, 2, 7)])
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_isometry_is_zero_at_scaled_orthogonal(shape, scale):
    rng = np.random.default_rng(0)
    d_in, d_out = int(np.prod(shape[:-1])), shape[-1]
    target = scale * d_out / d_in if d_out > d_in else scale  # the rectangular correction
    w = (np.sqrt(target) * _semi_orthogonal(rng, d_in, d_out)).reshape(shape)
    assert float(reg.isometry_loss(jnp.asarray(w), scale)) < 1e-9
    assert float(jnp.max(jnp.abs(reg.isometry_loss_grad(jnp.asarray(w), scale)))) < 1e-5
    if d_out > d_in:  # without the correction a tall matrix aims at s, not s·d_out/d_in
        assert float(reg.isometry_loss(jnp.asarray(w), scale, rect_correction=False)) > 0.1


@pytest.mark.parametrize("shape", [(9, 4), (4, 9), (5, 5), (3, 3, 2, 6), (3, 3, 2, 30)])
@pytest.mark.parametrize("rect, normalize, scale", [(True, False, 1.0), (False, True, 2.0),
                                                    (True, True, 2.0)])
def test_isometry_closed_form_gradient_matches_autodiff(x64, shape, rect, normalize, scale):
    w = jnp.asarray(np.random.default_rng(1).standard_normal(shape) * 0.5)
    kw = dict(rect_correction=rect, normalize=normalize)
    auto = jax.grad(lambda v: reg.isometry_loss(v, scale, **kw))(w)
    np.testing.assert_allclose(reg.isometry_loss_grad(w, scale, **kw), auto, rtol=1e-10,
                               atol=1e-12)


def test_isometry_value_gram_side_and_the_two_conventions(x64):
    """R = ½‖G − s'I‖² with G on the smaller side; issue 5's ‖·‖² is 2R, its gradient 4W(G−sI)."""
    rng = np.random.default_rng(2)
    wide = rng.standard_normal((7, 3))   # d_in > d_out: G = WᵀW (3 × 3)
    tall = rng.standard_normal((3, 7))   # d_out > d_in: G = WWᵀ (3 × 3), s' = s·7/3
    for w, g, s in [(wide, wide.T @ wide, 2.0), (tall, tall @ tall.T, 2.0 * 7 / 3)]:
        ref = 0.5 * np.sum((g - s * np.eye(3)) ** 2)
        np.testing.assert_allclose(reg.isometry_loss(jnp.asarray(w), 2.0), ref, rtol=1e-12)
        np.testing.assert_allclose(reg.isometry_loss(jnp.asarray(w), 2.0, normalize=True),
                                   ref / 3, rtol=1e-12)
    issue_grad = 4 * wide @ (wide.T @ wide - 2.0 * np.eye(3))
    np.testing.assert_allclose(2 * reg.isometry_loss_grad(jnp.asarray(wide), 2.0), issue_grad,
                               rtol=1e-12)


def test_conv_kernel_is_the_pytorch_cout_by_cin_k_k_matrix(x64):
    w = np.random.default_rng(3).standard_normal((3, 3, 4, 5))  # HWIO
    w_torch = w.transpose(3, 2, 0, 1).reshape(5, -1)  # c_out × (c_in·k·k), PyTorch's view
    ref = 0.5 * np.sum((w_torch @ w_torch.T - np.eye(5)) ** 2)  # wide: WWᵀ in out × in layout
    np.testing.assert_allclose(reg.isometry_loss(jnp.asarray(w)), ref, rtol=1e-12)
    assert reg.isometry_loss_grad(jnp.asarray(w)).shape == w.shape


def test_isometry_penalty_defaults_to_hidden_weights_only():
    model, params = _mlp()
    grads = jax.jit(jax.grad(reg.isometry_penalty(1.0, 2.0)))(params)
    assert all(float(jnp.abs(g["W"]).sum()) > 0 for g in grads[:-1])
    assert float(jnp.abs(grads[-1]["W"]).sum()) == 0  # readout excluded
    assert all(float(jnp.abs(g["b"]).sum()) == 0 for g in grads)  # biases never
    inner = jax.jit(jax.grad(reg.isometry_penalty(1.0, 2.0, layers="inner")))(params)
    assert float(jnp.abs(inner[0]["W"]).sum()) == 0 < float(jnp.abs(inner[1]["W"]).sum())
    picked = jax.jit(jax.grad(reg.isometry_penalty(1.0, layers=[-1])))(params)
    assert float(jnp.abs(picked[-1]["W"]).sum()) > 0 == float(jnp.abs(picked[0]["W"]).sum())
    with pytest.raises(NtkplastError, match="layers"):
        reg.isometry_penalty(1.0, layers="hiden")
    with pytest.raises(NtkplastError, match="layers"):
        reg.isometry_penalty(1.0, layers=[5])(params)
    with pytest.raises(NtkplastError, match="lam"):
        reg.isometry_penalty(-1.0)


def test_isometry_acts_on_the_effective_weight_with_ntk_parameterization(x64):
    model, params = _mlp(d_in=10, parameterization="ntk", init="orthogonal")
    pen = reg.isometry_penalty(0.7, 2.0, model=model)
    # orthogonal init draws the effective weight √2·Q: the ReLU-scaled penalty is zero there
    # (10 → 8 → 8: no tall hidden layer, where the rectangular correction would aim elsewhere)
    assert float(jax.jit(pen)(params)) < 1e-9
    raw = jax.jit(reg.isometry_penalty(0.7, 2.0))(params)
    assert float(raw) > 1.0  # the raw N(0,1)-scale weights are far from it
    rng = np.random.default_rng(4)
    params = jax.tree_util.tree_map(lambda p: p + 0.3 * rng.standard_normal(p.shape), params)
    tree = jax.jit(lambda p: reg.isometry_gradient(p, 2.0, model=model))(params)
    auto = jax.jit(jax.grad(reg.isometry_penalty(1.0, 2.0, model=model)))(params)
    assert_trees_equal(tree, auto, rtol=1e-10, atol=1e-12)


def test_randomised_gradient_is_unbiased(x64):
    _, params = _mlp(widths=(5, 4), d_in=7)
    exact = reg.isometry_gradient(params, 2.0)
    keys = jax.random.split(jax.random.PRNGKey(1), 3000)
    est = jax.jit(jax.vmap(lambda k: reg.isometry_gradient_estimate(
        params, key=k, num_probes=2, scale=2.0)))(keys)
    for e, x in zip(jax.tree_util.tree_leaves(est), jax.tree_util.tree_leaves(exact)):
        mean = np.asarray(e).mean(axis=0)
        assert np.linalg.norm(mean - x) <= 0.07 * np.linalg.norm(x) + 1e-12


# --- 2. coupled and decoupled (AdamO) -----------------------------------------------------------

def _grad_sequence(params, n, seed=0):
    rng = np.random.default_rng(seed)
    return [jax.tree_util.tree_map(lambda p: jnp.asarray(rng.standard_normal(p.shape),
                                                         p.dtype), params) for _ in range(n)]


@functools.cache
def _jit_update(tx):
    return jax.jit(tx.update)


def _run(tx, params, grads):
    state = tx.init(params)
    update = _jit_update(tx)
    for g in grads:
        u, state = update(g, state, params)
        params = optax.apply_updates(params, u)
    return params, state


@pytest.mark.parametrize("lr", [1e-2, optax.linear_schedule(1e-2, 1e-3, 4)])
def test_adamo_with_zero_lambda_is_adam_bit_for_bit(lr):
    _, params = _mlp()
    grads = _grad_sequence(params, 5)
    p_adam, s_adam = _run(optax.adam(lr), params, grads)
    p_o, s_o = _run(reg.adamo(lr, lam=0.0, scale=2.0), params, grads)
    assert_trees_equal(p_adam, p_o)
    assert_trees_equal(s_adam, s_o[0])


def test_adamo_moments_see_only_the_task_gradient():
    _, params = _mlp()
    grads = _grad_sequence(params, 4)
    p_adam, s_adam = _run(ADAM, params, grads)
    p_o, s_o = _run(reg.adamo(1e-2, lam=0.5, scale=2.0), params, grads)
    adam_state, o_state = s_adam[0], s_o[0][0]
    assert_trees_equal((adam_state.mu, adam_state.nu), (o_state.mu, o_state.nu))
    assert not np.allclose(p_adam[0]["W"], p_o[0]["W"])  # the isometry step did act
    np.testing.assert_array_equal(p_adam[-1]["W"], p_o[-1]["W"])  # … not on the readout


def test_one_adamo_step_equals_the_hand_computed_update(x64):
    _, params = _mlp()
    g = _grad_sequence(params, 1, seed=5)[0]
    lr, lam, s, b1, b2, eps = 1e-2, 0.3, 2.0, 0.9, 0.999, 1e-8
    new, _ = _run(reg.adamo(lr, lam=lam, scale=s), params, [g])
    for i, (p, gi) in enumerate(zip(params, g)):
        for name in p:
            w, gr = np.asarray(p[name]), np.asarray(gi[name])
            m_hat = (1 - b1) * gr / (1 - b1)
            v_hat = (1 - b2) * gr ** 2 / (1 - b2)
            w_t = w - lr * m_hat / (np.sqrt(v_hat) + eps)  # Adam's step
            if name == "W" and i < len(params) - 1:  # then the isometry step from there
                d_in, d_out = w_t.shape
                if d_out <= d_in:
                    w_t = w_t - lr * lam * 2 * w_t @ (w_t.T @ w_t - s * np.eye(d_out))
                else:
                    w_t = w_t - lr * lam * 2 * (w_t @ w_t.T - s * d_out / d_in * np.eye(d_in)) @ w_t
            np.testing.assert_allclose(new[i][name], w_t, rtol=1e-12, atol=1e-14)


def test_post_update_form_equals_the_optax_form():
    _, params = _mlp()
    grads = _grad_sequence(params, 3)
    sched = optax.linear_schedule(1e-2, 2e-3, 3)
    p_o, _ = _run(reg.adamo(sched, lam=0.4, scale=2.0), params, grads)
    hook = reg.isometry_post_update(0.4, sched, scale=2.0)
    tx, p = optax.adam(sched), params
    state = tx.init(p)
    for t, g in enumerate(grads):
        u, state = tx.update(g, state, p)
        p = hook(optax.apply_updates(p, u), jax.random.PRNGKey(0), jnp.asarray(t))
    assert_trees_equal(p_o, p, rtol=1e-5, atol=1e-7)


def test_isometry_step_every_k_and_schedule():
    _, params = _mlp()
    grads = _grad_sequence(params, 3)
    # every=3: steps 1 and 2 are plain Adam, step 3 takes the isometry step with strength 3λ
    p2, _ = _run(reg.adamo(1e-2, lam=0.2, every=3), params, grads[:2])
    a2, _ = _run(ADAM, params, grads[:2])
    np.testing.assert_array_equal(p2[0]["W"], a2[0]["W"])
    p3, _ = _run(reg.adamo(1e-2, lam=0.2, every=3), params, grads)
    a3, _ = _run(ADAM, params, grads)
    expect = a3[0]["W"] - 1e-2 * 0.6 * reg.isometry_loss_grad(a3[0]["W"])
    np.testing.assert_allclose(p3[0]["W"], expect, rtol=1e-5, atol=1e-7)
    # η_iso follows its own schedule: zero at the first update means the first step is Adam's
    zero_first = reg.adamo(1e-2, lam=0.2, iso_learning_rate=lambda c: jnp.where(c == 0, 0., 1.))
    p1, _ = _run(zero_first, params, grads[:1])
    a1, _ = _run(ADAM, params, grads[:1])
    np.testing.assert_array_equal(p1[0]["W"], a1[0]["W"])


def test_randomised_adamo_runs_and_pulls_toward_isometry():
    model, params = _mlp(widths=(16, 16))
    zero = _grad_sequence(params, 1)[0]
    zero = jax.tree_util.tree_map(jnp.zeros_like, zero)
    pen = reg.isometry_penalty(1.0, 2.0)
    for probes in (None, 4):
        tx = reg.isometry_step(0.05, 0.1, scale=2.0, num_probes=probes)
        p, _ = _run(tx, params, [zero] * 30)
        assert float(pen(p)) < 0.5 * float(pen(params))


def test_adamo_hook_in_the_trainer_keeps_weights_closer_to_isometry():
    model, params = _mlp(widths=(16, 16))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((64, 6)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 64))
    idx = jnp.asarray(rng.integers(0, 64, (40, 8)))
    pen = reg.isometry_penalty(1.0, 2.0)
    out = {}
    for name, hooks in [("adam", training.Hooks()),
                        ("adamo", training.Hooks(post_update=reg.isometry_post_update(
                            0.05, 0.05, scale=2.0)))]:
        tx = optax.adam(0.05)
        trainer = training.make_trainer(model, tx, hooks, key=jax.random.PRNGKey(1))
        state = training.TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32))
        state, (loss, _, _) = trainer.run_chunk(state, x, y, idx)
        assert np.all(np.isfinite(np.asarray(loss)))
        out[name] = float(pen(state.params))
    assert out["adamo"] < out["adam"]


# --- 3. baselines -------------------------------------------------------------------------------

def test_l2_and_l2_init_values_and_gradients():
    _, params = _mlp()
    flat = np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(params)])
    moved = jax.tree_util.tree_map(lambda p: p + 0.1, params)

    @jax.jit
    def values(params, moved):
        out = {"l2": reg.l2_penalty(0.3)(params),
               "l2_w": reg.l2_penalty(0.3, include_biases=False)(params),
               "l2_grad": jax.grad(reg.l2_penalty(0.3))(params),
               "sq": reg.l2_init_penalty(0.5, params)(moved),
               "unsq": reg.l2_init_penalty(0.5, params, squared=False)(moved)}
        for squared in (True, False):  # zero, with a finite (zero) gradient, at θ = θ₀
            pen = reg.l2_init_penalty(0.5, params, squared=squared)
            out[f"at_init_{squared}"] = jax.value_and_grad(pen)(params)
        return out

    v = values(params, moved)
    np.testing.assert_allclose(v["l2"], 0.3 * np.sum(flat ** 2), rtol=1e-6)
    np.testing.assert_allclose(
        v["l2_w"], 0.3 * sum(np.sum(np.asarray(p["W"]) ** 2) for p in params), rtol=1e-6)
    np.testing.assert_allclose(v["l2_grad"][0]["W"], 0.6 * params[0]["W"], rtol=1e-6)
    for squared in (True, False):
        value, grad = v[f"at_init_{squared}"]
        assert float(value) == 0.0
        assert all(np.all(np.asarray(g) == 0) for g in jax.tree_util.tree_leaves(grad))
    np.testing.assert_allclose(v["sq"], 0.5 * 0.01 * flat.size, rtol=1e-5)
    np.testing.assert_allclose(v["unsq"], 0.5 * sum(0.1 * np.sqrt(np.size(p))
                                                    for p in jax.tree_util.tree_leaves(params)),
                               rtol=1e-5)


@pytest.mark.parametrize("squared", [True, False])
def test_l2_init_gradient_transform_equals_the_penalty(x64, squared):
    _, params = _mlp()
    moved = jax.tree_util.tree_map(lambda p: p * 1.1 + 0.05, params)
    g = _grad_sequence(params, 1)[0]
    tx = optax.chain(reg.add_l2_init_gradient(0.3, squared=squared), optax.sgd(0.1))
    state = tx.init(params)  # θ₀ = params
    u, _ = tx.update(g, state, moved)
    pen_grad = jax.grad(reg.l2_init_penalty(0.3, params, squared=squared))(moved)
    sgd = optax.sgd(0.1)
    ref, _ = sgd.update(jax.tree_util.tree_map(jnp.add, g, pen_grad), sgd.init(moved), moved)
    assert_trees_equal(u, ref, rtol=1e-12)


def test_shrink_and_perturb():
    _, params = _mlp()
    key = jax.random.PRNGKey(3)
    shrunk = jax.jit(reg.shrink_perturb(0.2, 0.0))(params, key, jnp.asarray(0))
    np.testing.assert_allclose(shrunk[0]["W"], 0.8 * params[0]["W"], rtol=1e-6)
    big = ({"W": jnp.ones((300, 300)), "b": jnp.ones(300)},)
    out = jax.jit(reg.shrink_perturb(0.1, 0.01))(big, key, jnp.asarray(0))
    noise = np.asarray(out[0]["W"]) - 0.9
    assert abs(noise.std() - 0.01) < 5e-4 and abs(noise.mean()) < 5e-4
    hook = jax.jit(reg.shrink_perturb(0.5, 0.0, every=3))
    for step, factor in [(0, 1.0), (1, 1.0), (2, 0.5), (5, 0.5)]:
        np.testing.assert_allclose(hook(params, key, jnp.asarray(step))[0]["W"],
                                   factor * params[0]["W"], rtol=1e-6)
    model, _ = _mlp()
    init_noise = reg.shrink_perturb(0.0, 1.0, noise=lambda k: model.init(k, (6,)),
                                    layers=[0], include_biases=False)
    out = jax.jit(init_noise)(params, key, jnp.asarray(0))
    np.testing.assert_allclose(out[0]["W"], params[0]["W"] + model.init(key, (6,))[0]["W"],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out[1]["W"], params[1]["W"])
    opt_state = optax.adam(1e-3).init(params)
    p, s = reg.shrink_perturb_task_end(0.5, 0.0)(params, opt_state, 0, key)
    np.testing.assert_allclose(p[0]["W"], 0.5 * params[0]["W"], rtol=1e-6)
    assert s is opt_state
    with pytest.raises(NtkplastError, match="shrink"):
        reg.shrink_perturb(1.5, 0.0)


def test_spectral_norm_and_penalty_against_numpy_svd(x64):
    rng = np.random.default_rng(6)
    for shape in [(30, 20), (12, 40), (3, 3, 4, 8)]:
        w = rng.standard_normal(shape)
        u, s, vt = np.linalg.svd(w.reshape(-1, shape[-1]), full_matrices=False)
        sigma, grad = jax.jit(jax.value_and_grad(
            lambda v: reg.spectral_norm(v, num_iters=300)))(jnp.asarray(w))
        np.testing.assert_allclose(sigma, s[0], rtol=1e-8)
        # gradient of λ(σ − 1)² is 2λ(σ − 1)·u₁v₁ᵀ
        grad = 0.8 * (sigma - 1.0) * grad
        ref = 0.8 * (s[0] - 1.0) * np.outer(u[:, 0], vt[0])
        np.testing.assert_allclose(np.asarray(grad).reshape(ref.shape), ref, rtol=1e-6,
                                   atol=1e-9)
    _, params = _mlp()
    pen = jax.jit(reg.spectral_penalty(0.4, target=1.0, num_iters=300))(params)
    ref = sum((np.linalg.svd(np.asarray(p["W"]), compute_uv=False)[0] - 1.0) ** 2
              for p in params)
    np.testing.assert_allclose(pen, 0.4 * ref, rtol=1e-8)


def test_parseval_penalty(x64):
    rng = np.random.default_rng(7)
    q = np.sqrt(2.0) * _semi_orthogonal(rng, 9, 4)  # orthogonal output units, scale 2
    params = ({"W": jnp.asarray(q), "b": jnp.zeros(4)}, {"W": jnp.ones((4, 2)), "b": jnp.zeros(2)})
    assert float(reg.parseval_penalty(1.0, 2.0)(params)) < 1e-20
    w = rng.standard_normal((4, 9))  # tall: Parseval uses WᵀW (9 × 9) regardless
    params = ({"W": jnp.asarray(w), "b": jnp.zeros(9)}, {"W": jnp.ones((9, 2)), "b": jnp.zeros(2)})
    ref = np.sum((w.T @ w - np.eye(9)) ** 2)
    np.testing.assert_allclose(reg.parseval_penalty(0.5)(params), 0.5 * ref, rtol=1e-12)


def test_srip_against_numpy(x64):
    rng = np.random.default_rng(8)
    for shape in [(20, 6), (6, 20), (3, 3, 2, 5)]:
        w = 0.4 * rng.standard_normal(shape)
        m = w.reshape(-1, shape[-1])
        g = m.T @ m if m.shape[1] <= m.shape[0] else m @ m.T
        ref = np.max(np.abs(np.linalg.eigvalsh(g - np.eye(g.shape[0]))))
        est = jax.jit(lambda v: jnp.stack([reg.srip_spectral_norm(v, 500),
                                           reg.srip_spectral_norm(v, 2)]))(jnp.asarray(w))
        np.testing.assert_allclose(est[0], ref, rtol=1e-6)
        assert float(est[1]) <= ref * (1 + 1e-9)
    _, params = _mlp()
    m0 = np.asarray(params[0]["W"])  # 6 × 8: tall, Gram 6 × 6
    m1 = np.asarray(params[1]["W"])  # 8 × 8
    ref = sum(np.max(np.abs(np.linalg.eigvalsh(g - np.eye(len(g)))))
              for g in (m0 @ m0.T, m1.T @ m1))
    np.testing.assert_allclose(jax.jit(reg.srip_penalty(0.2, num_iters=500))(params), 0.2 * ref,
                               rtol=1e-6)
    sq = jax.jit(reg.srip_penalty(0.2, num_iters=500, squared=True))(params)
    assert float(sq) > 0 and np.isfinite(float(sq))


# --- 4. resets ----------------------------------------------------------------------------------

def _adam_state_after_steps(params, n=3):
    _, state = _run(ADAM, params, _grad_sequence(params, n))
    return ADAM, state


def _check_replaced(old, new, fresh, masks, old_state, new_state):
    """Incoming re-drawn, outgoing zeroed, Adam μ/ν reset on exactly those weights."""
    inc, out = reg.unit_weight_masks(old, masks)
    for j in range(len(old)):
        for name in old[j]:
            i, o = np.asarray(inc[j][name]), np.asarray(out[j][name])
            w_old, w_new = np.asarray(old[j][name]), np.asarray(new[j][name])
            np.testing.assert_allclose(w_new[i & ~o], np.asarray(fresh[j][name])[i & ~o],
                                       rtol=1e-6)  # (jit and eager round the draw differently)
            assert np.all(w_new[o] == 0)
            np.testing.assert_array_equal(w_new[~i & ~o], w_old[~i & ~o])
            for field in ("mu", "nu"):
                s_old = np.asarray(getattr(old_state[0], field)[j][name])
                s_new = np.asarray(getattr(new_state[0], field)[j][name])
                touched = i | o
                assert np.all(s_new[touched] == 0)
                np.testing.assert_array_equal(s_new[~touched], s_old[~touched])
                assert np.all(s_old[touched] != 0)  # there was something to reset
    np.testing.assert_array_equal(old_state[0].count, new_state[0].count)


def test_redo_replaces_exactly_the_dormant_units():
    model, params = _mlp(widths=(8, 8))
    params = list(params)
    params[0] = {**params[0], "b": params[0]["b"].at[jnp.array([1, 3])].set(-1e3)}  # plant dead
    params = tuple(params)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((64, 6)), jnp.float32)
    _, state = _adam_state_after_steps(params)
    key = jax.random.PRNGKey(9)
    step = jax.jit(lambda p, s: reg.redo_step(model, p, s, x, key=key, tau=0.0))
    new, new_state, masks = step(params, state)
    assert np.flatnonzero(masks[0]).tolist() == [1, 3]
    assert not np.any(masks[1])
    _check_replaced(params, new, model.init(key, (6,)), masks, state, new_state)
    assert not np.any(step(new, new_state)[2][0])  # the re-drawn units fire again


def test_redo_every_t_steps_and_at_task_end():
    model, params = _mlp(widths=(8, 8))
    params = (dict(params[0], b=params[0]["b"].at[2].set(-1e3)),) + params[1:]
    x = jnp.asarray(np.random.default_rng(0).standard_normal((32, 6)), jnp.float32)
    _, state = _adam_state_after_steps(params)
    hook = jax.jit(reg.redo(model, tau=0.0, every=5))
    key = jax.random.PRNGKey(2)
    same, _ = hook(params, state, x, key, jnp.asarray(3))
    np.testing.assert_array_equal(same[1]["W"], params[1]["W"])
    reset, _ = hook(params, state, x, key, jnp.asarray(4))
    assert np.all(np.asarray(reset[1]["W"])[2] == 0) and np.any(np.asarray(params[1]["W"])[2])
    p, s = reg.redo_task_end(model, x, tau=0.0)(params, state, 0, key)
    np.testing.assert_array_equal(p[1]["W"], reset[1]["W"])


def test_outgoing_masks_through_conv_flatten_and_conv_conv():
    spec = models.ArchSpec(kind="cnn", widths=(3, 4), num_outputs=2, kernel_size=3)
    model = models.build(spec)
    params = model.init(jax.random.PRNGKey(0), (8, 8, 2))
    masks = [jnp.array([False, True, False]), jnp.array([True, False, False, True])]
    inc, out = reg.unit_weight_masks(params, masks)
    assert np.all(np.asarray(out[1]["W"])[:, :, 1, :]) and not np.any(
        np.asarray(out[1]["W"])[:, :, [0, 2], :])
    rows = np.asarray(out[2]["W"])[:, 0]  # flatten of 2 × 2 × 4: channel = row % 4
    assert np.flatnonzero(rows).tolist() == [r for r in range(16) if r % 4 in (0, 3)]
    assert np.all(np.asarray(inc[0]["W"])[..., 1]) and not np.any(np.asarray(inc[0]["W"])[..., 0])
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 8, 2)), jnp.float32)
    _, state = _adam_state_after_steps(params)
    key = jax.random.PRNGKey(1)
    new, new_state = jax.jit(lambda p, s: reg.resets._replace_units(
        lambda k: model.init(k, (8, 8, 2)), p, s, masks, key))(params, state)
    _check_replaced(params, new, model.init(key, (8, 8, 2)), masks, state, new_state)
    # the reset network still runs, and a cnn needs its input shape to re-draw
    assert jax.jit(model.apply)(new, x).shape == (4, 2)
    with pytest.raises(NtkplastError, match="input_shape"):
        reg.redo_step(model, params, state, x, key=key)


def test_reset_optimizer_state_spares_counts_and_the_l2_init_anchor():
    _, params = _mlp()
    tx = optax.chain(reg.add_l2_init_gradient(0.1), optax.adam(1e-2))
    _, state = _run(tx, params, _grad_sequence(params, 2))
    everything = jax.tree_util.tree_map(lambda p: jnp.ones(p.shape, bool), params)
    out = reg.reset_optimizer_state(state, params, everything)
    assert_trees_equal(out[0], state[0])  # θ₀ untouched
    assert all(np.all(np.asarray(v) == 0) for v in jax.tree_util.tree_leaves(
        (out[1][0].mu, out[1][0].nu)))
    assert int(out[1][0].count) == 2


def _one_hidden(width=8, d_in=5):
    model = models.build(models.ArchSpec(widths=(width,), num_outputs=3))
    return model, model.init(jax.random.PRNGKey(0), (d_in,))


def test_cbp_ranks_units_by_bias_corrected_utility():
    model, params = _one_hidden()
    params = (params[0], {**params[1], "W": jnp.zeros_like(params[1]["W"])})  # no contribution
    eta = 0.9
    util = jnp.full((8,), 10.0).at[0].set(0.5).at[1].set(0.6)
    age = jnp.full((8,), 1000, jnp.int32).at[0].set(1)
    # unit 0 is young: raw u = 0.45 < unit 1's 0.54, but û₀ = 0.45/(1 − 0.9²) = 2.37 > û₁ = 0.54
    rate = 0.01
    state = reg.CBPState((util,), (age,), (jnp.asarray(1.0 - 8 * rate + 0.02),))
    x = jnp.ones((4, 5))
    _, opt_state = _adam_state_after_steps(params)
    _, _, new, masks = reg.cbp_step(model, params, opt_state, state, x, key=jax.random.PRNGKey(0),
                                    replacement_rate=rate, decay_rate=eta,
                                    maturity_threshold=0)
    assert np.flatnonzero(masks[0]).tolist() == [1]
    assert float(new.utility[0][1]) == 0 and int(new.age[0][1]) == 0
    assert int(new.age[0][0]) == 2 and int(new.age[0][2]) == 1001
    np.testing.assert_allclose(new.utility[0][0], eta * 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(new.accumulator[0]), 0.02, atol=1e-6)


def test_cbp_accumulator_cannot_burst_and_replaces_correctly():
    width, rate, mature = 64, 0.05, 10
    model, params = _one_hidden(width)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 5)), jnp.float32)
    tx, opt_state = _adam_state_after_steps(params)
    state = reg.cbp_init(params)
    step = jax.jit(lambda p, o, s, k: reg.cbp_step(model, p, o, s, x, key=k, replacement_rate=rate,
                                                  maturity_threshold=mature))
    counts, accs, expected = [], [], 0.0
    for t in range(60):
        eligible = int(np.sum(np.asarray(state.age[0]) + 1 > mature))
        key = jax.random.PRNGKey(100 + t)
        p_old, o_old = params, opt_state
        params, opt_state, state, masks = step(params, opt_state, state, key)
        n = int(np.sum(masks[0]))
        counts.append(n)
        accs.append(float(state.accumulator[0]))
        expected += rate * eligible
        assert n <= int(np.floor(rate * eligible)) + 1  # no burst
        if n and t == mature:  # the first replacement: check the mechanics once
            _check_replaced(p_old, params, model.init(key, (5,)), masks, o_old, opt_state)
            assert np.all(np.asarray(state.utility[0])[masks[0]] == 0)
            assert np.all(np.asarray(state.age[0])[masks[0]] == 0)
    assert sum(counts[:mature]) == 0 and all(a == 0 for a in accs[:mature])
    assert all(0 <= a < 1 for a in accs)
    assert abs(sum(counts) - expected) < 1.0  # the long-run rate is ρ·|E| per step
    assert counts[mature] == int(np.floor(rate * width))  # 3.2 → 3 at the first mature step


def test_continual_backprop_hooks_carry_state_in_the_optimizer():
    model, params = _one_hidden(16)
    cbp = reg.continual_backprop(model, replacement_rate=0.1, maturity_threshold=2)
    tx = cbp.optimizer(optax.adam(1e-2))
    state = tx.init(params)
    assert isinstance(state, reg.WithState) and isinstance(state.extra, reg.CBPState)
    x = jnp.ones((4, 5))
    post = jax.jit(cbp.post_step)
    for t in range(5):
        g = _grad_sequence(params, 1, seed=t)[0]
        u, state = tx.update(g, state, params)
        params, state = post(optax.apply_updates(params, u), state, x, jax.random.PRNGKey(t),
                             jnp.asarray(t))
    assert int(state.inner[0].count) == 5
    assert int(np.max(np.asarray(state.extra.age[0]))) <= 5
    with pytest.raises(NtkplastError, match="CBPState"):
        cbp.post_step(params, state.inner, x, jax.random.PRNGKey(0), jnp.asarray(0))
    with pytest.raises(NtkplastError, match="replacement_rate"):
        reg.continual_backprop(model, replacement_rate=1.5)


def test_resets_plug_into_the_trainer():
    model, params = _one_hidden(16)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((64, 5)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 64))
    idx = jnp.asarray(rng.integers(0, 64, (12, 8)))
    cbp = reg.continual_backprop(model, replacement_rate=0.1, maturity_threshold=2)
    for tx, post_step in [(cbp.optimizer(optax.adam(1e-2)), cbp.post_step),
                          (optax.adam(1e-2), reg.redo(model, tau=0.5, every=4))]:
        trainer = training.make_trainer(model, tx, training.Hooks(post_step=post_step),
                                        key=jax.random.PRNGKey(1))
        state = training.TrainState(params, tx.init(params), jnp.asarray(0, jnp.int32))
        state, (loss, _, _) = trainer.run_chunk(state, x, y, idx)
        assert np.all(np.isfinite(np.asarray(loss)))


# --- plain data → hooks -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(reg.METHODS))
def test_make_hooks_builds_every_method(name):
    model, _ = _mlp(layer_norm=name == "nap")  # normalize-and-project needs the LayerNorm
    hooks = reg.make_hooks({"name": name}, model, (6,), 1e-3)
    assert isinstance(hooks, training.Hooks)
    assert (hooks == training.Hooks()) == (name == "none")


def test_make_hooks_defaults_and_errors():
    model, params = _mlp(d_in=10)
    hooks = reg.make_hooks({"name": "isometry", "lam": 0.5}, model, (10,), 1e-3)
    np.testing.assert_allclose(hooks.penalty(params),
                               reg.isometry_penalty(0.5, 2.0, model=model)(params))  # relu: s=2
    adamo = reg.make_hooks({"name": "adamo", "lam": 0.5, "every": 2}, model, (10,), 1e-3)
    assert adamo.post_update is not None
    with pytest.raises(NtkplastError, match="unknown 'adamw'"):
        reg.make_hooks({"name": "adamw"}, model, (10,), 1e-3)
    with pytest.raises(NtkplastError, match=r"unknown option\(s\) \['tau'\]"):
        reg.make_hooks({"name": "adamo", "tau": 0.1}, model, (10,), 1e-3)
    with pytest.raises(NtkplastError, match="true or false"):
        reg.make_hooks({"name": "srip", "squared": "yes"}, model, (10,), 1e-3)
    with pytest.raises(NtkplastError, match="lam"):
        reg.make_hooks({"name": "l2", "lam": "big"}, model, (10,), 1e-3)


@pytest.mark.parametrize("method", [{"name": "cbp", "replacement_rate": 0.05,
                                     "maturity_threshold": 3},
                                    {"name": "adamo", "lam": 0.1, "every": 2}])
def test_config_method_trains_and_resumes_bit_identically(tmp_path, method):
    from ntkplast.runs import checkpoints
    from ntkplast.training import config

    d = {"seed": 3, "model": {"widths": [16]},
         "stream": {"kind": "permuted", "dataset": "digits", "num_tasks": 2},
         "train": {"batch_size": 16, "steps_per_task": 8, "checkpoint_every": 4,
                   "reference_tasks": [1]},
         "method": method}
    cfg = config.config_from_dict(d)
    full = training.train_run(cfg, tmp_path / "full", progress=False)
    assert full.manifest["config"]["method"] == method
    training.train_run(cfg, tmp_path / "cut", progress=False, stop_after_chunks=3)
    cut = training.train_run(cfg, tmp_path / "cut", progress=False, resume=True)
    assert_trees_equal(full.params(-1), cut.params(-1))
    assert checkpoints.open_run(tmp_path / "full").complete
