"""PPO's arithmetic against values computed by hand: GAE's recursion and the clipped objective."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from ntkplast.errors import NtkplastError
from ntkplast.rl.ppo import PPOConfig, gae, ppo_loss


def test_gae_by_hand():
    """T = 3, one environment, the episode ending after step 1, γ = 0.9, λ = 0.8:
    δ_2 = 2 + 0.9·0.4 − 0.2 = 2.16, δ_1 = 0 − 1.0 = −1.0 (nothing bootstrapped past the end),
    δ_0 = 1 + 0.9·1.0 − 0.5 = 1.4; A_2 = 2.16, A_1 = −1.0, A_0 = 1.4 + 0.72·(−1.0) = 0.68."""
    adv, target = gae(jnp.array([[1.0], [0.0], [2.0]]), jnp.array([[0.5], [1.0], [0.2]]),
                      jnp.array([[False], [True], [False]]), jnp.array([0.4]), 0.9, 0.8)
    np.testing.assert_allclose(adv[:, 0], [0.68, -1.0, 2.16], rtol=1e-6)
    np.testing.assert_allclose(target[:, 0], [1.18, 0.0, 2.36], rtol=1e-6)


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value():
    rng = np.random.default_rng(0)
    r, v = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    last = rng.normal(size=4)
    adv, _ = gae(jnp.asarray(r), jnp.asarray(v), jnp.zeros((6, 4), bool), jnp.asarray(last),
                 0.95, 1.0)
    g = last.copy()
    for t in reversed(range(6)):
        g = r[t] + 0.95 * g
        np.testing.assert_allclose(adv[t], g - v[t], rtol=1e-5, atol=1e-5)


def test_clipped_objective_by_hand():
    """Two samples: π = (0.5, 0.5) taking a = 0, π = (0.75, 0.25) taking a = 1; π_old of the
    actions 0.4 and 0.5, so ρ = (1.25, 0.5); A = (1, −1) normalises to (1, −1); ε = 0.2:
    min(ρÂ, clip(ρ)Â) = (1.2, −0.8), policy loss −0.2. V = (1, 2), V_old = (0.5, 2.5),
    R = (1.5, 1): clipped V = (0.7, 2.3), squared errors (0.25, 1) and (0.64, 1.69), value loss
    ½·mean(0.64, 1.69) = 0.5825. Entropies ln 2 and −(¾ ln ¾ + ¼ ln ¼)."""
    logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
    total, parts = ppo_loss(logits, jnp.array([1.0, 2.0]), jnp.array([0, 1]),
                            jnp.log(jnp.array([0.4, 0.5])), jnp.array([0.5, 2.5]),
                            jnp.array([1.0, -1.0]), jnp.array([1.5, 1.0]), clip_eps=0.2,
                            vf_coef=0.5, ent_coef=0.01)
    entropy = (math.log(2) - (0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    np.testing.assert_allclose(parts["policy"], -0.2, rtol=1e-5)
    np.testing.assert_allclose(parts["value"], 0.5825, rtol=1e-5)
    np.testing.assert_allclose(parts["entropy"], entropy, rtol=1e-5)
    np.testing.assert_allclose(parts["clip_fraction"], 1.0)
    np.testing.assert_allclose(total, -0.2 + 0.5 * 0.5825 - 0.01 * entropy, rtol=1e-5)


def test_unclipped_ratio_gives_the_policy_gradient():
    """At ρ = 1 (π = π_old) the objective's gradient is the policy gradient −mean(Â ∇log π)."""
    import jax

    logits = jnp.array([[0.3, -0.2, 0.1], [0.0, 0.5, -0.5]])
    actions, adv = jnp.array([2, 1]), jnp.array([2.0, -1.0])
    old = jnp.take_along_axis(jax.nn.log_softmax(logits), actions[:, None], 1)[:, 0]

    def policy(lg):
        return ppo_loss(lg, jnp.zeros(2), actions, old, jnp.zeros(2), adv, jnp.zeros(2),
                        clip_eps=0.2, vf_coef=0.0, ent_coef=0.0)[0]

    a_hat = (adv - adv.mean()) / (adv.std() + 1e-8)
    want = jax.grad(lambda lg: -jnp.mean(a_hat * jnp.take_along_axis(
        jax.nn.log_softmax(lg), actions[:, None], 1)[:, 0]))(logits)
    np.testing.assert_allclose(jax.grad(policy)(logits), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("bad, field", [({"num_envs": 0}, "num_envs"),
                                        ({"gamma": 1.5}, "gamma"),
                                        ({"minibatches": 3}, "minibatches"),
                                        ({"learning_rate": float("nan")}, "learning_rate")])
def test_bad_settings_are_refused_by_name(bad, field):
    with pytest.raises(NtkplastError, match=field):
        PPOConfig(**bad)


def test_the_optimizer_clips_the_global_norm_unless_zero():
    import optax

    grads = {"w": jnp.array([3.0, 4.0])}  # global norm 5
    params = {"w": jnp.zeros(2)}
    for norm, eps in ((0.5, 1.0), (0.0, 1.0)):  # a large ε: Adam's step shows the clipping
        cfg = PPOConfig(max_grad_norm=norm, adam_eps=eps, learning_rate=0.1)
        tx = cfg.optimizer()
        update, _ = tx.update(grads, tx.init(params), params)
        clipped = grads if norm == 0 else {"w": grads["w"] * norm / 5.0}
        adam = optax.adam(0.1, eps=eps)
        want, _ = adam.update(clipped, adam.init(params), params)
        np.testing.assert_allclose(update["w"], want["w"], rtol=1e-6)
        other = {"w": grads["w"] * 0.1} if norm == 0 else grads
        wrong, _ = adam.update(other, adam.init(params), params)
        assert not np.allclose(update["w"], wrong["w"], rtol=1e-3)
    assert "adam_eps" not in PPOConfig().to_dict()  # runs written before it still resume
    assert PPOConfig(adam_eps=1e-8).to_dict()["adam_eps"] == 1e-8
