"""Proximal policy optimisation with separate actor and critic networks, all in one jitted scan.

Schulman et al. (2017), "Proximal Policy Optimization Algorithms", arXiv:1707.06347, with
generalised advantage estimation, Schulman et al. (2016), "High-Dimensional Continuous Control
Using Generalized Advantage Estimation", ICLR; the layout follows the single-file JAX PPO of
Lu et al. (2022), "Discovered Policy Optimisation" (purejaxrl): N environments stepped in
``jax.vmap``, a rollout of T steps in ``lax.scan``, then E epochs of M minibatches, and U such
updates in one compiled ``lax.scan``.

The actor (logits over the actions) and the critic (one output, V) are two ntkplast networks
(:mod:`ntkplast.models`), so every engine and diagnostic of the toolkit applies to each; each
has its own optimizer (gradient clipping to global norm ``max_grad_norm``, then Adam), which
differs from a joint optimizer only in clipping each network's gradient on its own.

Per update, with rewards r_t, values V_t = V(s_t), done flags d_t (the episode ended at step
t) and V_T the value of the observation after the rollout:

* GAE (:func:`gae`): δ_t = r_t + γ (1 − d_t) V_{t+1} − V_t,
  A_t = δ_t + γ λ (1 − d_t) A_{t+1} (A_T = 0); the value targets are R_t = A_t + V_t.
* The clipped objective (:func:`ppo_loss`), on a minibatch with the advantages normalised,
  Â = (A − mean A) / (std A + 1e-8), and ρ = π(a|s) / π_old(a|s):
  L = −mean min(ρ Â, clip(ρ, 1 − ε, 1 + ε) Â)
  + c_v · ½ mean max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²) − c_e · mean H[π(·|s)].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ntkplast import models
from ntkplast.base import Hooks
from ntkplast.errors import NtkplastError

__all__ = ["AgentState", "PPOConfig", "Rollout", "UpdateStats", "gae", "make_updater",
           "ppo_loss"]

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO's settings (defaults: purejaxrl's MinAtar settings, lr 5e-4 held constant, since a
    continual stream has no end to anneal towards).

    Attributes:
      num_envs: environments stepped together (N).
      num_steps: rollout length per update (T); an update sees N·T environment steps.
      epochs: passes over each rollout (E).
      minibatches: minibatches per pass (M); N·T must be divisible by M.
      gamma, gae_lambda: discount γ and GAE's λ.
      clip_eps: the clipping ε of the ratio and of the value.
      vf_coef, ent_coef: the weights c_v of the value loss and c_e of the entropy bonus.
      learning_rate: Adam's step size, for actor and critic.
      max_grad_norm: each network's gradient is clipped to this global norm (0: not clipped).
      adam_eps: Adam's ε (1e-5 as purejaxrl; optax's and rejax's default is 1e-8).
    """

    num_envs: int = 64
    num_steps: int = 128
    epochs: int = 4
    minibatches: int = 8
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    learning_rate: float = 5e-4
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5

    def __post_init__(self):
        for name in ("num_envs", "num_steps", "epochs", "minibatches"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise NtkplastError(f"ppo.{name}: expected an integer >= 1, got {v!r}")
        for name in ("gamma", "gae_lambda", "clip_eps", "vf_coef", "ent_coef", "learning_rate",
                     "max_grad_norm", "adam_eps"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not v >= 0 or v == float(
                    "inf"):
                raise NtkplastError(f"ppo.{name}: expected a finite number >= 0, got {v!r}")
        if self.gamma > 1 or self.gae_lambda > 1:
            raise NtkplastError("ppo.gamma and ppo.gae_lambda must lie in [0, 1]")
        if (self.num_envs * self.num_steps) % self.minibatches:
            raise NtkplastError(f"ppo.minibatches = {self.minibatches} must divide num_envs × "
                                f"num_steps = {self.num_envs * self.num_steps}")

    def optimizer(self) -> optax.GradientTransformation:
        """One network's optimizer: clipping to ``max_grad_norm`` (unless 0), then Adam."""
        adam = optax.adam(self.learning_rate, eps=self.adam_eps)
        if self.max_grad_norm == 0:
            return adam
        return optax.chain(optax.clip_by_global_norm(self.max_grad_norm), adam)

    def to_dict(self) -> dict[str, Any]:
        """Plain data; ``adam_eps`` only when it differs from 1e-5 (runs written before it was
        a setting still resume)."""
        d = dataclasses.asdict(self)
        if d["adam_eps"] == 1e-5:
            del d["adam_eps"]
        return d

    @property
    def steps_per_update(self) -> int:
        """Environment steps of one update, N·T."""
        return self.num_envs * self.num_steps


def gae(rewards: Array, values: Array, dones: Array, last_value: Array, gamma: float,
        lam: float) -> tuple[Array, Array]:
    """Generalised advantage estimates and value targets of a time-major rollout (module doc).

    Args:
      rewards: a ``T × …`` array.
      values: a ``T × …`` array.
      dones: a ``T × …`` array; ``dones[t]`` is whether the episode ended at step t (then
        nothing after it is bootstrapped into step t).
      last_value: V of the observation after the rollout (``…``).
      gamma: the discount γ.
      lam: λ.

    Returns:
      (advantages A_t, targets A_t + V_t), both ``T × …``.
    """
    not_done = 1.0 - dones.astype(values.dtype)
    next_values = jnp.concatenate([values[1:], last_value[None]], axis=0)
    deltas = rewards + gamma * not_done * next_values - values

    def back(carry, x):
        delta, keep = x
        a = delta + gamma * lam * keep * carry
        return a, a

    _, adv = jax.lax.scan(back, jnp.zeros_like(last_value), (deltas, not_done), reverse=True)
    return adv, adv + values


def ppo_loss(logits: Array, values: Array, actions: Array, old_log_probs: Array,
             old_values: Array, advantages: Array, targets: Array, *, clip_eps: float,
             vf_coef: float, ent_coef: float) -> tuple[Array, dict[str, Array]]:
    """The clipped PPO objective on one minibatch (module docstring), to be minimised.

    Args:
      logits: the actor's outputs, ``B × A``.
      values: the critic's V, ``B``.
      actions: the actions taken, ``B`` (int).
      old_log_probs: log π_old(a|s) recorded in the rollout, ``B``.
      old_values: V_old(s) recorded in the rollout, ``B``.
      advantages: A from :func:`gae`, ``B`` (A is normalised here).
      targets: R from :func:`gae`, ``B``.
      clip_eps: ε.
      vf_coef: c_v.
      ent_coef: c_e.

    Returns:
      (total loss, {"policy", "value", "entropy", "clip_fraction", "approx_kl"}).
    """
    log_p = jax.nn.log_softmax(logits)
    log_prob = jnp.take_along_axis(log_p, actions[:, None], axis=1)[:, 0]
    ratio = jnp.exp(log_prob - old_log_probs)
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy = -jnp.mean(jnp.minimum(ratio * adv,
                                   jnp.clip(ratio, 1 - clip_eps, 1 + clip_eps) * adv))
    clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    value = 0.5 * jnp.mean(jnp.maximum((values - targets) ** 2, (clipped - targets) ** 2))
    entropy = -jnp.mean(jnp.sum(jnp.exp(log_p) * log_p, axis=1))
    total = policy + vf_coef * value - ent_coef * entropy
    return total, {"policy": policy, "value": value, "entropy": entropy,
                   "clip_fraction": jnp.mean(jnp.abs(ratio - 1) > clip_eps),
                   "approx_kl": jnp.mean((ratio - 1) - (log_prob - old_log_probs))}


class AgentState(NamedTuple):
    """The actor's and critic's parameters and optimizer states, and the count of gradient
    steps taken (keys the methods' per-step randomness)."""

    actor: models.Params
    critic: models.Params
    actor_opt: Any
    critic_opt: Any
    step: Array


class Rollout(NamedTuple):
    """What the environments carry between updates: their states, the current observations and
    each environment's return so far in its running episode."""

    env_state: Any
    obs: Array
    episode_return: Array


class UpdateStats(NamedTuple):
    """Per update: the summed returns and the number of episodes that ended in its rollout, and
    the mean loss terms over its gradient steps."""

    return_sum: Array
    episodes: Array
    losses: dict[str, Array]


class _Transition(NamedTuple):
    obs: Array
    action: Array
    log_prob: Array
    value: Array
    reward: Array
    done: Array


def make_updater(actor: models.Model, critic: models.Model, step_env: Callable[..., Any],
                 cfg: PPOConfig, txs: tuple[optax.GradientTransformation,
                                            optax.GradientTransformation],
                 hooks: tuple[Hooks, Hooks]) -> Callable[..., Any]:
    """The jitted ``run(agent, rollout, task_arrays, keys) -> (agent, rollout, stats)`` that
    runs one PPO update per key in ``keys`` (a ``U × 2`` array) in one ``lax.scan``.

    Args:
      actor: the actor network (one output per action).
      critic: the critic network (one output).
      step_env: ``step_env(key, state, action, task_arrays) -> (obs, state, reward, done)`` for
        one environment, resetting itself at an episode's end (vmapped here over N).
      cfg: PPO's settings.
      txs: the actor's and critic's optimizers.
      hooks: the actor's and critic's method hooks (:class:`~ntkplast.hooks.Hooks`): each
        penalty is added to the loss, ``post_update`` and ``post_step`` (with the minibatch's
        observations) run after every gradient step; ``on_task_end`` is the caller's.
    """
    n, t_len, m = cfg.num_envs, cfg.num_steps, cfg.minibatches
    batch = n * t_len // m
    step_all = jax.vmap(step_env, in_axes=(0, 0, 0, None))

    def critic_value(params, obs):
        return critic.apply(params, obs)[..., 0]

    def rollout_step(carry, key, agent, task_arrays):
        ro = carry
        k_act, k_env = jax.random.split(key)
        logits = actor.apply(agent.actor, ro.obs)
        action = jax.random.categorical(k_act, logits)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], 1)[:, 0]
        value = critic_value(agent.critic, ro.obs)
        obs, env_state, reward, done = step_all(jax.random.split(k_env, n), ro.env_state, action,
                                                task_arrays)
        ret = ro.episode_return + reward
        ended = jnp.where(done, ret, 0.0)
        new = Rollout(env_state, obs, jnp.where(done, 0.0, ret))
        return new, (_Transition(ro.obs, action, log_prob, value, reward, done), ended)

    def loss_fn(params, mb):
        actor_p, critic_p = params
        total, parts = ppo_loss(actor.apply(actor_p, mb.obs), critic_value(critic_p, mb.obs),
                                mb.action, mb.log_prob, mb.value, mb.adv, mb.target,
                                clip_eps=cfg.clip_eps, vf_coef=cfg.vf_coef,
                                ent_coef=cfg.ent_coef)
        for p, h in zip(params, hooks, strict=True):
            if h.penalty is not None:
                total = total + h.penalty(p)
        return total, parts

    def after_step(h, params, opt, obs, key, step):
        if h.post_update is not None:
            params = h.post_update(params, key, step)
        if h.post_step is not None:
            params, opt = h.post_step(params, opt, obs, jax.random.fold_in(key, 1), step)
        return params, opt

    def grad_step(agent, mb_and_key):
        mb, key = mb_and_key
        (_, parts), (g_a, g_c) = jax.value_and_grad(loss_fn, has_aux=True)(
            (agent.actor, agent.critic), mb)
        u_a, actor_opt = txs[0].update(g_a, agent.actor_opt, agent.actor)
        u_c, critic_opt = txs[1].update(g_c, agent.critic_opt, agent.critic)
        a, c = optax.apply_updates(agent.actor, u_a), optax.apply_updates(agent.critic, u_c)
        k_a, k_c = jax.random.split(jax.random.fold_in(key, agent.step))
        a, actor_opt = after_step(hooks[0], a, actor_opt, mb.obs, k_a, agent.step)
        c, critic_opt = after_step(hooks[1], c, critic_opt, mb.obs, k_c, agent.step)
        return AgentState(a, c, actor_opt, critic_opt, agent.step + 1), parts

    def update(carry, key, task_arrays):
        agent, ro = carry
        k_roll, k_epochs = jax.random.split(key)
        ro, (trans, ended) = jax.lax.scan(
            lambda c, k: rollout_step(c, k, agent, task_arrays), ro,
            jax.random.split(k_roll, t_len))
        adv, target = gae(trans.reward, trans.value, trans.done,
                          critic_value(agent.critic, ro.obs), cfg.gamma, cfg.gae_lambda)
        flat = jax.tree_util.tree_map(
            lambda a: a.reshape((n * t_len,) + a.shape[2:]),
            _Minibatch(trans.obs, trans.action, trans.log_prob, trans.value, adv, target))

        def epoch(agent, k):
            k_perm, k_steps = jax.random.split(k)
            order = jax.random.permutation(k_perm, n * t_len).reshape(m, batch)
            mbs = jax.tree_util.tree_map(lambda a: a[order], flat)
            return jax.lax.scan(grad_step, agent, (mbs, jax.random.split(k_steps, m)))

        agent, parts = jax.lax.scan(epoch, agent, jax.random.split(k_epochs, cfg.epochs))
        stats = UpdateStats(jnp.sum(ended), jnp.sum(trans.done),
                            jax.tree_util.tree_map(jnp.mean, parts))
        return (agent, ro), stats

    @jax.jit
    def run(agent: AgentState, rollout: Rollout, task_arrays: Any, keys: Array):
        (agent, rollout), stats = jax.lax.scan(lambda c, k: update(c, k, task_arrays),
                                               (agent, rollout), keys)
        return agent, rollout, stats

    return run


class _Minibatch(NamedTuple):
    obs: Array
    action: Array
    log_prob: Array
    value: Array
    adv: Array
    target: Array
